"""Patient input: one patient's validated facts, shaped so a FHIR R4 adapter can fill them.

Coded items (drugs, diagnoses) carry an optional ``code`` and ``system``; laboratory results
carry a value, a unit and the time the sample was taken. A field that is absent or ``null`` is
unknown: nothing is defaulted or imputed, so a missing weight stays ``None``. Collections
distinguish "undocumented" (``null``) from "documented none" (``[]``).

Every time window is measured from ``as_of``, which must carry a timezone; the wall clock is
never read. :func:`load_patient` and :func:`parse_patient` report every problem in the input
at once as :class:`~cds_rules.errors.InputErrors`, each with a stable code and a JSON path
such as ``$.labs[2].unit`` (plus line and column for YAML files).
"""

from __future__ import annotations

import difflib
import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import (
    Annotated,
    Any,
    Final,
    Literal,
    NamedTuple,
    NoReturn,
    Self,
    get_args,
    get_origin,
)

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from .errors import CdsRulesError, InputError, InputErrors, Location
from .scoring import PART_A_ITEM_MAXIMUM, PART_B_2010_MAXIMUM, WPI_SITES
from .yamlio import MAX_DEPTH, Positions, json_path, load_yaml_text, read_utf8

__all__ = [
    "LAB_TESTS",
    "PLAUSIBLE_RANGES",
    "Allergy",
    "CurrentMedication",
    "Demographics",
    "Diagnosis",
    "Ecg",
    "FibromyalgiaFacts",
    "LabResult",
    "LabTest",
    "LocalAnaestheticBlock",
    "NonPharmacologicalTherapy",
    "PatientFacts",
    "PlausibleRange",
    "PregnancyTest",
    "PriorTrial",
    "Readiness",
    "Review",
    "SessionFacts",
    "SymptomSeverityPartA",
    "SymptomSeverityPartB2016",
    "Vitals",
    "load_patient",
    "parse_patient",
]


class PlausibleRange(NamedTuple):
    """Inclusive limits of a plausible input value; ``None`` means no limit on that side."""

    low: float | None
    high: float | None
    unit: str


# Input plausibility limits. A value outside them is a data-entry error (a weight of 0 or
# 850 kg, a CRP of 10^13 mg/L), not a clinical finding: they reject impossible input and are
# never clinical decision thresholds. The upper limits are deliberately far beyond any value
# a patient can have (a lifetime, a dose no formulation reaches, several times the highest
# laboratory values ever reported), so a real measurement is never refused. Clinical
# thresholds, doses and windows live in rulesets/*.yaml.
PLAUSIBLE_RANGES: Final[Mapping[str, PlausibleRange]] = MappingProxyType(
    {
        "age_years": PlausibleRange(0, 120, "years"),
        "weight_kg": PlausibleRange(2, 400, "kg"),
        "height_cm": PlausibleRange(40, 250, "cm"),
        "pain_nrs": PlausibleRange(0, 10, "points"),
        "symptom_duration_months": PlausibleRange(0, 1440, "months"),  # 120 years
        "dose_mg_per_day": PlausibleRange(0, 10_000, "mg/day"),
        # A current medication's dose is in its own unit (mg, µg, IU); benzylpenicillin is given
        # in millions of units a day.
        "dose": PlausibleRange(0, 1_000_000_000, ""),
        "duration_weeks": PlausibleRange(0, 5200, "weeks"),  # 100 years
        "sessions_per_week": PlausibleRange(0, 21, "sessions per week"),  # three a day
        "sessions": PlausibleRange(0, 1000, "sessions"),
        # Laboratory values, per test, in the test's canonical unit (LAB_TESTS); "lab_value"
        # applies to a test that is not accepted (itself reported as an error).
        "lab_value": PlausibleRange(0, None, ""),
        "lab_value.esr": PlausibleRange(0, 200, "mm/h"),
        "lab_value.crp": PlausibleRange(0, 1000, "mg/L"),
        "lab_value.tsh": PlausibleRange(0, 1000, "mIU/L"),
        "lab_value.ck": PlausibleRange(0, 1_000_000, "U/L"),
        "lab_value.vitamin_d": PlausibleRange(0, 2000, "ng/mL"),
        "lab_value.vitamin_b12": PlausibleRange(0, 1_000_000, "pg/mL"),
        "lab_value.potassium": PlausibleRange(0, 20, "mmol/L"),
        "lab_value.sodium": PlausibleRange(0, 250, "mmol/L"),
        "lab_value.magnesium": PlausibleRange(0, 20, "mmol/L"),
        "lab_value.calcium": PlausibleRange(0, 10, "mmol/L"),
        "lab_value.alt": PlausibleRange(0, 100_000, "U/L"),
        "lab_value.ast": PlausibleRange(0, 100_000, "U/L"),
        "lab_value.bilirubin": PlausibleRange(0, 2_000, "µmol/L"),
        "lab_value.albumin": PlausibleRange(0, 100, "g/L"),
        "lab_value.creatinine": PlausibleRange(0, 10_000, "µmol/L"),
        "lab_value.egfr": PlausibleRange(0, 300, "mL/min/1.73m2"),
        # ECG intervals, ms.
        "pr_ms": PlausibleRange(40, 1000, "ms"),
        "qrs_ms": PlausibleRange(30, 400, "ms"),
        "qtc_ms": PlausibleRange(150, 900, "ms"),
        "lvef_percent": PlausibleRange(1, 95, "%"),
        # Vital signs before a session.
        "systolic_bp_mmhg": PlausibleRange(20, 350, "mmHg"),
        "diastolic_bp_mmhg": PlausibleRange(10, 250, "mmHg"),
        "heart_rate_bpm": PlausibleRange(10, 350, "bpm"),
        "spo2_percent": PlausibleRange(30, 100, "%"),
        "respiratory_rate_per_min": PlausibleRange(0, 100, "breaths/min"),
        "lipid_emulsion_ml": PlausibleRange(0, 10_000, "mL"),
    }
)

#: Longest accepted text value (names, units, codes, displays), in characters.
_MAX_TEXT_LENGTH: Final = 200


