"""Session doses: dosing weight, the planned dose of each drug, and checks of ordered doses.

Every clinical number comes from ``rulesets/dosing.yaml`` (DOSE-LID-01/02, DOSE-KET-01/02,
SES-MAX), each with its source; this module does the unit arithmetic only: ideal body weight
(Devine), adjusted body weight, mg/kg to mg to mL at the concentration of the product in hand,
and infusion rates. Arithmetic is decimal, so a boundary is exact: 15 mg for 75 kg is exactly
0.2 mg/kg and is allowed; 15.01 mg is not.

Missing data never yields a dose: no weight gives CANNOT_EVALUATE (a missing weight is not
70 kg); no height gives the dose on actual weight with NEEDS_REVIEW; under the minimum weight
is INELIGIBLE.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from .errors import InputError, Location, RulesetError, RulesetErrors
from .facts import PatientFacts
from .loader import did_you_mean
from .spec import Evidence, Outcome, SourceSpec
from .terminology import _load, _Table

__all__ = [
    "DoseCheck",
    "DosePlan",
    "DosingTable",
    "DosingWeight",
    "DrugDose",
    "Note",
    "check_order",
    "dosing_weight",
    "fmt",
    "load_dosing_table",
    "parameter_count",
    "plan_session",
]

Drug = Literal["lidocaine", "ketamine"]
DRUGS: tuple[Drug, ...] = ("lidocaine", "ketamine")
CheckDecision = Literal["ACCEPT", "REJECT", "NEEDS_REVIEW", "CANNOT_EVALUATE"]


# ---------------------------------------------------------------------------------------------
# The table


class Parameter(_Table):
    """One number with its source and evidence grade."""

    value: Annotated[float, Field(gt=0)]
    sources: list[str] = Field(min_length=1)
    evidence: Evidence
    note: str | None = None

    @property
    def d(self) -> Decimal:
        return Decimal(str(self.value))


class OutcomeParameter(_Table):
    outcome: Outcome
    sources: list[str] = Field(min_length=1)
    evidence: Evidence
    note: str | None = None


class PolicyParameter(_Table):
    """A yes/no choice of the protocol, with its source and evidence grade."""

    value: Annotated[bool, Field(strict=True)]
    sources: list[str] = Field(min_length=1)
    evidence: Evidence
    note: str | None = None


class WeightSpec(_Table):
    rule: str
    title: str
    minimum_kg: Parameter
    ibw_female_base_kg: Parameter
    ibw_male_base_kg: Parameter
    ibw_base_height_cm: Parameter
    ibw_kg_per_cm: Parameter
    adjusted_above_ibw_ratio: Parameter
    adjusted_excess_fraction: Parameter
    without_height: OutcomeParameter


class ConcentrationSpec(_Table):
    """The concentrations of products in use: anything else is a mistyped input."""

    min_mg_per_ml: Parameter
    max_mg_per_ml: Parameter


class LidocaineSpec(_Table):
    rule: str
    title: str
    start_mg_per_kg: Parameter
    step_mg_per_kg: Parameter
    max_mg_per_kg: Parameter
    cap_mg: Parameter
    shortest_infusion_min: Parameter
    longest_infusion_min: Parameter
    max_rate_mg_per_kg_per_h: Parameter
    deescalation_floor_mg_per_kg: Parameter
    diluent_ml: Parameter
    concentration: ConcentrationSpec


class KetamineSpec(_Table):
    rule: str
    cap_rule: str
    title: str
    first_session: Parameter
    start_mg: Parameter
    step_mg: Parameter
    min_mg_per_kg: Parameter
    max_mg_per_kg: Parameter
    round_to_mg: Parameter
    start_is_escalation: PolicyParameter
    concentration: ConcentrationSpec


class CourseSpec(_Table):
    rule: str
    max_sessions: Parameter
    record_tolerance_percent: Parameter


class DosingTable(_Table):
    table: Annotated[str, Field(pattern=r"^dosing$")]
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    title: str
    sources: dict[str, SourceSpec] = Field(min_length=1)
    weight: WeightSpec
    lidocaine: LidocaineSpec
    ketamine: KetamineSpec
    course: CourseSpec


_AnyParameter = Parameter | OutcomeParameter | PolicyParameter


def _parameters(
    model: BaseModel, where: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], _AnyParameter]]:
    """Every number, outcome and choice of the table with its place, nested blocks included."""
    found: list[tuple[tuple[str, ...], _AnyParameter]] = []
    for name in type(model).model_fields:
        item = getattr(model, name)
        if isinstance(item, _AnyParameter):
            found.append(((*where, name), item))
        elif isinstance(item, BaseModel):
            found.extend(_parameters(item, (*where, name)))
    return found


def parameter_count(table: DosingTable) -> int:
    return len(_parameters(table))


def load_dosing_table(path: Path | str) -> DosingTable:
    """Read and check ``dosing.yaml``; raise ``RulesetErrors`` with every problem."""
    spec, positions, _ = _load(path, DosingTable)
    assert isinstance(spec, DosingTable)
    errors: list[RulesetError] = []
    for where, item in _parameters(spec):
        for index, source in enumerate(item.sources):
            if source not in spec.sources:
                errors.append(
                    positions.error(
                        "unknown_source",
                        f"unknown source `{source}`",
                        (*where, "sources", index),
                        did_you_mean(source, spec.sources),
                    )
                )
    if errors:
        raise RulesetErrors(errors)
    return spec


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Note:
    """A reason shown with a dose: the rule, its outcome and what it says."""

    rule: str
    outcome: Outcome
    message: str
    #: What the note is about: ``weight``, ``minimum_weight``, ``height``, ``basis``, ``cap``,
    #: ``range``, ``course`` or ``order``.
    about: str


@dataclass(frozen=True)
class DosingWeight:
    actual_kg: Decimal | None
    height_cm: Decimal | None
    sex: str | None
    ibw_kg: Decimal | None
    adjusted_kg: Decimal | None
    #: ``actual`` or ``adjusted``; None when there is no weight.
    basis: Literal["actual", "adjusted"] | None
    dosing_kg: Decimal | None
    outcome: Outcome
    notes: tuple[Note, ...]


@dataclass(frozen=True)
class DrugDose:
    drug: Drug
    rule: str
    session: int
    weight_basis: str
    weight_kg: Decimal
    mg_per_kg: Decimal
    mg: Decimal
    #: The absolute cap lowered the dose (lidocaine 500 mg).
    capped: bool
    concentration_mg_per_ml: Decimal
    ml: Decimal
    shortest_infusion_min: Decimal
    longest_infusion_min: Decimal
    #: Rates over the shortest and the longest infusion.
    mg_per_h: tuple[Decimal, Decimal]
    mg_per_kg_per_h: tuple[Decimal, Decimal]


class _JsonResult:
    """JSON output of a result dataclass: decimals as numbers, outcomes as their names."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _jsonable(asdict(self))  # type: ignore[call-overload]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class DosePlan(_JsonResult):
    """The doses for one session, or the reason there are none (``outcome``)."""

    session: int
    table_version: str
    outcome: Outcome
    weight: DosingWeight
    lidocaine: DrugDose | None
    ketamine: DrugDose | None
    #: The infusion bag: diluent plus both drugs' volumes, and its pump rates.
    bag_ml: Decimal | None
    bag_ml_per_h: tuple[Decimal, Decimal] | None
    notes: tuple[Note, ...]


