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
    ("female", 152.4, 54.6, "45.5", None, "54.6"),  # exactly 1.2 x 45.5: actual
    ("female", 152.4, 54.7, "45.5", "49.1", "49.1"),  # 45.5 + 0.4 x 9.2 = 49.18, down to 49.1
    ("female", 160, 60, "52.4", None, "60"),  # 45.5 + 6.8818 = 52.3818; 60 <= 62.88
    ("female", 160, 100, "52.4", "71.4", "71.4"),  # 52.4 + 0.4 x 47.6 = 71.44
    ("female", 175, 70, "66.0", None, "70"),  # 45.5 + 20.4643 = 65.9643
    ("male", 165, 60, "61.4", None, "60"),  # 50 + 11.4093 = 61.4093
    # 50 + 24.9918 = 74.9918 (shown 75.0); 90 > 1.2 x 74.9918 = 89.99:
    # 74.9918 + 0.4 x 15.0082 = 80.995, down to 80.9
    ("male", 180, 90, "75.0", "80.9", "80.9"),
    ("male", 180, 90.1, "75.0", "81.0", "81.0"),  # 74.9918 + 0.4 x 15.1082 = 81.035
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
    # volumes are rounded down to 0.01 mL, so the dose given never exceeds the dose planned
    (85, 1, 21, "297.5", "14.16", "297.5", "198.3"),  # 3.5 x 85; 297.5/21 = 14.1667
    (85, 1, 20, "297.5", "14.87", "297.5", "198.3"),  # 297.5/20 = 14.875
    (85, 7, 21, "425.0", "20.23", "425.0", "283.3"),  # 5 x 85; 425/21 = 20.238; 425 x 60/90
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
    (85, 4, 10, "15", "1.50"),  # 20 mg would be 0.235 mg/kg (max 0.2 x 85 = 17): holds at 15
    (85, 7, 10, "15", "1.50"),  # the seed gave 20 mg on day 7
    (75, 4, 10, "15", "1.50"),  # 0.2 x 75 = 15: 15 is allowed
    (77, 4, 50, "15", "0.30"),  # 0.2 x 77 = 15.4, down to 15.0; 15/50
    (45, 2, 10, "9.0", "0.90"),  # 10 mg would be 0.222 mg/kg: lowered to 0.2 x 45 = 9
    (120, 2, 10, "10", "1.00"),  # 0.083 mg/kg, under 0.1: not raised, reviewed
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
    # seed day 2: 3.75 x 85 = 318.75, down to 318.7 mg = 15.176 -> 15.17 mL at 21 mg/mL;
    # ketamine 10 mg = 1 mL; bag 100 + 15.17 + 1 = 116.17 mL
    plan = plan_session(patient(85), 2, lidocaine_mg_per_ml=21, ketamine_mg_per_ml=10, table=TABLE)
    assert plan.bag_ml == D("116.17")
    assert plan.bag_ml_per_h == (D("116.2"), D("77.4"))  # 116.17 x 60/60, x 60/90 = 77.447


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
        patient(weight, 160), 1, lidocaine_mg_per_ml=20, ketamine_mg_per_ml=10, table=TABLE
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


def test_a_low_ketamine_dose_is_reviewed_and_a_height_under_five_feet_gives_no_ibw() -> None:
    heavy = plan_session(
        patient(120, 170), 2, lidocaine_mg_per_ml=20, ketamine_mg_per_ml=10, table=TABLE
    )
    assert heavy.outcome == Outcome.NEEDS_REVIEW
    assert any("under the 0.1 mg/kg" in note.message for note in heavy.notes)
    short = dosing_weight(patient(45, 140), TABLE)
    assert (short.ibw_kg, short.basis, short.dosing_kg) == (None, "actual", D("45"))
    assert short.outcome == Outcome.NEEDS_REVIEW
    assert "Devine formula does not apply" in short.notes[0].message


@pytest.mark.parametrize("conc", [0, -20, float("nan"), float("inf"), 1e-300, 200, 4])
def test_a_concentration_must_be_one_of_a_product_in_use(conc: float) -> None:
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
    ("female", 170, 70, "lidocaine", 350, "ACCEPT", "350.0"),  # 5 mg/kg of 70 kg (IBW 61.4)
    ("female", 170, 70, "lidocaine", 350.1, "REJECT", "350.0"),
    # adjusted 74.9918 + 0.4 x 25.0082 = 84.995, down to 84.9 kg: 5 x 84.9
    ("male", 180, 100, "lidocaine", 424.5, "ACCEPT", "424.5"),
    ("male", 180, 100, "lidocaine", 425, "REJECT", "424.5"),
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


@pytest.mark.parametrize("ordered", [0, -1, float("nan"), 1e30])
def test_an_impossible_ordered_dose_is_an_input_error(ordered: float) -> None:
    with pytest.raises(InputError) as raised:
        check_order(patient(80, 170), "ketamine", ordered, table=TABLE)
    assert raised.value.code == "out_of_range"


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
