"""The evaluation result: immutable, deterministic and an exact JSON round trip."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from cds_rules.api import evaluator_for
from cds_rules.evaluation import Evaluation
from cds_rules.facts import load_patient

FIXTURES = sorted((Path(__file__).parent.parent / "fixtures" / "patients").glob("*.yaml"))


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
@pytest.mark.parametrize("engine", ["durable", "reference"])
def test_result_round_trips_through_json(fixture: Path, engine: str) -> None:
    result = evaluator_for(engine=engine).evaluate(load_patient(fixture))  # type: ignore[arg-type]
    text = result.to_json()
    again = Evaluation.from_json(text)
    assert again == result
    assert again.to_json() == text


def test_result_is_immutable_and_repeatable() -> None:
    patient = load_patient(FIXTURES[0])
    first = evaluator_for().evaluate(patient)
    with pytest.raises(FrozenInstanceError):
        first.decision = first.decision  # type: ignore[misc]
    assert evaluator_for().evaluate(patient).to_json() == first.to_json()


def test_cross_check_fails_closed_when_the_evaluators_disagree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A disagreement is an error naming the rule, never a decision."""
    from cds_rules.api import compile_file, default_rulesets_dir
    from cds_rules.errors import CrossCheckError
    from cds_rules.evaluation import Evaluator
    from cds_rules.reference import ReferenceEvaluator, ReferenceRun

    original = ReferenceEvaluator.run

    def lose_one_firing(self: ReferenceEvaluator, facts: object) -> ReferenceRun:
        run = original(self, facts)  # type: ignore[arg-type]
        run.firings = [
            f for f in run.firings if self._compiled.rules[f.rule_index].id != "LAB-02-CRP"
        ]
        return run

    monkeypatch.setattr(ReferenceEvaluator, "run", lose_one_firing)
    evaluator = Evaluator(
        compile_file(default_rulesets_dir() / "eligibility.yaml"), cross_check=True
    )
    seed = load_patient(Path(__file__).parent.parent / "fixtures" / "patients" / "seed.yaml")
    with pytest.raises(CrossCheckError) as caught:
        evaluator.evaluate(seed)
    assert caught.value.code == "cross_check_failed"
    assert "LAB-02-CRP" in caught.value.message
