"""A course of daily sessions: what was given, what the rules would have planned, and what the
next session does.

A course file (YAML or JSON) names the patient, the concentrations of the products in hand, and
every session given so far: the doses, the session's adverse events (CTCAE grade, LAST tier),
the halts that fired, sedation, the fraction of the planned dose delivered, and the VNRS before
and after. For each session this module

* builds the rule-facing records (``course_session``, ``adverse_event``, ``halt``,
  ``course_event``, ``response``) and evaluates the course profile's rulesets over them
  (ESC-01..04, SES-MAX, the CTCAE grade table, RESP-01..07) with the same engine and reference
  evaluator as screening;
* decides the next session per drug: the most restrictive action found, or ESCALATE when the
  positive criterion ESC-01 is established and nothing restricts; never ESCALATE on missing data;
* turns that decision into the next session's planned dose with the dosing table (steps,
  maxima, the 500 mg and 0.2 mg/kg caps, the de-escalation floor);
* compares each session's dose with the plan the previous decision allowed, and checks each
  dose given against the permitted maximum (DOSE-LID-01, DOSE-KET-02).

Python here only aggregates and does arithmetic (counts, hours, VNRS changes, doses); every
threshold and action is in ``rulesets/course.yaml`` or ``rulesets/dosing.yaml``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .dosing import (
    DRUGS,
    DoseCheck,
    DosePlan,
    DosingTable,
    DosingWeight,
    Drug,
    Note,
    _dec,
    _JsonResult,
    _ketamine_limits,
    _round,
    check_order,
    dosing_weight,
    fmt,
    plan_session,
)
from .errors import CdsRulesError, InputError, InputErrors, Location
from .evaluation import Evaluation, Evaluator, Finding, MissingData, RulesetRef
from .facts import PatientFacts, _AwareDateTime, load_patient, parse_patient
from .protocol import CompiledProfile
from .records import (
    AdverseEventCategory,
    AdverseEventRecord,
    CourseEventRecord,
    CourseSessionRecord,
    HaltRecord,
    Pgic,
    Record,
    ResponseRecord,
    documented,
)
from .spec import CourseAction, Outcome
from .yamlio import Positions, json_path, load_yaml_text, read_utf8

__all__ = [
    "CourseFile",
    "CourseReport",
    "CourseRunner",
    "DrugDay",
    "Escalation",
    "NextDecision",
    "SessionReport",
    "load_course",
    "parse_course",
    "response_thresholds",
    "status_label",
]


# ---------------------------------------------------------------------------------------------
# The course file

_Number = Annotated[float, Field(strict=True)]
_Bool = Annotated[bool, Field(strict=True)]
_Text = Annotated[str, Field(strict=True, min_length=1, max_length=500)]
_Vnrs = Annotated[float, Field(strict=True, ge=0, le=10)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LidocaineGiven(_Model):
    """The lidocaine given: any of mg/kg (as charted), mg, mL; at least one."""

    mg_per_kg: Annotated[float, Field(strict=True, gt=0, le=100)] | None = None
    mg: Annotated[float, Field(strict=True, gt=0, le=100_000)] | None = None
    ml: Annotated[float, Field(strict=True, gt=0, le=10_000)] | None = None

    @model_validator(mode="after")
    def _something(self) -> LidocaineGiven:
        if self.mg_per_kg is None and self.mg is None and self.ml is None:
            raise ValueError("give the lidocaine dose as `mg_per_kg`, `mg` or `ml`")
        return self


class KetamineGiven(_Model):
    """The ketamine given: mg or mL (``mg: 0`` for none)."""

    mg: Annotated[float, Field(strict=True, ge=0, le=100_000)] | None = None
    ml: Annotated[float, Field(strict=True, ge=0, le=10_000)] | None = None

    @model_validator(mode="after")
    def _something(self) -> KetamineGiven:
        if self.mg is None and self.ml is None:
            raise ValueError("give the ketamine dose as `mg` or `ml` (`mg: 0` for none)")
        return self


class AdverseEvent(_Model):
    """One adverse event. ``null`` means not assessed; a missing key is an error."""

    term: _Text
    category: AdverseEventCategory | None
    #: CTCAE v5 grade 1-5.
    grade: Annotated[int, Field(strict=True, ge=1, le=5)] | None
    #: LAST tier of the sign, 0 when it is not a sign of local anaesthetic toxicity.
    last_tier: Annotated[int, Field(strict=True, ge=0, le=3)] | None
    attributable: _Bool | None
    when: Literal["during", "after"] | None = None
    note: _Text | None = None


class Halt(_Model):
    """A halt rule that fired during the session."""

    rule: Annotated[str, Field(strict=True, pattern=r"^HALT-[A-Z0-9]+(-[A-Z0-9]+)+$")]
    times: Annotated[int, Field(strict=True, ge=1, le=1000)]
    resolved: _Bool | None
    #: HALT-SPO2-02 and HALT-SED-02: recovered rapidly (ESC-03) or not (ESC-04).
    rapid_recovery: _Bool | None = None


class Vnrs(_Model):
    before: _Vnrs | None
    after: _Vnrs | None


class CourseSession(_Model):
    """One session given. Keys are required; ``null`` records "not documented"."""

    number: Annotated[int, Field(strict=True, ge=1, le=1000)]
    day: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    started_at: _AwareDateTime | None = None
    lidocaine: LidocaineGiven
    ketamine: KetamineGiven
    #: Percent of the session's planned dose that was delivered.
    delivered_percent: Annotated[float, Field(strict=True, ge=0, le=100)] | None
    #: The pre-session gate's decision was PROCEED.
    gate_passed: _Bool | None
    max_poss: Annotated[int, Field(strict=True, ge=1, le=4)] | None
    min_rass: Annotated[int, Field(strict=True, ge=-5, le=4)] | None
    vnrs: Vnrs
    pgic: Pgic | None = None
    #: BPI pain interference (0-10) after the session.
    bpi_interference: Annotated[float, Field(strict=True, ge=0, le=10)] | None = None
    adverse_events: tuple[AdverseEvent, ...] | None
    halts: tuple[Halt, ...] | None
    course_events: tuple[Literal["pregnancy_detected", "consent_withdrawn"], ...] | None
    remarks: _Text | None = None


class FollowUp(_Model):
    label: _Text
    weeks_after_course: Annotated[float, Field(strict=True, gt=0, le=520)]
    vnrs: _Vnrs | None
    pgic: Pgic | None = None
    bpi_interference: Annotated[float, Field(strict=True, ge=0, le=10)] | None = None


class Products(_Model):
    """The concentrations of the products in hand (never assumed)."""

    lidocaine_mg_per_ml: Annotated[float, Field(strict=True, gt=0)]
    ketamine_mg_per_ml: Annotated[float, Field(strict=True, gt=0)]


class CourseFile(_Model):
    course: _Text
    #: The patient file, relative to the course file, or the patient's facts inline.
    patient: _Text | dict[str, Any]
    products: Products
    #: BPI pain interference before the course (for RESP-05).
    baseline_bpi_interference: Annotated[float, Field(strict=True, ge=0, le=10)] | None = None
    sessions: tuple[CourseSession, ...] = Field(min_length=1, max_length=1000)
    follow_up: tuple[FollowUp, ...] = ()


@dataclass(frozen=True)
class LoadedCourse:
    file: str
    spec: CourseFile
    patient: PatientFacts
    patient_file: str | None
    positions: Positions | None = None

    def location(self, *parts: str | int) -> Location:
        if self.positions is not None:
            return self.positions.location(parts)
        return Location(file=self.file, path=json_path(parts))


def _input_errors(error: ValidationError, positions: Positions | None, source: str) -> InputErrors:
    found: list[InputError] = []
    items = error.errors(include_url=False)
    failed_paths = [tuple(item["loc"]) for item in items if item["type"] != "too_short"]
    for item in items:
        loc = tuple(item["loc"])
        # A list whose only items are invalid is also "too short": the items' errors say it.
        if item["type"] == "too_short" and any(p[: len(loc)] == loc for p in failed_paths):
            continue
        parts = tuple(part for part in item["loc"] if isinstance(part, str | int))
        # pydantic names the union member it tried (``str``, ``dict[str,any]``); drop it.
        parts = tuple(p for p in parts if not (isinstance(p, str) and ("[" in p or p == "str")))
        kind = item["type"]
        if kind == "missing":
            code, message = "missing_field", f"missing required field `{parts[-1]}`"
            at = parts[:-1]
        elif kind == "extra_forbidden":
            code, message, at = "unknown_field", f"unknown field `{parts[-1]}`", parts
        else:
            given = item.get("input")
            shown = f" `{given}`" if isinstance(given, str | int | float | bool) else ""
            text = str(item["msg"]).removeprefix("Value error, ")
            code, message, at = "invalid_value", f"invalid value{shown}: {text}", parts
        if positions is not None:
            location = positions.location(at, key=kind == "extra_forbidden")
            location = Location(location.file, location.line, location.column, json_path(parts))
        else:
            location = Location(file=source, path=json_path(parts))
        error_item = InputError(code, message, location)
        if all(str(error_item) != str(known) for known in found):
            found.append(error_item)
    found.sort(key=lambda e: (e.location.line or 0, e.location.column or 0))
    return InputErrors(found)


def _order_errors(spec: CourseFile, positions: Positions | None, source: str) -> list[InputError]:
    def at(parts: tuple[str | int, ...]) -> Location:
        if positions is not None:
            return positions.location(parts)
        return Location(file=source, path=json_path(parts))

    errors: list[InputError] = []
    for index, session in enumerate(spec.sessions):
        if session.number != index + 1:
            errors.append(
                InputError(
                    "invalid_value",
                    f"session {index + 1} of the file is numbered {session.number}: sessions "
                    "are listed in order from 1",
                    at(("sessions", index, "number")),
                )
            )
        if index:
            before = spec.sessions[index - 1]
            if session.day < before.day:
                errors.append(
                    InputError(
                        "invalid_value",
                        f"session {session.number} is on day {session.day}, before session "
                        f"{before.number} (day {before.day})",
                        at(("sessions", index, "day")),
                    )
                )
            if (
                session.started_at is not None
                and before.started_at is not None
                and session.started_at > before.started_at
                and (session.started_at.date() - before.started_at.date()).days
                != session.day - before.day
            ):
                errors.append(
                    InputError(
                        "invalid_value",
                        f"session {session.number} is on day {session.day}, "
                        f"{session.day - before.day} days after session {before.number}, but "
                        f"starts {(session.started_at.date() - before.started_at.date()).days} "
                        "calendar days after it",
                        at(("sessions", index, "day")),
                    )
                )
            if (
                session.started_at is not None
                and before.started_at is not None
                and session.started_at <= before.started_at
            ):
                errors.append(
                    InputError(
                        "invalid_value",
                        f"session {session.number} starts at {session.started_at.isoformat()}, "
                        f"not after session {before.number}",
                        at(("sessions", index, "started_at")),
                    )
                )
    return errors


def load_course(path: Path | str) -> LoadedCourse:
    """Read a course file and its patient; raise ``InputErrors`` naming every problem."""
    file = Path(path)
    source = str(path)
    try:
        text = read_utf8(file)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise InputErrors(
            [InputError("unreadable_file", f"cannot read `{source}`: {reason}", Location(source))]
        ) from None
    except CdsRulesError as error:
        raise InputErrors([InputError(error.code, error.message, error.location)]) from None
    positions: Positions | None
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputErrors(
                [
                    InputError(
                        "invalid_json",
                        f"not valid JSON: {error.msg}",
                        Location(source, error.lineno, error.colno),
                    )
                ]
            ) from None
        positions = None
    else:
        try:
            document = load_yaml_text(text, source)
        except CdsRulesError as error:
            members = getattr(error, "errors", None) or (error,)
            raise InputErrors(
                InputError(m.code, m.message, m.location, m.hint) for m in members
            ) from None
        data, positions = document.data, document.positions
    return parse_course(data, source, positions, file.parent)


def parse_course(
    data: object, source: str, positions: Positions | None, base_dir: Path
) -> LoadedCourse:
    """Validate parsed course data; ``patient`` paths are relative to ``base_dir``."""
    if not isinstance(data, dict):
        raise InputErrors(
            [InputError("invalid_value", "a course file is a mapping", Location(source, path="$"))]
        )
    try:
        spec = CourseFile.model_validate(data)
    except ValidationError as error:
        raise _input_errors(error, positions, source) from None
    errors = _order_errors(spec, positions, source)
    if errors:
        raise InputErrors(errors)
    if isinstance(spec.patient, str):
        patient = load_patient((base_dir / spec.patient).resolve())
        patient_file: str | None = os.path.normpath(base_dir / spec.patient)
    else:
        patient = parse_patient(spec.patient, f"{source} $.patient")
        patient_file = None
    return LoadedCourse(source, spec, patient, patient_file, positions)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class DrugDay:
    """One drug on one day: what was given, what the plan allowed, and the order check."""

    drug: Drug
    #: As charted (lidocaine mg/kg) or derived from mg or mL and the dosing weight.
    given_mg_per_kg: Decimal
    given_mg: Decimal
    given_ml: Decimal
    #: The plan the previous decision allowed; None when no session was planned.
    plan_mg_per_kg: Decimal | None
    plan_mg: Decimal | None
    plan_ml: Decimal | None
    versus_plan: Literal["as planned", "above plan", "below plan", "not planned"]
    check: DoseCheck | None
    notes: tuple[Note, ...]


@dataclass(frozen=True)
class Escalation:
    """Whether the dose rose from the previous session, and whether that was allowed."""

    escalated: tuple[Drug, ...]
    verdict: Literal["first session", "no escalation", "allowed", "not allowed", "not shown"]
    #: The rules that forbade it (or, ``not shown``, the data that were missing).
    against: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class NextDecision:
    """What the session decides for the next one."""

    action: CourseAction
    by_drug: dict[str, CourseAction]
    #: OK when nothing needs attention; else the most restrictive outcome found.
    status: Outcome
    escalation_ready: Literal["established", "not_established", "unknown"]
    #: Findings that act on the next session or need review.
    reasons: tuple[Finding, ...]
    missing: tuple[MissingData, ...]
    #: The course-file fields to record before the next session can be decided.
    to_record: tuple[str, ...]
    #: The next session's dose (None when the course stops).
    plan: DosePlan | None
    notes: tuple[Note, ...]


@dataclass(frozen=True)
class Response:
    baseline_vnrs: Decimal | None
    current_vnrs: Decimal | None
    decrease_points: Decimal | None
    decrease_percent: Decimal | None
    band: str | None
    rules: tuple[str, ...]


@dataclass(frozen=True)
class SessionReport:
    number: int
    day: int
    lidocaine: DrugDay
    ketamine: DrugDay
    escalation: Escalation
    vnrs_before: Decimal | None
    vnrs_after: Decimal | None
    response: Response
    adverse_events: tuple[AdverseEvent, ...] | None
    halts: tuple[Halt, ...] | None
    next: NextDecision
    evaluation: Evaluation


@dataclass(frozen=True)
class FollowUpReport:
    label: str
    weeks_after_course: Decimal
    response: Response
    evaluation: Evaluation


@dataclass(frozen=True)
class CourseReport(_JsonResult):
    course: str
    file: str
    patient_file: str | None
    products: dict[str, Decimal]
    weight: DosingWeight
    ruleset: RulesetRef
    dosing_table: str
    max_sessions: int
    sessions: tuple[SessionReport, ...]
    follow_up: tuple[FollowUpReport, ...]
    #: The most restrictive of every session's status and every deviation found.
    status: Outcome
    #: One line per deviation from the rules (dose above plan, escalation not allowed,
    #: an order over its maximum, a session after the course stopped).
    deviations: tuple[str, ...]

    @property
    def last(self) -> SessionReport:
        return self.sessions[-1]


def status_label(outcome: Outcome) -> str:
    """``OK`` for nothing to review, else the outcome's name."""
    return "OK" if outcome in (Outcome.INFO, Outcome.ELIGIBLE) else outcome.value


