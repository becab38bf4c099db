"""The events of one infusion session, and the monitoring table.

A session is a stream of timestamped events, one JSON object per line::

    {"type": "start", "at": "...", "session": "S1", "planned": {...}, "baseline": {...}}
    {"type": "vitals", "at": "...", "sbp": 124, "dbp": 78, "hr": 82, "spo2": 98, "rr": 14}
    {"type": "sedation", "at": "...", "poss": 2}
    {"type": "symptoms", "at": "...", "present": [{"sign": "metallic_taste"}]}
    {"type": "ecg", "at": "...", "finding": "qrs_measured", "qrs_ms": 104}
    {"type": "staff", "at": "...", "action": "pause", "drug": "lidocaine"}
    {"type": "baseline", "at": "...", "measured_at": "...", "qrs_ms": 96}  (a late baseline)
    {"type": "now", "at": "..."}
    {"type": "end", "at": "...", "delivered_percent": {"lidocaine": 100, "ketamine": 100}}
    {"type": "discharge", "at": "..."}              (after the observation events)

Each event is validated on its own (a SpO2 of 140 is an error naming ``spo2``) and against the
session so far (an event dated before the session start, or before the previous event, is an
error naming ``at``). Nothing is defaulted: a field that is not given is not known.

A symptom check (``symptoms``) lists every sign present now; ``present: []`` records that the
patient was asked and has none. A sign present at one check and not listed at the next has
resolved. Sign names come from the monitoring table (``rulesets/monitoring.yaml``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .dosing import DRUGS, Drug, Parameter
from .errors import InputError, InputErrors, Location, RulesetError, RulesetErrors
from .facts import _AwareDateTime
from .loader import did_you_mean
from .records import AdverseEventCategory
from .spec import Evidence, SourceSpec
from .terminology import _load, _Table

__all__ = [
    "DRUGS",
    "EVENT_TYPES",
    "AnyEvent",
    "BaselineEvent",
    "DischargeEvent",
    "Drug",
    "EcgEvent",
    "EndEvent",
    "Event",
    "MonitoringTable",
    "NowEvent",
    "SedationEvent",
    "StaffEvent",
    "StartEvent",
    "SymptomsEvent",
    "VitalsEvent",
    "check_sequence",
    "event_to_json",
    "load_monitoring_table",
    "parse_event",
    "parse_event_line",
]


# ---------------------------------------------------------------------------------------------
# The monitoring table


class RunSpec(_Table):
    """How a sustained run is measured: readings of ``vital`` past one threshold."""

    rule: str
    vital: Literal["spo2", "hr"]
    at_or_below: Parameter | None = None
    above: Parameter | None = None

    @model_validator(mode="after")
    def _one_threshold(self) -> RunSpec:
        if (self.at_or_below is None) == (self.above is None):
            raise ValueError("a run has exactly one of `at_or_below` and `above`")
        return self

    def past(self, value: float) -> bool:
        if self.at_or_below is not None:
            return value <= self.at_or_below.value
        assert self.above is not None
        return value > self.above.value


class RunsSpec(_Table):
    spo2_low: RunSpec
    hr_high: RunSpec


class ObservationSpec(_Table):
    routine_minutes: Parameter
    routine_rule: str
    discharge_rule: str
    discharge: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    discharge_sources: list[str] = Field(min_length=1)
    discharge_evidence: Evidence


class LipidSpec(_Table):
    rule: str
    title: str
    bolus_over: str
    infusion_over: str
    heavier_than_kg: Parameter
    heavy_bolus_ml: Parameter
    heavy_infusion_ml_low: Parameter
    heavy_infusion_ml_high: Parameter
    light_bolus_ml_per_kg: Parameter
    light_infusion_ml_per_kg_per_min: Parameter
    max_ml_per_kg: Parameter


SignCategory = Literal[
    "last_sign", "psychomimetic", "nausea", "vomiting", "allergic", "hypertensive", "other"
]


class SignSpec(_Table):
    title: str
    category: SignCategory
    #: Counts as "with symptoms" for HALT-SBP-03 and HALT-HR-02-STOP.
    symptomatic: bool
    adverse_event: AdverseEventCategory
    last_tier: Annotated[int, Field(ge=0, le=3)]
    sources: list[str] = Field(min_length=1)
    evidence: Evidence


EcgFinding = Literal[
    "new_av_block", "ventricular_ectopy_run", "vt_vf", "new_af", "qrs_measured", "other"
]


class EcgFindingSpec(_Table):
    term: str
    adverse_event: AdverseEventCategory
    last_tier: Annotated[int, Field(ge=0, le=3)]
    when_rule: str | None = None
    sources: list[str] = Field(min_length=1)
    evidence: Evidence


class MonitoringTable(_Table):
    table: Annotated[str, Field(pattern=r"^monitoring$")]
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    title: str
    sources: dict[str, SourceSpec] = Field(min_length=1)
    runs: RunsSpec
    observation: ObservationSpec
    lipid_rescue: LipidSpec
    signs: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], SignSpec] = Field(min_length=1)
    ecg_findings: dict[EcgFinding, EcgFindingSpec]


def load_monitoring_table(path: Path | str) -> MonitoringTable:
    """Read and check ``monitoring.yaml``; raise ``RulesetErrors`` with every problem."""
    spec, positions, _ = _load(path, MonitoringTable)
    assert isinstance(spec, MonitoringTable)
    cited: list[tuple[tuple[str | int, ...], list[str]]] = []
    for name in ("spo2_low", "hr_high"):
        run: RunSpec = getattr(spec.runs, name)
        for key in ("at_or_below", "above"):
            item = getattr(run, key)
            if item is not None:
                cited.append((("runs", name, key, "sources"), item.sources))
    for name in type(spec.lipid_rescue).model_fields:
        item = getattr(spec.lipid_rescue, name)
        if isinstance(item, Parameter):
            cited.append((("lipid_rescue", name, "sources"), item.sources))
    routine = spec.observation.routine_minutes
    cited.append((("observation", "routine_minutes", "sources"), routine.sources))
    cited.append((("observation", "discharge_sources"), spec.observation.discharge_sources))
    for name, sign in spec.signs.items():
        cited.append((("signs", name, "sources"), sign.sources))
    for finding, entry in spec.ecg_findings.items():
        cited.append((("ecg_findings", finding, "sources"), entry.sources))
    errors: list[RulesetError] = []
    for where, sources in cited:
        for index, source in enumerate(sources):
            if source not in spec.sources:
                errors.append(
                    positions.error(
                        "unknown_source",
                        f"unknown source `{source}`",
                        (*where, index),
                        did_you_mean(source, spec.sources),
                    )
                )
    if errors:
        raise RulesetErrors(errors)
    return spec


# ---------------------------------------------------------------------------------------------
# Events


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    at: _AwareDateTime
    note: Annotated[str, Field(strict=True, min_length=1, max_length=500)] | None = None


_Sbp = Annotated[float, Field(strict=True, ge=30, le=300)]
_Dbp = Annotated[float, Field(strict=True, ge=10, le=250)]
_Hr = Annotated[float, Field(strict=True, ge=0, le=300)]
_Spo2 = Annotated[float, Field(strict=True, ge=0, le=100)]
_Rr = Annotated[float, Field(strict=True, ge=0, le=80)]
_Poss = Annotated[int, Field(strict=True, ge=1, le=4)]
_Rass = Annotated[int, Field(strict=True, ge=-5, le=4)]
_Qrs = Annotated[float, Field(strict=True, ge=40, le=400)]
_Percent = Annotated[float, Field(strict=True, ge=0, le=100)]
_Vnrs = Annotated[float, Field(strict=True, ge=0, le=10)]


def _one_scale(poss: int | None, rass: int | None) -> None:
    if (poss is None) == (rass is None):
        raise ValueError("give the sedation score as exactly one of `poss` and `rass`")


class Baseline(BaseModel):
    """Vital signs and sedation immediately before the start (PRE-07). Every key is required;
    ``null`` records "not measured", and the rules that need it then cannot let the drugs run
    (they pause until it is recorded). Sedation is ``poss`` or ``rass`` (one key, may be null)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sbp: _Sbp | None
    dbp: _Dbp | None
    hr: _Hr | None
    spo2: _Spo2 | None
    rr: _Rr | None
    poss: _Poss | None = None
    rass: _Rass | None = None
    #: Baseline QRS duration, for HALT-ECG-01 (QRS widening).
    qrs_ms: _Qrs | None = None

    @model_validator(mode="after")
    def _scale(self) -> Baseline:
        given = {"poss", "rass"} & self.model_fields_set
        if len(given) != 1:
            raise ValueError(
                "give the baseline sedation score as exactly one of `poss` and `rass` "
                "(`null` if it was not scored)"
            )
        if (self.sbp is None) != (self.dbp is None):
            raise ValueError("a blood pressure gives both `sbp` and `dbp` (or neither)")
        return self


