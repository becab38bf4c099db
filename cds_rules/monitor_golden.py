"""Golden monitor cases: ``tests/golden/monitor/<name>.yaml``, each a table of infusion sessions.

A file names a ``base``, the events every case of the file starts from: a list of events, or a
JSON-lines session file (a path relative to the case file). Each case appends its own
``events`` and states what the monitor must show at its last event, or at an event named in
the case (``name: desaturation``) or numbered in the whole session (``14``, as ``cds-rules
monitor`` prints ``#14``): each drug's action, the rules holding and not holding, the rules that
alerted there, what a pause awaits, the rate a drug may restart at, staff warnings and the
observation time. An event's time is either ``at`` (ISO 8601 with an offset) or ``after``, a
delay from the event before it (``"+30s"``, ``"+5m"``, ``"+15m1s"``, ``"+2h"``).

Every case runs on durable-rules and on the reference evaluator; each must meet the case, and
the two must give the same actions at every event. Every rule of the monitor profile's rulesets
must hold in one case and be shown not holding in another. A clinician adds a case by adding a
row: no Python. See ``tests/golden/README.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator

from .errors import CdsRulesError, InputError, InputErrors, Location
from .golden import CoverageGap, _CaseModel, rule_gaps
from .loader import did_you_mean
from .monitor import Actions, Monitor
from .monitor_events import (
    DischargeEvent,
    EndEvent,
    MonitoringTable,
    StartEvent,
    check_sequence,
    load_monitoring_table,
    parse_event,
)
from .protocol import CompiledProfile, compile_profile, load_protocol
from .yamlio import Positions, json_path, load_yaml_text

__all__ = [
    "ENGINES",
    "MonitorCase",
    "MonitorCaseFile",
    "MonitorExpected",
    "MonitorSetup",
    "TimedEvent",
    "describe_monitor",
    "discover_monitor_cases",
    "engine_differences",
    "evaluate_monitor_case",
    "monitor_coverage_gaps",
    "monitor_problems",
    "monitor_rules",
    "monitor_rulesets",
    "monitor_setup",
]

Engine = Literal["durable", "reference"]
ENGINES: tuple[Engine, ...] = ("durable", "reference")
DrugName = Literal["lidocaine", "ketamine"]
DrugAction = Literal["CONTINUE", "SLOW", "PAUSE", "STOP", "NOT_GIVEN", "ENDED"]
MONITOR_TABLE = "monitoring.yaml"
#: The profile of ``protocol.yaml`` every monitor case runs.
MONITOR_PROFILE = "monitor"

_NAME = r"^[a-z0-9][a-z0-9-]*$"
_AFTER = re.compile(r"^\+(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")
#: Keys of an event in a case file that the monitor never sees.
_CASE_FILE_ONLY = ("at", "after", "name")


def _fragments(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


Fragments = Annotated[tuple[str, ...], BeforeValidator(_fragments)]


class MonitorExpected(_CaseModel):
    """What the monitor must show at one event (the case's last, unless ``event`` names one)."""

    #: The ``name`` of an event of the file, or an event's number in the session (1: start).
    event: str | int | None = None
    #: Each drug's action now.
    lidocaine: DrugAction | None = None
    ketamine: DrugAction | None = None
    #: Rules that hold now (decided, not merely waiting for data), and rules that do not.
    holding: tuple[str, ...] = ()
    not_holding: tuple[str, ...] = ()
    #: Rules that began to hold at this event, and rules that did not alert here.
    alerts: tuple[str, ...] = ()
    not_alerts: tuple[str, ...] = ()
    #: Rules that cannot be decided for want of data (their drugs pause until it is recorded).
    undecided: tuple[str, ...] = ()
    #: Drug -> fragment(s) that what its pause awaits must contain.
    awaiting_contains: dict[DrugName, Fragments] = Field(default_factory=dict)
    #: Drug -> the highest rate allowed now (SLOW), as a percent of the planned rate.
    rate_percent: dict[DrugName, float] = Field(default_factory=dict)
    #: Drug -> rules that must be behind its action (for a STOP, the rules that stopped it).
    rules: dict[DrugName, tuple[str, ...]] = Field(default_factory=dict)
    #: Fragments that a pause lifted at this event must contain.
    lifted_contains: Fragments = ()
    #: Fragments that a staff warning at this event must contain; or no warning at all.
    warnings_contains: Fragments = ()
    no_warnings: bool = False
    #: The observation now required after the session, and the rules requiring it.
    observe_minutes: float | None = None
    observe_rules: tuple[str, ...] = ()
    #: Rule -> fragment(s) that its alert at this event must contain.
    message_contains: dict[str, Fragments] = Field(default_factory=dict)


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, Mapping) else value


