"""Each durable-rules defect the engine module guards against, with a test that fails if it
returns."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime

import pytest

from cds_rules.api import compile_file, default_rulesets_dir
from cds_rules.compiler import compile_ruleset
from cds_rules.engine import DurableEngine, _Session, fact_json, fnv1_32
from cds_rules.errors import EngineError, RulesetErrors
from cds_rules.evaluation import Evaluator
from cds_rules.loader import load_ruleset_text
from cds_rules.records import (
    AcrRecord,
    EcgRecord,
    LabsRecord,
    MedicationRecord,
    PatientRecord,
    Score,
    TherapyRecord,
    TrialRecord,
)

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
#: Pairs whose engine hashes collide (found by birthday search over the engine's hash).
COLLIDING_SIDS = ("patient-332789", "patient-529192")
COLLIDING_IDS = ("f062789", "f279192")


@pytest.fixture(scope="module")
def compiled():  # type: ignore[no-untyped-def]
    return compile_file(default_rulesets_dir() / "eligibility.yaml")


def _score(value: int) -> Score:
    return Score(minimum=value, maximum=value)


def _patient(esr: float, crp: float, trials: tuple[TrialRecord, ...] = ()) -> tuple:  # type: ignore[type-arg]
    return (
        PatientRecord(
            age_years=40,
            sex="female",
            weight_kg=68,
            pregnancy_status="not_pregnant",
            pain_nrs=7,
            confounders_reviewed=True,
        ),
        AcrRecord(
            widespread_pain_index=_score(11),
            generalized_pain_regions=_score(5),
            symptom_severity_2016=_score(9),
            symptom_severity_2010=_score(9),
            polysymptomatic_distress=_score(20),
            symptom_duration_months=24,
            other_disorder_explains_pain=False,
        ),
        LabsRecord(
            cbc="normal", esr_mm_per_h=esr, crp_mg_per_l=crp, tsh_miu_per_l=2, ck_u_per_l=100
        ),
        *trials,
        TherapyRecord(therapy="physiotherapy"),
    )


def test_engine_hash_matches_the_collisions_seen_in_the_engine() -> None:
    assert fnv1_32(COLLIDING_SIDS[0]) == fnv1_32(COLLIDING_SIDS[1])
    assert fnv1_32(COLLIDING_IDS[0]) == fnv1_32(COLLIDING_IDS[1])
    assert fnv1_32("a") != fnv1_32("b")


def test_fact_ids_never_collide_within_a_session() -> None:
    session = _Session(sid="1", run=None)  # type: ignore[arg-type]
    session.used_hashes.add(fnv1_32(COLLIDING_IDS[1]))
    session.next_fact = 62788  # the next candidate is f62789, not the colliding f062789 text
    issued = {session.fact_id() for _ in range(5000)}
    assert len({fnv1_32(i) for i in issued}) == len(issued)
    blocked = _Session(sid="1", run=None)  # type: ignore[arg-type]
    blocked.used_hashes.add(fnv1_32("f1"))
    assert blocked.fact_id() == "f2"


def test_patients_with_colliding_identifiers_do_not_share_facts(compiled) -> None:  # type: ignore[no-untyped-def]
    """Caller identifiers never reach the engine; two patients never mix facts."""
    engine = Evaluator(compiled, engine="durable")
    raised = engine.evaluate_records(_patient(esr=60, crp=1), AS_OF)
    normal = engine.evaluate_records(_patient(esr=10, crp=1), AS_OF)
    alone = Evaluator(compiled, engine="durable").evaluate_records(_patient(esr=10, crp=1), AS_OF)
    assert "LAB-02-ESR-FEMALE" in {f.rule_id for f in raised.findings}
    assert "LAB-02-ESR-FEMALE" not in {f.rule_id for f in normal.findings}
    assert normal.to_dict() == alone.to_dict()


def test_identical_facts_are_both_kept(compiled) -> None:  # type: ignore[no-untyped-def]
    """The engine drops a second fact of identical content without an id; ours keeps both."""
    trial = TrialRecord(
        drug="pregabalin", dose_mg_per_day=150, duration_weeks=20, stop_reason="ongoing"
    )
    result = Evaluator(compiled).evaluate_records(_patient(10, 1, (trial, trial)), AS_OF)
    matched = [f for f in result.fired if f.rule_id == "REF-02-PREGABALIN-INADEQUATE"]
    assert sorted(m.matched[0].key for m in matched) == ["#3", "#4"]


def test_more_sessions_than_the_engine_keeps_alive(compiled) -> None:  # type: ignore[no-untyped-def]
    """The 1,025th live session raises MemoryError in the engine; sessions here never pile up."""
    engine = Evaluator(compiled, engine="durable")
    for number in range(1500):
        result = engine.evaluate_records(_patient(esr=10 + number % 40, crp=1), AS_OF)
        assert result.decision.value in {"ELIGIBLE", "NEEDS_REVIEW"}


def test_session_in_which_nothing_matches_is_deleted_without_a_crash() -> None:
    """``delete_state`` segfaults after a session where no action ran; the sentinel prevents it."""
    script = textwrap.dedent(
        """
        from datetime import UTC, datetime
        from cds_rules.compiler import compile_ruleset
        from cds_rules.evaluation import Evaluator
        from cds_rules.loader import load_ruleset_text
        from cds_rules.records import TrialRecord
        import sys
        text = sys.stdin.read()
        compiled = compile_ruleset(load_ruleset_text(text))
        evaluator = Evaluator(compiled, engine="durable")
        for _ in range(50):
            result = evaluator.evaluate_records((TrialRecord(drug="none"),), datetime.now(UTC))
            assert result.fired == ()
        print("ok")
    """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=MINIMAL, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


MINIMAL = """
ruleset: minimal
version: 1.0.0
title: minimal
sources: {S-01: {title: a source}}
derived: {met: {title: met}}
criteria: [{fact: met, title: met, if_not_established: INELIGIBLE}]
rules:
  - id: MIN-01
    title: duloxetine trial
    sources: [S-01]
    evidence: CJ
    requires: [trial]
    when: {trial.drug: {eq: duloxetine}}
    then: {assert: {fact: met}}
