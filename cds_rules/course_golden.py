"""Golden course cases: ``tests/golden/course/<name>.yaml``, each a table of cases on one course.

A file names a ``base`` course file and lists cases; each case patches the base (``sessions``
is patched by session number; number n+1 adds a session copied from session n, a day and 24
hours later) and says what the decision after one session must be. A clinician adds a case by
adding a row: no Python. See ``tests/golden/README.md``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from .course import CourseReport, CourseRunner, SessionReport, parse_course, status_label
from .dosing import load_dosing_table
from .errors import CdsRulesError
from .golden import (
    DOSE_TABLE,
    CoverageGap,
    _CaseModel,
    _fragment_problems,
    _number_problems,
    _validation_details,
    merge,
    rule_gaps,
)
from .protocol import compile_profile, load_protocol
from .spec import CourseAction
from .yamlio import load_yaml_text

__all__ = [
    "CourseCase",
    "CourseCaseFile",
    "course_coverage_gaps",
    "course_problems",
    "course_rulesets",
    "describe_course",
    "discover_course_cases",
    "evaluate_course_case",
]

Status = Literal["OK", "NEEDS_REVIEW", "CANNOT_EVALUATE", "INELIGIBLE"]
Verdict = Literal["first session", "no escalation", "allowed", "not allowed", "not shown"]


class CourseExpected(_CaseModel):
    #: The session whose decision is checked (the decision for the session after it).
    session: int = Field(ge=1)
    next: CourseAction | None = None
    by_drug: dict[Literal["lidocaine", "ketamine"], CourseAction] = Field(default_factory=dict)
    status: Status | None = None
    escalation_ready: Literal["established", "not_established", "unknown"] | None = None
    #: Whether this session's own escalation was allowed.
    escalation: Verdict | None = None
    escalation_against: tuple[str, ...] = ()
    #: Rules that fired for this session, rules that did not, and rules left undecided.
    fired: tuple[str, ...] = ()
    not_fired: tuple[str, ...] = ()
    undecided: tuple[str, ...] = ()
    next_lidocaine_mg_per_kg: float | None = None
    next_lidocaine_mg: float | None = None
    next_ketamine_mg: float | None = None
    no_next_session: bool = False
    lidocaine_check: Literal["ACCEPT", "REJECT", "NEEDS_REVIEW", "CANNOT_EVALUATE"] | None = None
    ketamine_check: Literal["ACCEPT", "REJECT", "NEEDS_REVIEW", "CANNOT_EVALUATE"] | None = None
    band: str | None = None
    decrease_points: float | None = None
    decrease_percent: float | None = None
    to_record: tuple[str, ...] = ()
    course_status: Status | None = None
    deviations_contain: tuple[str, ...] = ()
    no_deviations: bool = False
    message_contains: dict[str, str] = Field(default_factory=dict)


class CourseCase(_CaseModel):
    case: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    source: str
    patch: dict[str, Any] | None = None
    expected: CourseExpected


class CourseTable(_CaseModel):
    title: str
    description: str | None = None
    base: str
    cases: tuple[dict[str, Any], ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _relative(self) -> CourseTable:
        if Path(self.base).is_absolute():
            raise ValueError("`base` is a path from the repository root")
        return self


@dataclass(frozen=True)
class CourseCaseFile:
    path: Path
    name: str
    base: str
    case: CourseCase | None
    error: str | None


def discover_course_cases(cases_dir: Path, repo: Path) -> list[CourseCaseFile]:
    """Every row of every ``course/<name>.yaml`` under ``cases_dir``, loaded and checked."""
    found: list[CourseCaseFile] = []
    for path in sorted((cases_dir / "course").glob("*.yaml")):
        name = path.relative_to(repo).as_posix() if path.is_relative_to(repo) else str(path)
        try:
            table = CourseTable.model_validate(
                load_yaml_text(path.read_text(encoding="utf-8"), name).data
            )
        except CdsRulesError as error:
            found.append(CourseCaseFile(path, name, "", None, str(error)))
            continue
        except ValidationError as error:
            found.append(CourseCaseFile(path, name, "", None, _validation_details(error)))
            continue
        if not (repo / table.base).is_file():
            found.append(CourseCaseFile(path, name, table.base, None, f"no file `{table.base}`"))
            continue
        seen: set[str] = set()
        for index, row in enumerate(table.cases):
            row_name = f"{name}#{row.get('case', index + 1)}"
            try:
                case = CourseCase.model_validate(row)
            except ValidationError as error:
                found.append(
                    CourseCaseFile(path, row_name, table.base, None, _validation_details(error))
                )
                continue
            problems = []
            if case.case in seen:
                problems.append(f"`case: {case.case}` is repeated in the table")
            seen.add(case.case)
            overlap = set(case.expected.fired) & set(case.expected.not_fired)
            if overlap:
                problems.append(f"{sorted(overlap)} both in fired and not_fired")
            found.append(
                CourseCaseFile(
                    path,
                    row_name,
                    table.base,
                    None if problems else case,
                    "; ".join(problems) or None,
                )
            )
    return found


def _patched(base: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    data = copy.deepcopy(base)
    if not patch:
        return data
    patch = dict(patch)
    sessions_patch = patch.pop("sessions", None)
    data = dict(merge(data, patch))
    if sessions_patch is not None:
        if not isinstance(sessions_patch, dict):
            raise ValueError("`patch.sessions` maps session numbers to changes")
        sessions = list(data["sessions"])
        for key in sorted(sessions_patch, key=int):
            number = int(key)
            if number == len(sessions) + 1:
                new = copy.deepcopy(sessions[-1])
                new["number"] = number
                new["day"] = sessions[-1]["day"] + 1
                if isinstance(new.get("started_at"), datetime):
                    new["started_at"] = new["started_at"] + timedelta(hours=24)
                sessions.append(new)
            if not 1 <= number <= len(sessions):
                raise ValueError(f"`patch.sessions` has no session {number} to change")
            sessions[number - 1] = merge(sessions[number - 1], sessions_patch[key])
        data["sessions"] = sessions
    return data


def course_rulesets(rulesets: Path) -> tuple[str, ...]:
    """The ruleset files of the protocol's course profiles."""
    protocol = load_protocol(rulesets / "protocol.yaml")
    return tuple(
        dict.fromkeys(
            name for p in protocol.profiles.values() if p.kind == "course" for name in p.rulesets
        )
    )