class MonitorCase(_CaseModel):
    name: str = Field(pattern=_NAME)
    note: str | None = None
    #: Events after the base, each with ``at`` or ``after`` (and optionally a ``name``);
    #: each is checked as the monitor would check it, with its line.
    events: tuple[Any, ...] = ()
    #: One expectation (at the last event), or a list of them.
    expect: Annotated[tuple[MonitorExpected, ...], BeforeValidator(_listed)]
    #: A known defect outside the case: the case must fail, and is not counted for coverage.
    xfail: str | None = None

    @field_validator("expect")
    @classmethod
    def _something_expected(cls, value: tuple[MonitorExpected, ...]) -> tuple[MonitorExpected, ...]:
        if not value:
            raise ValueError("give at least one expectation")
        return value


class MonitorTable(_CaseModel):
    title: str
    description: str | None = None
    #: A list of events, or a ``.jsonl`` session file relative to the case file.
    base: Any
    cases: tuple[dict[str, Any], ...] = Field(min_length=1)

    @field_validator("base")
    @classmethod
    def _events_or_file(cls, value: Any) -> Any:
        if not (isinstance(value, list) or (isinstance(value, str) and value.endswith(".jsonl"))):
            raise ValueError("`base` is a list of events or a `.jsonl` session file")
        return value


@dataclass(frozen=True)
class TimedEvent:
    """One event of a case's session as the monitor receives it, and where it is written."""

    data: dict[str, Any]
    source: str
    line: int | None
    name: str | None = None


@dataclass(frozen=True)
class MonitorCaseFile:
    """A case (one row of a file), loaded or not; ``error`` says why it could not be."""

    path: Path
    name: str
    case: MonitorCase | None
    events: tuple[TimedEvent, ...]
    #: For each expectation, the index in ``events`` of the event it is checked at.
    checkpoints: tuple[int, ...]
    error: str | None


# ---------------------------------------------------------------------------------------------
# Reading case files


class _Problems:
    """Problems of one case file, each placed at its line."""

    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.found: list[str] = []

    def add(
        self,
        code: str,
        message: str,
        parts: tuple[str | int, ...],
        hint: str | None = None,
        key: bool = False,
    ) -> None:
        self.found.append(str(self.positions.error(code, message, parts, hint, key=key)))

    def validation(
        self,
        error: ValidationError,
        model: type[_CaseModel],
        prefix: tuple[str | int, ...],
        raw: Mapping[str, Any],
    ) -> None:
        for item in error.errors(include_url=False):
            loc = [part for part in item["loc"] if isinstance(part, str | int)]
            # A single expectation is read as a list of one: point at the mapping itself.
            if loc[:2] == ["expect", 0] and isinstance(raw.get("expect"), Mapping):
                del loc[1]
            parts = self._known(prefix, loc)
            kind = item["type"]
            if kind == "extra_forbidden":
                field = str(loc[-1])
                self.add(
                    "unknown_field",
                    f"unknown field `{field}`",
                    parts if parts[-1:] == (field,) else (*parts, field),
                    did_you_mean(field, _fields_at(model, loc)),
                    key=True,
                )
            elif kind == "missing":
                self.add("missing_field", f"missing required field `{loc[-1]}`", parts)
            else:
                given = item.get("input")
                shown = f" `{given}`" if isinstance(given, str | int | float | bool) else ""
                text = str(item["msg"]).removeprefix("Value error, ")
                self.add("invalid_value", f"invalid value{shown}: {text}", parts)

    def _known(self, prefix: tuple[str | int, ...], loc: list[str | int]) -> tuple[str | int, ...]:
        """The longest path of ``loc`` (under ``prefix``) that is in the file: pydantic adds
        the names of union members and ``[key]`` to its locations."""
        parts = prefix
        for part in loc:
            if (*parts, part) not in self.positions:
                break
            parts = (*parts, part)
        return parts