"""


@pytest.fixture(scope="module")
def minimal():  # type: ignore[no-untyped-def]
    return compile_ruleset(load_ruleset_text(MINIMAL, "minimal.yaml"))


def test_nothing_fired_is_a_normal_empty_result(minimal) -> None:  # type: ignore[no-untyped-def]
    result = Evaluator(minimal).evaluate_records((TrialRecord(drug="pregabalin"),), AS_OF)
    assert result.fired == ()
    assert result.decision.value == "INELIGIBLE"
    assert [c.status for c in result.criteria] == ["not_established"]


def test_engine_starts_no_background_threads(minimal) -> None:  # type: ignore[no-untyped-def]
    before = threading.active_count()
    engine = DurableEngine(minimal)
    engine.run([("#0", TrialRecord(drug="duloxetine"))])
    assert threading.active_count() == before


def test_an_exception_in_an_action_reaches_the_caller(minimal, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine = DurableEngine(minimal)

    def broken(*args: object) -> None:
        raise RuntimeError("broken action")

    monkeypatch.setattr(engine, "_act", broken)
    with pytest.raises(EngineError) as caught:
        engine.run([("#0", TrialRecord(drug="duloxetine"))])
    assert caught.value.code == "action_failed"
    assert "broken action" in caught.value.message
    # the engine stays usable afterwards
    monkeypatch.undo()
    assert len(engine.run([("#0", TrialRecord(drug="duloxetine"))]).firings) == 2


def test_text_where_a_number_belongs_never_reaches_the_engine(compiled) -> None:  # type: ignore[no-untyped-def]
    """The engine compares "10" > 9 as text; typed encoding refuses the value instead."""
    bad = PatientRecord.model_construct(age_years="45", sex="female", placeholder=False)
    with pytest.raises(EngineError) as caught:
        DurableEngine(compiled).run([("#0", bad)])
    assert caught.value.code == "invalid_fact"
    assert "age_years" in caught.value.message


def test_numbers_are_serialised_without_exponents() -> None:
    """The engine's JSON parser rejects `1e-07`."""
    assert fact_json({"x": 1e-07, "y": 1e11, "t": "labs"}) == (
        '{"x":0.0000001,"y":100000000000.0,"t":"labs"}'
    )
    with pytest.raises(EngineError):
        fact_json({"x": 1e20})


