"""Profiles: rulesets combined, per-drug verdicts, single-drug pathways and the gate decision.

These tests build a small protocol in a temporary directory, so that what they check (how the
findings of several rulesets combine) does not move when clinical content changes. What a user
notices: the most restrictive finding wins; a ketamine-only contraindication makes the protocol
INELIGIBLE and offers a lidocaine-only pathway for review; the gate proceeds only when nothing
holds, stops or awaits review, and a review counts only for the rule and subject it names;
a protocol that mis-names a drug or repeats a rule id is refused at its line.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from cds_rules.errors import InputErrors, RulesetErrors
from cds_rules.facts import parse_patient
from cds_rules.protocol import Assessment, Assessor, compile_profile
from cds_rules.spec import Outcome

RULESETS = Path(__file__).resolve().parent.parent / "rulesets"

PROTOCOL = """\
protocol: test_protocol
version: 1.0.0
title: test
terminology: {drugs: drugs.yaml, conditions: conditions.yaml}
drugs:
  lidocaine: {title: "IV lidocaine"}
  ketamine: {title: "IV ketamine"}
pathways:
  - id: PATHWAY-LIDOCAINE-ONLY
    contraindicated: ketamine
    remaining: lidocaine
    outcome: NEEDS_REVIEW
    evidence: CJ
    message: "lidocaine alone may be considered"
profiles:
  screening: {title: s, kind: screening, rulesets: [decide.yaml, drugs_rules.yaml]}
  gate: {title: g, kind: gate, rulesets: [drugs_rules.yaml, today.yaml]}
"""

DECIDE = """\
ruleset: decide
version: 1.0.0
title: decide
sources: {S-01: {title: s}}
derived: {adult: {title: adult}}
criteria:
  - {fact: adult, title: "adult", if_not_established: INELIGIBLE}
rules:
  - id: AGE-01
    title: adult
    sources: [S-01]
    evidence: CJ
    requires: [patient]
    when: {patient.age_years: {gte: 18}}
    then: {assert: {fact: adult}}
"""

DRUG_RULES = """\
ruleset: drug_rules
version: 1.0.0
title: drug rules
role: module
sources: {S-01: {title: s}}
rules:
  - id: KET-X-01
    title: porphyria-like hard stop for ketamine
    sources: [S-01]
    evidence: CJ
    drugs: [ketamine]
    requires: {c: condition}
    when: {c.concept: {eq: hypothyroidism}}
    then: {finding: {outcome: INELIGIBLE, message: "ketamine contraindicated"}}
  - id: LID-X-01
    title: relative for lidocaine
    sources: [S-01]
    evidence: CJ
    drugs: [lidocaine]
    requires: [patient]
    when: {patient.age_years: {gt: 70}}
    then: {finding: {outcome: NEEDS_REVIEW, message: "age {patient.age_years} over 70"}}
  - id: MED-X-01
    title: unknown medication
    sources: [S-01]
    evidence: CJ
    requires: {med: medication}
    when: {med.classified: {eq: false}}
    then:
      finding: {outcome: NEEDS_REVIEW, subject: med.drug, message: "{med.drug} not classified"}
  - id: BOTH-X-01
    title: protocol-wide hard stop
    sources: [S-01]
    evidence: CJ
    requires: [patient]
    when: {patient.age_years: {gt: 100}}
    then: {finding: {outcome: INELIGIBLE, message: "too old"}}
"""

TODAY = """\
ruleset: today
version: 1.0.0
title: today
role: module
sources: {S-01: {title: s}}
rules:
  - id: GATE-X-01
    title: heart rate
    sources: [S-01]
    evidence: CJ
    requires: [session]
    when: {session.heart_rate_bpm: {gt: 110}}
    then: {finding: {outcome: HOLD, message: "heart rate {session.heart_rate_bpm}"}}