def _fields_at(model: type[_CaseModel], loc: Sequence[str | int]) -> Collection[str]:
    """The field names the mapping holding ``loc``'s last key may have (for a hint)."""
    names = [part for part in loc[:-1] if isinstance(part, str)]
    if not names:
        return tuple(model.model_fields)
    if names[-1] == "expect":
        return tuple(MonitorExpected.model_fields)
    return ()


def _delay(text: Any) -> timedelta | None:
    match = _AFTER.match(text) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        return None
    hours, minutes, seconds = match.groups()
    return timedelta(hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(seconds or 0))


class _Timeline:
    """The events of a session as they are read, each timed and checked on its own."""

    def __init__(self, table: MonitoringTable) -> None:
        self.table = table
        self.events: list[TimedEvent] = []
        self.previous: datetime | None = None
        self.start: StartEvent | None = None
        self.ended = False
        self.discharged = False

    def copy(self) -> _Timeline:
        """The timeline so far, to go on with separately (each case goes on from the base)."""
        other = _Timeline(self.table)
        other.events = list(self.events)
        other.previous, other.start = self.previous, self.start
        other.ended, other.discharged = self.ended, self.discharged
        return other

    def add_written(
        self, item: Any, parts: tuple[str | int, ...], source: str, problems: _Problems
    ) -> None:
        """An event written in a case file: ``at`` or ``after``, optionally ``name``."""
        line = problems.positions.location(parts).line
        if not isinstance(item, Mapping):
            problems.add("invalid_event", "an event is a mapping with a `type`", parts)
            return
        data = {k: v for k, v in item.items() if k not in _CASE_FILE_ONLY}
        name = item.get("name")
        if name is not None and (not isinstance(name, str) or not re.match(_NAME, name)):
            problems.add(
                "invalid_value",
                f"invalid event name `{name}`: lowercase letters, digits and hyphens",
                (*parts, "name"),
            )
            name = None
        if name is not None and any(e.name == name for e in self.events):
            problems.add("duplicate_name", f"event name `{name}` is used twice", (*parts, "name"))
        if ("at" in item) == ("after" in item):
            problems.add(
                "invalid_event",
                "give the event's time as exactly one of `at` and `after`",
                parts,
                '`at: 2026-03-03T09:40:00+00:00`, or `after: "+90s"` from the event before',
            )
            return
        if "after" in item:
            delay = _delay(item["after"])
            if delay is None:
                problems.add(
                    "invalid_value",
                    f"invalid delay `{item['after']}`",
                    (*parts, "after"),
                    'a plus sign, then hours, minutes and seconds: "+30s", "+5m", "+15m1s", "+2h"',
                )
                return
            if self.previous is None:
                problems.add(
                    "invalid_event",
                    "the first event of a session gives `at`, not `after`",
                    (*parts, "after"),
                )
                return
            data["at"] = (self.previous + delay).isoformat()
        else:
            at = item["at"]
            data["at"] = at.isoformat() if isinstance(at, datetime) else at
        self._add(data, source, line, name, problems, parts)

    def _add(
        self,
        data: dict[str, Any],
        source: str,
        line: int | None,
        name: str | None,
        problems: _Problems,
        parts: tuple[str | int, ...] | None = None,
    ) -> None:
        try:
            parsed = parse_event(data, source=source, line=line)
            check_sequence(
                parsed,
                start=self.start,
                previous_at=self.previous,
                ended=self.ended,
                discharged=self.discharged,
                table=self.table,
                source=source,
                line=line,
            )
        except InputErrors as errors:
            for error in errors.errors:
                problems.found.append(str(_placed(error, parts, problems.positions)))
            return
        if isinstance(parsed, StartEvent):
            self.start = parsed
        self.ended = self.ended or isinstance(parsed, EndEvent)
        self.discharged = self.discharged or isinstance(parsed, DischargeEvent)
        self.previous = parsed.at
        self.events.append(TimedEvent(data, source, line, name))

    def add_session_file(
        self, path: Path, shown: str, parts: tuple[str | int, ...], problems: _Problems
    ) -> None:
        """Every event of a JSON-lines session file."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            problems.add("missing_file", f"no session file `{shown}`", parts)
            return
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                problems.found.append(f"{shown}:{number}: invalid_json: {error.msg}")
                continue
            if not isinstance(data, dict):
                problems.found.append(f"{shown}:{number}: invalid_event: not a JSON object")
                continue
            self._add(data, shown, number, None, problems)


def _placed(
    error: CdsRulesError, parts: tuple[str | int, ...] | None, positions: Positions
) -> CdsRulesError:
    """An event's input error placed in the case file (its field's line and column, and its
    path from the top of the file); an event of a session file keeps the file's line."""
    if parts is None:
        return error
    tail = error.location.path.removeprefix("$")
    inner: list[str | int] = [
        key or int(index) for key, index in re.findall(r"\.([a-z][a-z0-9_]*)|\[(\d+)\]", tail)
    ]
    where = positions.location((*parts, *inner))
    location = Location(where.file, where.line, where.column, json_path(parts) + tail)
    return InputError(error.code, error.message, location, error.hint)