class LabTest(NamedTuple):
    """An accepted laboratory test: its canonical unit and the factor from each accepted unit.

    Units are matched after :func:`_unit_key` (case, spaces and the micro sign ignored).
    A test without a canonical unit (the blood count) is reported only as an interpretation.
    """

    canonical_unit: str | None
    factors: Mapping[str, float]
    spellings: tuple[str, ...]


def _lab_test(canonical_unit: str | None, factors: dict[str, float]) -> LabTest:
    return LabTest(
        canonical_unit,
        MappingProxyType({_unit_key(unit): factor for unit, factor in factors.items()}),
        tuple(factors),
    )


def _unit_key(unit: str) -> str:
    """Match key of a unit: ``µIU/mL``, ``μ IU/ml`` and ``uIU/mL`` are the same unit."""
    text = unicodedata.normalize("NFKC", unit).replace(" ", "").replace("μ", "u")
    return text.lower()


# Unit conversions only (arithmetic, not clinical judgement). TSH: 1 µIU/mL = 1 mIU/L, and
# mU/L is the same international unit. CK: U/L and IU/L are the same enzyme unit.
# 25-OH vitamin D: 400.64 g/mol, so 1 nmol/L = 0.4006 ng/mL. Vitamin B12 (cobalamin):
# 1355.37 g/mol, so 1 pmol/L = 1.355 pg/mL. Magnesium 24.305 g/mol, calcium 40.078 g/mol
# (mEq/L = mmol/L x charge 2), bilirubin 584.66 g/mol, creatinine 113.12 g/mol. eGFR is taken
# only as reported (normalised to 1.73 m2); a creatinine clearance in mL/min is not an eGFR.
# Other units (e.g. vitamin D in ng/L) are rejected rather than guessed.
LAB_TESTS: Final[Mapping[str, LabTest]] = MappingProxyType(
    {
        "cbc": _lab_test(None, {}),
        "esr": _lab_test("mm/h", {"mm/h": 1.0, "mm/hr": 1.0}),
        "crp": _lab_test("mg/L", {"mg/L": 1.0, "mg/dL": 10.0}),
        "tsh": _lab_test(
            "mIU/L", {"mIU/L": 1.0, "mU/L": 1.0, "uIU/mL": 1.0, "µIU/mL": 1.0, "µU/mL": 1.0}
        ),
        "ck": _lab_test("U/L", {"U/L": 1.0, "IU/L": 1.0}),
        "vitamin_d": _lab_test("ng/mL", {"ng/mL": 1.0, "µg/L": 1.0, "nmol/L": 400.64 / 1000}),
        "vitamin_b12": _lab_test("pg/mL", {"pg/mL": 1.0, "ng/L": 1.0, "pmol/L": 1355.37 / 1000}),
        "potassium": _lab_test("mmol/L", {"mmol/L": 1.0, "mEq/L": 1.0}),
        "sodium": _lab_test("mmol/L", {"mmol/L": 1.0, "mEq/L": 1.0}),
        "magnesium": _lab_test("mmol/L", {"mmol/L": 1.0, "mEq/L": 0.5, "mg/dL": 10 / 24.305}),
        "calcium": _lab_test("mmol/L", {"mmol/L": 1.0, "mEq/L": 0.5, "mg/dL": 10 / 40.078}),
        "alt": _lab_test("U/L", {"U/L": 1.0, "IU/L": 1.0}),
        "ast": _lab_test("U/L", {"U/L": 1.0, "IU/L": 1.0}),
        "bilirubin": _lab_test("µmol/L", {"µmol/L": 1.0, "umol/L": 1.0, "mg/dL": 10_000 / 584.66}),
        "albumin": _lab_test("g/L", {"g/L": 1.0, "g/dL": 10.0}),
        "creatinine": _lab_test("µmol/L", {"µmol/L": 1.0, "umol/L": 1.0, "mg/dL": 10_000 / 113.12}),
        "egfr": _lab_test(
            "mL/min/1.73m2", {"mL/min/1.73m2": 1.0, "mL/min/1.73 m2": 1.0, "mL/min/1.73m²": 1.0}
        ),
    }
)

#: Body sites that are not among the 19 WPI sites (S-05), with the reason shown to the user.
_NOT_WPI_SITES: Final[frozenset[str]] = frozenset({"wrist", "ankle", "foot", "hand", "knee"})


# ---------------------------------------------------------------------------------------------
# Error helpers


class _Problem(NamedTuple):
    """One input problem raised from inside a validator; ``at`` extends the field's path."""

    code: str
    message: str
    at: tuple[str | int, ...] = ()
    hint: str | None = None


def _raise(*problems: _Problem) -> NoReturn:
    """Raise problems as one pydantic error; :func:`_convert` splits them again."""
    first = problems[0]
    raise PydanticCustomError(
        first.code, "{message}", {"message": first.message, "problems": problems}
    )


def _show(value: object) -> str:
    """A user value as it would appear in the input, for use between backticks."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        text = str(int(value))  # larger whole numbers keep their exponent form (`1e+300`)
    elif isinstance(value, datetime | date):
        text = value.isoformat()
    elif isinstance(value, Mapping | list | tuple):
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = str(value)
    text = text.replace("`", "'").replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(value: object) -> str:
    """What kind of value a user gave, in YAML/JSON terms."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{_show(value)}`"
    if isinstance(value, int | float):
        return f"number `{_show(value)}`"
    if isinstance(value, str):
        return f"text `{_show(value)}`"
    if isinstance(value, datetime | date):
        return f"date `{_show(value)}`"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"`{_show(value)}`"


