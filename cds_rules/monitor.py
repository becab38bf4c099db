"""During the infusion: at each event, what each drug does now.

``Monitor.observe(event)`` validates the event against the session so far, stores it in the
session store, rebuilds the facts the halt rules test (``records.VitalsRecord`` and friends) from
the session's events, evaluates the monitor profile's rulesets (``rulesets/halts.yaml``) over them
with the same engine and reference evaluator as screening, and returns the ``Actions``: per drug
CONTINUE, SLOW, PAUSE or STOP, with the rules, what a pause awaits, the new alerts with their
instructions and triggering events, and the observation time now required after the session.

State is the session's, never the engine's: each evaluation is a fresh, stateless engine run
over facts derived from the stored events. What carries from one event to the next (the
latest readings, sustained runs, the pauses and stops in force) is a fold over the events, so a
new process that replays the stored events reaches the same state and gives the same actions.

Python here only folds events and does arithmetic (durations, percent changes, lipid doses);
every threshold, window and action is in ``rulesets/halts.yaml`` or ``rulesets/monitoring.yaml``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from .compiler import CompiledRule
from .errors import InputError, InputErrors, Location
from .evaluation import Evaluation, Evaluator, _message
from .monitor_events import (
    BASELINE_FIELDS,
    DRUGS,
    EVENT_TYPES,
    AnyEvent,
    BaselineEvent,
    DischargeEvent,
    Drug,
    EcgEvent,
    EndEvent,
    MonitoringTable,
    SedationEvent,
    StaffEvent,
    StartEvent,
    SymptomsEvent,
    VitalsEvent,
    check_sequence,
    event_to_json,
    parse_event,
    parse_event_line,
)
from .protocol import CompiledProfile
from .records import (
    EcgChangeRecord,
    PauseRecord,
    Record,
    SedationRecord,
    SignRecord,
    VitalsRecord,
)
from .spec import IntraAction, IntraSpec

__all__ = [
    "Actions",
    "Alert",
    "DrugState",
    "FileStore",
    "MemoryStore",
    "Monitor",
    "SessionStore",
    "SessionSummary",
]

VITALS = ("sbp", "dbp", "hr", "spo2", "rr")


#: What to record so that a rule's unknown field becomes known.
_INPUTS = {
    "sbp": "blood pressure",
    "dbp": "blood pressure",
    "hr": "heart rate",
    "spo2": "SpO2",
    "rr": "respiratory rate",
    "sbp_rise_percent": "blood pressure (a reading, and the baseline's in a `baseline` event)",
    "sbp_fall_percent": "blood pressure (a reading, and the baseline's in a `baseline` event)",
    "spo2_low_seconds": "SpO2",
    "hr_high_seconds": "heart rate",
    "minutes_since_bp": "blood pressure",
    "minutes_since_spo2": "SpO2",
    "minutes_since_hr": "heart rate",
    "minutes_since_rr": "respiratory rate",
    "minutes_since_sedation": "sedation score",
    "minutes_since_symptom_check": "symptom check",
    "symptomatic": "symptom check",
    "scale": "sedation score",
    "score": "sedation score",
    "baseline_qrs_ms": "baseline QRS (a `baseline` event with qrs_ms)",
    "qrs_widening_percent": "baseline QRS (a `baseline` event with qrs_ms)",
    "qrs_ms": "QRS",
}


def _needs(paths: Iterable[str]) -> tuple[str, ...]:
    found: list[str] = []
    for path in paths:
        name = path.rsplit(".", 1)[-1]
        text = _INPUTS.get(name, path)
        if text not in found:
            found.append(text)
    return tuple(found)


def event_drugs(state: _State) -> tuple[Drug, ...]:
    return state.start.planned.drugs() if state.start is not None else ()


def _round(value: float, places: str = "0.01") -> float:
    return float(Decimal(str(value)).quantize(Decimal(places), rounding=ROUND_HALF_UP))


def _minutes(later: datetime, earlier: datetime) -> float:
    """Minutes between two times, rounded up to 0.01 min: a rule's ``gt: 5`` then holds from
    any time past 5 minutes (5 min 0.2 s is 5.01), never from 5 minutes exactly."""
    minutes = Decimal((later - earlier) // timedelta(microseconds=1)) / Decimal(60_000_000)
    return float(minutes.quantize(Decimal("0.01"), rounding=ROUND_CEILING))


def _seconds(later: datetime, earlier: datetime) -> float:
    """Seconds between two times, rounded down to 0.01 s: a rule's ``gte: 30`` then holds from
    30 seconds exactly, never from 29.996 s."""
    seconds = Decimal((later - earlier) // timedelta(microseconds=1)) / Decimal(1_000_000)
    return float(seconds.quantize(Decimal("0.01"), rounding=ROUND_FLOOR))


# ---------------------------------------------------------------------------------------------
# Session store: the events of each session, ours (never the engine's)


class SessionStore(Protocol):
    """Where a session's accepted events are kept, in order, as canonical JSON."""

    def append(self, session: str, event_json: str) -> None: ...

    def events(self, session: str) -> list[str]: ...


class MemoryStore:
    """Events kept in this process (lost with it)."""

    def __init__(self) -> None:
        self._sessions: dict[str, list[str]] = {}

    def append(self, session: str, event_json: str) -> None:
        self._sessions.setdefault(session, []).append(event_json)

    def events(self, session: str) -> list[str]:
        return list(self._sessions.get(session, ()))