def _shown(path: Path, repo: Path) -> str:
    resolved = path.resolve()
    root = repo.resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(path)


def _load_file(
    path: Path, repo: Path, rules: Collection[str], table: MonitoringTable
) -> list[MonitorCaseFile]:
    name = _shown(path, repo)
    try:
        document = load_yaml_text(path.read_text(encoding="utf-8"), name)
    except CdsRulesError as error:
        return [MonitorCaseFile(path, name, None, (), (), str(error))]
    problems = _Problems(document.positions)
    raw = document.data
    if not isinstance(raw, Mapping):
        problems.add(
            "invalid_value", "a monitor case file is a mapping with `base` and `cases`", ()
        )
        return [MonitorCaseFile(path, name, None, (), (), "\n".join(problems.found))]
    try:
        spec = MonitorTable.model_validate(raw)
    except ValidationError as error:
        problems.validation(error, MonitorTable, (), raw)
        return [MonitorCaseFile(path, name, None, (), (), "\n".join(problems.found))]
    base = _Timeline(table)
    if isinstance(spec.base, str):
        session = path.parent / spec.base
        base.add_session_file(session, _shown(session, repo), ("base",), problems)
    else:
        for index, item in enumerate(spec.base):
            base.add_written(item, ("base", index), name, problems)
    if problems.found:
        return [MonitorCaseFile(path, name, None, (), (), "\n".join(problems.found))]
    loaded: list[MonitorCaseFile] = []
    seen: set[str] = set()
    for index, row in enumerate(spec.cases):
        row_name = f"{name}#{row.get('name', index + 1)}"
        loaded.append(_load_row(path, row_name, row, index, base, rules, seen, document.positions))
    return loaded


def _load_row(
    path: Path,
    row_name: str,
    row: Mapping[str, Any],
    index: int,
    base: _Timeline,
    rules: Collection[str],
    seen: set[str],
    positions: Positions,
) -> MonitorCaseFile:
    problems = _Problems(positions)
    at: tuple[str | int, ...] = ("cases", index)
    timeline = base.copy()
    written = row.get("events")
    for number, item in enumerate(written if isinstance(written, list) else ()):
        timeline.add_written(item, (*at, "events", number), positions.file or "", problems)
    events = tuple(timeline.events)
    try:
        case = MonitorCase.model_validate(row)
    except ValidationError as error:
        problems.validation(error, MonitorCase, at, row)
        return MonitorCaseFile(path, row_name, None, (), (), "\n".join(problems.found))
    if case.name in seen:
        problems.add("duplicate_name", f"case `{case.name}` is repeated in the file", (*at, "name"))
    seen.add(case.name)
    raw = row["expect"]
    single = isinstance(raw, Mapping)
    checkpoints: list[int] = []
    for number, expected in enumerate(case.expect):
        where = (*at, "expect") if single else (*at, "expect", number)
        checkpoints.append(_checkpoint(expected, events, where, problems))
        for rule, parts, key in _named_rules(raw if single else raw[number], where):
            if rule not in rules:
                problems.add(
                    "unknown_rule", f"unknown rule `{rule}`", parts, did_you_mean(rule, rules), key
                )
        for one, other in (("holding", "not_holding"), ("alerts", "not_alerts")):
            both = sorted(set(getattr(expected, one)) & set(getattr(expected, other)))
            if both:
                problems.add(
                    "contradiction", f"{', '.join(both)} both in `{one}` and `{other}`", where
                )
    if problems.found:
        return MonitorCaseFile(path, row_name, None, (), (), "\n".join(problems.found))
    return MonitorCaseFile(path, row_name, case, events, tuple(checkpoints), None)