def _did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str | None:
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(value.lower(), choices, n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def _one_of(choices: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{choice}`" for choice in choices)


# ---------------------------------------------------------------------------------------------
# Field types


def _check_range(value: float, limits: PlausibleRange) -> float:
    """``value`` if it is finite and lies within ``limits``, else an ``out_of_range`` problem."""
    unit = f" {limits.unit}" if limits.unit else ""
    if not math.isfinite(value):
        _raise(_Problem("out_of_range", f"`{_show(value)}` is not a finite number"))
    if limits.low == 0 and value < 0:
        _raise(_Problem("out_of_range", f"`{_show(value)}` must not be negative"))
    if limits.low is not None and limits.high is not None:
        if not limits.low <= value <= limits.high:
            _raise(
                _Problem(
                    "out_of_range",
                    f"`{_show(value)}` is outside the plausible range "
                    f"{_show(float(limits.low))}-{_show(float(limits.high))}{unit}",
                )
            )
    elif limits.low is not None and value < limits.low:
        _raise(
            _Problem("out_of_range", f"`{_show(value)}` is below {_show(float(limits.low))}{unit}")
        )
    return value


def _within(name: str) -> Callable[[float], float]:
    """Validator checking a number against ``PLAUSIBLE_RANGES[name]``."""
    limits = PLAUSIBLE_RANGES[name]

    def check(value: float) -> float:
        return _check_range(value, limits)

    return check


def _dose(value: float, info: ValidationInfo) -> float:
    """A dose: ``dose_mg_per_day`` in mg/day, a current medication's ``dose`` in its own unit."""
    name = "dose_mg_per_day" if info.field_name == "dose_mg_per_day" else "dose"
    return _check_range(value, PLAUSIBLE_RANGES[name])


def _lab_value(value: float, info: ValidationInfo) -> float:
    """A finite, non-negative laboratory value within its test's ``PLAUSIBLE_RANGES`` entry.

    The unit is validated after the value, so the value is taken in the accepted unit that
    allows the largest number: a CRP limit in mg/L also bounds a value in mg/dL, more loosely.
    """
    _check_range(value, PLAUSIBLE_RANGES["lab_value"])
    test = info.data.get("test")
    limits = PLAUSIBLE_RANGES.get(f"lab_value.{test}")
    if not isinstance(test, str) or test not in LAB_TESTS or limits is None:
        return value
    factors = set(LAB_TESTS[test].factors.values())
    if limits.high is not None and value * min(factors, default=1.0) > limits.high:
        in_any_unit = " in any accepted unit" if len(factors) > 1 else ""
        _raise(
            _Problem(
                "out_of_range",
                f"`{_show(value)}` is outside the plausible range "
                f"{_show(float(limits.low or 0))}-{_show(float(limits.high))} {limits.unit} "
                f"of `{test}`{in_any_unit}",
                hint="check the value and its unit",
            )
        )
    return value


def _text_length(value: str) -> str:
    """Text of at most ``_MAX_TEXT_LENGTH`` characters: names, units, codes and displays."""
    if len(value) > _MAX_TEXT_LENGTH:
        _raise(
            _Problem(
                "too_long",
                f"text of {len(value)} characters is longer than the {_MAX_TEXT_LENGTH} accepted",
                hint=f"shorten it to at most {_MAX_TEXT_LENGTH} characters",
            )
        )
    return value


def _item_range(high: int) -> Callable[[int], int]:
    """Validator for an instrument item scored 0..high (the instrument's own scale)."""

    def check(value: int) -> int:
        if not 0 <= value <= high:
            _raise(_Problem("out_of_range", f"`{value}` is outside the item's scale 0-{high}"))
        return value

    return check


def _aware_datetime(value: object) -> object:
    """Accept a timezone-aware datetime or an ISO 8601 text with an offset; never guess a zone."""
    if isinstance(value, str):
        text = value.strip()
        try:
            date.fromisoformat(text)
        except ValueError:
            pass
        else:
            _raise(
                _Problem(
                    "naive_datetime",
                    f"`{_show(value)}` is a date without a time and timezone",
                    hint="give a date-time with an offset, such as `2026-01-20T09:00:00+00:00`",
                )
            )
        try:
            value = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            _raise(
                _Problem(
                    "invalid_value",
                    f"`{_show(value)}` is not an iso 8601 date-time",
                    hint="use a form such as `2026-01-20T09:00:00+00:00`",
                )
            )
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            _raise(
                _Problem(
                    "naive_datetime",
                    f"`{_show(value)}` has no timezone",
                    hint="add an offset such as `+00:00`; times are never read in a local zone",
                )
            )
        return value
    if isinstance(value, date):
        _raise(
            _Problem(
                "naive_datetime",
                f"`{_show(value)}` is a date without a time and timezone",
                hint="give a date-time with an offset, such as `2026-01-20T09:00:00+00:00`",
            )
        )
    _raise(
        _Problem(
            "invalid_type",
            f"expected a date-time with a timezone offset, got {_describe(value)}",
        )
    )


def _lowercase_name(value: object) -> object:
    """Drug and test names compare case-insensitively: store them stripped and lowercase."""
    if isinstance(value, str):
        name = value.strip().lower()
        if not name:
            _raise(_Problem("invalid_value", "name is empty"))
        return name
    return value


_SNAKE_CASE: Final = re.compile(r"[a-z][a-z0-9_]*")


def _therapy_name(value: object) -> object:
    """Therapy names are snake_case ids; case, spaces and hyphens are normalised."""
    if not isinstance(value, str):
        return value
    name = re.sub(r"[\s\-]+", "_", value.strip().lower())
    if not _SNAKE_CASE.fullmatch(name):
        _raise(
            _Problem(
                "invalid_value",
                f"therapy `{_show(value)}` is not a snake_case name",
                hint="use names such as `supervised_aerobic_exercise`, `cbt` or `physiotherapy`",
            )
        )
    return name


def _site_name(value: str) -> str:
    """One of the 19 WPI site ids, else an error with the nearest id as a hint."""
    if value in WPI_SITES:
        return value
    if value.lower() in _NOT_WPI_SITES:
        hint = "wrist, ankle, foot, hand and knee are not widespread pain index sites"
    else:
        hint = (
            _did_you_mean(value, list(WPI_SITES)) or f"expected one of {_one_of(list(WPI_SITES))}"
        )
    _raise(_Problem("unknown_site", f"unknown pain site `{_show(value)}`", hint=hint))


def _no_duplicate_sites(sites: tuple[str, ...]) -> tuple[str, ...]:
    seen: dict[str, int] = {}
    problems: list[_Problem] = []
    for index, site in enumerate(sites):
        if site in seen:
            problems.append(
                _Problem(
                    "duplicate_site",
                    f"site `{site}` is listed twice (first at position {seen[site]})",
                    at=(index,),
                )
            )
        else:
            seen[site] = index
    if problems:
        _raise(*problems)
    return sites


def _present_or_absent(value: object) -> object:
    """A 2016 part-B symptom: ``true``/``false`` or ``1``/``0``."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if value in (0, 1):
            return value == 1
        _raise(_Problem("out_of_range", f"`{value}` must be `0`, `1`, `true` or `false`"))
    return value


def _wpi_form(value: Any) -> str | None:
    """Which of the two ``wpi_sites`` forms a value uses (``None``: neither)."""
    if isinstance(value, list | tuple):
        return "painful_sites"
    if isinstance(value, Mapping):
        return "site_states"
    return None


_StrictBool = Annotated[bool, Field(strict=True)]
_StrictText = Annotated[str, Field(strict=True), AfterValidator(_text_length)]
_AwareDateTime = Annotated[datetime, BeforeValidator(_aware_datetime)]
_SiteName = Annotated[str, Field(strict=True), AfterValidator(_site_name)]
_LowercaseName = Annotated[
    str, Field(strict=True), BeforeValidator(_lowercase_name), AfterValidator(_text_length)
]
_TherapyName = Annotated[
    str, Field(strict=True), BeforeValidator(_therapy_name), AfterValidator(_text_length)
]
_PartAItem = Annotated[int, Field(strict=True), AfterValidator(_item_range(PART_A_ITEM_MAXIMUM))]
_PartASubtotal = Annotated[
    int, Field(strict=True), AfterValidator(_item_range(3 * PART_A_ITEM_MAXIMUM))
]
_PartB2010 = Annotated[int, Field(strict=True), AfterValidator(_item_range(PART_B_2010_MAXIMUM))]
_PartB2016Item = Annotated[bool, Field(strict=True), BeforeValidator(_present_or_absent)]
_WpiSites = Annotated[
    Annotated[tuple[_SiteName, ...], AfterValidator(_no_duplicate_sites), Tag("painful_sites")]
    | Annotated[dict[_SiteName, _StrictBool | None], Tag("site_states")],
    Discriminator(
        _wpi_form,
        custom_error_type="invalid_type",
        custom_error_message="`wpi_sites` must be a list of painful sites or a mapping of site "
        "to `true`, `false` or `null`",
    ),
]
_WPI_FORMS: Final = frozenset({"painful_sites", "site_states"})

_Weight = Annotated[float, Field(strict=True), AfterValidator(_within("weight_kg"))]
_Height = Annotated[float, Field(strict=True), AfterValidator(_within("height_cm"))]
_Age = Annotated[float, Field(strict=True), AfterValidator(_within("age_years"))]
_PainScore = Annotated[float, Field(strict=True), AfterValidator(_within("pain_nrs"))]
_Months = Annotated[float, Field(strict=True), AfterValidator(_within("symptom_duration_months"))]
_Dose = Annotated[float, Field(strict=True), AfterValidator(_dose)]
_Weeks = Annotated[float, Field(strict=True), AfterValidator(_within("duration_weeks"))]
_SessionsPerWeek = Annotated[
    float, Field(strict=True), AfterValidator(_within("sessions_per_week"))
]
_Sessions = Annotated[int, Field(strict=True), AfterValidator(_within("sessions"))]
_LabValue = Annotated[float, Field(strict=True), AfterValidator(_lab_value)]


# ---------------------------------------------------------------------------------------------
# Models


class _Facts(BaseModel):
    """Base of the input models: immutable, and unknown fields are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Demographics(_Facts):
    """Age, sex, body size and pregnancy; each ``None`` when unknown."""

    age_years: _Age | None = None
    sex: Literal["female", "male"] | None = None
    #: Measured actual body weight; never estimated.
    weight_kg: _Weight | None = None
    height_cm: _Height | None = None
    pregnancy_status: Literal["pregnant", "not_pregnant"] | None = None
    childbearing_potential: _StrictBool | None = None
    breastfeeding: _StrictBool | None = None

    @model_validator(mode="after")
    def _pregnancy_is_consistent(self) -> Self:
        if self.pregnancy_status == "pregnant" and (
            self.sex == "male" or self.childbearing_potential is False
        ):
            _raise(
                _Problem(
                    "inconsistent_value",
                    "`pregnant` contradicts "
                    + ("`sex: male`" if self.sex == "male" else "`childbearing_potential: false`"),
                    at=("pregnancy_status",),
                )
            )
        return self


class SymptomSeverityPartA(_Facts):
    """Symptom severity part A: three items scored 0-3 over the past week, and their subtotal.

    A report may give only the subtotal (the items stay ``None``). When both are given the
    subtotal must be reachable from the items: equal to their sum when all three are known,
    else between the known sum and the known sum plus 3 per unknown item.
    """

    fatigue: _PartAItem | None = None
    waking_unrefreshed: _PartAItem | None = None
    cognitive_symptoms: _PartAItem | None = None
    subtotal: _PartASubtotal | None = None

    @model_validator(mode="after")
    def _subtotal_matches_items(self) -> Self:
        if self.subtotal is None:
            return self
        items = (self.fatigue, self.waking_unrefreshed, self.cognitive_symptoms)
        known = sum(item for item in items if item is not None)
        unknown = sum(1 for item in items if item is None)
        if unknown == 0 and self.subtotal != known:
            _raise(
                _Problem(
                    "inconsistent_subtotal",
                    f"subtotal `{self.subtotal}` does not match the sum of the items ({known})",
                    at=("subtotal",),
                )
            )
        highest = known + PART_A_ITEM_MAXIMUM * unknown
        if not known <= self.subtotal <= highest:
            _raise(
                _Problem(
                    "inconsistent_subtotal",
                    f"subtotal `{self.subtotal}` cannot come from the known items "
                    f"(possible {known}-{highest})",
                    at=("subtotal",),
                )
            )
        return self


class SymptomSeverityPartB2016(_Facts):
    """The 2011/2016 part B: three symptoms during the previous 6 months (``1``/``0`` accepted)."""

    headaches: _PartB2016Item | None = None
    lower_abdominal_pain_or_cramps: _PartB2016Item | None = None
    depression: _PartB2016Item | None = None


class FibromyalgiaFacts(_Facts):
    """The ACR fibromyalgia instrument as recorded; scores are computed in ``scoring.py``.

    ``wpi_sites`` is either a list of the painful sites (every other site is then not painful)
    or a mapping of site to ``true``/``false``/``null`` (a site left out is unknown).
    ``sss_part_b_2010`` is the physician's 0-3 estimate of "somatic symptoms in general".
    """

    wpi_sites: _WpiSites | None = None
    sss_part_a: SymptomSeverityPartA | None = None
    sss_part_b_2010: _PartB2010 | None = None
    sss_part_b_2016: SymptomSeverityPartB2016 | None = None
    symptom_duration_months: _Months | None = None
    other_disorder_explains_pain: _StrictBool | None = None

    def site_states(self) -> dict[str, bool | None]:
        """All 19 WPI sites mapped to painful (true), not painful (false) or unknown (None)."""
        if self.wpi_sites is None:
            return dict.fromkeys(WPI_SITES)
        if isinstance(self.wpi_sites, tuple):
            painful = set(self.wpi_sites)
            return {site: site in painful for site in WPI_SITES}
        return {site: self.wpi_sites.get(site) for site in WPI_SITES}


class PriorTrial(_Facts):
    """One prior pharmacological trial for fibromyalgia; ``drug`` is stored lowercase."""

    drug: _LowercaseName
    dose_mg_per_day: _Dose | None = None
    duration_weeks: _Weeks | None = None
    stop_reason: Literal["ongoing", "insufficient_effect", "intolerance", "other"] | None = None
    response: Literal["none", "minimal", "partial", "good"] | None = None
    code: _StrictText | None = None
    system: _StrictText | None = None


class NonPharmacologicalTherapy(_Facts):
    """One prior non-pharmacological therapy; ``therapy`` is a snake_case id such as ``cbt``."""

    therapy: _TherapyName
    supervised: _StrictBool | None = None
    duration_weeks: _Weeks | None = None
    sessions_per_week: _SessionsPerWeek | None = None
    sessions: _Sessions | None = None


class CurrentMedication(_Facts):
    """A medication the patient takes, or recently stopped; ``drug`` is stored lowercase.

    A stopped medication still counts while its washout window (in the drug table) runs.
    """

    drug: _LowercaseName
    dose: _Dose | None = None
    unit: _StrictText | None = None
    code: _StrictText | None = None
    system: _StrictText | None = None
    status: Literal["active", "stopped"] = "active"
    started_at: _AwareDateTime | None = None
    stopped_at: _AwareDateTime | None = None

    @model_validator(mode="after")
    def _stop_is_consistent(self) -> Self:
        if self.stopped_at is not None and self.status != "stopped":
            _raise(
                _Problem(
                    "inconsistent_value",
                    "`stopped_at` is given but `status` is `active`",
                    at=("status",),
                    hint="set `status: stopped`",
                )
            )
        return self


class Diagnosis(_Facts):
    """A recorded diagnosis or problem, as displayed, with an optional code and details.

    The problem list is read as complete when it is given (``[]`` = no problems): a condition
    that is not listed is taken as absent. ``null`` means the history was not taken.
    """

    display: _StrictText
    code: _StrictText | None = None
    system: _StrictText | None = None
    status: Literal["active", "in_remission", "resolved"] | None = None
    onset_at: _AwareDateTime | None = None
    #: The latest episode (seizure, attack) of a relapsing condition.
    last_event_at: _AwareDateTime | None = None
    controlled: _StrictBool | None = None
    #: For a device (pacemaker): whether it is known to work.
    functioning: _StrictBool | None = None
    nyha_class: _NyhaClass | None = None
    lvef_percent: _Lvef | None = None
    child_pugh_class: Literal["A", "B", "C"] | None = None


class LabResult(_Facts):
    """One laboratory result as reported, in one of the units :data:`LAB_TESTS` accepts.

    ``test`` is stored lowercase. The blood count (``cbc``) has no value or unit, only an
    ``interpretation``; every other test needs a value and a unit.
    """

    test: _LowercaseName
    value: _LabValue | None = None
    unit: _StrictText | None = None
    taken_at: _AwareDateTime
    interpretation: Literal["normal", "abnormal"] | None = None

    @field_validator("test")
    @classmethod
    def _known_test(cls, test: str) -> str:
        if test not in LAB_TESTS:
            _raise(
                _Problem(
                    "unknown_test",
                    f"unknown lab test `{_show(test)}`; expected one of {_one_of(list(LAB_TESTS))}",
                    hint=_did_you_mean(test, list(LAB_TESTS)),
                )
            )
        return test

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, unit: str | None, info: ValidationInfo) -> str | None:
        test = info.data.get("test")
        if unit is None or not isinstance(test, str) or test not in LAB_TESTS:
            return unit
        spec = LAB_TESTS[test]
        if spec.canonical_unit is None:
            _raise(_Problem("invalid_value", f"`{test}` takes no unit; give `interpretation`"))
        if _unit_key(unit) not in spec.factors:
            _raise(
                _Problem(
                    "unknown_unit",
                    f"unit `{_show(unit)}` is not accepted for `{test}`; "
                    f"expected one of {_one_of(spec.spellings)}",
                )
            )
        return unit

    @model_validator(mode="after")
    def _value_fits_test(self) -> Self:
        spec = LAB_TESTS[self.test]
        if spec.canonical_unit is None:
            if self.value is not None:
                _raise(
                    _Problem(
                        "invalid_value",
                        f"`{self.test}` takes no value; give `interpretation`",
                        at=("value",),
                    )
                )
            if self.interpretation is None:
                _raise(
                    _Problem(
                        "missing_field",
                        f"missing required field `interpretation` for `{self.test}`",
                        at=("interpretation",),
                    )
                )
            return self
        problems = [
            _Problem("missing_field", f"missing required field `{name}` for `{self.test}`", (name,))
            for name in ("value", "unit")
            if getattr(self, name) is None
        ]
        if problems:
            _raise(*problems)
        return self

    def canonical_value(self) -> float | None:
        """The value in the test's canonical unit (CRP in mg/dL is multiplied by 10)."""
        spec = LAB_TESTS[self.test]
        if self.value is None or self.unit is None:
            return None
        return self.value * spec.factors[_unit_key(self.unit)]


_PrInterval = Annotated[float, Field(strict=True), AfterValidator(_within("pr_ms"))]
_QrsDuration = Annotated[float, Field(strict=True), AfterValidator(_within("qrs_ms"))]
_QtcInterval = Annotated[float, Field(strict=True), AfterValidator(_within("qtc_ms"))]
_Lvef = Annotated[float, Field(strict=True), AfterValidator(_within("lvef_percent"))]
_Systolic = Annotated[float, Field(strict=True), AfterValidator(_within("systolic_bp_mmhg"))]
_Diastolic = Annotated[float, Field(strict=True), AfterValidator(_within("diastolic_bp_mmhg"))]
_HeartRate = Annotated[float, Field(strict=True), AfterValidator(_within("heart_rate_bpm"))]
_Spo2 = Annotated[float, Field(strict=True), AfterValidator(_within("spo2_percent"))]
_RespiratoryRate = Annotated[
    float, Field(strict=True), AfterValidator(_within("respiratory_rate_per_min"))
]
_LipidMl = Annotated[float, Field(strict=True), AfterValidator(_within("lipid_emulsion_ml"))]
_NyhaClass = Annotated[int, Field(strict=True, ge=1, le=4)]
_Poss = Annotated[int, Field(strict=True, ge=1, le=4)]
_Rass = Annotated[int, Field(strict=True, ge=-5, le=4)]
_SessionNumber = Annotated[int, Field(strict=True, ge=1, le=100)]

#: Rhythms, atrioventricular blocks and intraventricular conduction as read on a 12-lead ECG.
EcgRhythm = Literal[
    "sinus",
    "sinus_bradycardia",
    "sinus_tachycardia",
    "sinus_arrhythmia",
    "atrial_fibrillation",
    "atrial_flutter",
    "junctional",
    "paced",
    "other",
]
AvBlock = Literal[
    "none",
    "first_degree",
    "second_degree_mobitz_i",
    "second_degree_mobitz_ii",
    "second_degree_2_to_1",
    "high_grade",
    "third_degree",
]
IntraventricularConduction = Literal[
    "normal",
    "incomplete_rbbb",
    "rbbb",
    "lbbb",
    "left_anterior_fascicular_block",
    "left_posterior_fascicular_block",
    "nonspecific_ivcd",
    "bifascicular_block",
    "trifascicular_block",
]
NewSymptom = Literal[
    "chest_pain",
    "palpitations",
    "syncope",
    "new_neurological_deficit",
    "severe_headache",
    "visual_change",
]


class Allergy(_Facts):
    """A recorded allergy or intolerance; ``substance`` is stored lowercase."""

    substance: _LowercaseName
    code: _StrictText | None = None
    system: _StrictText | None = None
    reaction: _StrictText | None = None


class Ecg(_Facts):
    """A 12-lead ECG as read; every finding ``None`` when not reported."""

    recorded_at: _AwareDateTime
    rhythm: EcgRhythm | None = None
    av_block: AvBlock | None = None
    sinoatrial_block: _StrictBool | None = None
    pre_excitation: _StrictBool | None = None
    intraventricular_conduction: IntraventricularConduction | None = None
    pr_ms: _PrInterval | None = None
    qrs_ms: _QrsDuration | None = None
    qtc_ms: _QtcInterval | None = None


class PregnancyTest(_Facts):
    """A urine or serum beta-hCG result."""

    result: Literal["positive", "negative"]
    taken_at: _AwareDateTime


class Vitals(_Facts):
    """Vital signs measured before a session starts."""

    measured_at: _AwareDateTime
    systolic_bp_mmhg: _Systolic | None = None
    diastolic_bp_mmhg: _Diastolic | None = None
    #: A second diastolic reading after 10 minutes' rest, when the first was raised.
    diastolic_recheck_mmhg: _Diastolic | None = None
    heart_rate_bpm: _HeartRate | None = None
    spo2_percent: _Spo2 | None = None
    on_room_air: _StrictBool | None = None
    respiratory_rate_per_min: _RespiratoryRate | None = None


class LocalAnaestheticBlock(_Facts):
    """A local anaesthetic given by another route (epidural, regional or nerve block)."""

    route: _StrictText
    at: _AwareDateTime
    #: A catheter or infusion still running.
    ongoing: _StrictBool = False


class Readiness(_Facts):
    """The treatment area and rescue equipment, checked before the session."""

    monitored_bay: _StrictBool | None = None
    resuscitation_equipment: _StrictBool | None = None
    defibrillator: _StrictBool | None = None
    airway_equipment: _StrictBool | None = None
    benzodiazepine_available: _StrictBool | None = None
    lipid_emulsion_20_percent_ml: _LipidMl | None = None


class Review(_Facts):
    """A clinician's sign-off of a NEEDS_REVIEW finding, so the gate may proceed despite it."""

    rule: _StrictText
    #: The finding's subject (e.g. the drug) when the rule names one.
    subject: _StrictText | None = None
    reviewer: _StrictText
    at: _AwareDateTime


class SessionFacts(_Facts):
    """Before a daily session: today's vitals, sedation, symptoms and readiness."""

    number: _SessionNumber
    vitals: Vitals | None = None
    #: Pasero opioid-induced sedation scale, 1 (awake) to 4.
    poss: _Poss | None = None
    #: Richmond agitation-sedation scale, -5 to +4.
    rass: _Rass | None = None
    #: New since the last session; ``[]`` = asked and none, ``null`` = not asked.
    new_symptoms: tuple[NewSymptom, ...] | None = None
    #: Local anaesthetic blocks by other routes; ``[]`` = asked and none.
    local_anaesthetic_blocks: tuple[LocalAnaestheticBlock, ...] | None = None
    readiness: Readiness | None = None
    dedicated_iv_access: _StrictBool | None = None
    last_solid_food_at: _AwareDateTime | None = None
    last_clear_fluid_at: _AwareDateTime | None = None
    consent_documented: _StrictBool | None = None
    reviews: tuple[Review, ...] = ()


class PatientFacts(_Facts):
    """Everything known about one patient at ``as_of``.

    Collections are ``None`` when undocumented and empty when documented as none. A lab
    result taken after ``as_of`` is an input error, and so are two results of one test taken
    at the same time that disagree.
    """

    as_of: _AwareDateTime
    #: The caller's identifier for the patient (e.g. a FHIR ``Patient.id``); never used by rules.
    patient_ref: _StrictText | None = None
    demographics: Demographics = Field(default_factory=Demographics)
    #: Current average pain, 0-10 numeric rating scale.
    pain_nrs: _PainScore | None = None
    confounders_reviewed: _StrictBool | None = None
    fibromyalgia: FibromyalgiaFacts | None = None
    prior_trials: tuple[PriorTrial, ...] | None = None
    nonpharmacological_therapies: tuple[NonPharmacologicalTherapy, ...] | None = None
    current_medications: tuple[CurrentMedication, ...] | None = None
    diagnoses: tuple[Diagnosis, ...] | None = None
    allergies: tuple[Allergy, ...] | None = None
    labs: tuple[LabResult, ...] | None = None
    ecgs: tuple[Ecg, ...] | None = None
    pregnancy_tests: tuple[PregnancyTest, ...] | None = None
    #: Only for the pre-session gate: the session about to start.
    session: SessionFacts | None = None

    @model_validator(mode="after")
    def _labs_fit_as_of(self) -> Self:
        problems: list[_Problem] = []
        seen: dict[tuple[str, datetime], tuple[int, LabResult]] = {}
        for index, lab in enumerate(self.labs or ()):
            if lab.taken_at > self.as_of:
                problems.append(
                    _Problem(
                        "future_date",
                        f"`{_show(lab.taken_at)}` is after `as_of` ({_show(self.as_of)})",
                        at=("labs", index, "taken_at"),
                    )
                )
                continue
            key = (lab.test, lab.taken_at)
            if key in seen:
                first_index, first = seen[key]
                same = (first.canonical_value(), first.interpretation) == (
                    lab.canonical_value(),
                    lab.interpretation,
                )
                if not same:
                    problems.append(
                        _Problem(
                            "conflicting_lab",
                            f"`{lab.test}` taken at `{_show(lab.taken_at)}` disagrees with "
                            f"labs[{first_index}] taken at the same time",
                            at=("labs", index),
                        )
                    )
            else:
                seen[key] = (index, lab)
        if problems:
            _raise(*problems)
        return self

    @model_validator(mode="after")
    def _dates_not_after_as_of(self) -> Self:
        """Nothing recorded can be later than the moment of evaluation."""
        problems: list[_Problem] = []

        def check(at: tuple[str | int, ...], value: datetime | None) -> None:
            if value is not None and value > self.as_of:
                problems.append(
                    _Problem(
                        "future_date",
                        f"`{_show(value)}` is after `as_of` ({_show(self.as_of)})",
                        at=at,
                    )
                )

        for index, ecg in enumerate(self.ecgs or ()):
            check(("ecgs", index, "recorded_at"), ecg.recorded_at)
        for index, test in enumerate(self.pregnancy_tests or ()):
            check(("pregnancy_tests", index, "taken_at"), test.taken_at)
        for index, diagnosis in enumerate(self.diagnoses or ()):
            check(("diagnoses", index, "onset_at"), diagnosis.onset_at)
            check(("diagnoses", index, "last_event_at"), diagnosis.last_event_at)
        for index, medication in enumerate(self.current_medications or ()):
            check(("current_medications", index, "started_at"), medication.started_at)
            check(("current_medications", index, "stopped_at"), medication.stopped_at)
        session = self.session
        if session is not None:
            if session.vitals is not None:
                check(("session", "vitals", "measured_at"), session.vitals.measured_at)
            for index, block in enumerate(session.local_anaesthetic_blocks or ()):
                check(("session", "local_anaesthetic_blocks", index, "at"), block.at)
            check(("session", "last_solid_food_at"), session.last_solid_food_at)
            check(("session", "last_clear_fluid_at"), session.last_clear_fluid_at)
            for index, review in enumerate(session.reviews):
                check(("session", "reviews", index, "at"), review.at)
        if problems:
            _raise(*problems)
        return self


# ---------------------------------------------------------------------------------------------
# Loading and error conversion

_EXPECTED: Final[Mapping[str, str]] = MappingProxyType(
    {
        "float_type": "a number",
        "float_parsing": "a number",
        "int_type": "a whole number",
        "int_parsing": "a whole number",
        "int_from_float": "a whole number",
        "bool_type": "`true` or `false`",
        "bool_parsing": "`true` or `false`",
        "string_type": "text",
        "list_type": "a list",
        "tuple_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
        "datetime_type": "a date-time with a timezone offset",
    }
)


def parse_patient(data: object, source: str | None = None) -> PatientFacts:
    """Validate already-parsed input (a mapping as from JSON or YAML) into :class:`PatientFacts`.

    ``source`` names the input in error locations. Raises :class:`InputErrors` listing every
    problem found, each with a stable code and a JSON path.
    """
    return _validate(data, source, None)


def load_patient(path: str | PathLike[str]) -> PatientFacts:
    """Read one patient from a ``.json`` file or a YAML file (any other name).

    Duplicate keys are errors in both formats. YAML errors carry line and column. Raises
    :class:`InputErrors` for unreadable, malformed or invalid input.
    """
    file = Path(path)
    source = str(path)

    def input_errors(error: CdsRulesError) -> InputErrors:
        """An encoding, syntax or size problem found by ``yamlio``, as input errors."""
        members = getattr(error, "errors", None) or (error,)
        return InputErrors(
            InputError(member.code, member.message, member.location, member.hint)
            for member in members
        )

    try:
        text = read_utf8(file)
    except OSError as error:
        reason = error.strerror or str(error)
        raise InputErrors(
            [
                InputError(
                    "unreadable_file",
                    f"cannot read `{source}`: {reason.lower()}",
                    Location(file=source),
                )
            ]
        ) from None
    except CdsRulesError as error:
        raise input_errors(error) from None
    if file.suffix.lower() == ".json":
        _refuse_deep_json(text, source)
        data = _parse_json(text, source)
        return _validate(data, source, _json_positions(text, source))
    try:
        document = load_yaml_text(text, source)
    except CdsRulesError as error:
        raise input_errors(error) from None
    return _validate(document.data, source, document.positions)


# A JSON string (skipped whole, brackets inside it do not nest), an opening or a closing bracket.
_JSON_BRACKET: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]')


def _refuse_deep_json(text: str, source: str) -> None:
    """Refuse JSON nested deeper than ``MAX_DEPTH``, before the JSON reader exhausts the stack."""
    depth = 0
    for match in _JSON_BRACKET.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                start = match.start()
                line = text.count("\n", 0, start) + 1
                column = start - text.rfind("\n", 0, start)
                raise InputErrors(
                    [
                        InputError(
                            "too_deep",
                            f"mappings and lists are nested more than {MAX_DEPTH} levels deep",
                            Location(source, line, column),
                            hint="flatten the data; no valid input nests this deep",
                        )
                    ]
                )
        elif token in ("]", "}"):
            depth -= 1


def _json_positions(text: str, source: str) -> Positions | None:
    """Line and column of every value of a JSON document (JSON is read as YAML for this only).

    The values themselves always come from the JSON reader; None when the YAML reader cannot
    follow the document.
    """
    try:
        return load_yaml_text(text, source).positions
    except (CdsRulesError, yaml.YAMLError):
        return None


def _parse_json(text: str, source: str) -> object:
    duplicates: list[str] = []

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                duplicates.append(key)
            else:
                result[key] = value
        return result

    try:
        data = json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as error:
        raise InputErrors(
            [
                InputError(
                    "json_syntax",
                    error.msg.lower(),
                    Location(file=source, line=error.lineno, column=error.colno),
                )
            ]
        ) from None
    if duplicates:
        try:
            load_yaml_text(text, source)
        except CdsRulesError as error:  # the same duplicates, with their lines and paths
            members = getattr(error, "errors", None) or (error,)
            if all(member.code == "duplicate_key" for member in members):
                raise InputErrors(
                    InputError(member.code, member.message, member.location, member.hint)
                    for member in members
                ) from None
        except yaml.YAMLError:
            pass
        raise InputErrors(
            InputError(
                "duplicate_key",
                f"duplicate key `{_show(key)}`",
                Location(file=source),
                hint="remove one of them; a json reader would silently keep one",
            )
            for key in duplicates
        )
    return data


def _validate(data: object, source: str | None, positions: Positions | None) -> PatientFacts:
    try:
        return PatientFacts.model_validate(data)
    except ValidationError as error:
        errors: list[InputError] = []
        for detail in error.errors(include_url=False):
            for converted in _convert(detail, source, positions):
                if all(str(converted) != str(known) for known in errors):
                    errors.append(converted)
        if positions is not None:  # report a file's problems top to bottom
            errors.sort(key=lambda item: (item.location.line or 0, item.location.column or 0))
        raise InputErrors(errors) from None


def _convert(
    detail: ErrorDetails, source: str | None, positions: Positions | None
) -> list[InputError]:
    """Turn one pydantic error into input errors with stable codes and JSON paths."""
    loc: list[str | int] = []
    key = False
    raw = tuple(detail["loc"])
    for index, part in enumerate(raw):
        if part == "[key]":
            key = True
            if loc and isinstance(loc[-1], int):  # a mapping key that is not text
                loc[-1] = str(loc[-1])
        elif not (index > 0 and raw[index - 1] == "wpi_sites" and part in _WPI_FORMS):
            loc.append(part)
    parts = tuple(loc)
    kind: str = detail["type"]
    value = detail.get("input")
    context = detail.get("ctx") or {}
    name = next((part for part in reversed(parts) if isinstance(part, str)), None)

    def located(
        code: str,
        message: str,
        at: tuple[str | int, ...] = (),
        hint: str | None = None,
        as_key: bool = False,
    ) -> InputError:
        full = parts + at
        if positions is not None:
            location = positions.location(full, key=as_key)
        else:
            location = Location(file=source, path=json_path(full))
        return InputError(code, message, location, hint)

    problems = context.get("problems")
    if problems:
        return [located(p.code, p.message, p.at, p.hint, as_key=key) for p in problems]
    if kind == "missing":
        return [located("missing_field", f"missing required field `{name}`")]
    if kind == "extra_forbidden":
        allowed = _fields_at(parts[:-1])
        hint = None
        if allowed:
            hint = _did_you_mean(str(name), allowed) or f"allowed fields: {_one_of(allowed)}"
        return [located("unknown_field", f"unknown field `{_show(name)}`", hint=hint, as_key=True)]
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'", str(context.get("expected", "")))
        hint = _did_you_mean(value, expected) if isinstance(value, str) else None
        return [
            located(
                "invalid_value", f"`{_show(value)}` is not one of {_one_of(expected)}", hint=hint
            )
        ]
    if kind == "invalid_type":  # the wpi_sites discriminator
        return [located("invalid_type", f"{detail['msg']}, not {_describe(value)}")]
    if kind in _EXPECTED:
        subject = "key" if key else f"`{name}`" if name else "the patient input"
        return [
            located(
                "invalid_type",
                f"{subject} must be {_EXPECTED[kind]}, not {_describe(value)}",
                as_key=key,
            )
        ]
    message = str(detail["msg"])
    message = message[0].lower() + message[1:] if message else kind
    return [located("invalid_value", f"{message}: `{_show(value)}`")]


def _fields_at(parts: tuple[str | int, ...]) -> list[str]:
    """Field names of the model at ``parts`` below :class:`PatientFacts`, for hints."""
    current: Any = PatientFacts
    for part in parts:
        current = _unwrap(current)
        if isinstance(part, int):
            if get_origin(current) in (tuple, list):
                current = get_args(current)[0]
                continue
            return []
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``| None`` from a field annotation."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
            continue
        arguments = [arg for arg in get_args(annotation) if arg is not type(None)]
        if get_origin(annotation) not in (tuple, list, dict) and len(arguments) == 1:
            annotation = arguments[0]
            continue
        return annotation