class FileStore:
    """One JSON-lines file per session in a directory; each event is flushed to disk
    (``fsync``) before it is evaluated, so a restart loses no accepted event."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, session: str) -> Path:
        # Readable, and distinct for distinct ids ("bed 1" and "bed_1" are two sessions).
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in session)
        digest = hashlib.sha256(session.encode("utf-8")).hexdigest()[:12]
        return self.directory / f"{safe}-{digest}.jsonl"

    def append(self, session: str, event_json: str) -> None:
        with open(self.path(session), "a", encoding="utf-8") as handle:
            handle.write(event_json + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def events(self, session: str) -> list[str]:
        path = self.path(session)
        if not path.exists():
            return []
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class EventRef:
    """An event of the session: its number (1 = start), type and time."""

    seq: int
    type: str
    at: datetime


@dataclass(frozen=True)
class Alert:
    """A rule that began to hold at this event."""

    rule: str
    title: str
    message: str
    #: The action per drug of this session that the rule names.
    actions: dict[str, str]
    instructions: tuple[str, ...]
    triggered_by: tuple[EventRef, ...]
    sources: tuple[str, ...]
    evidence: str
    resume: str | None = None
    resume_rate_percent: float | None = None
    observe_minutes: float | None = None
    observe_rule: str | None = None
    course: str | None = None
    #: Lipid emulsion 20% doses for the session's weight (tier-3 LAST alerts).
    lipid_rescue: tuple[str, ...] = ()
    #: ``rule``: the rule holds. ``cannot_decide``: the rules in ``rule`` and ``also`` could not
    #: be decided because ``needs`` is not recorded, so their drugs pause until it is.
    kind: Literal["rule", "cannot_decide"] = "rule"
    also: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    #: The rule began to hold after the infusion ended (observation period): it changes no
    #: drug, but its instructions and observation time apply.
    after_end: bool = False


@dataclass(frozen=True)
class DrugState:
    """What a drug does now, and why."""

    drug: str
    action: str
    #: SLOW: the highest rate allowed, as a percent of the planned rate.
    rate_percent: float | None
    #: The rules behind the action (for a STOP, those that stopped it).
    rules: tuple[str, ...]
    #: PAUSE: what each pause awaits before the drug may restart.
    awaiting: tuple[str, ...]
    #: What staff last did with the drug (running, paused, stopped, rate N%).
    staff: str


@dataclass(frozen=True)
class Actions:
    """The answer to one event."""

    event: EventRef
    drugs: dict[str, DrugState]
    alerts: tuple[Alert, ...]
    #: Pauses lifted at this event: "ketamine may restart (HALT-SBP-01: ...)".
    lifted: tuple[str, ...]
    #: Staff actions that go against the current actions.
    warnings: tuple[str, ...]
    #: Rules holding now (new or not), in order.
    holding: tuple[str, ...]
    observe_minutes: float
    observe_rules: tuple[str, ...]
    evaluation: Evaluation | None
    #: An event was refused and no corrected one has come yet: what it was (the drugs that
    #: would have continued are paused until it comes).
    refused: str | None = None

    def to_dict(self, *, evaluation: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["evaluation"] = (
            self.evaluation.to_dict() if evaluation and self.evaluation is not None else None
        )
        if not evaluation:
            del data["evaluation"]
        result: dict[str, Any] = json.loads(json.dumps(data, default=_json_default))
        return result

    def to_json(self, *, evaluation: bool = False) -> str:
        return json.dumps(self.to_dict(evaluation=evaluation), sort_keys=True, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# The fold


@dataclass
class _Run:
    started: datetime | None = None
    started_seq: int = 0
    latest: datetime | None = None


@dataclass
class _Pause:
    since: datetime
    since_seq: int
    active: bool = True
    lifted: datetime | None = None


@dataclass
class _Sign:
    onset: datetime
    onset_seq: int
    grade: int | None
    seen_seq: int


@dataclass
class _State:
    start: StartEvent | None = None
    #: The baseline: each value and the event that recorded it (``start`` or ``baseline``).
    baseline: dict[str, tuple[float | None, int]] = field(default_factory=dict)
    seq: int = 0
    previous_at: datetime | None = None
    ended: EndEvent | None = None
    ended_seq: int = 0
    discharged: datetime | None = None
    #: vital -> (value, at, seq)
    latest: dict[str, tuple[float, datetime, int]] = field(default_factory=dict)
    runs: dict[str, _Run] = field(default_factory=dict)
    sedation: tuple[str, int, datetime, int] | None = None
    max_poss: int | None = None
    min_rass: int | None = None
    last_check: tuple[datetime, int] | None = None
    #: A symptom check has been recorded (the start sets the check timer, but does not say
    #: whether the patient has symptoms).
    checked: bool = False
    signs: dict[str, _Sign] = field(default_factory=dict)
    #: Every sign onset (or rise in grade) of the session, for the summary:
    #: (name, grade, seq, after the end of the infusion).
    onsets: list[tuple[str, int | None, int, bool]] = field(default_factory=list)
    ecg: list[tuple[EcgEvent, int]] = field(default_factory=list)
    #: The latest ECG report of each kind (what the rules see).
    latest_ecg: dict[str, tuple[EcgEvent, int]] = field(default_factory=dict)
    pauses: dict[tuple[str, str], _Pause] = field(default_factory=dict)
    stopped: dict[str, tuple[tuple[str, ...], datetime]] = field(default_factory=dict)
    slowed: dict[str, tuple[float, str]] = field(default_factory=dict)
    staff: dict[str, str] = field(default_factory=dict)
    #: Alert keys holding at the previous evaluation.
    holding: set[tuple[str, str]] = field(default_factory=set)
    #: rule id -> times it began to hold; rule ids holding at the latest evaluation.
    onsets_by_rule: dict[str, int] = field(default_factory=dict)
    holding_rules: set[str] = field(default_factory=set)
    observe: dict[str, float] = field(default_factory=dict)
    events: list[AnyEvent] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The monitor


class Monitor:
    """Monitors one infusion session. Create with the monitor profile and the monitoring table;
    ``observe`` each event as it arrives. ``Monitor.replay`` rebuilds one from stored events."""

    def __init__(
        self,
        profile: CompiledProfile,
        table: MonitoringTable,
        *,
        engine: Literal["durable", "reference"] = "durable",
        cross_check: bool = False,
        store: SessionStore | None = None,
        evaluators: Sequence[Evaluator] | None = None,
    ) -> None:
        if profile.kind != "monitor":
            raise ValueError(f"profile `{profile.name}` is not a monitor profile")
        self.profile = profile
        self.table = table
        self.store: SessionStore = store if store is not None else MemoryStore()
        self.evaluators = (
            tuple(evaluators)
            if evaluators is not None
            else tuple(
                Evaluator(
                    r, engine=engine, cross_check=cross_check, terminology=profile.terminology
                )
                for r in profile.rulesets
            )
        )
        self._rules: dict[str, CompiledRule] = {
            rule.id: rule for ruleset in profile.rulesets for rule in ruleset.rules
        }
        self._state = _State()

    # -- public -------------------------------------------------------------------------------

    @property
    def session(self) -> str | None:
        return self._state.start.session if self._state.start else None

    @property
    def events(self) -> tuple[AnyEvent, ...]:
        return tuple(self._state.events)

    @property
    def ended(self) -> bool:
        return self._state.ended is not None

    def observe(
        self,
        event: AnyEvent | Mapping[str, Any] | str,
        *,
        source: str | None = None,
        line: int | None = None,
        store: bool = True,
    ) -> Actions:
        """Validate, store and evaluate one event; return what each drug does now."""
        if isinstance(event, str):
            parsed = parse_event_line(event, source=source, line=line)
        elif isinstance(event, Mapping):
            parsed = parse_event(event, source=source, line=line)
        else:
            parsed = event
        state = self._state
        check_sequence(
            parsed,
            start=state.start,
            previous_at=state.previous_at,
            ended=state.ended is not None,
            discharged=state.discharged is not None,
            table=self.table,
            baseline={name: value for name, (value, _) in state.baseline.items()},
            source=source,
            line=line,
        )
        if isinstance(parsed, StartEvent) and store and self.store.events(parsed.session):
            raise InputErrors(
                [
                    InputError(
                        "duplicate_session",
                        f"session `{parsed.session}` already has stored events",
                        Location(file=source, line=line, path="$.session"),
                        "resume it with Monitor.resume (cds-rules monitor --store) instead",
                    )
                ]
            )
        if store:
            session = parsed.session if isinstance(parsed, StartEvent) else self.session
            assert session is not None
            self.store.append(session, event_to_json(parsed))
        actions = self._step(parsed)
        if self._refused is not None:
            kind, text = self._refused
            if kind is None or kind == parsed.type:
                self._refused = None
            else:
                actions = self._hold(actions, text)
        self._last = actions
        return actions

    def refuse(self, text: str, error: InputErrors | InputError) -> Actions | None:
        """An event that could not be accepted: until an event of the same type is accepted,
        every drug that would continue or slow is shown paused, awaiting it (its data may have
        said to stop). Returns the actions now, or None before the session has started. The
        refused event is not stored, so a restart does not remember it."""
        try:
            kind = json.loads(text).get("type")
        except (ValueError, AttributeError):
            kind = None
        kind = kind if isinstance(kind, str) and kind in EVENT_TYPES else None
        items = getattr(error, "errors", None) or [error]
        first = items[0]
        where = f"line {first.location.line}" if first.location.line is not None else "an event"
        described = (
            f"{where} ({kind or 'unreadable'} event) refused: {first.code} at {first.location.path}"
        )
        self._refused = (kind, described)
        if self._last is None:
            return None
        self._last = self._hold(self._last, described)
        return self._last

    def _hold(self, actions: Actions, described: str) -> Actions:
        drugs = {
            drug: (
                DrugState(
                    drug,
                    "PAUSE",
                    None,
                    (*state.rules, "INPUT-REFUSED"),
                    (*state.awaiting, f"a corrected event: {described}"),
                    state.staff,
                )
                if state.action in ("CONTINUE", "SLOW", "PAUSE")
                else state
            )
            for drug, state in actions.drugs.items()
        }
        return dataclasses.replace(actions, drugs=drugs, refused=described)

    @classmethod
    def resume(
        cls,
        profile: CompiledProfile,
        table: MonitoringTable,
        store: SessionStore,
        session: str,
        **options: Any,
    ) -> tuple[Monitor, list[Actions]]:
        """A monitor for a stored session, after a restart: replays its stored events (without
        storing them again) and returns it with the actions of each."""
        monitor = cls(profile, table, store=store, **options)
        actions = [
            monitor.observe(text, source=f"store:{session}", line=number, store=False)
            for number, text in enumerate(store.events(session), start=1)
        ]
        return monitor, actions

    def current(self) -> Actions | None:
        return self._last

    _last: Actions | None = None
    _refused: tuple[str | None, str] | None = None

    # -- one step -----------------------------------------------------------------------------

    def _step(self, event: AnyEvent) -> Actions:
        state = self._state
        state.seq += 1
        seq = state.seq
        state.previous_at = event.at
        state.events.append(event)
        self._apply(event, seq)
        now = event.at
        records, origins = self._records(now)
        evaluations = [e.evaluate_records(records, now) for e in self.evaluators]
        return self._settle(event, seq, records, origins, evaluations)

    def _apply(self, event: AnyEvent, seq: int) -> None:
        """Fold the event's data into the state (before the rules see it)."""
        state = self._state
        at = event.at
        if isinstance(event, StartEvent):
            state.start = event
            base = event.baseline
            state.baseline = {name: (getattr(base, name), seq) for name in BASELINE_FIELDS}
            for vital in VITALS:
                if getattr(base, vital) is not None:
                    self._reading(vital, getattr(base, vital), at, seq)
            self._sedation(base.poss, base.rass, at, seq)
            state.last_check = (at, seq)
            for drug in DRUGS:
                state.staff[drug] = "running" if drug in event.planned.drugs() else "not given"
        elif isinstance(event, BaselineEvent):
            for name in BASELINE_FIELDS:
                if getattr(event, name) is not None:
                    state.baseline[name] = (getattr(event, name), seq)
        elif isinstance(event, VitalsEvent):
            for vital in VITALS:
                value = getattr(event, vital)
                if value is not None:
                    self._reading(vital, value, at, seq)
        elif isinstance(event, SedationEvent):
            self._sedation(event.poss, event.rass, at, seq)
        elif isinstance(event, SymptomsEvent):
            state.last_check = (at, seq)
            state.checked = True
            present = {report.sign: report for report in event.present}
            for name in list(state.signs):
                if name not in present:
                    del state.signs[name]  # resolved
            for name, report in present.items():
                known = state.signs.get(name)
                if known is None:
                    state.signs[name] = _Sign(at, seq, report.grade, seq)
                    state.onsets.append((name, report.grade, seq, state.ended is not None))
                else:
                    if report.grade is not None and (known.grade or 0) < report.grade:
                        state.onsets.append((name, report.grade, seq, state.ended is not None))
                    known.grade = report.grade
                    known.seen_seq = seq
        elif isinstance(event, EcgEvent):
            state.ecg.append((event, seq))
            state.latest_ecg[event.finding] = (event, seq)
        elif isinstance(event, StaffEvent):
            for drug in event.drugs():
                if state.start is not None and drug not in state.start.planned.drugs():
                    continue
                if event.action == "stop":
                    state.staff[drug] = "stopped"
                    if drug not in state.stopped:
                        state.stopped[drug] = (("staff",), at)
                elif event.action == "pause":
                    if state.staff.get(drug) != "stopped":
                        state.staff[drug] = "paused"
                elif event.action == "resume":
                    if state.staff.get(drug) != "stopped":
                        state.staff[drug] = "running"
                else:
                    if state.staff.get(drug) != "stopped":
                        state.staff[drug] = f"rate {event.rate_percent:g}%"
        elif isinstance(event, EndEvent):
            state.ended = event
            state.ended_seq = seq
            for drug in event_drugs(state):
                if state.staff.get(drug) != "stopped":
                    state.staff[drug] = "ended"
        elif isinstance(event, DischargeEvent):
            state.discharged = event.at

    def _reading(self, vital: str, value: float, at: datetime, seq: int) -> None:
        state = self._state
        state.latest[vital] = (value, at, seq)
        for name in ("spo2_low", "hr_high"):
            spec = getattr(self.table.runs, name)
            if spec.vital != vital:
                continue
            run = state.runs.setdefault(name, _Run())
            if spec.past(value):
                if run.started is None:
                    run.started, run.started_seq = at, seq
                run.latest = at
            else:
                run.started, run.latest = None, None

    def _sedation(self, poss: int | None, rass: int | None, at: datetime, seq: int) -> None:
        state = self._state
        if poss is not None:
            state.sedation = ("poss", poss, at, seq)
            state.max_poss = poss if state.max_poss is None else max(state.max_poss, poss)
        elif rass is not None:
            state.sedation = ("rass", rass, at, seq)
            state.min_rass = rass if state.min_rass is None else min(state.min_rass, rass)

    # -- the facts the rules test -------------------------------------------------------------

    def _records(self, now: datetime) -> tuple[list[Record], list[dict[str, tuple[int, ...]]]]:
        """The records for an evaluation at ``now``, and for each record the events each of its
        fields came from (for the alerts' triggering events)."""
        state = self._state
        assert state.start is not None
        base_sbp, base_sbp_seq = state.baseline["sbp"]
        base_qrs, base_qrs_seq = state.baseline["qrs_ms"]
        records: list[Record] = []
        origins: list[dict[str, tuple[int, ...]]] = []
        latest = state.latest
        value = {v: latest[v][0] for v in latest}
        seq_of = {v: (latest[v][2],) for v in latest}
        sbp = value.get("sbp")
        rise = fall = None
        if sbp is not None and base_sbp is not None:
            rise = _round(max(0.0, (sbp - base_sbp) / base_sbp * 100))
            fall = _round(max(0.0, (base_sbp - sbp) / base_sbp * 100))

        def run_seconds(name: str) -> tuple[float | None, tuple[int, ...]]:
            run = state.runs.get(name)
            if run is None:  # no reading yet: unknown
                return None, ()
            if run.started is None or run.latest is None:
                return 0.0, ()
            # The latest reading stands until a newer one: a run with no reading since is still
            # running now (a reading that would end it has not been made).
            return _seconds(now, run.started), (run.started_seq,)

        def since(vital: str) -> float | None:
            return _minutes(now, latest[vital][1]) if vital in latest else None

        spo2_low, spo2_from = run_seconds("spo2_low")
        hr_high, hr_from = run_seconds("hr_high")
        assert state.last_check is not None
        sign_seqs = tuple(sorted(s.seen_seq for s in state.signs.values()))
        records.append(
            VitalsRecord(
                sbp=sbp,
                dbp=value.get("dbp"),
                hr=value.get("hr"),
                spo2=value.get("spo2"),
                rr=value.get("rr"),
                sbp_rise_percent=rise,
                sbp_fall_percent=fall,
                spo2_low_seconds=spo2_low,
                hr_high_seconds=hr_high,
                minutes_since_bp=since("sbp"),
                minutes_since_spo2=since("spo2"),
                minutes_since_hr=since("hr"),
                minutes_since_rr=since("rr"),
                minutes_since_sedation=(
                    _minutes(now, state.sedation[2]) if state.sedation is not None else None
                ),
                minutes_since_symptom_check=_minutes(now, state.last_check[0]),
                symptomatic=(
                    any(self.table.signs[name].symptomatic for name in state.signs)
                    if state.checked
                    else None
                ),
                running=state.ended is None,
            )
        )
        none: tuple[int, ...] = ()
        origins.append(
            {
                "sbp": seq_of.get("sbp", none),
                "dbp": seq_of.get("dbp", none),
                "hr": seq_of.get("hr", none),
                "spo2": seq_of.get("spo2", none),
                "rr": seq_of.get("rr", none),
                "sbp_rise_percent": (base_sbp_seq, *seq_of.get("sbp", none)),
                "sbp_fall_percent": (base_sbp_seq, *seq_of.get("sbp", none)),
                "spo2_low_seconds": (*spo2_from, *seq_of.get("spo2", none)),
                "hr_high_seconds": (*hr_from, *seq_of.get("hr", none)),
                "minutes_since_bp": seq_of.get("sbp", none),
                "minutes_since_spo2": seq_of.get("spo2", none),
                "minutes_since_hr": seq_of.get("hr", none),
                "minutes_since_rr": seq_of.get("rr", none),
                "minutes_since_sedation": (state.sedation[3],) if state.sedation else none,
                "minutes_since_symptom_check": (state.last_check[1],),
                "symptomatic": sign_seqs,
            }
        )
        if state.sedation is None:
            records.append(SedationRecord(placeholder=True))
            origins.append({})
        else:
            scale, score, _, sed_seq = state.sedation
            records.append(SedationRecord(scale=scale, score=score))  # type: ignore[arg-type]
            origins.append({"scale": (sed_seq,), "score": (sed_seq,)})
        for name in sorted(state.signs):
            sign = state.signs[name]
            spec = self.table.signs[name]
            records.append(
                SignRecord(
                    name=name,
                    category=spec.category,
                    last_tier=spec.last_tier,
                    grade=sign.grade,
                    minutes_present=_minutes(now, sign.onset),
                )
            )
            seen = tuple(sorted({sign.onset_seq, sign.seen_seq}))
            origins.append({f: seen for f in ("name", "category", "last_tier", "grade")})
        # The latest ECG report of each kind: a change once reported has stopped both drugs
        # already (a STOP is final), and a later QRS measurement replaces an earlier one.
        for ecg, ecg_seq in sorted(state.latest_ecg.values(), key=lambda item: item[1]):
            widening = (
                _round((ecg.qrs_ms - base_qrs) / base_qrs * 100)
                if ecg.qrs_ms is not None and base_qrs is not None
                else None
            )
            records.append(
                EcgChangeRecord(
                    finding=ecg.finding,
                    qrs_ms=ecg.qrs_ms,
                    baseline_qrs_ms=base_qrs,
                    qrs_widening_percent=widening,
                )
            )
            origins.append(
                {
                    "finding": (ecg_seq,),
                    "qrs_ms": (ecg_seq,),
                    "baseline_qrs_ms": (base_qrs_seq,),
                    "qrs_widening_percent": (base_qrs_seq, ecg_seq),
                }
            )
        for (rule, drug), pause in sorted(state.pauses.items()):
            records.append(
                PauseRecord(
                    rule=rule,
                    drug=drug,  # type: ignore[arg-type]
                    active=pause.active,
                    minutes=_minutes(now, pause.since),
                )
            )
            origins.append({f: (pause.since_seq,) for f in ("rule", "drug", "active", "minutes")})
        return records, origins

    # -- from findings to actions -------------------------------------------------------------

    def _intra(self, rule_id: str) -> IntraSpec | None:
        rule = self._rules.get(rule_id)
        if rule is None or rule.finding is None:
            return None
        return rule.finding.intra

    def _settle(
        self,
        event: AnyEvent,
        seq: int,
        records: list[Record],
        origins: list[dict[str, tuple[int, ...]]],
        evaluations: list[Evaluation],
    ) -> Actions:
        state = self._state
        assert state.start is not None
        given = state.start.planned.drugs()
        now = event.at

        def applies(rule: CompiledRule) -> tuple[Drug, ...]:
            named = rule.drugs or DRUGS
            return tuple(d for d in DRUGS if d in named and d in given)

        # Rules holding now, with the facts they matched.
        holding: dict[tuple[str, str], tuple[CompiledRule, str, tuple[int, ...]]] = {}
        for evaluation in evaluations:
            for fired in evaluation.fired:
                rule = self._rules[fired.rule_id]
                if rule.finding is None or rule.finding.intra is None or not applies(rule):
                    continue
                matched = {m.alias: m.key for m in fired.matched}
                identity = []
                triggers: set[int] = set()
                for fact in fired.matched:
                    index = int(fact.key[1:])
                    record = records[index]
                    if isinstance(record, SignRecord):
                        identity.append(str(record.name))
                    elif isinstance(record, EcgChangeRecord):
                        identity.append(f"ecg{origins[index]['finding'][0]}")
                    for name in fact.values:
                        triggers.update(origins[index].get(name, ()))
                key = (rule.id, "+".join(identity))
                if key not in holding:
                    message = _message(rule, records, matched)
                    holding[key] = (rule, message, tuple(sorted(triggers)))
        # The same order whichever engine found them: the rules' order in their ruleset.
        holding = dict(sorted(holding.items(), key=lambda item: (item[1][0].index, item[0])))
        # Rules that could not be decided: a rule that pauses or stops pauses its drugs.
        undecided: dict[str, tuple[CompiledRule, tuple[str, ...]]] = {}
        for evaluation in evaluations:
            for missing in evaluation.missing:
                rule = self._rules[missing.rule_id]
                intra = self._intra(rule.id)
                if intra is None or intra.intra.rank < IntraAction.PAUSE.rank or not applies(rule):
                    continue
                undecided[rule.id] = (rule, missing.paths)
        undecided = dict(sorted(undecided.items(), key=lambda item: item[1][0].index))

        # Per drug: latch stops, start and lift pauses (while the infusion runs).
        running = state.ended is None
        lifted: list[str] = []
        pausing: dict[str, list[str]] = {d: [] for d in DRUGS}
        slowing: dict[str, list[tuple[float, str]]] = {d: [] for d in DRUGS}
        for rule, _, _ in holding.values() if running else ():
            intra = rule.finding.intra  # type: ignore[union-attr]
            assert intra is not None
            for drug in applies(rule):
                if intra.action == "STOP":
                    if drug not in state.stopped:
                        state.stopped[drug] = ((rule.id,), now)
                    elif state.stopped[drug][1] == now and rule.id not in state.stopped[drug][0]:
                        state.stopped[drug] = ((*state.stopped[drug][0], rule.id), now)
                elif intra.action == "PAUSE":
                    if rule.id not in pausing[drug]:
                        pausing[drug].append(rule.id)
                elif intra.action == "SLOW":
                    assert intra.rate_percent is not None  # the compiler requires it
                    slowing[drug].append((intra.rate_percent, rule.id))
        for rule, _paths in undecided.values() if running else ():
            for drug in applies(rule):
                if rule.id not in pausing[drug]:
                    pausing[drug].append(rule.id)
        for (rule_id, paused_drug), pause in state.pauses.items() if running else ():
            drug = paused_drug  # type: ignore[assignment]
            if pause.active and rule_id not in pausing[drug]:
                pause.active, pause.lifted = False, now
                intra = self._intra(rule_id)
                rate = intra.resume_rate_percent if intra is not None else None
                if drug in state.stopped:
                    continue
                if rate is not None:
                    known = state.slowed.get(drug)
                    if known is None or rate < known[0]:
                        state.slowed[drug] = (rate, rule_id)
                    if not pausing[drug]:  # nothing else keeps it paused
                        lifted.append(f"{drug} may restart at {rate:g}% of its rate ({rule_id})")
                elif not pausing[drug]:
                    lifted.append(f"{drug} may restart ({rule_id})")
        for drug in DRUGS:
            for rule_id in pausing[drug]:
                known_pause = state.pauses.get((rule_id, drug))
                if known_pause is None or not known_pause.active:
                    state.pauses[(rule_id, drug)] = _Pause(now, seq)

        # The drugs' states.
        drugs: dict[str, DrugState] = {}
        for drug in DRUGS:
            staff = state.staff.get(drug, "not given")
            if drug not in given:
                drugs[drug] = DrugState(drug, "NOT_GIVEN", None, (), (), staff)
            elif drug in state.stopped:
                drugs[drug] = DrugState(drug, "STOP", None, state.stopped[drug][0], (), staff)
            elif not running:
                drugs[drug] = DrugState(drug, "ENDED", None, (), (), staff)
            elif pausing[drug]:
                awaiting: list[str] = []
                unknown: dict[tuple[str, ...], list[str]] = {}
                for rule_id in pausing[drug]:
                    if rule_id in undecided:
                        unknown.setdefault(_needs(undecided[rule_id][1]), []).append(rule_id)
                    else:
                        intra = self._intra(rule_id)
                        awaiting.append(f"{rule_id}: {intra.resume if intra else ''}")
                for needs, rule_ids in unknown.items():
                    awaiting.append(f"{', '.join(needs)} recorded ({', '.join(rule_ids)})")
                drugs[drug] = DrugState(
                    drug, "PAUSE", None, tuple(pausing[drug]), tuple(awaiting), staff
                )
            else:
                slows = list(slowing[drug])
                if drug in state.slowed:
                    slows.append(state.slowed[drug])
                if slows:
                    rate, rule_id = min(slows)
                    rules = tuple(sorted({r for _, r in slows}))
                    drugs[drug] = DrugState(drug, "SLOW", rate, rules, (), staff)
                else:
                    drugs[drug] = DrugState(drug, "CONTINUE", None, (), (), staff)

        # New alerts: rules that began to hold at this event (one alert per rule, listing
        # each sign or ECG change it holds for).
        alerts: list[Alert] = []
        new: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
        for key, (rule, message, matched_from) in holding.items():
            if key not in state.holding and rule.finding.intra.alert:  # type: ignore[union-attr]
                new.setdefault(rule.id, []).append((message, matched_from))
        for rule_id, items in new.items():
            rule = self._rules[rule_id]
            intra = rule.finding.intra  # type: ignore[union-attr]
            assert intra is not None
            if rule_id not in state.holding_rules and running:
                state.onsets_by_rule[rule_id] = state.onsets_by_rule.get(rule_id, 0) + 1
            if intra.observe_minutes is not None and intra.observe_rule is not None:
                observed = state.observe.get(intra.observe_rule, 0.0)
                state.observe[intra.observe_rule] = max(observed, intra.observe_minutes)
            triggered = sorted({s for _, triggers in items for s in triggers})
            alerts.append(
                Alert(
                    rule=rule.id,
                    title=rule.title,
                    message="; ".join(message for message, _ in items),
                    actions={d: intra.action for d in applies(rule)} if running else {},
                    instructions=tuple(intra.instructions),
                    triggered_by=tuple(self._ref(s) for s in triggered),
                    sources=rule.sources,
                    evidence=rule.evidence.value,
                    resume=intra.resume,
                    resume_rate_percent=intra.resume_rate_percent,
                    observe_minutes=intra.observe_minutes,
                    observe_rule=intra.observe_rule,
                    course=intra.course,
                    lipid_rescue=self._lipid() if intra.lipid_rescue else (),
                    after_end=not running,
                )
            )
        # Rules newly undecided: one alert per set of missing inputs (while running).
        unknown_now: dict[tuple[str, ...], list[CompiledRule]] = {}
        for rule_id, (rule, paths) in undecided.items():
            undecided_key = (rule_id, "?")
            holding[undecided_key] = (rule, "", ())
            if undecided_key in state.holding or not running:
                continue
            unknown_now.setdefault(_needs(paths), []).append(rule)
        for needs, group in unknown_now.items():
            paused = [d for d in DRUGS if any(d in applies(r) for r in group)]
            ids = [r.id for r in group]
            alerts.append(
                Alert(
                    rule=ids[0],
                    title=group[0].title,
                    message=f"cannot decide {', '.join(ids)}: {', '.join(needs)} not recorded; "
                    f"{' and '.join(paused)} paused until it is",
                    actions={d: "PAUSE" for d in paused},
                    instructions=tuple(f"Record the {need}" for need in needs),
                    triggered_by=(self._ref(seq),),
                    sources=tuple(sorted({s for r in group for s in r.sources})),
                    evidence=group[0].evidence.value,
                    kind="cannot_decide",
                    also=tuple(ids[1:]),
                    needs=needs,
                )
            )
        state.holding = set(holding)
        state.holding_rules = {rule_id for rule_id, _ in holding}

        warnings: list[str] = []
        if isinstance(event, StaffEvent) and event.action in ("resume", "rate"):
            for drug in event.drugs():
                current = drugs.get(drug)
                if current is None or current.action == "NOT_GIVEN":
                    continue
                if current.action in ("PAUSE", "STOP"):
                    warnings.append(
                        f"{drug} {event.action}d by staff while the rules say {current.action} "
                        f"({', '.join(current.rules)})"
                    )
                elif (
                    current.action == "SLOW"
                    and current.rate_percent is not None
                    and (event.rate_percent or 100) > current.rate_percent
                ):
                    warnings.append(
                        f"{drug} at {event.rate_percent or 100:g}% by staff while the rules allow "
                        f"at most {current.rate_percent:g}% ({', '.join(current.rules)})"
                    )
        routine = self.table.observation
        observe = {routine.routine_rule: routine.routine_minutes.value, **state.observe}
        longest = max(observe.values())
        if isinstance(event, DischargeEvent) and state.ended is not None:
            until = state.ended.at + timedelta(minutes=longest)
            observed_by = ", ".join(sorted(r for r, m in observe.items() if m == longest))
            if event.at < until:
                early = _minutes(until, event.at)
                warnings.append(
                    f"discharged {early:g} min before the observation required ends: at least "
                    f"{longest:g} min after the end of the infusion ({observed_by}), until "
                    f"{until.strftime('%H:%M')}"
                )
            if state.signs:
                warnings.append(
                    f"discharged with {', '.join(sorted(state.signs))} present at the latest "
                    f"check ({routine.discharge_rule}: {routine.discharge[0]})"
                )
            elif not state.checked:
                warnings.append(
                    f"discharged without a symptom check ({routine.discharge_rule}: "
                    f"{routine.discharge[0]})"
                )
        return Actions(
            event=self._ref(seq),
            drugs=drugs,
            alerts=tuple(alerts),
            lifted=tuple(lifted),
            warnings=tuple(warnings),
            holding=tuple(sorted(state.holding_rules)),
            observe_minutes=longest,
            observe_rules=tuple(sorted(r for r, m in observe.items() if m == longest)),
            evaluation=evaluations[0] if len(evaluations) == 1 else None,
        )

    def _ref(self, seq: int) -> EventRef:
        event = self._state.events[seq - 1]
        return EventRef(seq, event.type, event.at)

    def _lipid(self) -> tuple[str, ...]:
        spec = self.table.lipid_rescue
        start = self._state.start
        weight = start.weight_kg if start is not None else None
        if weight is None:
            return ("weight not recorded: dose lipid emulsion 20% by the ASRA checklist",)
        limit = _round(spec.max_ml_per_kg.value * weight, "1")
        if weight > spec.heavier_than_kg.value:
            return (
                f"lipid emulsion 20%: bolus {spec.heavy_bolus_ml.value:g} mL over "
                f"{spec.bolus_over}, then {spec.heavy_infusion_ml_low.value:g}-"
                f"{spec.heavy_infusion_ml_high.value:g} mL over {spec.infusion_over}",
                f"limit about {limit:g} mL ({spec.max_ml_per_kg.value:g} mL/kg at {weight:g} kg)",
            )
        bolus = _round(spec.light_bolus_ml_per_kg.value * weight, "0.1")
        ideal = start.ideal_body_weight_kg if start is not None else None
        per_min = spec.light_infusion_ml_per_kg_per_min.value
        if ideal is not None:
            infusion = (
                f"then {_round(per_min * ideal, '0.1'):g} mL/min ({per_min:g} mL/kg/min at the "
                f"ideal body weight of {ideal:g} kg)"
            )
        else:
            infusion = (
                f"then {per_min:g} mL/kg/min of ideal body weight (not given: at the actual "
                f"{weight:g} kg it would be {_round(per_min * weight, '0.1'):g} mL/min, the most "
                "it can be)"
            )
        return (
            f"lipid emulsion 20%: bolus {bolus:g} mL ({spec.light_bolus_ml_per_kg.value:g} mL/kg "
            f"at {weight:g} kg) over {spec.bolus_over}, {infusion}",
            f"limit about {limit:g} mL ({spec.max_ml_per_kg.value:g} mL/kg)",
        )

    # -- the summary ----------------------------------------------------------------------------

    def summary(self) -> SessionSummary:
        """The session as the course file records it (``sessions:`` item of a course)."""
        state = self._state
        if state.start is None:
            raise ValueError("the session has not started")
        start = state.start
        adverse = []
        first: dict[str, tuple[int, bool]] = {}
        graded: dict[str, int | None] = {}
        for name, grade, seq, after in state.onsets:
            first.setdefault(name, (seq, after))
            if grade is not None:
                graded[name] = max(graded.get(name) or 0, grade)
            else:
                graded.setdefault(name, None)
        for name in sorted(graded, key=lambda n: first[n][0]):
            spec = self.table.signs[name]
            adverse.append(
                {
                    "term": spec.title,
                    "category": spec.adverse_event,
                    "grade": graded[name],
                    "last_tier": spec.last_tier,
                    "attributable": None,
                    "when": "after" if first[name][1] else "during",
                }
            )
        reported: set[str] = set()
        for ecg, ecg_seq in state.ecg:
            entry = self.table.ecg_findings.get(ecg.finding)
            if entry is None or ecg.finding in reported:
                continue
            if entry.when_rule is not None and entry.when_rule not in state.onsets_by_rule:
                continue
            reported.add(ecg.finding)
            after = state.ended is not None and ecg_seq > state.ended_seq
            adverse.append(
                {
                    "term": f"ECG: {entry.term}",
                    "category": entry.adverse_event,
                    "grade": None,
                    "last_tier": entry.last_tier,
                    "attributable": None,
                    "when": "after" if after else "during",
                }
            )
        halts = [
            {
                "rule": rule_id,
                "times": times,
                "resolved": rule_id not in state.holding_rules,
                "rapid_recovery": None,
            }
            for rule_id, times in sorted(state.onsets_by_rule.items())
            if rule_id.startswith("HALT-")
        ]
        delivered: float | None = None
        if state.ended is not None:
            values = [getattr(state.ended.delivered_percent, d) for d in start.planned.drugs()]
            known_values = [v for v in values if v is not None]
            delivered = min(known_values) if len(known_values) == len(values) else None
        routine = self.table.observation
        observe = {routine.routine_rule: routine.routine_minutes.value, **state.observe}
        longest = max(observe.values())
        return SessionSummary(
            session=start.session,
            number=start.number,
            day=start.day,
            started_at=start.at,
            ended_at=state.ended.at if state.ended else None,
            planned_lidocaine_mg=start.planned.lidocaine_mg,
            planned_ketamine_mg=start.planned.ketamine_mg,
            delivered_percent=delivered,
            gate_passed=start.gate_passed,
            max_poss=state.max_poss,
            min_rass=state.min_rass,
            vnrs_before=start.vnrs_before,
            vnrs_after=state.ended.vnrs_after if state.ended else None,
            adverse_events=tuple(adverse),
            halts=tuple(halts),
            stopped={d: list(r) for d, (r, _) in state.stopped.items()},
            observe_minutes=longest,
            observe_rules=tuple(sorted(r for r, m in observe.items() if m == longest)),
            discharge=tuple(routine.discharge),
        )