def _named_rules(
    raw: Mapping[str, Any], where: tuple[str | int, ...]
) -> Iterator[tuple[str, tuple[str | int, ...], bool]]:
    """Each rule an expectation names, where it is written, and whether it is a key."""
    for field in ("holding", "not_holding", "alerts", "not_alerts", "undecided"):
        for number, rule in enumerate(raw.get(field) or ()):
            yield rule, (*where, field, number), False
    for drug, named in (raw.get("rules") or {}).items():
        for number, rule in enumerate(named):
            yield rule, (*where, "rules", drug, number), False
    for rule in raw.get("message_contains") or {}:
        yield rule, (*where, "message_contains", rule), True


def _checkpoint(
    expected: MonitorExpected,
    events: Sequence[TimedEvent],
    where: tuple[str | int, ...],
    problems: _Problems,
) -> int:
    """The index of the event an expectation is checked at."""
    target = expected.event
    if target is None:
        return len(events) - 1
    if isinstance(target, int):
        if not 1 <= target <= len(events):
            problems.add(
                "unknown_event",
                f"the session has no event {target} (it has {len(events)})",
                (*where, "event"),
            )
        return target - 1
    names = [event.name for event in events]
    if target not in names:
        known = [n for n in names if n is not None]
        problems.add(
            "unknown_event",
            f"no event is named `{target}`",
            (*where, "event"),
            did_you_mean(target, known) or f"named events: {', '.join(known) or 'none'}",
        )
        return -1
    return names.index(target)


def discover_monitor_cases(cases_dir: Path, repo: Path, rulesets: Path) -> list[MonitorCaseFile]:
    """Every row of every ``monitor/<name>.yaml`` under ``cases_dir``, loaded and checked."""
    rules = monitor_rules(rulesets)
    table = load_monitoring_table(rulesets / MONITOR_TABLE)
    found: list[MonitorCaseFile] = []
    for path in sorted((cases_dir / "monitor").glob("*.yaml")):
        found.extend(_load_file(path, repo, rules, table))
    return found


# ---------------------------------------------------------------------------------------------
# Running cases


@dataclass(frozen=True)
class MonitorSetup:
    """What every case runs with, compiled once: the monitor profile and the monitoring table."""

    profile: CompiledProfile
    table: MonitoringTable


def monitor_setup(rulesets: Path) -> MonitorSetup:
    return MonitorSetup(
        compile_profile(rulesets / "protocol.yaml", MONITOR_PROFILE),
        load_monitoring_table(rulesets / MONITOR_TABLE),
    )


def evaluate_monitor_case(
    case_file: MonitorCaseFile,
    setup: MonitorSetup,
    engines: Sequence[Engine] = ENGINES,
    cross_check: bool = False,
) -> dict[str, list[Actions]]:
    """Each engine's actions at every event of the case's session (``cross_check``: every
    durable-rules evaluation is also checked by the reference evaluator)."""
    runs: dict[str, list[Actions]] = {}
    for engine in engines:
        monitor = Monitor(
            setup.profile,
            setup.table,
            engine=engine,
            cross_check=cross_check and engine == "durable",
        )
        runs[engine] = [
            monitor.observe(dict(event.data), source=event.source, line=event.line)
            for event in case_file.events
        ]
    return runs


def _where(actions: Actions) -> str:
    event = actions.event
    time = event.at.strftime("%H:%M:%S")
    if event.at.microsecond:
        time += f".{event.at.microsecond:06d}".rstrip("0")
    return f"#{event.seq} {event.type} {time}"