def evaluate_course_case(
    case_file: CourseCaseFile,
    repo: Path,
    rulesets: Path,
    engine: Literal["durable", "reference"] = "durable",
    cross_check: bool = True,
) -> CourseReport:
    case = case_file.case
    assert case is not None
    base_path = repo / case_file.base
    base = load_yaml_text(base_path.read_text(encoding="utf-8"), case_file.base).data
    data = _patched(base, case.patch)
    loaded = parse_course(data, case_file.name, None, base_path.parent)
    runner = CourseRunner(
        compile_profile(rulesets / "protocol.yaml", "course"),
        load_dosing_table(rulesets / DOSE_TABLE),
        engine=engine,
        cross_check=cross_check,
    )
    return runner.run(loaded)


def _session(report: CourseReport, number: int) -> SessionReport | None:
    return next((s for s in report.sessions if s.number == number), None)


def course_problems(expected: CourseExpected, report: CourseReport) -> list[str]:
    """Every way a course result falls short of what the case expects."""
    session = _session(report, expected.session)
    if session is None:
        return [f"the course has no session {expected.session}"]
    problems: list[str] = []
    decision = session.next
    if expected.next is not None and decision.action != expected.next:
        problems.append(f"next is {decision.action.value}, expected {expected.next.value}")
    for drug, action in expected.by_drug.items():
        if decision.by_drug[drug] != action:
            problems.append(
                f"{drug} next is {decision.by_drug[drug].value}, expected {action.value}"
            )
    if expected.status is not None and status_label(decision.status) != expected.status:
        problems.append(f"status is {status_label(decision.status)}, expected {expected.status}")
    if (
        expected.escalation_ready is not None
        and decision.escalation_ready != expected.escalation_ready
    ):
        problems.append(
            f"ESC-01 is {decision.escalation_ready}, expected {expected.escalation_ready}"
        )
    escalation = session.escalation
    if expected.escalation is not None and escalation.verdict != expected.escalation:
        problems.append(f"escalation is {escalation.verdict!r}, expected {expected.escalation!r}")
    problems += [
        f"escalation is not against {rule} (against: {', '.join(escalation.against) or 'none'})"
        for rule in expected.escalation_against
        if rule not in escalation.against
    ]
    fired = {rule.rule_id for rule in session.evaluation.fired}
    undecided = {m.rule_id for m in session.evaluation.missing}
    problems += [f"{rule} did not fire" for rule in expected.fired if rule not in fired]
    problems += [f"{rule} fired" for rule in expected.not_fired if rule in fired]
    problems += [f"{rule} fired" for rule in expected.undecided if rule in fired]
    problems += [f"{rule} is not undecided" for rule in expected.undecided if rule not in undecided]
    plan = decision.plan
    if expected.no_next_session and plan is not None:
        problems.append("a next session is planned, expected none")
    wants_plan = (
        expected.next_lidocaine_mg_per_kg,
        expected.next_lidocaine_mg,
        expected.next_ketamine_mg,
    )
    if any(value is not None for value in wants_plan) and plan is None:
        problems.append("no next session is planned")
    elif plan is not None:
        lido = plan.lidocaine
        problems += _number_problems(
            "next lidocaine mg/kg",
            lido.mg_per_kg if lido else None,
            expected.next_lidocaine_mg_per_kg,
        )
        problems += _number_problems(
            "next lidocaine mg", lido.mg if lido else None, expected.next_lidocaine_mg
        )
        ket_mg = plan.ketamine.mg if plan.ketamine else Decimal(0)
        problems += _number_problems("next ketamine mg", ket_mg, expected.next_ketamine_mg)
    for drug, wanted in (
        ("lidocaine", expected.lidocaine_check),
        ("ketamine", expected.ketamine_check),
    ):
        day = session.lidocaine if drug == "lidocaine" else session.ketamine
        actual = day.check.decision if day.check is not None else None
        if wanted is not None and actual != wanted:
            problems.append(f"{drug} dose check is {actual}, expected {wanted}")
    response = session.response
    if expected.band is not None and response.band != expected.band:
        problems.append(f"response band is {response.band!r}, expected {expected.band!r}")
    problems += _number_problems(
        "VNRS decrease", response.decrease_points, expected.decrease_points
    )
    problems += _number_problems(
        "VNRS decrease %", response.decrease_percent, expected.decrease_percent
    )
    problems += [
        f"`{name}` is not among what to record ({', '.join(decision.to_record) or 'nothing'})"
        for name in expected.to_record
        if name not in decision.to_record
    ]
    if expected.course_status is not None and status_label(report.status) != expected.course_status:
        problems.append(
            f"course status is {status_label(report.status)}, expected {expected.course_status}"
        )
    problems += [
        f"no deviation contains {fragment!r}"
        for fragment in expected.deviations_contain
        if not any(fragment in line for line in report.deviations)
    ]
    if expected.no_deviations and report.deviations:
        problems.append(f"deviations found: {list(report.deviations)}")
    messages = [(f.rule_id, f.message) for f in session.evaluation.findings]
    return problems + _fragment_problems(expected.message_contains, messages, "finding", "findings")