@dataclass(frozen=True)
class SessionSummary:
    """The end of a session, in the course file's terms (halts, sedation, adverse events,
    the fraction of the planned dose delivered)."""

    session: str
    number: int | None
    day: int | None
    started_at: datetime
    ended_at: datetime | None
    planned_lidocaine_mg: float
    planned_ketamine_mg: float
    delivered_percent: float | None
    gate_passed: bool | None
    max_poss: int | None
    min_rass: int | None
    vnrs_before: float | None
    vnrs_after: float | None
    adverse_events: tuple[dict[str, Any], ...]
    halts: tuple[dict[str, Any], ...]
    stopped: dict[str, list[str]]
    observe_minutes: float
    observe_rules: tuple[str, ...]
    discharge: tuple[str, ...]

    def course_session(self) -> dict[str, Any]:
        """A ``sessions:`` item for a course file. The doses are the planned doses: the
        fraction delivered is ``delivered_percent``."""
        return {
            "number": self.number,
            "day": self.day,
            "started_at": self.started_at.isoformat(),
            "lidocaine": {"mg": self.planned_lidocaine_mg},
            "ketamine": {"mg": self.planned_ketamine_mg},
            "delivered_percent": self.delivered_percent,
            "gate_passed": self.gate_passed,
            "max_poss": self.max_poss,
            "min_rass": self.min_rass,
            "vnrs": {"before": self.vnrs_before, "after": self.vnrs_after},
            "adverse_events": [dict(a) for a in self.adverse_events],
            "halts": [dict(h) for h in self.halts],
            "course_events": [],
        }

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(json.dumps(asdict(self), default=_json_default))
        data["course_session"] = self.course_session()
        return data


def replay(
    profile: CompiledProfile,
    table: MonitoringTable,
    events: Iterable[AnyEvent | Mapping[str, Any] | str | BaseModel],
    **options: Any,
) -> tuple[Monitor, list[Actions]]:
    """Evaluate a whole session from its events; the monitor and the actions of each event."""
    monitor = Monitor(profile, table, **options)
    return monitor, [monitor.observe(e) for e in events]  # type: ignore[arg-type]