def _undecided(actions: Actions) -> set[str]:
    if actions.evaluation is not None:
        return {missing.rule_id for missing in actions.evaluation.missing}
    return {
        rule
        for alert in actions.alerts
        if alert.kind == "cannot_decide"
        for rule in (alert.rule, *alert.also)
    }


def _expectation_problems(expected: MonitorExpected, actions: Actions) -> list[str]:
    problems: list[str] = []
    for drug, wanted in (("lidocaine", expected.lidocaine), ("ketamine", expected.ketamine)):
        state = actions.drugs[drug]
        if wanted is not None and state.action != wanted:
            why = f" ({', '.join(state.rules)})" if state.rules else ""
            problems.append(f"{drug} is {state.action}{why}, expected {wanted}")
    undecided = _undecided(actions)
    holding = set(actions.holding)
    for rule in expected.holding:
        if rule in undecided:
            problems.append(f"{rule} cannot be decided (data missing), expected it to hold")
        elif rule not in holding:
            problems.append(f"{rule} does not hold")
    problems += [
        f"{rule} cannot be decided (data missing): its drugs pause"
        if rule in undecided
        else f"{rule} holds"
        for rule in expected.not_holding
        if rule in holding
    ]
    problems += [f"{rule} is not undecided" for rule in expected.undecided if rule not in undecided]
    alerted = {alert.rule for alert in actions.alerts if alert.kind == "rule"}
    problems += [f"{rule} did not alert here" for rule in expected.alerts if rule not in alerted]
    problems += [f"{rule} alerted here" for rule in expected.not_alerts if rule in alerted]
    for drug, fragments in expected.awaiting_contains.items():
        awaiting = actions.drugs[drug].awaiting
        problems += [
            f"what {drug} awaits does not contain {fragment!r} "
            f"(awaits: {list(awaiting) or 'nothing'})"
            for fragment in fragments
            if not any(fragment in text for text in awaiting)
        ]
    for drug, rate in expected.rate_percent.items():
        actual = actions.drugs[drug].rate_percent
        if actual != rate:
            problems.append(f"{drug} rate is {actual}%, expected {rate:g}%")
    for drug, rules in expected.rules.items():
        behind = actions.drugs[drug].rules
        problems += [
            f"{rule} is not behind {drug}'s {actions.drugs[drug].action} "
            f"({', '.join(behind) or 'no rule'})"
            for rule in rules
            if rule not in behind
        ]
    problems += [
        f"no lifted pause contains {fragment!r} (lifted: {list(actions.lifted) or 'none'})"
        for fragment in expected.lifted_contains
        if not any(fragment in text for text in actions.lifted)
    ]
    problems += [
        f"no warning contains {fragment!r} (warnings: {list(actions.warnings) or 'none'})"
        for fragment in expected.warnings_contains
        if not any(fragment in text for text in actions.warnings)
    ]
    if expected.no_warnings and actions.warnings:
        problems.append(f"warnings given: {list(actions.warnings)}")
    if expected.observe_minutes is not None and actions.observe_minutes != expected.observe_minutes:
        problems.append(
            f"observation is {actions.observe_minutes:g} min, expected {expected.observe_minutes:g}"
        )
    problems += [
        f"{rule} is not among the rules for the observation time "
        f"({', '.join(actions.observe_rules)})"
        for rule in expected.observe_rules
        if rule not in actions.observe_rules
    ]
    for rule, fragments in expected.message_contains.items():
        messages = [alert.message for alert in actions.alerts if alert.rule == rule]
        problems += [
            f"no {rule} alert here contains {fragment!r} (alerts: {messages or 'none'})"
            for fragment in fragments
            if not any(fragment in message for message in messages)
        ]
    return problems


def _case_problems(case_file: MonitorCaseFile, actions: Sequence[Actions]) -> list[str]:
    case = case_file.case
    assert case is not None
    problems: list[str] = []
    for expected, index in zip(case.expect, case_file.checkpoints, strict=True):
        problems += [
            f"at {_where(actions[index])}: {problem}"
            for problem in _expectation_problems(expected, actions[index])
        ]
    return problems


