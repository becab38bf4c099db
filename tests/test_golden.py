"""Golden cases: clinical expectations kept as data files and run through every evaluator.

Each file in ``tests/golden/<ruleset>/`` names a ruleset and a patient fixture, optionally
patches the patient, and states the expected decision, the rules that must and must not fire,
criterion statuses, missing data and message fragments (format: ``tests/golden/README.md``).
Every case runs on durable-rules, on the reference evaluator and on durable-rules cross-checked
against the reference evaluator; the two evaluators must also agree with each other. Adding a
clinical case means adding a file, not code.

The seed patient's whole result is also compared with ``tests/golden/snapshots/seed.json``
(the ruleset content hash masked); regenerate it with ``CDS_RULES_UPDATE_SNAPSHOTS=1``.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cds_rules.api import evaluator_for
from cds_rules.errors import CdsRulesError
from cds_rules.evaluation import Evaluation
from cds_rules.facts import PatientFacts, load_patient, parse_patient
from cds_rules.spec import Outcome
from cds_rules.yamlio import load_yaml_text

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
RULESETS = REPO / "rulesets"
SNAPSHOTS = GOLDEN / "snapshots"
SEED_PATIENT = REPO / "fixtures" / "patients" / "seed.yaml"
UPDATE_SNAPSHOTS = "CDS_RULES_UPDATE_SNAPSHOTS"

Mode = Literal["durable", "reference", "cross_check"]
MODES: tuple[Mode, ...] = ("durable", "reference", "cross_check")
CriterionStatus = Literal["established", "not_established", "unknown"]


# ------------------------------------------------------------------------------------------
# The case file format


class _CaseModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Expected(_CaseModel):
    """What a case requires of the evaluation; every key but ``decision`` is optional."""

    decision: Outcome
    #: Rules that must fire with certainty.
    fired: tuple[str, ...] = ()
    #: Rules that must not fire (they may still be reported as missing data).
    not_fired: tuple[str, ...] = ()
    #: Criterion fact -> status.
    criteria: dict[str, CriterionStatus] = Field(default_factory=dict)
    #: Rule -> paths it must report as missing (the rule may report more).
    missing: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    #: Paths that no rule may report as missing.
    not_missing: tuple[str, ...] = ()
    #: Rule -> fragment(s) that one of its findings' messages must contain.
    message_contains: dict[str, str | tuple[str, ...]] = Field(default_factory=dict)


class GoldenCase(_CaseModel):
    case: str
    title: str
    source: str
    ruleset: str
    #: Patient file, relative to the repository root.
    patient: str
    #: Deep merge onto the patient: mappings merge, lists and scalars (including null) replace.
    patch: dict[str, Any] | None = None
    expected: Expected
    #: A known defect outside the case: the case is expected to fail (strict xfail).
    xfail: str | None = None


@dataclass(frozen=True)
class CaseFile:
    """A case file, loaded or not; ``error`` says why a file could not be read as a case."""

    path: Path
    case: GoldenCase | None
    error: str | None

    @property
    def name(self) -> str:
        return self.path.relative_to(REPO).as_posix()

    def spec(self) -> GoldenCase:
        if self.case is None:
            pytest.fail(f"{self.name}: not a valid golden case: {self.error}", pytrace=False)
        return self.case

    def ruleset_path(self) -> Path:
        return RULESETS / f"{self.spec().ruleset}.yaml"


def _load_case(path: Path) -> CaseFile:
    name = path.relative_to(REPO).as_posix()
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"), name).data
        case = GoldenCase.model_validate(data)
    except CdsRulesError as error:
        return CaseFile(path, None, str(error))
    except ValidationError as error:
        details = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(top)'}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        return CaseFile(path, None, details)
    problems = []
    if case.case != path.stem:
        problems.append(f"`case: {case.case}` differs from the file name `{path.stem}`")
    if case.ruleset != path.parent.name:
        problems.append(
            f"`ruleset: {case.ruleset}` differs from the directory `{path.parent.name}`"
        )
    if not (RULESETS / f"{case.ruleset}.yaml").is_file():
        problems.append(f"no ruleset file rulesets/{case.ruleset}.yaml")
    if not (REPO / case.patient).is_file():
        problems.append(f"no patient file `{case.patient}`")
    if problems:
        return CaseFile(path, None, "; ".join(problems))
    return CaseFile(path, case, None)


def _discover() -> list[CaseFile]:
    return [
        _load_case(path) for path in sorted(GOLDEN.glob("*/*.yaml")) if path.parent != SNAPSHOTS
    ]


CASES = _discover()


def _params(with_xfail: bool) -> list[Any]:
    params = []
    for case_file in CASES:
        marks = []
        if with_xfail and case_file.case is not None and case_file.case.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=case_file.case.xfail))
        params.append(pytest.param(case_file, id=case_file.path.stem, marks=marks))
    return params


# ------------------------------------------------------------------------------------------
# Building the patient and evaluating


def merge(base: Any, patch: Any) -> Any:
    """``patch`` deep-merged onto ``base`` as a new value (neither argument is changed)."""
    if isinstance(base, Mapping) and isinstance(patch, Mapping):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return patch


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


def patient_of(case_file: CaseFile) -> PatientFacts:
    """The case's patient: the fixture's YAML data, patched, validated as from the case file."""
    case = case_file.spec()
    fixture = REPO / case.patient
    data = load_yaml_text(fixture.read_text(encoding="utf-8"), case.patient).data
    if case.patch is not None:
        data = merge(data, case.patch)
    try:
        return parse_patient(data, source=case_file.name)
    except CdsRulesError as error:
        pytest.fail(
            f"{case_file.name}: the patched patient is not valid input:\n{error}", pytrace=False
        )


def evaluate(case_file: CaseFile, mode: Mode) -> Evaluation:
    ruleset = case_file.ruleset_path()
    if mode == "cross_check":
        evaluator = evaluator_for(ruleset, engine="durable", cross_check=True)
    else:
        evaluator = evaluator_for(ruleset, engine=mode)
    return evaluator.evaluate(patient_of(case_file))


def describe(evaluation: Evaluation) -> str:
    """The parts of a result a reader needs to see why a case failed."""
    lines = [f"  decision: {evaluation.decision.value} ({evaluation.engine})"]
    lines.append("  fired: " + (", ".join(f.rule_id for f in evaluation.fired) or "none"))
    lines.append("  missing:" + ("" if evaluation.missing else " none"))
    lines += [f"    {m.rule_id}: {', '.join(m.paths) or '(no paths)'}" for m in evaluation.missing]
    lines.append("  criteria: " + ", ".join(f"{c.fact}={c.status}" for c in evaluation.criteria))
    lines.append("  findings:")
    lines += [f"    {f.outcome.value} {f.rule_id}: {f.message}" for f in evaluation.findings]
    return "\n".join(lines)


def problems_with(expected: Expected, evaluation: Evaluation) -> list[str]:
    """Every way ``evaluation`` falls short of ``expected``."""
    problems = []
    if evaluation.decision != expected.decision:
        problems.append(
            f"decision is {evaluation.decision.value}, expected {expected.decision.value}"
        )
    fired = {rule.rule_id for rule in evaluation.fired}
    problems += [f"{rule} did not fire" for rule in expected.fired if rule not in fired]
    problems += [f"{rule} fired but must not" for rule in expected.not_fired if rule in fired]
    statuses = {criterion.fact: criterion.status for criterion in evaluation.criteria}
    for fact, status in expected.criteria.items():
        actual = statuses.get(fact, "absent")
        if actual != status:
            problems.append(f"criterion {fact} is {actual}, expected {status}")
    missing = {entry.rule_id: entry.paths for entry in evaluation.missing}
    for rule, paths in expected.missing.items():
        if rule not in missing:
            problems.append(f"{rule} is not reported as missing data (expected {', '.join(paths)})")
            continue
        problems += [
            f"{rule} does not report `{path}` missing (reports {', '.join(missing[rule])})"
            for path in paths
            if path not in missing[rule]
        ]
    for path in expected.not_missing:
        reporters = [rule for rule, paths in missing.items() if path in paths]
        if reporters:
            problems.append(f"`{path}` is reported missing by {', '.join(reporters)}")
    for rule, fragments in expected.message_contains.items():
        messages = [finding.message for finding in evaluation.findings if finding.rule_id == rule]
        for fragment in (fragments,) if isinstance(fragments, str) else fragments:
            if not any(fragment in message for message in messages):
                problems.append(
                    f"no {rule} finding contains {fragment!r} (messages: {messages or 'none'})"
                )
    return problems


# ------------------------------------------------------------------------------------------
# The tests


def test_golden_cases_exist() -> None:
    assert CASES, f"no golden case files found under {GOLDEN.relative_to(REPO)}/*/"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case_file", _params(with_xfail=True))
def test_case(case_file: CaseFile, mode: Mode) -> None:
    case = case_file.spec()
    evaluation = evaluate(case_file, mode)
    problems = problems_with(case.expected, evaluation)
    if problems:
        pytest.fail(
            f"{case_file.name} ({case.title}; {case.source}) with the {mode} evaluator:\n"
            + "\n".join(f"- {problem}" for problem in problems)
            + "\nactual result:\n"
            + describe(evaluation),
            pytrace=False,
        )


def _agreement_view(evaluation: Evaluation) -> dict[str, Any]:
    return {
        "decision": evaluation.decision.value,
        # firing order is the engine's own; which rules fired (and how often) is not
        "fired": sorted(rule.rule_id for rule in evaluation.fired),
        "missing": [(entry.rule_id, entry.paths) for entry in evaluation.missing],
        "criteria": [(criterion.fact, criterion.status) for criterion in evaluation.criteria],
        "findings": sorted(
            (finding.outcome.value, finding.rule_id, finding.message)
            for finding in evaluation.findings
        ),
    }


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


@cache
def _rule_ids(ruleset: Path) -> tuple[str, ...]:
    return tuple(rule.id for rule in evaluator_for(ruleset, engine="reference").compiled.rules)


def _valid_cases() -> list[CaseFile]:
    return [case_file for case_file in CASES if case_file.case is not None]


def test_case_files_are_valid() -> None:
    invalid = [f"{case_file.name}: {case_file.error}" for case_file in CASES if case_file.error]
    assert not invalid, "invalid golden case files:\n" + "\n".join(invalid)


def test_cases_name_only_rules_and_criteria_of_their_ruleset() -> None:
    problems = []
    for case_file in _valid_cases():
        case = case_file.spec()
        ruleset = case_file.ruleset_path()
        known = set(_rule_ids(ruleset))
        criteria = {c.fact for c in evaluator_for(ruleset, engine="reference").compiled.criteria}
        expected = case.expected
        named = [
            *expected.fired,
            *expected.not_fired,
            *expected.missing,
            *expected.message_contains,
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


def test_every_rule_fires_in_one_case_and_misses_in_another() -> None:
    by_ruleset: dict[Path, list[GoldenCase]] = {}
    for case_file in _valid_cases():
        case = case_file.spec()
        if case.xfail is None:  # a case known to fail proves nothing about coverage
            by_ruleset.setdefault(case_file.ruleset_path(), []).append(case)
    uncovered = []
    for ruleset, cases in sorted(by_ruleset.items()):
        fired = {rule for case in cases for rule in case.expected.fired}
        not_fired = {rule for case in cases for rule in case.expected.not_fired}
        for rule in _rule_ids(ruleset):
            gaps = [
                name
                for name, seen in (("fired", fired), ("not_fired", not_fired))
                if rule not in seen
            ]
            if gaps:
                uncovered.append(f"{ruleset.name} {rule}: in no case's {' or '.join(gaps)}")
    assert not uncovered, (
        "rules without a golden case on each side of their condition:\n" + "\n".join(uncovered)
    )


# ------------------------------------------------------------------------------------------
# Snapshot of the seed patient's whole result

_MASKS: dict[tuple[str, ...], str] = {("ruleset", "content_hash"): "<hash>"}


def masked(evaluation: Evaluation) -> dict[str, Any]:
    """The result as JSON data with volatile fields replaced by placeholders."""
    data = evaluation.to_dict()
    for path, placeholder in _MASKS.items():
        target = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = placeholder
    return data


def _snapshot_text(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def check_snapshot(name: str, produce: Callable[[], Evaluation]) -> None:
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
    evaluator = evaluator_for(RULESETS / "eligibility.yaml")
    check_snapshot("seed", lambda: evaluator.evaluate(load_patient(SEED_PATIENT)))
