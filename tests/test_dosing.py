"""Dose arithmetic against values computed by hand (reference §3.1 DOSE-LID-01/02, §4.2
DOSE-KET-01/02): ideal and adjusted body weight, mg/kg to mg to mL at several concentrations,
rates, the caps, and ordered doses either side of each limit. Every number in these tables was
worked out on paper from the formulas in rulesets/dosing.yaml, not by running the code.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cds_rules.dosing import check_order, dosing_weight, fmt, load_dosing_table, plan_session
from cds_rules.errors import InputError, RulesetErrors
from cds_rules.facts import PatientFacts, parse_patient
from cds_rules.spec import Outcome

RULESETS = Path(__file__).resolve().parents[1] / "rulesets"
TABLE = load_dosing_table(RULESETS / "dosing.yaml")


def patient(weight: float | None, height: float | None = None, sex: str = "female") -> PatientFacts:
    demographics: dict[str, Any] = {"age_years": 45, "sex": sex, "weight_kg": weight}
    if height is not None:
        demographics["height_cm"] = height
    return parse_patient({"as_of": "2026-01-20T09:00:00+00:00", "demographics": demographics})


def D(text: str) -> Decimal:
    return Decimal(text)


# (sex, height cm, actual kg) -> IBW kg (Devine: base + 0.9055 kg/cm over 152.4 cm, to 0.1 kg),
# adjusted kg (IBW + 0.4 x excess, when actual > 1.2 x IBW) and the weight lidocaine is dosed on.
WEIGHTS = [
    ("female", 152.4, 50, "45.5", None, "50"),  # 45.5 + 0; 50 <= 54.6
    ("female", 160, 60, "52.4", None, "60"),  # 45.5 + 6.8818 = 52.3818; 60 <= 62.88
    ("female", 160, 100, "52.4", "71.4", "71.4"),  # 52.4 + 0.4 x 47.6 = 71.44
    ("female", 175, 70, "66.0", None, "70"),  # 45.5 + 20.4643 = 65.9643
    ("male", 165, 60, "61.4", None, "60"),  # 50 + 11.4093 = 61.4093
    ("male", 180, 90, "75.0", None, "90"),  # 50 + 24.9918; 90 is exactly 1.2 x 75: actual
    ("male", 180, 90.1, "75.0", "81.0", "81.0"),  # 75 + 0.4 x 15.1 = 81.04
    ("male", 200, 110, "93.1", None, "110"),  # 50 + 43.1018 = 93.1018; 110 <= 111.72
]


@pytest.mark.parametrize(("sex", "height", "actual", "ibw", "adjusted", "dosing"), WEIGHTS)
def test_ideal_and_adjusted_body_weight(
    sex: str, height: float, actual: float, ibw: str, adjusted: str | None, dosing: str
) -> None:
    weight = dosing_weight(patient(actual, height, sex), TABLE)
    assert weight.ibw_kg == D(ibw)
    assert weight.adjusted_kg == (D(adjusted) if adjusted else None)
    assert weight.dosing_kg == D(dosing)
    assert weight.basis == ("adjusted" if adjusted else "actual")
    assert weight.outcome == Outcome.ELIGIBLE


# session -> lidocaine mg/kg: 3.5 + 0.25 x (session - 1), at most 5.0
@pytest.mark.parametrize(
    ("session", "mg_per_kg"),
    [(1, "3.5"), (2, "3.75"), (3, "4.0"), (4, "4.25"), (5, "4.5"), (6, "4.75"), (7, "5.0")],
)
def test_lidocaine_mg_per_kg_rises_by_the_step_to_the_maximum(session: int, mg_per_kg: str) -> None:
    plan = plan_session(
        patient(80, 170), session, lidocaine_mg_per_ml=20, ketamine_mg_per_ml=10, table=TABLE
    )
    assert plan.lidocaine is not None
    assert plan.lidocaine.mg_per_kg == D(mg_per_kg)


# (weight, session, lidocaine mg/mL) -> mg, mL, mg/h over 60 and over 90 min (no height: the
# seed's actual-weight dosing, NEEDS_REVIEW)
LIDOCAINE = [
    (85, 1, 21, "297.5", "14.17", "297.5", "198.3"),  # 3.5 x 85; 297.5/21 = 14.1667 (seed: 14.17)
    (85, 1, 20, "297.5", "14.88", "297.5", "198.3"),  # 297.5/20 = 14.875
    (85, 7, 21, "425.0", "20.24", "425.0", "283.3"),  # 5 x 85; 425/21 = 20.238; 425 x 60/90
    (85, 7, 20, "425.0", "21.25", "425.0", "283.3"),  # seed's day 7 at the Aspen 20 mg/mL
    (85, 7, 10, "425.0", "42.50", "425.0", "283.3"),  # a 1% product
    (100, 7, 20, "500.0", "25.00", "500.0", "333.3"),  # exactly the 500 mg cap: not capped
    (120, 7, 20, "500", "25.00", "500", "333.3"),  # 600 mg capped to 500 mg
]


@pytest.mark.parametrize(
    ("weight", "session", "conc", "mg", "ml", "per_h_60", "per_h_90"), LIDOCAINE
)
def test_lidocaine_mg_ml_and_rate(
    weight: float, session: int, conc: float, mg: str, ml: str, per_h_60: str, per_h_90: str
) -> None:
    plan = plan_session(
        patient(weight), session, lidocaine_mg_per_ml=conc, ketamine_mg_per_ml=10, table=TABLE
    )
    dose = plan.lidocaine
    assert dose is not None
    assert (dose.mg, dose.ml, dose.mg_per_h) == (D(mg), D(ml), (D(per_h_60), D(per_h_90)))
    assert dose.capped == (weight == 120)
    assert plan.outcome == Outcome.NEEDS_REVIEW  # no height: dosed on actual weight, reviewed


# (actual kg, session, ketamine mg/mL) -> mg and mL: 10 mg from session 2, +5 mg a session,
# within 0.1-0.2 mg/kg of actual weight (maximum rounded down, minimum up, to 0.5 mg)
KETAMINE = [
    (85, 1, 10, None, None),  # no ketamine on day 1
    (85, 2, 10, "10", "1.00"),  # 0.118 mg/kg
    (85, 3, 10, "15", "1.50"),
    (85, 4, 10, "17.0", "1.70"),  # 20 mg would be 0.235 mg/kg: 0.2 x 85 = 17
    (75, 4, 10, "15.0", "1.50"),  # 0.2 x 75 = 15
    (77, 4, 50, "15.0", "0.30"),  # 0.2 x 77 = 15.4, down to 15.0; 15/50
    (45, 2, 10, "9.0", "0.90"),  # 10 mg would be 0.222 mg/kg: 0.2 x 45 = 9
    (120, 2, 10, "12.0", "1.20"),  # 10 mg would be 0.083 mg/kg: 0.1 x 120 = 12
    (125, 2, 10, "12.5", "1.25"),  # 0.1 x 125 = 12.5
    (126, 2, 10, "13.0", "1.30"),  # 0.1 x 126 = 12.6, up to 13.0
]


@pytest.mark.parametrize(("weight", "session", "conc", "mg", "ml"), KETAMINE)
def test_ketamine_mg_and_ml(
    weight: float, session: int, conc: float, mg: str | None, ml: str | None
) -> None:
    plan = plan_session(
        patient(weight, 170), session, lidocaine_mg_per_ml=20, ketamine_mg_per_ml=conc, table=TABLE
    )
    if mg is None:
        assert plan.ketamine is None
        return
    assert plan.ketamine is not None
    assert (plan.ketamine.mg, plan.ketamine.ml) == (D(mg), D(ml))


def test_bag_volume_and_pump_rates() -> None:
    # seed day 2: 318.75 -> 318.8 mg = 15.18 mL at 21; ketamine 10 mg = 1 mL; bag 116.18 mL
    plan = plan_session(patient(85), 2, lidocaine_mg_per_ml=21, ketamine_mg_per_ml=10, table=TABLE)
    assert plan.bag_ml == D("116.18")
    assert plan.bag_ml_per_h == (D("116.2"), D("77.5"))  # 116.18 x 60/60, x 60/90 = 77.453


@pytest.mark.parametrize(
    ("weight", "outcome", "has_dose"),
    [
        (None, Outcome.CANNOT_EVALUATE, False),
        (39.9, Outcome.INELIGIBLE, False),
        (40, Outcome.ELIGIBLE, True),
    ],
    ids=["weight-missing", "39.9-kg", "40-kg"],
)
def test_weight_limits(weight: float | None, outcome: Outcome, has_dose: bool) -> None:
    plan = plan_session(
        patient(weight, 150), 1, lidocaine_mg_per_ml=20, ketamine_mg_per_ml=10, table=TABLE
    )
    assert plan.outcome == outcome
    assert (plan.lidocaine is not None) == has_dose
    if weight is None:
        assert "none is assumed" in plan.notes[0].message


def test_a_session_beyond_the_course_maximum_has_no_dose() -> None:
    plan = plan_session(
        patient(70, 165), 8, lidocaine_mg_per_ml=20, ketamine_mg_per_ml=10, table=TABLE
    )
    assert (plan.outcome, plan.lidocaine, plan.ketamine) == (Outcome.INELIGIBLE, None, None)
    assert plan.notes[-1].rule == "SES-MAX"


@pytest.mark.parametrize("conc", [0, -20, float("nan")])
def test_a_concentration_must_be_given_and_positive(conc: float) -> None:
    with pytest.raises(InputError) as raised:
        plan_session(patient(70), 1, lidocaine_mg_per_ml=conc, ketamine_mg_per_ml=10, table=TABLE)
    assert raised.value.code == "out_of_range"
    assert "lidocaine_mg_per_ml" in raised.value.message


# (sex, height, weight, drug, ordered mg) -> decision and permitted maximum
ORDERS = [
    ("male", 175, 75, "ketamine", 18, "REJECT", "15.0"),  # 0.24 mg/kg
    ("male", 175, 75, "ketamine", 15, "ACCEPT", "15.0"),  # exactly 0.2 mg/kg
    ("male", 175, 75, "ketamine", 15.0075, "REJECT", "15.0"),  # 0.2001 mg/kg
    ("male", 175, 85, "ketamine", 20, "REJECT", "17.0"),  # the seed's day 7: 0.235 mg/kg
    ("male", 180, 90, "lidocaine", 450, "ACCEPT", "450.0"),  # 5 mg/kg of 90 kg
    ("male", 180, 90, "lidocaine", 450.1, "REJECT", "450.0"),
    ("male", 180, 100, "lidocaine", 425, "ACCEPT", "425.0"),  # adjusted 85 kg: 5 x 85
    ("male", 180, 100, "lidocaine", 430, "REJECT", "425.0"),  # 5 mg/kg of actual, not adjusted
    ("male", 200, 110, "lidocaine", 500, "ACCEPT", "500"),  # exactly the cap (550 by weight)
    ("male", 200, 110, "lidocaine", 500.1, "REJECT", "500"),
]


@pytest.mark.parametrize(
    ("sex", "height", "weight", "drug", "ordered", "decision", "maximum"), ORDERS
)
def test_ordered_dose_is_accepted_up_to_the_limit_and_rejected_beyond(
    sex: str, height: float, weight: float, drug: str, ordered: float, decision: str, maximum: str
) -> None:
    result = check_order(patient(weight, height, sex), drug, ordered, table=TABLE)  # type: ignore[arg-type]
    assert (result.decision, result.max_mg) == (decision, D(maximum))
    if decision == "REJECT":
        assert f"the maximum is {fmt(D(maximum))} mg" in result.notes[-1].message


def test_an_order_cannot_be_accepted_without_a_weight_or_checked_fully_without_a_height() -> None:
    assert (
        check_order(patient(None, 170), "ketamine", 10, table=TABLE).decision == "CANNOT_EVALUATE"
    )
    # ketamine is dosed on actual weight: no height is needed
    assert check_order(patient(80), "ketamine", 10, table=TABLE).decision == "ACCEPT"
    # lidocaine without a height: the maximum rests on actual weight, for review
    review = check_order(patient(80), "lidocaine", 300, table=TABLE)
    assert (review.decision, review.max_mg) == ("NEEDS_REVIEW", D("400.0"))
    # under 40 kg nothing is accepted
    assert check_order(patient(39, 150), "ketamine", 4, table=TABLE).decision == "REJECT"


def test_a_dosing_table_citing_an_unknown_source_is_refused(tmp_path: Path) -> None:
    text = (RULESETS / "dosing.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "dosing.yaml"
    broken.write_text(
        text.replace(
            "cap_mg: {value: 500, sources: [S-21]", "cap_mg: {value: 500, sources: [S-12]"
        ),
        encoding="utf-8",
    )
    with pytest.raises(RulesetErrors) as raised:
        load_dosing_table(broken)
    (error,) = raised.value.errors
    assert error.code == "unknown_source"
    assert error.location.line is not None