# ---------------------------------------------------------------------------------------------
# Arithmetic and records

_HUNDRED = Decimal(100)


def _floor(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), rounding=ROUND_FLOOR)


def _response(
    baseline: Decimal | None,
    current: Decimal | None,
    *,
    phase: Literal["course", "follow_up"],
    after_session: int | None,
    pgic: Pgic | None,
    bpi_decrease: Decimal | None,
) -> ResponseRecord:
    """RESP-01: decrease from baseline, in points and in percent of baseline (rounded down to
    0.01, so a response is never overstated). A baseline of 0 leaves the percent unknown."""
    points = percent = None
    if baseline is not None and current is not None:
        points = baseline - current
        if baseline > 0:
            percent = _floor(points * _HUNDRED / baseline, "0.01")
    return ResponseRecord(
        phase=phase,
        after_session=after_session,
        baseline_vnrs=_f(baseline),
        current_vnrs=_f(current),
        decrease_points=_f(points),
        decrease_percent=_f(percent),
        pgic=pgic,
        bpi_interference_decrease=_f(bpi_decrease),
    )


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _hours_between(before: CourseSession, session: CourseSession) -> float | None:
    """Hours between two session starts; 0 on the same day; unknown without both times."""
    if before.started_at is not None and session.started_at is not None:
        return (session.started_at - before.started_at).total_seconds() / 3600
    if session.day == before.day:
        return 0.0
    return None