class Planned(BaseModel):
    """The doses planned for this session, in mg (0: the drug is not given today)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lidocaine_mg: Annotated[float, Field(strict=True, ge=0, le=100_000)]
    ketamine_mg: Annotated[float, Field(strict=True, ge=0, le=100_000)]
    minutes: Annotated[float, Field(strict=True, gt=0, le=1440)] | None = None

    @model_validator(mode="after")
    def _something(self) -> Planned:
        if self.lidocaine_mg == 0 and self.ketamine_mg == 0:
            raise ValueError("a session plans lidocaine, ketamine or both")
        return self

    def drugs(self) -> tuple[Drug, ...]:
        return tuple(d for d in DRUGS if getattr(self, f"{d}_mg") > 0)


class StartEvent(_Event):
    type: Literal["start"]
    session: Annotated[str, Field(strict=True, min_length=1, max_length=200)]
    #: The session's place in the course, when known.
    number: Annotated[int, Field(strict=True, ge=1, le=1000)] | None = None
    day: Annotated[int, Field(strict=True, ge=1, le=10_000)] | None = None
    #: For the lipid emulsion doses of a tier-3 LAST alert; never assumed.
    weight_kg: Annotated[float, Field(strict=True, gt=0, le=400)] | None = None
    ideal_body_weight_kg: Annotated[float, Field(strict=True, gt=0, le=400)] | None = None
    planned: Planned
    baseline: Baseline
    #: The pre-session gate's decision was PROCEED.
    gate_passed: Annotated[bool, Field(strict=True)] | None = None
    vnrs_before: _Vnrs | None = None


class VitalsEvent(_Event):
    type: Literal["vitals"]
    sbp: _Sbp | None = None
    dbp: _Dbp | None = None
    hr: _Hr | None = None
    spo2: _Spo2 | None = None
    rr: _Rr | None = None

    @model_validator(mode="after")
    def _something(self) -> VitalsEvent:
        if all(getattr(self, v) is None for v in ("sbp", "dbp", "hr", "spo2", "rr")):
            raise ValueError("a vitals event gives at least one of sbp, dbp, hr, spo2, rr")
        if (self.sbp is None) != (self.dbp is None):
            raise ValueError("a blood pressure gives both `sbp` and `dbp`")
        if self.sbp is not None and self.dbp is not None and self.dbp >= self.sbp:
            raise ValueError(f"`dbp` {self.dbp:g} is not under `sbp` {self.sbp:g}")
        return self


class BaselineEvent(_Event):
    """A baseline value ``null`` in ``start`` because it was not at hand, recorded now (e.g.
    the pre-infusion ECG found in the notes): the rules that waited for it can be decided.
    ``measured_at`` must be at or before the start: a value measured during the infusion is
    not a baseline. A baseline already recorded cannot be changed."""

    type: Literal["baseline"]
    measured_at: _AwareDateTime
    sbp: _Sbp | None = None
    dbp: _Dbp | None = None
    hr: _Hr | None = None
    spo2: _Spo2 | None = None
    rr: _Rr | None = None
    qrs_ms: _Qrs | None = None

    @model_validator(mode="after")
    def _something(self) -> BaselineEvent:
        if all(getattr(self, v) is None for v in BASELINE_FIELDS):
            raise ValueError(f"a baseline event gives at least one of {', '.join(BASELINE_FIELDS)}")
        if (self.sbp is None) != (self.dbp is None):
            raise ValueError("a blood pressure gives both `sbp` and `dbp`")
        return self


BASELINE_FIELDS = ("sbp", "dbp", "hr", "spo2", "rr", "qrs_ms")


class SedationEvent(_Event):
    type: Literal["sedation"]
    poss: _Poss | None = None
    rass: _Rass | None = None

    @model_validator(mode="after")
    def _scale(self) -> SedationEvent:
        _one_scale(self.poss, self.rass)
        return self


class SignReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sign: Annotated[str, Field(strict=True, min_length=1, max_length=100)]
    #: CTCAE v5 grade (required for psychomimetic effects).
    grade: Annotated[int, Field(strict=True, ge=1, le=5)] | None = None


class SymptomsEvent(_Event):
    type: Literal["symptoms"]
    #: Every sign present now; ``[]``: asked, none.
    present: tuple[SignReport, ...]

    @model_validator(mode="after")
    def _unique(self) -> SymptomsEvent:
        names = [s.sign for s in self.present]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"sign `{doubled[0]}` is listed twice")
        return self


class EcgEvent(_Event):
    type: Literal["ecg"]
    finding: EcgFinding
    qrs_ms: _Qrs | None = None

    @model_validator(mode="after")
    def _qrs(self) -> EcgEvent:
        if self.finding == "qrs_measured" and self.qrs_ms is None:
            raise ValueError("a `qrs_measured` ECG event gives `qrs_ms`")
        return self


class StaffEvent(_Event):
    type: Literal["staff"]
    action: Literal["pause", "resume", "rate", "stop"]
    drug: Literal["lidocaine", "ketamine", "both"]
    #: ``rate`` only: the new rate as a percent of the planned rate.
    rate_percent: Annotated[float, Field(strict=True, gt=0, le=100)] | None = None

    @model_validator(mode="after")
    def _rate(self) -> StaffEvent:
        if (self.action == "rate") != (self.rate_percent is not None):
            raise ValueError("`rate_percent` is given with, and only with, `action: rate`")
        return self

    def drugs(self) -> tuple[Drug, ...]:
        return DRUGS if self.drug == "both" else (self.drug,)


class NowEvent(_Event):
    """Only the time passing: evaluates the session at ``at`` (e.g. vitals overdue)."""

    type: Literal["now"]


class Delivered(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    lidocaine: _Percent | None = None
    ketamine: _Percent | None = None


class DischargeEvent(_Event):
    """The patient leaves the observation area: nothing may follow."""

    type: Literal["discharge"]


class EndEvent(_Event):
    """The infusion has ended; observation goes on (POST-01..04) until ``discharge``."""

    type: Literal["end"]
    #: Percent of each drug's planned dose delivered; ``null`` or absent: not recorded.
    delivered_percent: Delivered
    vnrs_after: _Vnrs | None = None


AnyEvent = (
    StartEvent
    | BaselineEvent
    | VitalsEvent
    | SedationEvent
    | SymptomsEvent
    | EcgEvent
    | StaffEvent
    | NowEvent
    | EndEvent
    | DischargeEvent
)
Event = Annotated[AnyEvent, Field(discriminator="type")]
#: The ``type`` of each kind of event, in the order above.
EVENT_TYPES: tuple[str, ...] = tuple(
    get_args(kind.model_fields["type"].annotation)[0] for kind in get_args(AnyEvent)
)
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def _location(source: str | None, line: int | None, parts: tuple[str | int, ...]) -> Location:
    from .yamlio import json_path

    return Location(file=source, line=line, path=json_path(parts))


def _validation_errors(
    error: ValidationError, source: str | None, line: int | None
) -> list[InputError]:
    found: list[InputError] = []
    for item in error.errors(include_url=False):
        parts = tuple(p for p in item["loc"] if isinstance(p, str | int))
        # pydantic names the union member it tried (``start``, ``vitals``): drop it.
        if parts and parts[0] in EVENT_TYPES:
            parts = parts[1:]
        kind = item["type"]
        if kind == "missing":
            code, message, at = "missing_field", f"missing required field `{parts[-1]}`", parts[:-1]
        elif kind == "extra_forbidden":
            code, message, at = "unknown_field", f"unknown field `{parts[-1]}`", parts
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            given = item.get("input")
            given = given.get("type") if isinstance(given, dict) else None
            code = "invalid_value" if given is not None else "missing_field"
            message = (
                f"unknown event type `{given}`; one of {', '.join(EVENT_TYPES)}"
                if given is not None
                else "missing required field `type`"
            )
            at = ("type",) if given is not None else ()
        else:
            given = item.get("input")
            shown = f" `{given}`" if isinstance(given, str | int | float | bool) else ""
            text = str(item["msg"]).removeprefix("Value error, ")
            code, message, at = "invalid_value", f"invalid value{shown}: {text}", parts
        candidate = InputError(code, message, _location(source, line, at))
        if all(str(candidate) != str(known) for known in found):
            found.append(candidate)
    return found


def parse_event(data: Any, *, source: str | None = None, line: int | None = None) -> AnyEvent:
    """Validate one event (a mapping); raise ``InputErrors`` naming each bad field."""
    if not isinstance(data, Mapping):
        raise InputErrors(
            [
                InputError(
                    "invalid_event",
                    f"an event is a JSON object, not {type(data).__name__}",
                    _location(source, line, ()),
                )
            ]
        )
    try:
        return _EVENT.validate_python(dict(data))
    except ValidationError as error:
        raise InputErrors(_validation_errors(error, source, line)) from None


def parse_event_line(text: str, *, source: str | None = None, line: int | None = None) -> AnyEvent:
    """One JSON line to an event; a line that is not JSON is an ``invalid_json`` error."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputErrors(
            [
                InputError(
                    "invalid_json",
                    f"not a JSON object: {error.msg} at column {error.colno}",
                    Location(file=source, line=line, column=error.colno),
                )
            ]
        ) from None
    return parse_event(data, source=source, line=line)