def test_tiny_and_boundary_values_agree_with_the_reference(compiled) -> None:  # type: ignore[no-untyped-def]
    for crp in (1e-07, 5.0, 5.0000001, 0.30000000000000004):
        records = _patient(esr=25.0, crp=crp)
        durable = Evaluator(compiled, cross_check=True).evaluate_records(records, AS_OF)
        fired = {f.rule_id for f in durable.findings}
        assert ("LAB-02-CRP" in fired) == (crp > 5)


def test_fact_order_does_not_change_the_result(compiled) -> None:  # type: ignore[no-untyped-def]
    """``$not`` depends on fact order in the engine; no rule uses it, so order is irrelevant."""
    trials = (
        TrialRecord(
            drug="duloxetine", dose_mg_per_day=60, duration_weeks=12, stop_reason="ongoing"
        ),
        TrialRecord(
            drug="pregabalin", dose_mg_per_day=300, duration_weeks=12, stop_reason="ongoing"
        ),
    )
    records = _patient(esr=10, crp=1, trials=trials)
    evaluator = Evaluator(compiled)
    forward = evaluator.evaluate_records(records, AS_OF)
    backward = evaluator.evaluate_records(tuple(reversed(records)), AS_OF)
    assert forward.decision == backward.decision
    assert {f.rule_id for f in forward.fired} == {f.rule_id for f in backward.fired}
    assert [c.status for c in forward.criteria] == [c.status for c in backward.criteria]


def test_every_pattern_tests_the_fact_type_and_no_rule_uses_not(compiled) -> None:  # type: ignore[no-untyped-def]
    """A pattern without a type test can match the engine's state fact and loop forever."""
    for name, rule in compiled.engine_definition.items():
        text = str(rule)
        assert "$not" not in text and "$nex" not in text, name
        for pattern in rule["all"]:
            ((_, expression),) = pattern.items()
            tests = expression.get("$and", [expression])
            assert any("t" in test for test in tests), name


def test_firings_name_their_rule_and_facts_in_order(compiled) -> None:  # type: ignore[no-untyped-def]
    result = Evaluator(compiled).evaluate_records(_patient(esr=10, crp=1), AS_OF)
    assert [f.sequence for f in result.fired] == list(range(1, len(result.fired) + 1))
    dx = next(f for f in result.fired if f.rule_id == "DX2016-01")
    assert dx.matched[0].fact_type == "acr"
    assert dx.matched[0].values["widespread_pain_index"] == 11


JOIN = """
ruleset: join
version: 1.0.0
title: join
role: module
sources: {S-01: {title: a source}}
rules:
  - id: JOIN-01
    title: ECG older than a beta-blocker
    sources: [S-01]
    evidence: CJ
    requires: {REQUIRES}
    when:
      all:
        - med.drug_class: {eq: beta_blocker}
        - {JOIN}
    then: {finding: {outcome: CANNOT_EVALUATE, message: repeat the ECG}}
"""


def test_a_join_beside_other_tests_of_its_fact_is_refused() -> None:
    """durable-rules drops such a join (the rule fires whatever the values)."""
    text = JOIN.replace("{REQUIRES}", "{ecg: ecg, med: medication}").replace(
        "{JOIN}", "med.days_since_started: {lt: {field: ecg.age_days}}"
    )
    with pytest.raises(RulesetErrors) as raised:
        compile_ruleset(load_ruleset_text(text, "join.yaml"))
    assert [error.code for error in raised.value.errors] == ["unsupported_join"]


@pytest.mark.parametrize(("started", "fires"), [(9.0, True), (10.0, False), (12.0, False)])
def test_a_join_written_from_the_other_fact_agrees_with_the_reference(
    started: float, fires: bool
) -> None:
    text = JOIN.replace("{REQUIRES}", "{med: medication, ecg: ecg}").replace(
        "{JOIN}", "ecg.age_days: {gt: {field: med.days_since_started}}"
    )
    compiled = compile_ruleset(load_ruleset_text(text, "join.yaml"))
    records = (
        EcgRecord(age_days=10.0),
        MedicationRecord(
            drug="bisoprolol",
            ingredient="bisoprolol",
            drug_class="beta_blocker",
            classified=True,
            status="active",
            days_since_started=started,
        ),
    )
    for engine in ("durable", "reference"):
        result = Evaluator(compiled, engine=engine).evaluate_records(records, AS_OF)  # type: ignore[arg-type]
        assert [rule.rule_id for rule in result.fired] == (["JOIN-01"] if fires else [])