# ---------------------------------------------------------------------------------------------
# The runner


class CourseRunner:
    """Evaluates courses against the course profile and the dosing table. Create once; reuse."""

    def __init__(
        self,
        profile: CompiledProfile,
        table: DosingTable,
        *,
        engine: Literal["durable", "reference"] = "durable",
        cross_check: bool = False,
    ) -> None:
        if profile.kind != "course":
            raise ValueError(f"profile `{profile.name}` is not a course profile")
        self.profile = profile
        self.table = table
        self.evaluators = tuple(
            Evaluator(r, engine=engine, cross_check=cross_check, terminology=profile.terminology)
            for r in profile.rulesets
        )

    # -- one evaluation ------------------------------------------------------------------

    def _evaluate(self, records: Sequence[Record], as_of: datetime) -> tuple[Evaluation, ...]:
        return tuple(e.evaluate_records(records, as_of) for e in self.evaluators)

    def _records(self, course: CourseFile, index: int, response: ResponseRecord) -> list[Record]:
        session = course.sessions[index]
        max_sessions = int(self.table.course.max_sessions.value)
        records: list[Record] = [
            CourseSessionRecord(
                number=session.number,
                sessions_remaining=max_sessions - session.number,
                first_session=index == 0,
                hours_since_previous=(
                    None if index == 0 else _hours_between(course.sessions[index - 1], session)
                ),
                delivered_percent=session.delivered_percent,
                max_poss=session.max_poss,
                min_rass=session.min_rass,
                gate_passed=session.gate_passed,
                adverse_events_recorded=session.adverse_events is not None,
                halts_recorded=session.halts is not None,
                course_events_recorded=session.course_events is not None,
            ),
            response,
        ]
        records += documented(
            AdverseEventRecord,
            session.adverse_events,
            lambda event: AdverseEventRecord(
                term=event.term,
                category=event.category,
                grade=event.grade,
                last_tier=event.last_tier,
                attributable=event.attributable,
            ),
        )
        records += documented(
            HaltRecord,
            session.halts,
            lambda halt: HaltRecord(
                rule=halt.rule,
                times=halt.times,
                resolved=halt.resolved,
                rapid_recovery=halt.rapid_recovery,
            ),
        )
        records += documented(
            CourseEventRecord,
            session.course_events,
            lambda event: CourseEventRecord(event=event),
        )
        return records

    # -- the whole course ------------------------------------------------------------------

    def run(self, loaded: LoadedCourse) -> CourseReport:
        course, facts, table = loaded.spec, loaded.patient, self.table
        lido_conc = course.products.lidocaine_mg_per_ml
        ket_conc = course.products.ketamine_mg_per_ml
        weight = dosing_weight(facts, table)
        # The first session's plan: the table's starting doses. It also checks the products.
        try:
            first_plan = plan_session(
                facts, 1, lidocaine_mg_per_ml=lido_conc, ketamine_mg_per_ml=ket_conc, table=table
            )
        except InputError as error:  # a concentration outside the products in use
            name = error.location.path or ""
            raise InputErrors(
                [
                    InputError(
                        error.code,
                        error.message.replace(f"`{name}`", f"`products.{name}`"),
                        loaded.location("products", name),
                    )
                ]
            ) from None
        baseline = _dec(course.sessions[0].vnrs.before)
        bpi_baseline = _dec(course.baseline_bpi_interference)
        max_sessions = int(table.course.max_sessions.value)
        reports: list[SessionReport] = []
        deviations: list[str] = []
        statuses: list[Outcome] = [weight.outcome]
        plan: DosePlan | None = first_plan
        previous: SessionReport | None = None
        stopped: dict[str, CourseAction] = {}
        for index, session in enumerate(course.sessions):
            lido = self._lidocaine_day(facts, session, weight, plan, lido_conc)
            ket = self._ketamine_day(
                facts, session, weight, None if "ketamine" in stopped else plan, ket_conc
            )
            escalation = _escalation(session, previous, lido, ket)
            # The response so far is the score after the session; a missing one is unknown
            # (the score before is not put in its place).
            current = _dec(session.vnrs.after)
            bpi = _dec(session.bpi_interference)
            response_record = _response(
                baseline,
                current,
                phase="course",
                after_session=session.number,
                pgic=session.pgic,
                bpi_decrease=None if bpi is None or bpi_baseline is None else bpi_baseline - bpi,
            )
            evaluations = self._evaluate(self._records(course, index, response_record), facts.as_of)
            evaluation = evaluations[0]
            decision = self._decide(
                evaluations, facts, session, lido, ket, stopped, lido_conc, ket_conc
            )
            for drug, action in decision.by_drug.items():
                if action in (CourseAction.DISCONTINUE_COURSE, CourseAction.COURSE_COMPLETE):
                    stopped.setdefault(drug, action)
            report = SessionReport(
                number=session.number,
                day=session.day,
                lidocaine=lido,
                ketamine=ket,
                escalation=escalation,
                vnrs_before=_dec(session.vnrs.before),
                vnrs_after=_dec(session.vnrs.after),
                response=_response_summary(response_record, evaluations),
                adverse_events=session.adverse_events,
                halts=session.halts,
                next=decision,
                evaluation=evaluation,
            )
            reports.append(report)
            statuses.append(decision.status)
            deviations.extend(_deviations(report))
            plan = decision.plan
            previous = report
        follow_ups = []
        for item in course.follow_up:
            bpi = _dec(item.bpi_interference)
            record = _response(
                baseline,
                _dec(item.vnrs),
                phase="follow_up",
                after_session=None,
                pgic=item.pgic,
                bpi_decrease=None if bpi is None or bpi_baseline is None else bpi_baseline - bpi,
            )
            evaluations = self._evaluate([record], facts.as_of)
            follow_ups.append(
                FollowUpReport(
                    label=item.label,
                    weeks_after_course=Decimal(str(item.weeks_after_course)),
                    response=_response_summary(record, evaluations),
                    evaluation=evaluations[0],
                )
            )
        if deviations:
            statuses.append(Outcome.NEEDS_REVIEW)
        status = max(statuses, key=lambda o: o.severity)
        if status == Outcome.ELIGIBLE:
            status = Outcome.INFO
        return CourseReport(
            course=course.course,
            file=loaded.file,
            patient_file=loaded.patient_file,
            products={
                "lidocaine_mg_per_ml": Decimal(str(lido_conc)),
                "ketamine_mg_per_ml": Decimal(str(ket_conc)),
            },
            weight=weight,
            ruleset=self.profile.protocol,
            dosing_table=table.version,
            max_sessions=max_sessions,
            sessions=tuple(reports),
            follow_up=tuple(follow_ups),
            status=status,
            deviations=tuple(deviations),
        )

    # -- doses given -----------------------------------------------------------------------

    def _tolerance(self) -> Decimal:
        return self.table.course.record_tolerance_percent.d / _HUNDRED

    def _lidocaine_day(
        self,
        facts: PatientFacts,
        session: CourseSession,
        weight: DosingWeight,
        plan: DosePlan | None,
        concentration: float,
    ) -> DrugDay:
        given = session.lidocaine
        conc = Decimal(str(concentration))
        kg = weight.dosing_kg
        notes: list[Note] = []
        stated = _dec(given.mg_per_kg)
        # What was drawn up: mL at the product's concentration, else the mg, else mg/kg x kg.
        # When the record disagrees, the larger dose is the one checked.
        candidates = []
        if given.ml is not None:
            candidates.append(_dec(given.ml) * conc)  # type: ignore[operator]
        if given.mg is not None:
            candidates.append(Decimal(str(given.mg)))
        if not candidates and stated is not None and kg is not None:
            candidates.append(stated * kg)
        mg = max(candidates) if candidates else Decimal(0)
        ml = _dec(given.ml) if given.ml is not None else _floor(mg / conc, "0.01")
        derived = _floor(mg / kg, "0.001") if kg else None
        per_kg = max(
            (value for value in (stated, derived) if value is not None), default=Decimal(0)
        )
        tolerance = self._tolerance()
        if given.mg is not None and given.ml is not None:
            charted = Decimal(str(given.mg))
            if abs(charted - mg) > tolerance * charted:
                notes.append(_record_note("lidocaine", f"{fmt(charted)} mg", mg, given.ml, conc))
        if (
            stated is not None
            and derived is not None
            and (given.ml or given.mg)
            and abs(derived - stated) > tolerance * stated
        ):
            notes.append(
                Note(
                    self.table.course.rule,
                    Outcome.NEEDS_REVIEW,
                    f"session {session.number}: lidocaine charted as {fmt(stated)} mg/kg but "
                    f"{fmt(mg)} mg is {fmt(derived)} mg/kg of {fmt(kg)} kg (over "  # type: ignore[arg-type]
                    f"{fmt(self.table.course.record_tolerance_percent.d)}% apart): check the "
                    "record",
                    "record",
                )
            )
        check = check_order(facts, "lidocaine", float(mg), table=self.table) if mg > 0 else None
        planned = plan.lidocaine if plan is not None else None
        return DrugDay(
            drug="lidocaine",
            given_mg_per_kg=per_kg,
            given_mg=mg,
            given_ml=ml,  # type: ignore[arg-type]
            plan_mg_per_kg=planned.mg_per_kg if planned else None,
            plan_mg=planned.mg if planned else None,
            plan_ml=planned.ml if planned else None,
            # A capped plan is its mg (500 mg), not its nominal mg/kg.
            versus_plan=(
                _versus(mg, planned.mg, plan)
                if planned is not None and planned.capped
                else _versus(per_kg, planned.mg_per_kg if planned else None, plan)
            ),
            check=check,
            notes=tuple(notes),
        )

    def _ketamine_day(
        self,
        facts: PatientFacts,
        session: CourseSession,
        weight: DosingWeight,
        plan: DosePlan | None,
        concentration: float,
    ) -> DrugDay:
        given = session.ketamine
        conc = Decimal(str(concentration))
        notes: list[Note] = []
        if given.mg is not None:
            mg = Decimal(str(given.mg))
            if given.ml is not None:
                from_ml = Decimal(str(given.ml)) * conc
                if abs(from_ml - mg) > self._tolerance() * max(mg, from_ml):
                    notes.append(_record_note("ketamine", f"{fmt(mg)} mg", from_ml, given.ml, conc))
                # When the record disagrees, the larger dose is the one checked.
                mg = max(mg, from_ml)
        else:
            mg = Decimal(str(given.ml)) * conc
        ml = Decimal(str(given.ml)) if given.ml is not None else _floor(mg / conc, "0.01")
        actual = weight.actual_kg
        # Shown as the reference shows it (10 mg / 85 kg = 0.118); the order check is exact.
        per_kg = _round(mg / actual, "0.001") if actual else Decimal(0)
        check = check_order(facts, "ketamine", float(mg), table=self.table) if mg > 0 else None
        if plan is None:
            plan_mg: Decimal | None = None
            plan_ml = plan_per_kg = None
        elif plan.ketamine is None:
            plan_mg, plan_ml, plan_per_kg = Decimal(0), Decimal(0), Decimal(0)
        else:
            plan_mg, plan_ml = plan.ketamine.mg, plan.ketamine.ml
            plan_per_kg = plan.ketamine.mg_per_kg
        return DrugDay(
            drug="ketamine",
            given_mg_per_kg=per_kg,
            given_mg=mg,
            given_ml=ml,
            plan_mg_per_kg=plan_per_kg,
            plan_mg=plan_mg,
            plan_ml=plan_ml,
            versus_plan=_versus(mg, plan_mg, plan),
            check=check,
            notes=tuple(notes),
        )

    # -- the next session ------------------------------------------------------------------

    def _decide(
        self,
        evaluations: Sequence[Evaluation],
        facts: PatientFacts,
        session: CourseSession,
        lido: DrugDay,
        ket: DrugDay,
        stopped: dict[str, CourseAction],
        lido_conc: float,
        ket_conc: float,
    ) -> NextDecision:
        findings = [f for e in evaluations for f in e.findings]
        missing = tuple(m for e in evaluations for m in e.missing if m.outcome is not None)
        derived = {d.fact for e in evaluations for d in e.derived}
        ready_rule_open = any(m.rule_id == "ESC-01" for e in evaluations for m in e.missing)
        if "escalation_ready" in derived:
            ready: Literal["established", "not_established", "unknown"] = "established"
        elif ready_rule_open:
            ready = "unknown"
        else:
            ready = "not_established"
        acting = [f for f in findings if f.kind == "rule" and f.action is not None]
        # No dose can be computed without a weight: nothing escalates (DOSE-LID-02).
        weight_known = facts.demographics.weight_kg is not None
        status = max(
            (f.outcome for f in findings if f.outcome != Outcome.INFO),
            key=lambda o: o.severity,
            default=Outcome.INFO,
        )
        by_drug: dict[str, CourseAction] = {}
        cuts: dict[str, Decimal] = {}
        for drug in DRUGS:
            if drug in stopped:
                by_drug[drug] = stopped[drug]
                continue
            mine = [f for f in acting if not f.drugs or drug in f.drugs]
            actions = [f.action.action for f in mine if f.action is not None]
            if actions:
                by_drug[drug] = max(actions, key=lambda a: a.rank)
            elif ready == "established" and not missing and weight_known:
                by_drug[drug] = CourseAction.ESCALATE
            else:
                by_drug[drug] = CourseAction.HOLD_DOSE
            amounts = [
                Decimal(
                    str(
                        f.action.lidocaine_mg_per_kg
                        if drug == "lidocaine"
                        else f.action.ketamine_mg
                    )
                )
                for f in mine
                if f.action is not None and f.action.next == "DEESCALATE"
            ]
            if amounts:
                cuts[drug] = min(amounts)
        overall = max(by_drug.values(), key=lambda a: a.rank)
        reasons = tuple(
            f
            for f in findings
            if f.kind == "rule" and (f.action is not None or f.outcome != Outcome.INFO)
        )
        plan, notes = self._next_plan(facts, session, lido, ket, by_drug, cuts, lido_conc, ket_conc)
        for outcome in [plan.outcome] if plan is not None else []:
            status = max(status, outcome, key=lambda o: o.severity)
        for note in notes:
            status = max(status, note.outcome, key=lambda o: o.severity)
        if status == Outcome.ELIGIBLE:
            status = Outcome.INFO
        return NextDecision(
            action=overall,
            by_drug=by_drug,
            status=status,
            escalation_ready=ready,
            reasons=reasons,
            missing=missing,
            to_record=_to_record(session, missing),
            plan=plan,
            notes=tuple(notes),
        )

    def _next_plan(
        self,
        facts: PatientFacts,
        session: CourseSession,
        lido: DrugDay,
        ket: DrugDay,
        by_drug: dict[str, CourseAction],
        cuts: dict[str, Decimal],
        lido_conc: float,
        ket_conc: float,
    ) -> tuple[DosePlan | None, list[Note]]:
        """The next session's doses: the decision applied to the doses just given."""
        table = self.table
        spec = table.lidocaine
        notes: list[Note] = []
        lido_action = by_drug["lidocaine"]
        if lido_action.rank >= CourseAction.COURSE_COMPLETE.rank:
            return None, notes
        number = session.number + 1
        base = lido.given_mg_per_kg
        if lido_action == CourseAction.ESCALATE:
            mg_per_kg = base + spec.step_mg_per_kg.d
        elif lido_action == CourseAction.DEESCALATE:
            # Never below the floor, and never above the dose just given.
            mg_per_kg = min(
                base, max(base + cuts["lidocaine"], spec.deescalation_floor_mg_per_kg.d)
            )
            if base + cuts["lidocaine"] < spec.deescalation_floor_mg_per_kg.d:
                notes.append(
                    Note(
                        spec.rule,
                        Outcome.INFO,
                        f"lidocaine {fmt(base)} {fmt(cuts['lidocaine'])} mg/kg would be under the "
                        f"{fmt(spec.deescalation_floor_mg_per_kg.d)} mg/kg floor: "
                        f"{fmt(mg_per_kg)} mg/kg",
                        "floor",
                    )
                )
        else:
            mg_per_kg = base
        if mg_per_kg > spec.max_mg_per_kg.d:
            notes.append(
                Note(
                    spec.rule,
                    Outcome.INFO,
                    f"lidocaine {fmt(mg_per_kg)} mg/kg would be over the "
                    f"{fmt(spec.max_mg_per_kg.d)} mg/kg maximum: the dose stays at "
                    f"{fmt(spec.max_mg_per_kg.d)} mg/kg",
                    "cap",
                )
            )
            mg_per_kg = spec.max_mg_per_kg.d
        ket_mg = self._next_ketamine(ket, number, by_drug["ketamine"], cuts, facts, notes)
        actual = _dec(facts.demographics.weight_kg)
        if actual is not None and ket_mg > 0:
            low, _ = _ketamine_limits(actual, table)
            if ket_mg < low:
                notes.append(
                    Note(
                        table.ketamine.rule,
                        Outcome.NEEDS_REVIEW,
                        f"ketamine {fmt(ket_mg)} mg is under {fmt(table.ketamine.min_mg_per_kg.d)} "
                        f"mg/kg of {fmt(actual)} kg ({fmt(low)} mg): review the dose",
                        "range",
                    )
                )
        plan = plan_session(
            facts,
            number,
            lidocaine_mg_per_ml=lido_conc,
            ketamine_mg_per_ml=ket_conc,
            table=table,
            lidocaine_mg_per_kg=mg_per_kg,
            ketamine_mg=ket_mg,
        )
        return plan, notes

    def _next_ketamine(
        self,
        ket: DrugDay,
        number: int,
        action: CourseAction,
        cuts: dict[str, Decimal],
        facts: PatientFacts,
        notes: list[Note],
    ) -> Decimal:
        kspec = self.table.ketamine
        actual = _dec(facts.demographics.weight_kg)
        if action.rank >= CourseAction.COURSE_COMPLETE.rank or actual is None:
            return Decimal(0)
        low, high = _ketamine_limits(actual, self.table)
        base = ket.given_mg
        if base == 0:
            if number < kspec.first_session.value:
                return Decimal(0)
            if action != CourseAction.ESCALATE and kspec.start_is_escalation.value:
                notes.append(
                    Note(
                        kspec.rule,
                        Outcome.INFO,
                        f"ketamine is not started: starting it is an escalation and the next "
                        f"session is {action.value}",
                        "start",
                    )
                )
                return Decimal(0)
            if action == CourseAction.DEESCALATE:
                return Decimal(0)
            return min(kspec.start_mg.d, high)
        if action == CourseAction.ESCALATE:
            wanted = base + kspec.step_mg.d
            if wanted > high:
                notes.append(
                    Note(
                        kspec.cap_rule,
                        Outcome.INFO,
                        f"ketamine {fmt(wanted)} mg would be over {fmt(kspec.max_mg_per_kg.d)} "
                        f"mg/kg of actual weight ({fmt(high)} mg): the dose holds at "
                        f"{fmt(min(base, high))} mg",
                        "range",
                    )
                )
                return min(base, high)
            return wanted
        if action == CourseAction.DEESCALATE:
            lowered = base + cuts["ketamine"]
            if lowered < low:
                notes.append(
                    Note(
                        kspec.rule,
                        Outcome.INFO,
                        f"ketamine {fmt(base)} {fmt(cuts['ketamine'])} mg would be under "
                        f"{fmt(kspec.min_mg_per_kg.d)} mg/kg ({fmt(low)} mg): ketamine is omitted",
                        "range",
                    )
                )
                return Decimal(0)
            return min(lowered, high)
        if base > high:
            notes.append(
                Note(
                    kspec.cap_rule,
                    Outcome.INFO,
                    f"ketamine {fmt(base)} mg was over {fmt(kspec.max_mg_per_kg.d)} mg/kg of "
                    f"actual weight: the held dose is the maximum, {fmt(high)} mg",
                    "range",
                )
            )
            return high
        return base