"""


@pytest.fixture
def protocol_dir(tmp_path: Path) -> Path:
    for name in ("drugs.yaml", "conditions.yaml"):
        shutil.copy(RULESETS / name, tmp_path / name)
    for name, text in (
        ("protocol.yaml", PROTOCOL),
        ("decide.yaml", DECIDE),
        ("drugs_rules.yaml", DRUG_RULES),
        ("today.yaml", TODAY),
    ):
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def _assess(protocol_dir: Path, profile: str, **patient: Any) -> Assessment:
    data = {
        "as_of": "2026-01-20T09:00:00+00:00",
        "demographics": {"age_years": 40},
        "diagnoses": [],
        "current_medications": [],
        **patient,
    }
    facts = parse_patient(data)
    assessor = Assessor(
        compile_profile(protocol_dir / "protocol.yaml", profile), engine="reference"
    )
    return assessor.assess(facts)


def _verdicts(assessment: Assessment) -> dict[str, Outcome]:
    return {verdict.drug: verdict.outcome for verdict in assessment.drugs}


def test_nothing_found_is_eligible_with_both_drugs_clear(protocol_dir: Path) -> None:
    result = _assess(protocol_dir, "screening")
    assert result.decision == Outcome.ELIGIBLE
    assert _verdicts(result) == {"lidocaine": Outcome.ELIGIBLE, "ketamine": Outcome.ELIGIBLE}
    assert result.pathways == ()
    assert [e.ruleset.id for e in result.evaluations] == ["decide", "drug_rules"]


def test_a_ketamine_only_contraindication_offers_a_lidocaine_only_pathway(
    protocol_dir: Path,
) -> None:
    result = _assess(protocol_dir, "screening", diagnoses=[{"display": "hypothyroidism"}])
    assert result.decision == Outcome.INELIGIBLE
    assert _verdicts(result) == {"lidocaine": Outcome.ELIGIBLE, "ketamine": Outcome.INELIGIBLE}
    (pathway,) = result.pathways
    assert (pathway.id, pathway.pathway, pathway.outcome) == (
        "PATHWAY-LIDOCAINE-ONLY",
        "lidocaine_only",
        Outcome.NEEDS_REVIEW,
    )
    assert [f.rule_id for f in _verdict(result, "ketamine").reasons] == ["KET-X-01"]


def _verdict(result: Assessment, drug: str) -> Any:
    return next(v for v in result.drugs if v.drug == drug)


def test_no_pathway_when_a_protocol_wide_hard_stop_also_applies(protocol_dir: Path) -> None:
    result = _assess(
        protocol_dir,
        "screening",
        demographics={"age_years": 101},
        diagnoses=[{"display": "hypothyroidism"}],
    )
    assert result.decision == Outcome.INELIGIBLE
    assert result.pathways == ()


def test_the_pathway_is_never_less_restrictive_than_the_remaining_drug(
    protocol_dir: Path,
) -> None:
    result = _assess(
        protocol_dir,
        "screening",
        demographics={"age_years": 75},
        diagnoses=[{"display": "hypothyroidism"}],
    )
    assert _verdicts(result)["lidocaine"] == Outcome.NEEDS_REVIEW
    (pathway,) = result.pathways
    assert pathway.outcome == Outcome.NEEDS_REVIEW


def test_a_criterion_not_met_decides_even_without_drug_findings(protocol_dir: Path) -> None:
    result = _assess(protocol_dir, "screening", demographics={"age_years": 16})
    assert result.decision == Outcome.INELIGIBLE
    assert _verdicts(result) == {"lidocaine": Outcome.ELIGIBLE, "ketamine": Outcome.ELIGIBLE}


_SESSION = {
    "number": 3,
    "vitals": {"measured_at": "2026-01-20T08:55:00+00:00", "heart_rate_bpm": 80},
}


def test_gate_proceeds_when_nothing_holds(protocol_dir: Path) -> None:
    result = _assess(protocol_dir, "gate", session=_SESSION)
    assert result.gate is not None
    assert (result.gate.decision, result.gate.session, result.gate.blocking) == ("PROCEED", 3, ())


def test_gate_holds_on_a_hold_finding_and_names_it(protocol_dir: Path) -> None:
    session = {**_SESSION, "vitals": {**_SESSION["vitals"], "heart_rate_bpm": 120}}  # type: ignore[dict-item]
    result = _assess(protocol_dir, "gate", session=session)
    assert result.gate is not None
    assert result.gate.decision == "HOLD"
    assert [f.rule_id for f in result.gate.blocking] == ["GATE-X-01"]


def test_gate_stops_the_course_on_a_hard_stop(protocol_dir: Path) -> None:
    result = _assess(
        protocol_dir, "gate", session=_SESSION, diagnoses=[{"display": "hypothyroidism"}]
    )
    assert result.gate is not None
    assert result.gate.decision == "INELIGIBLE"


def test_gate_holds_on_missing_data_and_no_review_can_lift_it(protocol_dir: Path) -> None:
    session = {
        **_SESSION,
        "vitals": {"measured_at": "2026-01-20T08:55:00+00:00"},
        "reviews": [{"rule": "GATE-X-01", "reviewer": "Dr A", "at": "2026-01-20T08:00:00+00:00"}],
    }
    result = _assess(protocol_dir, "gate", session=session)
    assert result.gate is not None
    assert result.gate.decision == "HOLD"
    assert [f.kind for f in result.gate.blocking] == ["missing_data"]


def test_a_review_cannot_lift_data_that_are_missing_today(protocol_dir: Path) -> None:
    """A rule whose missing data only needs review at screening still holds the session."""
    rules = protocol_dir / "drugs_rules.yaml"
    rules.write_text(
        rules.read_text(encoding="utf-8")
        + """\
  - id: LID-X-02
    title: breastfeeding
    sources: [S-01]
    evidence: CJ
    drugs: [lidocaine]
    on_missing: NEEDS_REVIEW
    requires: [patient]
    when: {patient.breastfeeding: {eq: true}}
    then: {finding: {outcome: NEEDS_REVIEW, message: "breastfeeding"}}