@dataclass(frozen=True)
class DoseCheck(_JsonResult):
    """An ordered dose against the permitted maximum."""

    drug: Drug
    decision: CheckDecision
    ordered_mg: Decimal
    ordered_mg_per_kg: Decimal | None
    weight_basis: str | None
    weight_kg: Decimal | None
    max_mg: Decimal | None
    max_mg_per_kg: Decimal
    notes: tuple[Note, ...]


def _jsonable(value: Any) -> Any:
    """``asdict`` output made JSON-ready: decimals as numbers, enums as their values, nested
    models and times as JSON."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------------
# Arithmetic


def fmt(value: Decimal) -> str:
    """A decimal as written by hand: ``85``, ``3.75``, ``0.235`` (no trailing zeros)."""
    text = format(value.normalize(), "f")
    return text


def _dec(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _round(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_HALF_UP)


def _to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return (value / step).to_integral_value(rounding=rounding) * step


def _worst(outcomes: list[Outcome]) -> Outcome:
    return max(outcomes, key=lambda outcome: outcome.severity)


def dosing_weight(facts: PatientFacts, table: DosingTable) -> DosingWeight:
    """The weight IV lidocaine is dosed on (DOSE-LID-02), and why."""
    spec = table.weight
    demographics = facts.demographics
    actual = _dec(demographics.weight_kg)
    height = _dec(demographics.height_cm)
    sex = demographics.sex
    if actual is None:
        note = Note(
            spec.rule,
            Outcome.CANNOT_EVALUATE,
            "weight not recorded (`demographics.weight_kg`): no dose can be computed, and none "
            "is assumed",
            "weight",
        )
        return DosingWeight(None, height, sex, None, None, None, None, note.outcome, (note,))
    notes: list[Note] = []
    if actual < spec.minimum_kg.d:
        notes.append(
            Note(
                spec.rule,
                Outcome.INELIGIBLE,
                f"weight {fmt(actual)} kg is under {fmt(spec.minimum_kg.d)} kg: "
                "IV lidocaine is not given",
                "minimum_weight",
            )
        )
    base = {"female": spec.ibw_female_base_kg.d, "male": spec.ibw_male_base_kg.d}.get(sex or "")
    short = height is not None and height < spec.ibw_base_height_cm.d
    if height is None or base is None or short:
        why = (
            "height (`demographics.height_cm`) not recorded"
            if height is None
            else "sex not recorded"
            if base is None
            else f"height {fmt(height)} cm is under {fmt(spec.ibw_base_height_cm.d)} cm, where "
            "the Devine formula does not apply"
        )
        notes.append(
            Note(
                spec.rule,
                spec.without_height.outcome,
                f"{why}: no ideal body weight, so the dose is on actual weight "
                f"({fmt(actual)} kg); a clinician must confirm it",
                "height",
            )
        )
        outcome = _worst([note.outcome for note in notes])
        return DosingWeight(
            actual, height, sex, None, None, "actual", actual, outcome, tuple(notes)
        )
    # Exact for the comparison; shown to 0.1 kg. The adjusted weight is rounded down.
    exact_ibw = base + spec.ibw_kg_per_cm.d * (height - spec.ibw_base_height_cm.d)
    ibw = _round(exact_ibw, "0.1")
    if actual > spec.adjusted_above_ibw_ratio.d * exact_ibw:
        adjusted = _to_step(
            exact_ibw + spec.adjusted_excess_fraction.d * (actual - exact_ibw),
            Decimal("0.1"),
            ROUND_FLOOR,
        )
        notes.append(
            Note(
                spec.rule,
                Outcome.INFO,
                f"actual weight {fmt(actual)} kg is over "
                f"{fmt(spec.adjusted_above_ibw_ratio.d)} x ideal body weight ({fmt(ibw)} kg): "
                f"lidocaine is dosed on adjusted body weight {fmt(ibw)} + "
                f"{fmt(spec.adjusted_excess_fraction.d)} x ({fmt(actual)} - {fmt(ibw)}) = "
                f"{fmt(adjusted)} kg",
                "basis",
            )
        )
        basis: Literal["actual", "adjusted"] = "adjusted"
        dosing = adjusted
    else:
        adjusted = None
        notes.append(
            Note(
                spec.rule,
                Outcome.INFO,
                f"actual weight {fmt(actual)} kg is not over "
                f"{fmt(spec.adjusted_above_ibw_ratio.d)} x ideal body weight ({fmt(ibw)} kg): "
                "lidocaine is dosed on actual weight",
                "basis",
            )
        )
        basis = "actual"
        dosing = actual
    if dosing < spec.minimum_kg.d and actual >= spec.minimum_kg.d:
        notes.append(
            Note(
                spec.rule,
                Outcome.INELIGIBLE,
                f"dosing weight {fmt(dosing)} kg is under {fmt(spec.minimum_kg.d)} kg: "
                "IV lidocaine is not given",
                "minimum_weight",
            )
        )
    outcome = _worst([Outcome.ELIGIBLE, *(note.outcome for note in notes)])
    return DosingWeight(actual, height, sex, ibw, adjusted, basis, dosing, outcome, tuple(notes))


#: Inputs beyond this are typing errors, whatever the drug (not a clinical limit).
_LARGEST_INPUT = Decimal(100_000)


def _positive(value: float, name: str, within: Parameter | None = None) -> Decimal:
    number = Decimal(str(value))
    if not number.is_finite() or number <= 0 or number > _LARGEST_INPUT:
        raise InputError(
            "out_of_range",
            f"`{name}` must be a positive number up to {fmt(_LARGEST_INPUT)}, not {value}",
            Location(path=name),
        )
    return number


def _concentration(value: float, name: str, limits: ConcentrationSpec) -> Decimal:
    number = _positive(value, name)
    if not limits.min_mg_per_ml.d <= number <= limits.max_mg_per_ml.d:
        raise InputError(
            "out_of_range",
            f"`{name}` {fmt(number)} mg/mL is outside the products in use "
            f"({fmt(limits.min_mg_per_ml.d)}-{fmt(limits.max_mg_per_ml.d)} mg/mL): "
            "check the ampoule",
            Location(path=name),
        )
    return number


def _rates(
    mg: Decimal, weight: Decimal, shortest: Decimal, longest: Decimal
) -> tuple[tuple[Decimal, Decimal], tuple[Decimal, Decimal]]:
    per_h = (_round(mg * 60 / shortest, "0.1"), _round(mg * 60 / longest, "0.1"))
    per_kg_h = (
        _round(mg * 60 / shortest / weight, "0.01"),
        _round(mg * 60 / longest / weight, "0.01"),
    )
    return per_h, per_kg_h


def _lidocaine_mg_per_kg(session: int, table: DosingTable) -> Decimal:
    spec = table.lidocaine
    planned = spec.start_mg_per_kg.d + spec.step_mg_per_kg.d * (session - 1)
    return min(planned, spec.max_mg_per_kg.d)


def _ketamine_limits(actual: Decimal, table: DosingTable) -> tuple[Decimal, Decimal]:
    spec = table.ketamine
    step = spec.round_to_mg.d
    low = _to_step(spec.min_mg_per_kg.d * actual, step, ROUND_CEILING)
    high = _to_step(spec.max_mg_per_kg.d * actual, step, ROUND_FLOOR)
    return low, high


def plan_session(
    facts: PatientFacts,
    session: int,
    *,
    lidocaine_mg_per_ml: float,
    ketamine_mg_per_ml: float,
    table: DosingTable,
    lidocaine_mg_per_kg: Decimal | None = None,
    ketamine_mg: Decimal | None = None,
) -> DosePlan:
    """The planned doses for session ``session`` if every earlier session escalated.

    A course passes the doses its decisions reached instead (``lidocaine_mg_per_kg``,
    ``ketamine_mg``; ketamine 0 mg: none), and they are converted the same way.

    Lidocaine: start + step x (session - 1) mg/kg, at most the maximum, on the dosing weight,
    at most the cap. Ketamine (from its first session): start + step x sessions since, kept
    within 0.1-0.2 mg/kg of actual weight (maximum rounded down, minimum up). Whether a session
    may escalate is the course's decision; this is the ceiling it may reach.
    """
    if session < 1:
        raise InputError(
            "out_of_range",
            f"the session number must be 1 or more, not {session}",
            Location(path="session"),
        )
    lido_conc = _concentration(
        lidocaine_mg_per_ml, "lidocaine_mg_per_ml", table.lidocaine.concentration
    )
    ket_conc = _concentration(
        ketamine_mg_per_ml, "ketamine_mg_per_ml", table.ketamine.concentration
    )
    weight = dosing_weight(facts, table)
    notes = list(weight.notes)
    course = table.course
    if session > course.max_sessions.value:
        notes.append(
            Note(
                course.rule,
                Outcome.INELIGIBLE,
                f"session {session} is beyond the course maximum of "
                f"{int(course.max_sessions.value)} sessions",
                "course",
            )
        )
    outcome = _worst([weight.outcome, *(note.outcome for note in notes)])
    if weight.dosing_kg is None or weight.actual_kg is None or outcome == Outcome.INELIGIBLE:
        return DosePlan(
            session, table.version, outcome, weight, None, None, None, None, tuple(notes)
        )
    lido_spec, ket_spec = table.lidocaine, table.ketamine
    shortest, longest = lido_spec.shortest_infusion_min.d, lido_spec.longest_infusion_min.d
    mg_per_kg = (
        _lidocaine_mg_per_kg(session, table) if lidocaine_mg_per_kg is None else lidocaine_mg_per_kg
    )
    # Rounded down, so the dose never exceeds its mg/kg; volumes are rounded down too.
    mg = _to_step(mg_per_kg * weight.dosing_kg, Decimal("0.1"), ROUND_FLOOR)
    capped = mg > lido_spec.cap_mg.d
    if capped:
        mg = lido_spec.cap_mg.d
        notes.append(
            Note(
                lido_spec.rule,
                Outcome.INFO,
                f"{fmt(mg_per_kg)} mg/kg x {fmt(weight.dosing_kg)} kg is over the "
                f"{fmt(lido_spec.cap_mg.d)} mg cap per session: the dose is the cap",
                "cap",
            )
        )
    per_h, per_kg_h = _rates(mg, weight.dosing_kg, shortest, longest)
    fastest = mg_per_kg * 60 / shortest
    if fastest > lido_spec.max_rate_mg_per_kg_per_h.d:
        notes.append(
            Note(
                lido_spec.rule,
                Outcome.NEEDS_REVIEW,
                f"{fmt(mg_per_kg)} mg/kg over {fmt(shortest)} min is {fmt(_round(fastest, '0.01'))}"
                f" mg/kg/h, over the {fmt(lido_spec.max_rate_mg_per_kg_per_h.d)} mg/kg/h maximum "
                "rate: infuse it more slowly",
                "rate",
            )
        )
    lidocaine = DrugDose(
        "lidocaine",
        lido_spec.rule,
        session,
        weight.basis or "actual",
        weight.dosing_kg,
        mg_per_kg,
        mg,
        capped,
        lido_conc,
        _to_step(mg / lido_conc, Decimal("0.01"), ROUND_FLOOR),
        shortest,
        longest,
        per_h,
        per_kg_h,
    )
    ketamine = None
    if ketamine_mg is not None:
        if ketamine_mg > 0:
            ketamine = _ketamine_dose(
                ketamine_mg, session, weight.actual_kg, ket_conc, shortest, longest, table
            )
    elif session >= ket_spec.first_session.value:
        low, high = _ketamine_limits(weight.actual_kg, table)
        steps = Decimal(session) - ket_spec.first_session.d
        wanted = ket_spec.start_mg.d + ket_spec.step_mg.d * steps
        # Escalation holds where the next step would pass the maximum (ESC-01); a start dose
        # over the maximum is lowered to it.
        reachable = [
            ket_spec.start_mg.d + ket_spec.step_mg.d * k
            for k in range(int(steps) + 1)
            if ket_spec.start_mg.d + ket_spec.step_mg.d * k <= high
        ]
        ket_mg = reachable[-1] if reachable else high
        # The first step that would pass the maximum, as the reason the dose holds.
        over = reachable[-1] + ket_spec.step_mg.d if reachable else ket_spec.start_mg.d
        per_kg_over = fmt(_round(over / weight.actual_kg, "0.001"))
        if ket_mg != wanted:
            notes.append(
                Note(
                    ket_spec.cap_rule,
                    Outcome.INFO,
                    f"ketamine {fmt(over)} mg would be {per_kg_over} mg/kg, over "
                    f"{fmt(ket_spec.max_mg_per_kg.d)} mg/kg of actual weight ({fmt(high)} mg): "
                    f"the dose holds at {fmt(ket_mg)} mg",
                    "range",
                )
            )
        if ket_mg < low:
            notes.append(
                Note(
                    ket_spec.rule,
                    Outcome.NEEDS_REVIEW,
                    f"ketamine {fmt(ket_mg)} mg is "
                    f"{fmt(_round(ket_mg / weight.actual_kg, '0.001'))} mg/kg, under the "
                    f"{fmt(ket_spec.min_mg_per_kg.d)} mg/kg of the protocol range ({fmt(low)} mg "
                    "for this weight): review the dose",
                    "range",
                )
            )
        ketamine = _ketamine_dose(
            ket_mg, session, weight.actual_kg, ket_conc, shortest, longest, table
        )
    bag = _round(
        lido_spec.diluent_ml.d + lidocaine.ml + (ketamine.ml if ketamine else Decimal(0)), "0.01"
    )
    bag_rates = (_round(bag * 60 / shortest, "0.1"), _round(bag * 60 / longest, "0.1"))
    # Notes on the doses themselves (a rate, a ketamine dose under the range) count too.
    outcome = _worst([outcome, *(note.outcome for note in notes)])
    return DosePlan(
        session, table.version, outcome, weight, lidocaine, ketamine, bag, bag_rates, tuple(notes)
    )


def _ketamine_dose(
    mg: Decimal,
    session: int,
    actual_kg: Decimal,
    concentration: Decimal,
    shortest: Decimal,
    longest: Decimal,
    table: DosingTable,
) -> DrugDose:
    per_h, per_kg_h = _rates(mg, actual_kg, shortest, longest)
    return DrugDose(
        "ketamine",
        table.ketamine.rule,
        session,
        "actual",
        actual_kg,
        _round(mg / actual_kg, "0.001"),
        mg,
        False,
        concentration,
        _to_step(mg / concentration, Decimal("0.01"), ROUND_FLOOR),
        shortest,
        longest,
        per_h,
        per_kg_h,
    )


def check_order(
    facts: PatientFacts, drug: Drug, ordered_mg: float, *, table: DosingTable
) -> DoseCheck:
    """ACCEPT an ordered dose within the permitted maximum, REJECT one above it (with the
    maximum); NEEDS_REVIEW when the maximum rests on actual weight for want of a height;
    CANNOT_EVALUATE without a weight."""
    ordered = _positive(ordered_mg, "ordered_mg")
    weight = dosing_weight(facts, table)
    if drug == "lidocaine":
        spec = table.lidocaine
        max_per_kg = spec.max_mg_per_kg.d
        kg, basis = weight.dosing_kg, weight.basis
        notes = list(weight.notes)
    else:
        kspec = table.ketamine
        max_per_kg = kspec.max_mg_per_kg.d
        kg, basis = weight.actual_kg, "actual" if weight.actual_kg is not None else None
        # Ketamine is dosed on actual weight: the lidocaine weight basis does not concern it.
        notes = [note for note in weight.notes if note.about in ("weight", "minimum_weight")]
    if kg is None:
        return DoseCheck(
            drug, "CANNOT_EVALUATE", ordered, None, None, None, None, max_per_kg, tuple(notes)
        )
    per_kg = ordered / kg
    if drug == "lidocaine":
        max_mg = min(
            _to_step(max_per_kg * kg, Decimal("0.1"), ROUND_FLOOR), table.lidocaine.cap_mg.d
        )
        over = per_kg > max_per_kg or ordered > table.lidocaine.cap_mg.d
        rule = table.lidocaine.rule
        limit = f"{fmt(max_per_kg)} mg/kg of {basis} weight and {fmt(table.lidocaine.cap_mg.d)} mg"
    else:
        _, max_mg = _ketamine_limits(kg, table)
        over = per_kg > max_per_kg
        rule = table.ketamine.cap_rule
        limit = f"{fmt(max_per_kg)} mg/kg of actual weight"
    shown = _round(per_kg, "0.0001")
    if shown <= max_per_kg < per_kg:  # enough digits to show why it is over
        shown = _round(per_kg, "0.0000001")
    if over:
        notes.append(
            Note(
                rule,
                Outcome.INELIGIBLE,
                f"{fmt(ordered)} mg for {fmt(kg)} kg is {fmt(shown)} mg/kg, over the limit of "
                f"{limit}: the maximum is {fmt(max_mg)} mg",
                "order",
            )
        )
    outcome = _worst([Outcome.ELIGIBLE, *(note.outcome for note in notes)])
    decision: CheckDecision
    if over or outcome == Outcome.INELIGIBLE:
        decision = "REJECT"
    elif outcome == Outcome.NEEDS_REVIEW:
        decision = "NEEDS_REVIEW"
    else:
        decision = "ACCEPT"
    return DoseCheck(drug, decision, ordered, shown, basis, kg, max_mg, max_per_kg, tuple(notes))