def _record_note(
    drug: str, charted: str, from_ml: Decimal, ml: float | None, conc: Decimal
) -> Note:
    return Note(
        "SES-MAX",
        Outcome.NEEDS_REVIEW,
        f"{drug} charted as {charted} but {fmt(Decimal(str(ml)))} mL at {fmt(conc)} mg/mL is "
        f"{fmt(from_ml)} mg: check the record",
        "record",
    )


def _versus(
    given: Decimal, planned: Decimal | None, plan: DosePlan | None
) -> Literal["as planned", "above plan", "below plan", "not planned"]:
    if plan is None or planned is None:
        return "not planned"
    if given > planned:
        return "above plan"
    if given < planned:
        return "below plan"
    return "as planned"


def _escalation(
    session: CourseSession, previous: SessionReport | None, lido: DrugDay, ket: DrugDay
) -> Escalation:
    if previous is None:
        return Escalation((), "first session", (), "first session: the table's starting doses")
    rose: list[Drug] = []
    if lido.given_mg_per_kg > previous.lidocaine.given_mg_per_kg:
        rose.append("lidocaine")
    if ket.given_mg > previous.ketamine.given_mg:
        rose.append("ketamine")
    if not rose:
        return Escalation((), "no escalation", (), "no dose rose")
    decision = previous.next
    forbidden = [drug for drug in rose if decision.by_drug[drug] != CourseAction.ESCALATE]
    if not forbidden:
        return Escalation(
            tuple(rose), "allowed", (), f"{' and '.join(rose)} escalated as ESC-01 allowed"
        )
    against = tuple(
        dict.fromkeys(
            f.rule_id
            for f in decision.reasons
            if f.action is not None
            and f.action.action != CourseAction.ESCALATE
            and (not f.drugs or any(d in f.drugs for d in forbidden))
        )
    )
    if against:
        return Escalation(
            tuple(rose),
            "not allowed",
            against,
            f"{' and '.join(forbidden)} escalated after session {previous.number}, against "
            + ", ".join(against),
        )
    if decision.missing or decision.escalation_ready == "unknown":
        return Escalation(
            tuple(rose),
            "not shown",
            decision.to_record,
            f"{' and '.join(forbidden)} escalated, but session {previous.number}'s record cannot "
            "show ESC-01 was met (not recorded: " + ", ".join(decision.to_record) + ")",
        )
    return Escalation(
        tuple(rose),
        "not allowed",
        ("ESC-01",),
        f"{' and '.join(forbidden)} escalated after session {previous.number}, whose ESC-01 "
        "criteria were not met",
    )


