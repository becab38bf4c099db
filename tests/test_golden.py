"""Golden cases: clinical expectations kept as data files and run through every evaluator.

Each file in ``tests/golden/<profile or ruleset>/`` names a profile of the protocol or one
ruleset, a patient fixture, optionally a patch, and the expected decision, gate decision,
per-drug verdicts, rules that must and must not fire, criterion statuses, missing data and
message fragments (format: ``tests/golden/README.md``; runner: ``cds_rules.golden``). Every case
runs on durable-rules, on the reference evaluator and on durable-rules cross-checked against
the reference evaluator; the two evaluators must also agree with each other. Adding a clinical
case means adding a file, not code.

The seed patient's whole result is also compared with ``tests/golden/snapshots/seed.json``
(content hashes masked); regenerate it with ``CDS_RULES_UPDATE_SNAPSHOTS=1``.

Dose, course and monitor cases (``dose/``, ``course/``, ``monitor/``) have their own formats,
described in the same README; monitor cases replay an infusion session event by event on both
evaluators, which must meet the case and give the same actions at every event.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from cds_rules.api import evaluator_for
from cds_rules.course_golden import (
    CourseCaseFile,
    course_coverage_gaps,
    course_problems,
    course_rulesets,
    describe_course,
    discover_course_cases,
    evaluate_course_case,
)
from cds_rules.errors import CdsRulesError
from cds_rules.evaluation import Evaluation
from cds_rules.facts import PatientFacts, load_patient
from cds_rules.golden import (
    CaseFile,
    DoseCaseFile,
    Mode,
    coverage_gaps,
    describe,
    describe_dose,
    discover,
    discover_dose_cases,
    dose_coverage_gaps,
    dose_problems,
    evaluate_case,
    evaluate_dose_case,
    fired_rules,
    merge,
    patient_of,
    problems_with,
    shipped_rules,
)
from cds_rules.monitor_golden import (
    ENGINES,
    Engine,
    MonitorCaseFile,
    describe_monitor,
    discover_monitor_cases,
    engine_differences,
    evaluate_monitor_case,
    monitor_coverage_gaps,
    monitor_problems,
    monitor_rulesets,
    monitor_setup,
)
from cds_rules.protocol import Assessment, assessor_for
from cds_rules.spec import CourseAction

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
RULESETS = REPO / "rulesets"
SNAPSHOTS = GOLDEN / "snapshots"
SEED_PATIENT = REPO / "fixtures" / "patients" / "seed.yaml"
UPDATE_SNAPSHOTS = "CDS_RULES_UPDATE_SNAPSHOTS"

MODES: tuple[Mode, ...] = ("durable", "reference", "cross_check")

CASES = discover(GOLDEN, REPO, RULESETS)


def _params(with_xfail: bool) -> list[Any]:
    params = []
    for case_file in CASES:
        marks = []
        if with_xfail and case_file.case is not None and case_file.case.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=case_file.case.xfail))
        # A table row is named by its case; a case file by its file name.
        name = case_file.name.partition("#")[2] or case_file.path.stem
        params.append(pytest.param(case_file, id=name, marks=marks))
    return params


@pytest.mark.parametrize(
    ("base", "patch", "expected"),
    [
        ({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}, {"a": {"b": 1, "c": 3}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": {"b": 1}}, {"a": None}, {"a": None}),
        ({"a": None}, {"a": {"b": 1}}, {"a": {"b": 1}}),
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        (
            {"a": {"b": {"c": 1, "d": 2}}},
            {"a": {"b": {"d": None}}},
            {"a": {"b": {"c": 1, "d": None}}},
        ),
    ],
)
def test_patch_merges_mappings_and_replaces_lists_and_scalars(
    base: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    before = json.dumps(base)
    assert merge(base, patch) == expected
    assert json.dumps(base) == before, "merge changed its base argument"


def _spec(case_file: CaseFile) -> Any:
    if case_file.case is None:
        pytest.fail(f"{case_file.name}: not a valid golden case: {case_file.error}", pytrace=False)
    return case_file.case


def _patient(case_file: CaseFile) -> PatientFacts:
    try:
        return patient_of(case_file, REPO)
    except CdsRulesError as error:
        pytest.fail(
            f"{case_file.name}: the patched patient is not valid input:\n{error}", pytrace=False
        )


def evaluate(case_file: CaseFile, mode: Mode) -> Evaluation | Assessment:
    _spec(case_file)
    _patient(case_file)
    return evaluate_case(case_file, mode, REPO, RULESETS)


def test_golden_cases_exist() -> None:
    assert CASES, f"no golden case files found under {GOLDEN.relative_to(REPO)}/*/"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case_file", _params(with_xfail=True))
def test_case(case_file: CaseFile, mode: Mode) -> None:
    case = _spec(case_file)
    result = evaluate(case_file, mode)
    problems = problems_with(case.expected, result)
    if problems:
        pytest.fail(
            f"{case_file.name} ({case.title}; {case.source}) with the {mode} evaluator:\n"
            + "\n".join(f"- {problem}" for problem in problems)
            + "\nactual result:\n"
            + describe(result),
            pytrace=False,
        )


def _agreement_view(result: Evaluation | Assessment) -> dict[str, Any]:
    view: dict[str, Any] = {
        "decision": result.decision.value,
        # firing order is the engine's own; which rules fired (and how often) is not
        "fired": sorted(fired_rules(result)),
        "missing": [(entry.rule_id, entry.paths) for entry in result.missing],
        "criteria": [(criterion.fact, criterion.status) for criterion in result.criteria],
        "findings": sorted(
            (finding.outcome.value, finding.rule_id, finding.message) for finding in result.findings
        ),
    }
    if isinstance(result, Assessment):
        view["gate"] = result.gate.decision if result.gate else None
        view["drugs"] = [(d.drug, d.outcome.value) for d in result.drugs]
    return view


@pytest.mark.parametrize("case_file", _params(with_xfail=False))
def test_durable_and_reference_agree(case_file: CaseFile) -> None:
    durable = evaluate(case_file, "durable")
    reference = evaluate(case_file, "reference")
    if _agreement_view(durable) != _agreement_view(reference):
        pytest.fail(
            f"{case_file.name}: durable-rules and the reference evaluator disagree\n"
            f"durable-rules:\n{describe(durable)}\nreference evaluator:\n{describe(reference)}",
            pytrace=False,
        )


def _valid_cases() -> list[CaseFile]:
    return [case_file for case_file in CASES if case_file.case is not None]


def test_case_files_are_valid() -> None:
    invalid = [f"{case_file.name}: {case_file.error}" for case_file in CASES if case_file.error]
    assert not invalid, "invalid golden case files:\n" + "\n".join(invalid)


def _known(case: Any) -> tuple[set[str], set[str]]:
    if case.profile is not None:
        assessor = assessor_for(RULESETS / "protocol.yaml", case.profile, engine="reference")
        rulesets = [e.compiled for e in assessor.evaluators]
    else:
        rulesets = [evaluator_for(RULESETS / f"{case.ruleset}.yaml", engine="reference").compiled]
    rules = {rule.id for ruleset in rulesets for rule in ruleset.rules}
    criteria = {c.fact for ruleset in rulesets for c in ruleset.criteria}
    return rules, criteria


def test_cases_name_only_rules_and_criteria_they_evaluate() -> None:
    problems = []
    for case_file in _valid_cases():
        case = _spec(case_file)
        known, criteria = _known(case)
        expected = case.expected
        named = [
            *expected.fired,
            *expected.not_fired,
            *expected.missing,
            *expected.message_contains,
            *expected.blocking,
        ]
        problems += [
            f"{case_file.name}: unknown rule `{rule}`" for rule in named if rule not in known
        ]
        problems += [
            f"{case_file.name}: unknown criterion `{fact}`"
            for fact in expected.criteria
            if fact not in criteria
        ]
        problems += [
            f"{case_file.name}: `{rule}` is both in fired and not_fired"
            for rule in set(expected.fired) & set(expected.not_fired)
        ]
    assert not problems, "\n".join(problems)


def test_every_shipped_rule_fires_in_one_case_and_misses_in_another() -> None:
    gaps = coverage_gaps((_spec(c) for c in _valid_cases()), RULESETS)
    assert shipped_rules(RULESETS), "no shipped rulesets found"
    assert not gaps, "rules without a golden case on each side of their condition:\n" + "\n".join(
        str(gap) for gap in gaps
    )


# ------------------------------------------------------------------------------------------
# Snapshot of the seed patient's whole result


def masked(result: Evaluation | Assessment) -> dict[str, Any]:
    """The result as JSON data with every content hash replaced by ``<hash>``."""

    def mask(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: "<hash>" if k == "content_hash" else mask(v) for k, v in node.items()}
        if isinstance(node, list):
            return [mask(item) for item in node]
        return node

    data: dict[str, Any] = mask(result.to_dict())
    return data


def _snapshot_text(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def check_snapshot(name: str, produce: Callable[[], Evaluation | Assessment]) -> None:
    path = SNAPSHOTS / f"{name}.json"
    shown = path.relative_to(REPO).as_posix()
    actual = _snapshot_text(masked(produce()))
    if os.environ.get(UPDATE_SNAPSHOTS) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    how = f"run with {UPDATE_SNAPSHOTS}=1 to regenerate it, then review the diff like code"
    if not path.is_file():
        pytest.fail(f"snapshot {shown} does not exist; {how}", pytrace=False)
    stored = path.read_text(encoding="utf-8")
    if json.loads(stored) != json.loads(actual):
        diff = "".join(
            difflib.unified_diff(
                stored.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=shown,
                tofile="actual result",
            )
        )
        pytest.fail(f"the result differs from snapshot {shown}; {how}\n{diff}", pytrace=False)


def test_seed_result_matches_snapshot() -> None:
    assessor = assessor_for(RULESETS / "protocol.yaml", "screening")
    check_snapshot("seed", lambda: assessor.assess(load_patient(SEED_PATIENT)))


# ---------------------------------------------------------------------------------------------
# Dose cases (tests/golden/dose/): a session's planned doses, or an ordered dose, against
# rulesets/dosing.yaml.

DOSE_CASES = discover_dose_cases(GOLDEN, REPO)


def test_dose_cases_exist_and_are_valid() -> None:
    assert DOSE_CASES, "no dose cases under tests/golden/dose/"
    invalid = [
        f"{case_file.name}: {case_file.error}" for case_file in DOSE_CASES if case_file.error
    ]
    assert invalid == []


@pytest.mark.parametrize("case_file", DOSE_CASES, ids=lambda case_file: case_file.path.stem)
def test_dose_case(case_file: DoseCaseFile) -> None:
    case = case_file.case
    if case is None:
        pytest.fail(f"{case_file.name}: not a valid dose case: {case_file.error}", pytrace=False)
    result = evaluate_dose_case(case_file, REPO, RULESETS)
    problems = dose_problems(case.expected, result)
    if problems:
        pytest.fail(
            f"{case_file.name} ({case.title}; {case.source}):\n"
            + "\n".join(f"- {problem}" for problem in problems)
            + "\nactual result:\n"
            + describe_dose(result),
            pytrace=False,
        )


def test_every_dose_rule_decides_in_one_case_and_not_in_another() -> None:
    cases = [case_file.case for case_file in DOSE_CASES if case_file.case is not None]
    assert [str(gap) for gap in dose_coverage_gaps(cases, RULESETS)] == []


# ------------------------------------------------------------------------------------------
# Course cases (tests/golden/course/): the decision after one session of a patched course.

COURSE_CASES = discover_course_cases(GOLDEN, REPO)


def test_course_cases_exist_and_are_valid() -> None:
    assert COURSE_CASES, "no course cases under tests/golden/course/"
    invalid = [f"{c.name}: {c.error}" for c in COURSE_CASES if c.case is None]
    assert not invalid, "\n".join(invalid)


@pytest.mark.parametrize("case_file", COURSE_CASES, ids=lambda c: c.name)
def test_course_case(case_file: CourseCaseFile) -> None:
    case = case_file.case
    if case is None:
        pytest.fail(f"{case_file.name}: not a valid course case: {case_file.error}", pytrace=False)
    report = evaluate_course_case(case_file, REPO, RULESETS)
    problems = course_problems(case.expected, report)
    if problems:
        pytest.fail(
            f"{case_file.name} ({case.title}):\n  - "
            + "\n  - ".join(problems)
            + "\n"
            + describe_course(report, case.expected.session),
            pytrace=False,
        )


def test_every_course_rule_fires_in_one_case_and_not_in_another() -> None:
    cases = [c.case for c in COURSE_CASES if c.case is not None]
    assert course_rulesets(RULESETS) == ("course.yaml",)
    assert [str(gap) for gap in course_coverage_gaps(cases, RULESETS)] == []


def test_a_course_case_that_expects_the_wrong_decision_fails() -> None:
    """The checker reports what a clinician would notice: decision, status, dose, rules."""
    case_file = next(c for c in COURSE_CASES if c.case and c.case.case == "tier-1-last-sign-holds")
    assert case_file.case is not None
    report = evaluate_course_case(case_file, REPO, RULESETS)
    wrong = case_file.case.expected.model_copy(
        update={
            "next": CourseAction.ESCALATE,
            "status": "NEEDS_REVIEW",
            "next_lidocaine_mg_per_kg": 4.0,
            "fired": ("ESC-03-LAST",),
            "not_fired": ("ESC-02-LAST",),
        }
    )
    assert course_problems(wrong, report) == [
        "next is HOLD_DOSE, expected ESCALATE",
        "status is OK, expected NEEDS_REVIEW",
        "ESC-03-LAST did not fire",
        "ESC-02-LAST fired",
        "next lidocaine mg/kg is 3.75, expected 4.0",
    ]


# ------------------------------------------------------------------------------------------
# Monitor cases (tests/golden/monitor/): what each drug does at the events of a session.

MONITOR_CASES = discover_monitor_cases(GOLDEN, REPO, RULESETS)
MONITOR_SETUP = monitor_setup(RULESETS)


def _monitor_params(with_xfail: bool) -> list[Any]:
    params = []
    for case_file in MONITOR_CASES:
        marks = []
        if with_xfail and case_file.case is not None and case_file.case.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=case_file.case.xfail))
        # Case names are unique within a file: the file's stem tells them apart.
        name = f"{case_file.path.stem}#{case_file.name.partition('#')[2]}"
        params.append(pytest.param(case_file, id=name, marks=marks))
    return params


def _monitor_case(case_file: MonitorCaseFile) -> Any:
    if case_file.case is None:
        pytest.fail(
            f"{case_file.name}: not a valid monitor case:\n{case_file.error}", pytrace=False
        )
    return case_file.case


def test_monitor_cases_exist_and_are_valid() -> None:
    assert MONITOR_CASES, "no monitor cases under tests/golden/monitor/"
    invalid = [f"{c.name}: {c.error}" for c in MONITOR_CASES if c.case is None]
    assert not invalid, "\n".join(invalid)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case_file", _monitor_params(with_xfail=True))
def test_monitor_case(case_file: MonitorCaseFile, engine: Engine) -> None:
    case = _monitor_case(case_file)
    runs = evaluate_monitor_case(case_file, MONITOR_SETUP, engines=(engine,))
    problems = monitor_problems(case_file, runs)
    if problems:
        pytest.fail(
            f"{case_file.name} ({case.note or 'no note'}) with the {engine} evaluator:\n"
            + "\n".join(f"- {problem}" for problem in problems)
            + "\nthe session (* the events checked):\n"
            + describe_monitor(case_file, runs[engine]),
            pytrace=False,
        )


@pytest.mark.parametrize("case_file", _monitor_params(with_xfail=False))
def test_monitor_engines_agree(case_file: MonitorCaseFile) -> None:
    """durable-rules and the reference evaluator give the same actions at every event."""
    _monitor_case(case_file)
    runs = evaluate_monitor_case(case_file, MONITOR_SETUP)
    assert list(runs) == list(ENGINES)
    assert len(runs["durable"]) == len(case_file.events)
    assert engine_differences(runs) == []


def test_every_monitor_rule_holds_in_one_case_and_not_in_another() -> None:
    cases = [c.case for c in MONITOR_CASES if c.case is not None]
    assert monitor_rulesets(RULESETS) == ("halts.yaml",)
    assert [str(gap) for gap in monitor_coverage_gaps(cases, RULESETS)] == []


def _monitor_case_named(name: str) -> MonitorCaseFile:
    return next(c for c in MONITOR_CASES if c.case is not None and c.case.name == name)


def test_a_monitor_case_that_expects_the_wrong_actions_fails() -> None:
    """The checker reports what the bedside team would notice: actions, rules, rates, waits."""
    case_file = _monitor_case_named("tier-1-sign-resolved-restarts-lidocaine-at-50-percent")
    case = case_file.case
    assert case is not None
    resolved = case.expect[0]
    wrong = resolved.model_copy(
        update={
            "lidocaine": "CONTINUE",
            "ketamine": "PAUSE",
            "holding": ("HALT-LAST-01",),
            "not_holding": ("HALT-SBP-01",),
            "rate_percent": {"lidocaine": 75.0},
            "alerts": ("HALT-LAST-01-RECUR",),
            "observe_minutes": 360.0,
        }
    )
    bad = MonitorCaseFile(
        case_file.path,
        case_file.name,
        case.model_copy(update={"expect": (wrong,)}),
        case_file.events,
        (case_file.checkpoints[0],),
        None,
    )
    runs = evaluate_monitor_case(bad, MONITOR_SETUP)
    at = "at #4 symptoms 09:08:00: "
    assert monitor_problems(bad, runs) == [
        at + "lidocaine is SLOW (HALT-LAST-01), expected CONTINUE",
        at + "ketamine is CONTINUE, expected PAUSE",
        at + "HALT-LAST-01 does not hold",
        at + "HALT-LAST-01-RECUR did not alert here",
        at + "lidocaine rate is 50.0%, expected 75%",
        at + "observation is 120 min, expected 360",
    ]


def _write_monitor_case(tmp_path: Path, text: str) -> list[MonitorCaseFile]:
    directory = tmp_path / "monitor"
    directory.mkdir()
    (directory / "broken.yaml").write_text(text, encoding="utf-8")
    return discover_monitor_cases(tmp_path, tmp_path, RULESETS)


_MONITOR_BASE = """\
title: "a malformed case"
base:
  - type: start
    at: "2026-03-03T09:00:00+00:00"
    session: broken
    planned: {lidocaine_mg: 280, ketamine_mg: 10}
    baseline: {sbp: 125, dbp: 80, hr: 80, spo2: 98, rr: 14, poss: 1}