def event_to_json(event: BaseModel) -> str:
    """Canonical JSON of an event (what the session store keeps)."""
    return json.dumps(
        event.model_dump(mode="json", exclude_none=True), sort_keys=True, ensure_ascii=False
    )


def check_sequence(
    event: AnyEvent,
    *,
    start: StartEvent | None,
    previous_at: datetime | None,
    ended: bool,
    discharged: bool,
    table: MonitoringTable,
    baseline: Mapping[str, float | None] | None = None,
    source: str | None = None,
    line: int | None = None,
) -> None:
    """Check an event against the session so far; raise ``InputErrors`` naming the field."""
    errors: list[InputError] = []

    def error(
        code: str, message: str, parts: tuple[str | int, ...], hint: str | None = None
    ) -> None:
        errors.append(InputError(code, message, _location(source, line, parts), hint))

    at: datetime = event.at
    if isinstance(event, StartEvent):
        if start is not None:
            error("duplicate_start", f"session `{start.session}` has already started", ("type",))
    elif start is None:
        error(
            "not_started",
            f"a `{event.type}` event before the session's `start` event",
            ("type",),
            "the first event of a session is `start`, with the baseline and the planned doses",
        )
    if discharged:
        error("after_discharge", "the patient was discharged: no event may follow", ("type",))
    elif ended and isinstance(event, StaffEvent | EndEvent | StartEvent):
        error(
            "after_end",
            f"the infusion has ended: no `{event.type}` event after `end`",
            ("type",),
            "after `end` come observation events (vitals, sedation, symptoms, ecg), then "
            "`discharge`",
        )
    elif isinstance(event, DischargeEvent) and not ended:
        error("not_ended", "`discharge` before the infusion's `end` event", ("type",))
    if start is not None and at < start.at:
        error(
            "before_start",
            f"`at` {at.isoformat()} is before the session start {start.at.isoformat()}",
            ("at",),
        )
    elif previous_at is not None and at < previous_at:
        error(
            "out_of_order",
            f"`at` {at.isoformat()} is before the previous event ({previous_at.isoformat()})",
            ("at",),
            "events are given in the order they happened",
        )
    if isinstance(event, SymptomsEvent):
        for index, report in enumerate(event.present):
            sign = table.signs.get(report.sign)
            if sign is None:
                error(
                    "unknown_sign",
                    f"unknown sign `{report.sign}`",
                    ("present", index, "sign"),
                    did_you_mean(report.sign, table.signs)
                    or "the signs are listed in rulesets/monitoring.yaml",
                )
            elif sign.category == "psychomimetic" and report.grade is None:
                error(
                    "missing_field",
                    f"a psychomimetic effect (`{report.sign}`) gives its CTCAE `grade`",
                    ("present", index),
                )
    if isinstance(event, BaselineEvent) and start is not None and event.measured_at > start.at:
        error(
            "baseline_after_start",
            f"`measured_at` {event.measured_at.isoformat()} is after the session start "
            f"{start.at.isoformat()}: a value measured during the infusion is not a baseline",
            ("measured_at",),
        )
    if isinstance(event, BaselineEvent) and baseline is not None:
        for name in BASELINE_FIELDS:
            if getattr(event, name) is not None and baseline.get(name) is not None:
                error(
                    "baseline_recorded",
                    f"the baseline `{name}` is already recorded ({baseline[name]:g}); a baseline "
                    "is not changed during the session",
                    (name,),
                )
    if isinstance(event, StaffEvent) and start is not None:
        planned = start.planned.drugs()
        for drug in event.drugs() if event.drug != "both" else ():
            if drug not in planned:
                error("drug_not_planned", f"{drug} is not given in this session", ("drug",))
    if errors:
        raise InputErrors(errors)