def describe_course(report: CourseReport, number: int) -> str:
    session = _session(report, number)
    if session is None:
        return f"  sessions: {[s.number for s in report.sessions]}"
    decision = session.next
    lines = [
        f"  session {number}: next {decision.action.value} "
        f"({', '.join(f'{d} {a.value}' for d, a in decision.by_drug.items())}), "
        f"status {status_label(decision.status)}, ESC-01 {decision.escalation_ready}, "
        f"escalation {session.escalation.verdict}",
        f"  fired: {', '.join(r.rule_id for r in session.evaluation.fired) or 'none'}",
        f"  undecided: {', '.join(m.rule_id for m in session.evaluation.missing) or 'none'}",
    ]
    if decision.plan is not None and decision.plan.lidocaine is not None:
        ket = decision.plan.ketamine.mg if decision.plan.ketamine else 0
        lines.append(
            f"  next: lidocaine {decision.plan.lidocaine.mg_per_kg} mg/kg "
            f"({decision.plan.lidocaine.mg} mg), ketamine {ket} mg"
        )
    lines += [f"  deviation: {line}" for line in report.deviations]
    return "\n".join(lines)


def course_coverage_gaps(cases: Iterable[CourseCase], rulesets: Path) -> list[CoverageGap]:
    """Rules of the course rulesets that no case fires, or that no case shows not firing."""
    from .api import evaluator_for

    expected = [case.expected for case in cases]
    return [
        gap
        for name in course_rulesets(rulesets)
        for gap in rule_gaps(
            Path(name).stem,
            [r.id for r in evaluator_for(rulesets / name, engine="reference").compiled.rules],
            expected,
        )
    ]
