"""Patient input validation: what is accepted, and every error a caller can see."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from cds_rules.errors import InputError, InputErrors
from cds_rules.facts import (
    PLAUSIBLE_RANGES,
    FibromyalgiaFacts,
    LabResult,
    PatientFacts,
    load_patient,
    parse_patient,
)

AS_OF = "2026-01-20T09:00:00+05:45"
TAKEN = "2026-01-10T08:30:00+05:45"


def patient(**fields: Any) -> dict[str, Any]:
    """A minimal valid input plus the given top-level fields."""
    return {"as_of": AS_OF, **fields}


def lab(
    test: str, value: float | None = None, unit: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"test": test, "value": value, "unit": unit, "taken_at": TAKEN, **extra}


def errors_of(data: object) -> list[InputError]:
    with pytest.raises(InputErrors) as caught:
        parse_patient(data, source="patient.json")
    errors = list(caught.value.errors)
    assert all(isinstance(error, InputError) for error in errors)
    return [error for error in errors if isinstance(error, InputError)]


def only_error(data: object) -> InputError:
    errors = errors_of(data)
    assert len(errors) == 1, [str(error) for error in errors]
    return errors[0]


# ------------------------------------------------------------------------------------------
# accepted input


def test_minimal_input_leaves_everything_unknown() -> None:
    facts = parse_patient(patient())
    assert facts.as_of == datetime(
        2026, 1, 20, 9, 0, tzinfo=timezone(timedelta(hours=5, minutes=45))
    )
    assert facts.demographics.weight_kg is None  # never defaulted or imputed
    assert facts.demographics.sex is None
    assert facts.fibromyalgia is None
    assert facts.prior_trials is None
    assert facts.labs is None


def test_patient_reference_is_kept_as_given() -> None:
    assert parse_patient(patient(patient_ref="seed-case-1")).patient_ref == "seed-case-1"
    assert only_error(patient(patient_ref=17)).code == "invalid_type"


def test_empty_list_is_documented_none_and_differs_from_null() -> None:
    assert parse_patient(patient(prior_trials=[])).prior_trials == ()
    assert parse_patient(patient(prior_trials=None)).prior_trials is None


def test_names_are_normalised_to_lowercase() -> None:
    facts = parse_patient(
        patient(
            prior_trials=[{"drug": " Duloxetine ", "dose_mg_per_day": 60}],
            nonpharmacological_therapies=[{"therapy": "Relaxation therapy"}],
            labs=[lab("CRP", 17.5, "mg/l")],
        )
    )
    assert facts.prior_trials is not None and facts.prior_trials[0].drug == "duloxetine"
    assert facts.nonpharmacological_therapies is not None
    assert facts.nonpharmacological_therapies[0].therapy == "relaxation_therapy"
    assert facts.labs is not None and facts.labs[0].test == "crp"


def test_wpi_list_means_every_other_site_is_not_painful() -> None:
    block = FibromyalgiaFacts.model_validate({"wpi_sites": ["neck", "lower_back"]})
    states = block.site_states()
    assert len(states) == 19
    assert states["neck"] is True and states["chest"] is False


def test_wpi_partial_mapping_leaves_missing_sites_unknown() -> None:
    block = FibromyalgiaFacts.model_validate({"wpi_sites": {"neck": True, "chest": False}})
    states = block.site_states()
    assert (states["neck"], states["chest"], states["abdomen"]) == (True, False, None)


def test_part_b_2016_accepts_zero_and_one() -> None:
    facts = parse_patient(
        patient(fibromyalgia={"sss_part_b_2016": {"headaches": 1, "depression": 0}})
    )
    assert facts.fibromyalgia is not None and facts.fibromyalgia.sss_part_b_2016 is not None
    part_b = facts.fibromyalgia.sss_part_b_2016
    assert (part_b.headaches, part_b.lower_abdominal_pain_or_cramps, part_b.depression) == (
        True,
        None,
        False,
    )


def test_part_a_subtotal_may_stand_for_unknown_items() -> None:
    facts = parse_patient(patient(fibromyalgia={"sss_part_a": {"fatigue": 3, "subtotal": 7}}))
    assert facts.fibromyalgia is not None and facts.fibromyalgia.sss_part_a is not None
    assert facts.fibromyalgia.sss_part_a.subtotal == 7


@pytest.mark.parametrize(
    ("test", "value", "unit", "canonical"),
    [
        ("crp", 17.5, "mg/L", 17.5),
        ("crp", 1.75, "mg/dL", 17.5),
        ("crp", 1.75, "mg/dl", 17.5),
        ("tsh", 2.21, "uIU/mL", 2.21),
        ("tsh", 2.21, "µIU/mL", 2.21),
        ("tsh", 2.21, "μ IU/mL", 2.21),  # as printed in the seed report (Greek mu, space)
        ("tsh", 2.21, "mIU/L", 2.21),
        ("tsh", 2.21, "mU/L", 2.21),
        ("esr", 25, "mm/hr", 25),
        ("ck", 120, "IU/L", 120),
        ("vitamin_d", 90.6, "nmol/L", 36.3),
        ("vitamin_b12", 392, "pg/mL", 392),
    ],
)
def test_lab_units_convert_to_the_canonical_unit(
    test: str, value: float, unit: str, canonical: float
) -> None:
    result = LabResult.model_validate(lab(test, value, unit))
    assert result.canonical_value() == pytest.approx(canonical, rel=1e-3)


def test_timestamps_in_any_offset_compare_as_instants() -> None:
    # 03:30 UTC is 09:15 in Kathmandu: after as_of (09:00 +05:45)
    error = only_error(patient(labs=[lab("esr", 25, "mm/h", taken_at="2026-01-20T03:30:00Z")]))
    assert (error.code, error.location.path) == ("future_date", "$.labs[0].taken_at")
    facts = parse_patient(patient(labs=[lab("esr", 25, "mm/h", taken_at="2026-01-20T03:15:00Z")]))
    assert facts.labs is not None and facts.labs[0].taken_at.tzinfo is not None


def test_json_round_trip_is_exact() -> None:
    facts = parse_patient(
        patient(
            demographics={"age_years": 43, "sex": "female", "weight_kg": 85},
            fibromyalgia={"wpi_sites": {"neck": True}, "sss_part_b_2016": {"headaches": 1}},
            labs=[lab("crp", 1.75, "mg/dL")],
            prior_trials=[],
        )
    )
    assert parse_patient(json.loads(facts.model_dump_json())) == facts


def test_direct_construction_with_python_objects() -> None:
    facts = PatientFacts(as_of=datetime(2026, 1, 20, tzinfo=UTC))
    assert facts.as_of.tzinfo is UTC


# ------------------------------------------------------------------------------------------
# every error code, with its path

ERROR_CASES: list[tuple[str, object, str, str]] = [
    ("as_of missing", {}, "missing_field", "$.as_of"),
    (
        "trial without drug",
        patient(prior_trials=[{"dose_mg_per_day": 60}]),
        "missing_field",
        "$.prior_trials[0].drug",
    ),
    (
        "lab without value",
        patient(labs=[lab("esr", None, "mm/h")]),
        "missing_field",
        "$.labs[0].value",
    ),
    (
        "cbc without interpretation",
        patient(labs=[lab("cbc")]),
        "missing_field",
        "$.labs[0].interpretation",
    ),
    (
        "misspelled field",
        patient(demographics={"wieght_kg": 85}),
        "unknown_field",
        "$.demographics.wieght_kg",
    ),
    ("unknown top-level field", patient(alergies=[]), "unknown_field", "$.alergies"),
    (
        "weight as text",
        patient(demographics={"weight_kg": "85"}),
        "invalid_type",
        "$.demographics.weight_kg",
    ),
    ("demographics null", patient(demographics=None), "invalid_type", "$.demographics"),
    ("top level not a mapping", [AS_OF], "invalid_type", "$"),
    (
        "wpi_sites as text",
        patient(fibromyalgia={"wpi_sites": "neck"}),
        "invalid_type",
        "$.fibromyalgia.wpi_sites",
    ),
    (
        "wpi mapping value not boolean",
        patient(fibromyalgia={"wpi_sites": {"neck": "yes"}}),
        "invalid_type",
        "$.fibromyalgia.wpi_sites.neck",
    ),
    (
        "item as float",
        patient(fibromyalgia={"sss_part_a": {"fatigue": 2.5}}),
        "invalid_type",
        "$.fibromyalgia.sss_part_a.fatigue",
    ),
    ("boolean as number", patient(pain_nrs=True), "invalid_type", "$.pain_nrs"),
    ("as_of as number", {"as_of": 0}, "invalid_type", "$.as_of"),
    (
        "sex not in vocabulary",
        patient(demographics={"sex": "F"}),
        "invalid_value",
        "$.demographics.sex",
    ),
    (
        "stop reason not in vocabulary",
        patient(prior_trials=[{"drug": "duloxetine", "stop_reason": "side effects"}]),
        "invalid_value",
        "$.prior_trials[0].stop_reason",
    ),
    ("as_of not iso", {"as_of": "yesterday"}, "invalid_value", "$.as_of"),
    (
        "cbc with a value",
        patient(labs=[lab("cbc", 4.5, interpretation="normal")]),
        "invalid_value",
        "$.labs[0].value",
    ),
    (
        "empty drug name",
        patient(prior_trials=[{"drug": "  "}]),
        "invalid_value",
        "$.prior_trials[0].drug",
    ),
    (
        "therapy not snake_case",
        patient(nonpharmacological_therapies=[{"therapy": "CBT (group)"}]),
        "invalid_value",
        "$.nonpharmacological_therapies[0].therapy",
    ),
    (
        "weight 0",
        patient(demographics={"weight_kg": 0}),
        "out_of_range",
        "$.demographics.weight_kg",
    ),
    (
        "weight 850",
        patient(demographics={"weight_kg": 850}),
        "out_of_range",
        "$.demographics.weight_kg",
    ),
    (
        "height 30",
        patient(demographics={"height_cm": 30}),
        "out_of_range",
        "$.demographics.height_cm",
    ),
    (
        "age 121",
        patient(demographics={"age_years": 121}),
        "out_of_range",
        "$.demographics.age_years",
    ),
    (
        "age negative",
        patient(demographics={"age_years": -1}),
        "out_of_range",
        "$.demographics.age_years",
    ),
    ("nrs 11", patient(pain_nrs=11), "out_of_range", "$.pain_nrs"),
    ("nrs not a number", patient(pain_nrs=float("nan")), "out_of_range", "$.pain_nrs"),
    (
        "negative dose",
        patient(prior_trials=[{"drug": "pregabalin", "dose_mg_per_day": -150}]),
        "out_of_range",
        "$.prior_trials[0].dose_mg_per_day",
    ),
    (
        "negative duration",
        patient(prior_trials=[{"drug": "pregabalin", "duration_weeks": -1}]),
        "out_of_range",
        "$.prior_trials[0].duration_weeks",
    ),
    (
        "negative sessions",
        patient(nonpharmacological_therapies=[{"therapy": "cbt", "sessions": -8}]),
        "out_of_range",
        "$.nonpharmacological_therapies[0].sessions",
    ),
    (
        "negative symptom duration",
        patient(fibromyalgia={"symptom_duration_months": -3}),
        "out_of_range",
        "$.fibromyalgia.symptom_duration_months",
    ),
    (
        "negative lab value",
        patient(labs=[lab("crp", -1, "mg/L")]),
        "out_of_range",
        "$.labs[0].value",
    ),
    (
        "part A item 4",
        patient(fibromyalgia={"sss_part_a": {"fatigue": 4}}),
        "out_of_range",
        "$.fibromyalgia.sss_part_a.fatigue",
    ),
    (
        "part A subtotal 10",
        patient(fibromyalgia={"sss_part_a": {"subtotal": 10}}),
        "out_of_range",
        "$.fibromyalgia.sss_part_a.subtotal",
    ),
    (
        "2010 part B 4",
        patient(fibromyalgia={"sss_part_b_2010": 4}),
        "out_of_range",
        "$.fibromyalgia.sss_part_b_2010",
    ),
    (
        "2016 part B 2",
        patient(fibromyalgia={"sss_part_b_2016": {"depression": 2}}),
        "out_of_range",
        "$.fibromyalgia.sss_part_b_2016.depression",
    ),
    (
        "lab after as_of",
        patient(labs=[lab("esr", 25, "mm/h", taken_at="2026-02-01T09:00:00+05:45")]),
        "future_date",
        "$.labs[0].taken_at",
    ),
    (
        "unknown site in list",
        patient(fibromyalgia={"wpi_sites": ["neck", "nek"]}),
        "unknown_site",
        "$.fibromyalgia.wpi_sites[1]",
    ),
    (
        "unknown site in mapping",
        patient(fibromyalgia={"wpi_sites": {"shoulder_left": True}}),
        "unknown_site",
        "$.fibromyalgia.wpi_sites.shoulder_left",
    ),
    (
        "duplicate site",
        patient(fibromyalgia={"wpi_sites": ["neck", "chest", "neck"]}),
        "duplicate_site",
        "$.fibromyalgia.wpi_sites[2]",
    ),
    (
        "unknown unit",
        patient(labs=[lab("esr", 25, "mm/h"), lab("ck", 80, "U/L"), lab("crp", 17.5, "mg")]),
        "unknown_unit",
        "$.labs[2].unit",
    ),
    (
        "seed vitamin D unit as printed",
        patient(labs=[lab("vitamin_d", 36.3, "ng/l")]),
        "unknown_unit",
        "$.labs[0].unit",
    ),
    (
        "cbc with a unit",
        patient(labs=[lab("cbc", None, "g/L", interpretation="normal")]),
        "invalid_value",
        "$.labs[0].unit",
    ),
    (
        "unknown test",
        patient(labs=[lab("ferritin", 30, "ng/mL")]),
        "unknown_test",
        "$.labs[0].test",
    ),
    (
        "subtotal disagrees with items",
        patient(
            fibromyalgia={
                "sss_part_a": {
                    "fatigue": 3,
                    "waking_unrefreshed": 3,
                    "cognitive_symptoms": 3,
                    "subtotal": 7,
                }
            }
        ),
        "inconsistent_subtotal",
        "$.fibromyalgia.sss_part_a.subtotal",
    ),
    (
        "subtotal unreachable from known items",
        patient(
            fibromyalgia={"sss_part_a": {"fatigue": 0, "waking_unrefreshed": 0, "subtotal": 4}}
        ),
        "inconsistent_subtotal",
        "$.fibromyalgia.sss_part_a.subtotal",
    ),
    ("naive as_of", {"as_of": "2026-01-20T09:00:00"}, "naive_datetime", "$.as_of"),
    ("as_of a plain date", {"as_of": "2026-01-20"}, "naive_datetime", "$.as_of"),
    ("as_of a date object", {"as_of": date(2026, 1, 20)}, "naive_datetime", "$.as_of"),
    ("naive datetime object", {"as_of": datetime(2026, 1, 20, 9)}, "naive_datetime", "$.as_of"),
    (
        "naive lab time",
        patient(labs=[lab("esr", 25, "mm/h", taken_at="2026-01-10T08:00:00")]),
        "naive_datetime",
        "$.labs[0].taken_at",
    ),
    (
        "two results at one time disagree",
        patient(labs=[lab("crp", 17.5, "mg/L"), lab("crp", 1.2, "mg/dL")]),
        "conflicting_lab",
        "$.labs[1]",
    ),
]


@pytest.mark.parametrize(
    ("data", "code", "path"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_error_code_and_path(data: object, code: str, path: str) -> None:
    error = only_error(data)
    assert (error.code, error.location.path) == (code, path)
    assert error.location.file == "patient.json"
    # message style: one lowercase line, no final period
    assert error.message == error.message.strip()
    assert "\n" not in error.message
    assert error.message[0] == error.message[0].lower() or error.message[0] == "`"
    assert not error.message.endswith(".")


def test_same_result_twice_is_not_a_conflict() -> None:
    facts = parse_patient(patient(labs=[lab("crp", 17.5, "mg/L"), lab("crp", 1.75, "mg/dL")]))
    assert facts.labs is not None and len(facts.labs) == 2


def test_messages_show_the_user_value_and_the_accepted_choices() -> None:
    error = only_error(
        patient(labs=[lab("esr", 25, "mm/h"), lab("ck", 80, "U/L"), lab("crp", 17.5, "mg")])
    )
    assert error.message == "unit `mg` is not accepted for `crp`; expected one of `mg/L`, `mg/dL`"
    weight = only_error(patient(demographics={"weight_kg": 850}))
    assert weight.message == "`850` is outside the plausible range 2-400 kg"
    assert str(weight) == (
        "patient.json: out_of_range: `850` is outside the plausible range 2-400 kg "
        "(at $.demographics.weight_kg)"
    )


def test_plausibility_limits_are_the_documented_ones() -> None:
    assert PLAUSIBLE_RANGES["weight_kg"][:2] == (2, 400)
    assert PLAUSIBLE_RANGES["height_cm"][:2] == (40, 250)
    assert PLAUSIBLE_RANGES["age_years"][:2] == (0, 120)
    assert parse_patient(patient(demographics={"weight_kg": 2, "height_cm": 250})).demographics


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (patient(demographics={"wieght_kg": 85}), "did you mean `weight_kg`?"),
        (patient(fibromyalgia={"wpi_sites": ["nek"]}), "did you mean `neck`?"),
        (
            patient(fibromyalgia={"wpi_sites": ["shoulder_girdle_lft"]}),
            "did you mean `shoulder_girdle_left`?",
        ),
        (
            patient(fibromyalgia={"wpi_sites": ["wrist"]}),
            "wrist, ankle, foot, hand and knee are not widespread pain index sites",
        ),
        (patient(demographics={"sex": "Female"}), "did you mean `female`?"),
        (patient(labs=[lab("tsch", 2, "mIU/L")]), "did you mean `tsh`?"),
    ],
)
def test_hints_suggest_the_intended_name(data: dict[str, Any], hint: str) -> None:
    assert only_error(data).hint == hint


def test_every_problem_is_reported_at_once() -> None:
    errors = errors_of(
        {
            "demographics": {"weight_kg": 850, "height_cm": 30},
            "pain_nrs": 12,
            "labs": [lab("crp", 17.5, "mg")],
        }
    )
    assert [(error.code, error.location.path) for error in errors] == [
        ("missing_field", "$.as_of"),
        ("out_of_range", "$.demographics.weight_kg"),
        ("out_of_range", "$.demographics.height_cm"),
        ("out_of_range", "$.pain_nrs"),
        ("unknown_unit", "$.labs[0].unit"),
    ]


def test_all_future_labs_are_reported() -> None:
    later = "2026-03-01T00:00:00+00:00"
    errors = errors_of(
        patient(
            labs=[
                lab("esr", 25, "mm/h", taken_at=later),
                lab("crp", 5, "mg/L"),
                lab("tsh", 2, "mIU/L", taken_at=later),
            ]
        )
    )
    assert [error.location.path for error in errors] == [
        "$.labs[0].taken_at",
        "$.labs[2].taken_at",
    ]


# ------------------------------------------------------------------------------------------
# files


def test_yaml_file_errors_carry_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "patient.yaml"
    path.write_text(
        "as_of: 2026-01-20T09:00:00+05:45\n"
        "demographics:\n"
        "  age_years: 43\n"
        "  weight_kg: 850\n"
        "fibromyalgia:\n"
        "  wpi_sites: [neck, nek]\n",
        encoding="utf-8",
    )
    with pytest.raises(InputErrors) as caught:
        load_patient(path)
    found = [
        (e.code, e.location.line, e.location.column, e.location.path) for e in caught.value.errors
    ]
    assert found == [
        ("out_of_range", 4, 14, "$.demographics.weight_kg"),
        ("unknown_site", 6, 21, "$.fibromyalgia.wpi_sites[1]"),
    ]
    assert str(caught.value.errors[0]).startswith(f"{path}:4:14: out_of_range: ")


def test_duplicate_yaml_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "patient.yaml"
    path.write_text(
        "as_of: 2026-01-20T09:00:00+05:45\n"
        "demographics:\n"
        "  weight_kg: 85\n"
        "  height_cm: 160\n"
        "  weight_kg: 58\n",
        encoding="utf-8",
    )
    with pytest.raises(InputErrors) as caught:
        load_patient(path)
    (error,) = caught.value.errors
    assert isinstance(error, InputError)
    assert (error.code, error.location.line, error.location.path) == (
        "duplicate_key",
        5,
        "$.demographics.weight_kg",
    )
    assert "first defined on line 3" in error.message


def test_duplicate_json_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "patient.json"
    path.write_text('{"as_of": "2026-01-20T09:00:00Z", "pain_nrs": 3, "pain_nrs": 7}')
    with pytest.raises(InputErrors) as caught:
        load_patient(path)
    (error,) = caught.value.errors
    assert error.code == "duplicate_key"
    assert error.message.startswith("duplicate key `pain_nrs`")
    assert (error.location.line, error.location.path) == (1, "$.pain_nrs")


def test_yaml_timestamps_and_json_text_load_alike(tmp_path: Path) -> None:
    yaml_path = tmp_path / "patient.yaml"
    yaml_path.write_text("as_of: 2026-01-20T09:00:00+05:45\npain_nrs: 8\n", encoding="utf-8")
    json_path = tmp_path / "patient.json"
    json_path.write_text(json.dumps({"as_of": AS_OF, "pain_nrs": 8}), encoding="utf-8")
    assert load_patient(yaml_path) == load_patient(json_path)


def test_yaml_plain_date_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "patient.yaml"
    path.write_text("pain_nrs: 8\nas_of: 2026-01-20\n", encoding="utf-8")
    with pytest.raises(InputErrors) as caught:
        load_patient(path)
    (error,) = caught.value.errors
    assert (error.code, error.location.line, error.location.path) == (
        "naive_datetime",
        2,
        "$.as_of",
    )


@pytest.mark.parametrize(
    ("name", "text", "code", "line"),
    [
        ("broken.yaml", "as_of: [2026\npain_nrs: 3\n", "yaml_syntax", 2),
        ("broken.json", '{"as_of": "2026-01-20T09:00:00Z",\n "pain_nrs": }', "json_syntax", 2),
    ],
)
def test_syntax_errors_are_input_errors(
    tmp_path: Path, name: str, text: str, code: str, line: int
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputErrors) as caught:
        load_patient(path)
    (error,) = caught.value.errors
    assert (error.code, error.location.line) == (code, line)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputErrors) as caught:
        load_patient(tmp_path / "absent.yaml")
    assert caught.value.errors[0].code == "unreadable_file"