def engine_differences(runs: Mapping[str, Sequence[Actions]]) -> list[str]:
    """Where the engines' actions differ: the first event, and the parts that differ."""
    engines = list(runs)
    first = engines[0]
    problems: list[str] = []
    for other in engines[1:]:
        for mine, theirs in zip(runs[first], runs[other], strict=True):
            left, right = mine.to_dict(), theirs.to_dict()
            if left != right:
                keys = sorted(k for k in left if left[k] != right.get(k))
                problems.append(
                    f"{first} and {other} differ at {_where(mine)} in {', '.join(keys)}: "
                    + "; ".join(f"{k}: {left[k]!r} vs {right.get(k)!r}" for k in keys)
                )
                break
    return problems


def monitor_problems(
    case_file: MonitorCaseFile, runs: Mapping[str, Sequence[Actions]]
) -> list[str]:
    """Every way the engines' actions fall short of the case, and every way they differ."""
    by_engine = {engine: _case_problems(case_file, actions) for engine, actions in runs.items()}
    distinct = {tuple(problems) for problems in by_engine.values()}
    if len(distinct) == 1:
        problems = list(next(iter(distinct)))
    else:
        problems = [f"{engine}: {p}" for engine, found in by_engine.items() for p in found]
    return problems + engine_differences(runs)


def describe_monitor(case_file: MonitorCaseFile, actions: Sequence[Actions]) -> str:
    """The session as the monitor saw it: one line per event, with what held and alerted."""
    checked = set(case_file.checkpoints)
    lines = []
    for index, step in enumerate(actions):
        drugs = ", ".join(
            f"{d} {s.action}"
            + (f" {s.rate_percent:g}%" if s.rate_percent is not None else "")
            + (f" ({', '.join(s.rules)})" if s.rules and s.action != "CONTINUE" else "")
            for d, s in step.drugs.items()
            if s.action != "NOT_GIVEN"
        )
        mark = "*" if index in checked else " "
        line = f" {mark}{_where(step)}: {drugs}"
        if step.holding:
            line += f"; holding {', '.join(step.holding)}"
        alerts = [a.rule if a.kind == "rule" else f"cannot decide {a.rule}" for a in step.alerts]
        if alerts:
            line += f"; alerts {', '.join(alerts)}"
        lines.append(line)
        lines += [f"      lifted: {text}" for text in step.lifted]
        lines += [f"      warning: {text}" for text in step.warnings]
    if actions:
        lines.append(
            f"  observe {actions[-1].observe_minutes:g} min "
            f"({', '.join(actions[-1].observe_rules)})"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Coverage


def monitor_rulesets(rulesets: Path) -> tuple[str, ...]:
    """The ruleset files of the protocol's monitor profiles."""
    protocol = load_protocol(rulesets / "protocol.yaml")
    return tuple(
        dict.fromkeys(
            name for p in protocol.profiles.values() if p.kind == "monitor" for name in p.rulesets
        )
    )


def monitor_rules(rulesets: Path) -> tuple[str, ...]:
    """Every rule id of the monitor rulesets."""
    from .api import evaluator_for

    return tuple(
        rule.id
        for name in monitor_rulesets(rulesets)
        for rule in evaluator_for(rulesets / name, engine="reference").compiled.rules
    )


@dataclass(frozen=True)
class _Shown:
    fired: tuple[str, ...]
    not_fired: tuple[str, ...]


def _shown_by(case: MonitorCase) -> _Shown:
    """What a case shows: rules holding or alerting at one of its events, and rules shown
    not holding at one."""
    return _Shown(
        fired=tuple(rule for e in case.expect for rule in (*e.holding, *e.alerts)),
        not_fired=tuple(rule for e in case.expect for rule in e.not_holding),
    )


def monitor_coverage_gaps(cases: Iterable[MonitorCase], rulesets: Path) -> list[CoverageGap]:
    """Rules of the monitor rulesets that no case shows holding, or none shows not holding.
    Cases marked ``xfail`` prove nothing and do not count."""
    from .api import evaluator_for

    shown = [_shown_by(case) for case in cases if case.xfail is None]
    return [
        gap
        for name in monitor_rulesets(rulesets)
        for gap in rule_gaps(
            Path(name).stem,
            [r.id for r in evaluator_for(rulesets / name, engine="reference").compiled.rules],
            shown,
        )
    ]