cases:
"""


@pytest.mark.parametrize(
    ("case", "error"),
    [
        (
            "  - name: typo\n    events: []\n    expct: {lidocaine: PAUSE}\n",
            "broken.yaml:11:5: unknown_field: unknown field `expct` (at $.cases[0].expct); "
            "hint: did you mean `expect`?",
        ),
        (
            "  - name: typo\n    expect: {lidocaine: PAUSE, holdng: [HALT-RR-01]}\n",
            "broken.yaml:10:32: unknown_field: unknown field `holdng` "
            "(at $.cases[0].expect.holdng); hint: did you mean `holding`?",
        ),
        (
            "  - name: typo\n    expect:\n      - {lidocaine: PAUSED}\n",
            "broken.yaml:11:21: invalid_value: invalid value `PAUSED`: Input should be "
            "'CONTINUE', 'SLOW', 'PAUSE', 'STOP'",
        ),
        (
            "  - name: typo\n    events:\n      - {type: vitals, after: '90s', spo2: 93}\n"
            "    expect: {ketamine: PAUSE}\n",
            "broken.yaml:11:31: invalid_value: invalid delay `90s` (at $.cases[0].events[0].after)",
        ),
        (
            "  - name: typo\n    events:\n      - {type: vitals, after: '+1m', spo2: 140}\n"
            "    expect: {ketamine: PAUSE}\n",
            "broken.yaml:11:44: invalid_value: invalid value `140`: Input should be less than or "
            "equal to 100 (at $.cases[0].events[0].spo2)",
        ),
        (
            "  - name: typo\n    expect: {event: desaturation, ketamine: PAUSE}\n",
            "broken.yaml:10:21: unknown_event: no event is named `desaturation`",
        ),
        (
            "  - name: typo\n    expect: {holding: [HALT-RR-1]}\n",
            "broken.yaml:10:24: unknown_rule: unknown rule `HALT-RR-1` "
            "(at $.cases[0].expect.holding[0]); hint: did you mean `HALT-RR-01`?",
        ),
        (
            "  - name: typo\n    events:\n"
            "      - {type: symptoms, after: '+2m', present: [{sign: tinitus}]}\n"
            "    expect: {lidocaine: PAUSE}\n",
            "broken.yaml:11:57: unknown_sign: unknown sign `tinitus` "
            "(at $.cases[0].events[0].present[0].sign); hint: did you mean `tinnitus`?",
        ),
        (
            "  - name: typo\n    events:\n"
            "      - {type: now, at: '2026-03-03T08:59:59+00:00'}\n"
            "    expect: {lidocaine: CONTINUE}\n",
            "broken.yaml:11:25: before_start: `at` 2026-03-03T08:59:59+00:00 is before the "
            "session start",
        ),
    ],
    ids=[
        "unknown-key",
        "unknown-expectation",
        "unknown-action",
        "bad-delay",
        "bad-event",
        "unknown-event",
        "unknown-rule",
        "unknown-sign",
        "event-before-start",
    ],
)
def test_a_malformed_monitor_case_names_its_file_and_line(
    tmp_path: Path, case: str, error: str
) -> None:
    found = _write_monitor_case(tmp_path, _MONITOR_BASE + case)
    assert [c.case for c in found] == [None]
    assert error in str(found[0].error)
    assert found[0].name == "monitor/broken.yaml#typo"


def test_a_malformed_monitor_file_is_reported_once_with_its_line(tmp_path: Path) -> None:
    found = _write_monitor_case(tmp_path, _MONITOR_BASE.replace("title:", "titel:"))
    assert len(found) == 1 and found[0].case is None
    assert "broken.yaml:1:1: unknown_field: unknown field `titel`" in str(found[0].error)
    assert "broken.yaml:1:1: missing_field: missing required field `title`" in str(found[0].error)