""",
        encoding="utf-8",
    )
    session = {
        **_SESSION,
        "reviews": [{"rule": "LID-X-02", "reviewer": "Dr A", "at": "2026-01-19T16:00:00+00:00"}],
    }
    result = _assess(protocol_dir, "gate", session=session)
    assert result.gate is not None
    assert result.gate.decision == "HOLD"
    assert [(f.rule_id, f.kind) for f in result.gate.blocking] == [("LID-X-02", "missing_data")]
    assert result.gate.reviewed == ()


@pytest.mark.parametrize(
    ("review", "decision"),
    [
        ({"rule": "MED-X-01", "subject": "snake oil"}, "PROCEED"),
        ({"rule": "MED-X-01", "subject": "another drug"}, "HOLD"),
        ({"rule": "MED-X-01"}, "HOLD"),
        ({"rule": "LID-X-01", "subject": "snake oil"}, "HOLD"),
    ],
)
def test_a_review_lifts_only_the_finding_it_names(
    protocol_dir: Path, review: dict[str, str], decision: str
) -> None:
    session = {
        **_SESSION,
        "reviews": [{**review, "reviewer": "Dr A", "at": "2026-01-19T16:00:00+00:00"}],
    }
    result = _assess(
        protocol_dir, "gate", session=session, current_medications=[{"drug": "snake oil"}]
    )
    assert result.gate is not None
    assert result.gate.decision == decision
    if decision == "PROCEED":
        (reviewed,) = result.gate.reviewed
        assert (reviewed.rule_id, reviewed.subject, reviewed.reviewer) == (
            "MED-X-01",
            "snake oil",
            "Dr A",
        )


def test_gate_without_a_session_block_is_an_input_error(protocol_dir: Path) -> None:
    with pytest.raises(InputErrors) as raised:
        _assess(protocol_dir, "gate")
    (error,) = raised.value.errors
    assert (error.code, error.location.path) == ("missing_field", "$.session")


def test_assessment_round_trips_through_json(protocol_dir: Path) -> None:
    result = _assess(
        protocol_dir, "gate", session=_SESSION, current_medications=[{"drug": "snake oil"}]
    )
    assert Assessment.from_json(result.to_json()) == result


@pytest.mark.parametrize(
    ("file", "old", "new", "code"),
    [
        ("protocol.yaml", "contraindicated: ketamine", "contraindicated: ketamin", "unknown_drug"),
        ("drugs_rules.yaml", "drugs: [lidocaine]", "drugs: [lignocaine]", "unknown_drug"),
        (
            "drugs_rules.yaml",
            "c.concept: {eq: hypothyroidism}",
            "c.concept: {eq: hypothyroid}",
            "invalid_value",
        ),
        ("today.yaml", "id: GATE-X-01", "id: KET-X-01", "duplicate_rule_id"),
        ("today.yaml", "role: module\n", "", "no_criteria"),
    ],
)
def test_a_bad_protocol_is_refused_with_its_place(
    protocol_dir: Path, file: str, old: str, new: str, code: str
) -> None:
    path = protocol_dir / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(RulesetErrors) as raised:
        compile_profile(protocol_dir / "protocol.yaml", "gate")
    codes = [(e.code, Path(e.location.file or "").name) for e in raised.value.errors]
    assert (code, file) in codes, codes


def test_an_unknown_profile_names_the_profiles(protocol_dir: Path) -> None:
    with pytest.raises(RulesetErrors) as raised:
        compile_profile(protocol_dir / "protocol.yaml", "screnning")
    (error,) = raised.value.errors
    assert error.code == "unknown_profile"
    assert error.hint == "did you mean `screening`?"
