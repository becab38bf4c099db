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


PER_TRIAL = """
ruleset: per_trial
version: 1.0.0
title: per-trial review rule
sources: {S-01: {title: a source}}
derived: {met: {title: met}}
criteria: [{fact: met, title: met, if_not_established: INELIGIBLE}]
rules:
  - id: MET-01
    title: always met for a patient
    sources: [S-01]
    evidence: CJ
    requires: [patient]
    when: {patient.sex: {in: [female, male]}}
    then: {assert: {fact: met}}
  - id: DDI-01
    title: pregabalin above 450 mg/day
    sources: [S-01]
    evidence: CJ
    requires: [trial]
    when:
      all:
        - trial.drug: {eq: pregabalin}
        - trial.dose_mg_per_day: {gt: 450}
    then: {finding: {outcome: NEEDS_REVIEW, message: "pregabalin {trial.dose_mg_per_day} mg/day"}}
"""


@pytest.mark.parametrize("engine", ["durable", "reference"])
def test_an_undecided_fact_stays_reported_when_the_rule_holds_for_another(engine: str) -> None:
    """Adding data never makes a decision less restrictive: the unknown dose is still open."""
    from datetime import UTC, datetime

    from cds_rules.compiler import compile_ruleset
    from cds_rules.evaluation import Evaluator
    from cds_rules.loader import load_ruleset_text
    from cds_rules.records import PatientRecord, TrialRecord

    evaluator = Evaluator(
        compile_ruleset(load_ruleset_text(PER_TRIAL, "per_trial.yaml")),
        engine=engine,  # type: ignore[arg-type]
        cross_check=True,
    )
    unknown = TrialRecord(drug="pregabalin", dose_mg_per_day=None)
    high = TrialRecord(drug="pregabalin", dose_mg_per_day=600)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    alone = evaluator.evaluate_records((PatientRecord(sex="female"), unknown), now)
    both = evaluator.evaluate_records((PatientRecord(sex="female"), unknown, high), now)
    assert alone.decision.value == "CANNOT_EVALUATE"
    assert both.decision.value == "CANNOT_EVALUATE"
    assert [m.paths for m in both.missing] == [("trial.dose_mg_per_day",)]
    assert [f.message for f in both.findings if f.kind == "rule"] == ["pregabalin 600 mg/day"]