#: Record fields as the course file names them, for "what to record" lines.
_FILE_FIELDS = {
    "course_session.delivered_percent": "delivered_percent",
    "course_session.max_poss": "max_poss",
    "course_session.min_rass": "min_rass",
    "course_session.gate_passed": "gate_passed",
    "course_session.hours_since_previous": "started_at (this session and the previous)",
    "response.baseline_vnrs": "vnrs.before of session 1",
    "response.current_vnrs": "vnrs",
    "response.decrease_points": "vnrs",
    "response.decrease_percent": "vnrs",
    "response.after_session": "vnrs",
}


def _to_record(session: CourseSession, missing: Sequence[MissingData]) -> tuple[str, ...]:
    """The course-file fields to record so the next session can be decided."""
    names: list[str] = []
    lists = {
        "adverse_event": ("adverse_events", session.adverse_events),
        "halt": ("halts", session.halts),
        "course_event": ("course_events", session.course_events),
    }
    for path in (p for m in missing for p in m.paths):
        kind, _, field = path.partition(".")
        if kind in lists:
            name, items = lists[kind]
            if items is None:
                found = [name]
            else:
                found = [
                    f"{name}[{i}].{field}"
                    for i, item in enumerate(items)
                    if getattr(item, field, None) is None
                ] or [name]
        else:
            found = [_FILE_FIELDS.get(path, path)]
        names.extend(n for n in found if n not in names)
    return tuple(names)


def _response_summary(record: ResponseRecord, evaluations: Sequence[Evaluation]) -> Response:
    bands = [
        d.values.get("band") for e in evaluations for d in e.derived if d.fact == "response_band"
    ]
    rules = tuple(
        f.rule_id for e in evaluations for f in e.findings if f.rule_id.startswith("RESP-")
    )
    return Response(
        baseline_vnrs=_dec(record.baseline_vnrs),
        current_vnrs=_dec(record.current_vnrs),
        decrease_points=_dec(record.decrease_points),
        decrease_percent=_dec(record.decrease_percent),
        band=str(bands[0]) if bands else None,
        rules=rules,
    )


def _deviations(report: SessionReport) -> list[str]:
    """What the session did against the rules, one line each."""
    found: list[str] = []
    n = report.number
    escalation = report.escalation
    for day in (report.lidocaine, report.ketamine):
        unit = "mg/kg" if day.drug == "lidocaine" else "mg"
        given = day.given_mg_per_kg if day.drug == "lidocaine" else day.given_mg
        planned = day.plan_mg_per_kg if day.drug == "lidocaine" else day.plan_mg
        if day.versus_plan == "above plan" and planned is not None:
            why = ""
            if day.drug in escalation.escalated and escalation.verdict == "not allowed":
                why = f": escalated against {', '.join(escalation.against)}"
            elif day.drug in escalation.escalated and escalation.verdict == "not shown":
                why = ": escalated without a record showing ESC-01 was met"
            found.append(
                f"session {n}: {day.drug} {fmt(given)} {unit} is above the plan of "
                f"{fmt(planned)} {unit}{why}"
            )
        if day.versus_plan == "not planned" and given > 0:
            found.append(f"session {n}: {day.drug} was given after it was stopped for the course")
        if day.check is not None and day.check.decision == "REJECT":
            found.extend(
                f"session {n}: {note.message} ({note.rule})"
                for note in day.check.notes
                if note.about == "order"
            )
        found.extend(f"{note.message} ({note.rule})" for note in day.notes)
    return found


def response_thresholds(profile: CompiledProfile) -> list[tuple[str, Decimal]]:
    """The response bands' lower limits as the course rules state them: ``(band, percent)``
    for each rule that asserts ``response_band`` with a ``decrease_percent >= X`` test (the
    chart draws them; no threshold is restated here)."""
    found: list[tuple[str, Decimal]] = []
    for ruleset in profile.rulesets:
        for rule in ruleset.rules:
            if rule.asserts is None or rule.asserts.fact != "response_band":
                continue
            band = dict(rule.asserts.values).get("band")
            for leaf in rule.leaves:
                if (
                    leaf.field.name == "decrease_percent"
                    and leaf.operator == "gte"
                    and isinstance(leaf.value, int | float)
                    and leaf.value > 0
                ):
                    found.append((str(band), Decimal(str(leaf.value))))
    return sorted(set(found), key=lambda item: item[1])
