"""The ``cds-rules`` command end to end: the exit code and what a user reads.

Every test runs the installed executable in a subprocess from the repository root, as a user
would, on patients from ``fixtures/patients/`` and ``tests/cli_inputs/`` (each input file there
states in its leading comment what it is about and the error it must produce). Each command
line runs once per module, on a thread pool, and the tests that read it share its result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from cds_rules import check_session, screen
from cds_rules.golden import merge
from cds_rules.protocol import Assessment

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "cds-rules"
INPUTS = "tests/cli_inputs"
INVALID_RULESETS = f"{INPUTS}/invalid_rulesets"
SEED = "fixtures/patients/seed.yaml"
SEED_WITH_PRETESTS = "fixtures/patients/seed-with-pretests.yaml"
PASSING = "fixtures/patients/passing.yaml"
PASSING_SESSION = "fixtures/patients/passing-session.yaml"
ELIGIBILITY = "rulesets/eligibility.yaml"

SCREEN_SEED = ("screen", SEED)
SCREEN_SEED_CROSS_CHECKED = ("screen", SEED, "--cross-check")
SCREEN_SEED_REFERENCE = ("screen", SEED, "--engine", "reference")
SCREEN_SEED_JSON = ("screen", SEED, "--json")
SCREEN_SEED_ELIGIBILITY = ("screen", SEED, "--ruleset", ELIGIBILITY)
GATE_PASSING = ("gate", PASSING_SESSION)
GATE_PASSING_JSON = ("gate", PASSING_SESSION, "--json")
GATE_WITHOUT_SESSION = ("gate", PASSING)
GOLDEN_FAILING = f"{INPUTS}/golden_failing"
TEST_FAILING_CASES = ("test", "--cases", GOLDEN_FAILING, "--coverage")
TEST_SHIPPED_CASES = ("test", "--coverage", "--engine", "reference")
INVALID_RULESET = f"{INVALID_RULESETS}/unknown_field.yaml"
SCREEN_WITH_INVALID_RULESET = ("screen", SEED, "--ruleset", INVALID_RULESET)
CHECK_RULESETS = ("check", "rulesets/")
CHECK_INVALID = ("check", INVALID_RULESETS)
CHECK_INVALID_JSON = ("check", INVALID_RULESETS, "--json")
SCHEMA_TO_STDOUT = ("schema", "--output", "-")
MISSING_RULESET = f"{INPUTS}/no_such_ruleset.yaml"
SCREEN_WITH_MISSING_RULESET = ("screen", SEED, "--ruleset", MISSING_RULESET)
TAGGED_RULESET = f"{INPUTS}/ruleset_with_unknown_tag.yaml"
CHECK_TAGGED_RULESET = ("check", TAGGED_RULESET)
FIBROMYALGIA_NULL = f"{INPUTS}/fibromyalgia_null.yaml"

# The one line a user reads at the end of a single ruleset's summary: which ruleset decided.
_RULESET_LINE = re.compile(
    r"^ruleset (?P<id>\S+) (?P<version>\S+) (?P<hash>sha256:[0-9a-f]{64}); (?P<engine>[^;]+)"
)
# ... and of a profile's summary: the protocol, the profile and its rulesets.
_PROTOCOL_LINE = re.compile(
    r"^protocol (?P<id>\S+) (?P<version>\S+) (?P<hash>sha256:[0-9a-f]{64}); "
    r"profile (?P<profile>\S+) \((?P<rulesets>[^)]+)\); (?P<engine>[^;]+)"
)
# One printed error: `error file:line:column: code: message ...`.
_ERROR_LINE = re.compile(
    r"^error (?P<file>[^:\s]+):(?P<line>\d+):(?P<column>\d+): (?P<code>[a-z_]+): "
)


# ---------------------------------------------------------------------------------------------
# Running the command


@dataclass(frozen=True)
class Run:
    """What a user sees from one command: the exit code, standard output and standard error."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.rstrip("\n").splitlines()

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.rstrip("\n").splitlines()

    def section(self, heading: str) -> list[str]:
        """The lines under a heading of the screening summary, up to the next blank line."""
        lines = self.lines
        start = lines.index(heading) + 1
        end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
        return lines[start:end]

    def ruleset_line(self) -> re.Match[str]:
        """The last line of a one-ruleset summary, which names the ruleset and the evaluator."""
        match = _RULESET_LINE.match(self.lines[-1])
        assert match is not None, self.lines[-1]
        return match

    def protocol_line(self) -> re.Match[str]:
        """The last line of a profile's summary: protocol, profile, rulesets and evaluator."""
        match = _PROTOCOL_LINE.match(self.lines[-1])
        assert match is not None, self.lines[-1]
        return match

    def drugs(self) -> dict[str, str]:
        """The per-drug verdicts: title -> the verdict's first word."""
        verdicts = {}
        for line in self.section("Drugs"):
            title, _, verdict = line.strip().partition("   ")
            if not title.startswith(("lidocaine_only", "ketamine_only")):
                verdicts[title.strip()] = verdict.split()[0]
        return verdicts

    def assert_no_traceback(self) -> None:
        assert "Traceback" not in self.stdout + self.stderr, self.stdout + self.stderr


def _environment() -> dict[str, str]:
    """A wide, plain terminal: no colour codes and no wrapping, whatever the caller's settings."""
    forced = {"FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    environment = {key: value for key, value in os.environ.items() if key not in forced}
    environment.update(COLUMNS="200", NO_COLOR="1", TERM="dumb", PYTHONIOENCODING="utf-8")
    return environment


def _execute(args: tuple[str, ...]) -> Run:
    completed = subprocess.run(
        [str(CLI), *args],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    return Run(args, completed.returncode, completed.stdout, completed.stderr)


class _Cli:
    """Runs command lines on a thread pool; each distinct command line runs once."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._runs: dict[tuple[str, ...], Future[Run]] = {}

    def start(self, *args: str) -> None:
        if args not in self._runs:
            self._runs[args] = self._pool.submit(_execute, args)

    def __call__(self, *args: str) -> Run:
        self.start(*args)
        return self._runs[args].result()


# ---------------------------------------------------------------------------------------------
# Tables


class Decision(NamedTuple):
    patient: str
    code: int
    decision: str
    reason: str | None  # the rule id of a reason shown with the decision's outcome


DECISIONS = [
    Decision(PASSING, 0, "ELIGIBLE", None),
    Decision(f"{INPUTS}/passing.json", 0, "ELIGIBLE", None),
    Decision(SEED, 4, "CANNOT_EVALUATE", "PRE-01"),
    Decision(SEED_WITH_PRETESTS, 3, "NEEDS_REVIEW", "LAB-02-CRP"),
    Decision(FIBROMYALGIA_NULL, 4, "CANNOT_EVALUATE", "DX2016-01"),
    Decision("fixtures/patients/v02-generalized-pain-3-regions.yaml", 5, "INELIGIBLE", "DX2016-01"),
    Decision("fixtures/patients/v12-wpi-3-meets-2010-not-2016.yaml", 5, "INELIGIBLE", "DX2016-01"),
]


class BadInput(NamedTuple):
    file: str
    code: str
    line: int | None  # None: the error has no line (a missing file, a JSON file)
    column: int | None
    path: str  # JSON path of the offending value; `$` for the whole file


BAD_INPUTS = [
    BadInput(f"{INPUTS}/weight_850_kg.yaml", "out_of_range", 7, 14, "$.demographics.weight_kg"),
    BadInput(f"{INPUTS}/misspelled_field.yaml", "unknown_field", 7, 3, "$.demographics.wieght_kg"),
    BadInput(f"{INPUTS}/duplicate_key.yaml", "duplicate_key", 8, 1, "$.pain_nrs"),
    BadInput(f"{INPUTS}/naive_datetime.yaml", "naive_datetime", 3, 8, "$.as_of"),
    BadInput(f"{INPUTS}/lab_after_as_of.yaml", "future_date", 8, 49, "$.labs[1].taken_at"),
    BadInput(f"{INPUTS}/invalid_yaml.yaml", "yaml_syntax", 5, 9, "$"),
    BadInput(f"{INPUTS}/does_not_exist.yaml", "unreadable_file", None, None, "$"),
    BadInput(f"{INPUTS}/weight_850_kg.json", "out_of_range", 6, 18, "$.demographics.weight_kg"),
]

HELP = [
    ((), "Clinical decision support for IV lidocaine + ketamine desensitisation in fibromyalgia"),
    (("screen",), "Screen one patient for eligibility and print the decision with its reasons"),
    (("gate",), "Check before a daily session: PROCEED, HOLD or INELIGIBLE"),
    (("test",), "Run the golden clinical cases"),
    (("check",), "report every error of every file"),
    (("schema",), "Export the JSON Schema of the rule language"),
]

# Input a user can easily write that crashes the command: each must be an input error (exit 2)
# naming its line.
CRASHING_INPUTS = [
    (f"{INPUTS}/impossible_date.yaml", 3),
    (f"{INPUTS}/unknown_tag.yaml", 4),
]

# Errors in JSON patient files: (file, code, line, path) a user needs to find the mistake.
JSON_ERRORS = [
    (f"{INPUTS}/weight_850_kg.json", "out_of_range", 6, "$.demographics.weight_kg"),
    (f"{INPUTS}/duplicate_key.json", "duplicate_key", 6, "$.demographics.weight_kg"),
]

_PLANNED: list[tuple[str, ...]] = [
    SCREEN_SEED,
    SCREEN_SEED_JSON,
    SCREEN_SEED_CROSS_CHECKED,
    SCREEN_SEED_REFERENCE,
    SCREEN_SEED_ELIGIBILITY,
    GATE_PASSING,
    GATE_PASSING_JSON,
    GATE_WITHOUT_SESSION,
    TEST_FAILING_CASES,
    TEST_SHIPPED_CASES,
    CHECK_RULESETS,
    CHECK_INVALID,
    CHECK_INVALID_JSON,
    SCREEN_WITH_INVALID_RULESET,
    SCHEMA_TO_STDOUT,
    SCREEN_WITH_MISSING_RULESET,
    CHECK_TAGGED_RULESET,
    *(("screen", case.patient) for case in DECISIONS),
    *(("screen", case.file) for case in BAD_INPUTS),
    *(("screen", case.file, "--json") for case in BAD_INPUTS),
    *((*command, "--help") for command, _ in HELP),
    *(("screen", patient) for patient, _ in CRASHING_INPUTS),
    *(("screen", patient, "--json") for patient, *_ in JSON_ERRORS),
]


@pytest.fixture(scope="module")
def cli() -> Iterator[_Cli]:
    """The command runner, with every command line of this module's tables already started."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        runner = _Cli(pool)
        for args in _PLANNED:
            runner.start(*args)
        yield runner
        pool.shutdown(cancel_futures=True)


@pytest.fixture(scope="module")
def ruleset() -> dict[str, Any]:
    """The eligibility ruleset as data: its id and version are what its summary must name."""
    data: dict[str, Any] = yaml.safe_load((ROOT / ELIGIBILITY).read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def protocol() -> dict[str, Any]:
    """The protocol file as data: a profile's summary names it and its rulesets."""
    data: dict[str, Any] = yaml.safe_load(
        (ROOT / "rulesets" / "protocol.yaml").read_text(encoding="utf-8")
    )
    return data


def _expected_errors(path: Path) -> list[dict[str, Any]]:
    """The errors an invalid ruleset states in its leading comment (tests/invalid_rulesets)."""
    block: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if block or line.strip() == "# expected:":
            block.append(line[2:])
    errors: list[dict[str, Any]] = yaml.safe_load("\n".join(block))["expected"]
    return errors


@pytest.fixture(scope="module")
def invalid_ruleset_errors() -> set[tuple[str, int, int, str]]:
    """(file, line, column, code) of every error the two invalid rulesets must produce."""
    expected = set()
    for path in sorted((ROOT / INVALID_RULESETS).glob("*.yaml")):
        for error in _expected_errors(path):
            file = f"{INVALID_RULESETS}/{path.name}"
            expected.add((file, error["line"], error["column"], error["code"]))
    assert len({file for file, *_ in expected}) == 2, "the check needs two invalid files"
    return expected


# ---------------------------------------------------------------------------------------------
# screen: the seed patient


def test_seed_summary_names_the_missing_pre_infusion_data_and_keeps_her_review_findings(
    cli: _Cli, protocol: dict[str, Any]
) -> None:
    run = cli(*SCREEN_SEED)
    run.assert_no_traceback()
    assert run.code == 4
    assert run.stderr == ""
    assert run.lines[0].split() == ["CANNOT_EVALUATE", SEED]
    assert run.drugs() == {
        "IV lidocaine": "CANNOT_EVALUATE",
        "IV ketamine (low dose)": "CANNOT_EVALUATE",
    }

    reasons = {line.split()[1]: line for line in run.section("Reasons")}
    # What is missing: the baseline ECG, electrolytes, liver and renal tests...
    for rule in ("PRE-01", "PRE-02-QTC", "PRE-03-POTASSIUM", "PRE-04-ALT", "PRE-05"):
        assert reasons[rule].split()[0] == "CANNOT_EVALUATE", reasons[rule]
    assert "no 12-lead ECG on file" in reasons["PRE-01"]
    assert "`labs.potassium_age_days` is not recorded" in reasons["PRE-03-POTASSIUM"]
    # ... while her review findings are still listed.
    assert reasons["LAB-02-CRP"].split()[0] == "NEEDS_REVIEW"
    assert "17.5" in reasons["LAB-02-CRP"]
    assert reasons["LAB-02-CRP"].endswith("(S-09; evidence CJ)")
    assert reasons["KET-DDI-01"].split()[:3] == ["NEEDS_REVIEW", "KET-DDI-01", "[ketamine]"]
    assert "pregabalin" in reasons["KET-DDI-01"]
    also_noted = [line.split()[0] for line in run.section("Also noted")]
    assert "REF-02-PREGABALIN-INADEQUATE" in also_noted

    # What to record, grouped: the absent ECG and the laboratory results, most restrictive first.
    to_record = run.section("To record before a decision")
    assert to_record[0].split()[:2] == ["CANNOT_EVALUATE", "no"]
    assert "no 12-lead ECG on file (`ecgs`)" in to_record[0] and "PRE-01" in to_record[0]
    assert to_record[1].split()[0] == "CANNOT_EVALUATE"
    tests = to_record[1].partition("too old: ")[2].partition(" (")[0].split(", ")
    assert {"potassium", "sodium", "magnesium", "alt", "ast", "bilirubin", "egfr"} <= set(tests)
    assert all(line.split()[0] == "NEEDS_REVIEW" for line in to_record[2:])
    assert any("the allergy list (`allergies`) is not recorded" in line for line in to_record)

    missing = run.section("Missing or incomplete data")
    headers = {line.split()[0]: line for line in missing if not line.startswith("      ")}
    assert headers["PRE-01"].endswith("(CANNOT_EVALUATE)")
    assert "labs.egfr_age_days" in headers["PRE-05"]

    criteria = {line.split()[-1]: line.split()[-2] for line in run.section("Criteria")[1:]}
    assert criteria == {
        "DX2016-01": "established",
        "REF-01": "not_established",
        "LAB-01": "unknown",
    }

    last = run.protocol_line()
    assert (last["id"], last["version"]) == (protocol["protocol"], str(protocol["version"]))
    assert last["profile"] == "screening"
    assert [name.split()[0] for name in last["rulesets"].split(", ")] == [
        "eligibility",
        "contraindications",
        "interactions",
        "pretests",
    ]
    assert last["engine"].startswith("durable-rules")
    assert "cross-checked" not in run.lines[-1]
    assert run.lines[-1].endswith("as of 2025-11-03T09:00:00+05:45")


def test_seed_with_normal_pre_infusion_data_needs_review(cli: _Cli) -> None:
    run = cli("screen", SEED_WITH_PRETESTS)
    assert (run.code, run.lines[0].split()[0]) == (3, "NEEDS_REVIEW")
    reasons = [line.split()[1] for line in run.section("Reasons")]
    assert {"LAB-02-CRP", "KET-DDI-01", "REF-01"} <= set(reasons)
    assert not any(
        rule.startswith(("PRE-01", "PRE-02", "PRE-03", "PRE-04", "PRE-05")) for rule in reasons
    )
    assert "CANNOT_EVALUATE" not in run.stdout


def test_one_ruleset_alone_gives_its_own_summary(cli: _Cli, ruleset: dict[str, Any]) -> None:
    run = cli(*SCREEN_SEED_ELIGIBILITY)
    run.assert_no_traceback()
    assert (run.code, run.lines[0].split()) == (3, ["NEEDS_REVIEW", SEED])
    reasons = {line.split()[1] for line in run.section("Reasons")}
    assert {"REF-01", "LAB-01", "LAB-02-CRP"} <= reasons
    last = run.ruleset_line()
    assert (last["id"], last["version"]) == (ruleset["ruleset"], str(ruleset["version"]))


def test_cross_check_gives_the_same_summary_and_says_it_was_cross_checked(cli: _Cli) -> None:
    plain, checked = cli(*SCREEN_SEED), cli(*SCREEN_SEED_CROSS_CHECKED)
    checked.assert_no_traceback()
    assert checked.code == 4
    assert checked.lines[:-1] == plain.lines[:-1]
    assert "; cross-checked with the reference evaluator;" in checked.lines[-1]
    assert checked.protocol_line()["hash"] == plain.protocol_line()["hash"]


def test_reference_engine_gives_the_same_decision_and_reasons(cli: _Cli) -> None:
    durable, reference = cli(*SCREEN_SEED), cli(*SCREEN_SEED_REFERENCE)
    reference.assert_no_traceback()
    assert reference.code == 4
    assert reference.lines[0] == durable.lines[0]
    assert sorted(reference.section("Reasons")) == sorted(durable.section("Reasons"))
    last = reference.protocol_line()
    assert last["engine"] == "reference evaluator"
    assert last["hash"] == durable.protocol_line()["hash"]


def test_seed_json_is_the_full_result(cli: _Cli) -> None:
    run = cli(*SCREEN_SEED_JSON)
    run.assert_no_traceback()
    assert run.code == 4
    assert run.stderr == ""
    result = json.loads(run.stdout)
    assert (result["profile"], result["decision"]) == ("screening", "CANNOT_EVALUATE")
    assert result["protocol"]["content_hash"] == cli(*SCREEN_SEED).protocol_line()["hash"]
    assert {d["drug"]: d["outcome"] for d in result["drugs"]} == {
        "lidocaine": "CANNOT_EVALUATE",
        "ketamine": "CANNOT_EVALUATE",
    }
    for finding in result["findings"]:
        assert re.fullmatch(r"[A-Z0-9]+(-[A-Z0-9]+)*", finding["rule_id"]), finding
        assert finding["sources"] and all(s.startswith("S-") for s in finding["sources"])
    crp = next(f for f in result["findings"] if f["rule_id"] == "LAB-02-CRP")
    assert (crp["outcome"], crp["sources"], crp["evidence"]) == ("NEEDS_REVIEW", ["S-09"], "CJ")
    assert "17.5" in crp["message"]
    pre01 = next(item for item in result["missing"] if item["rule_id"] == "PRE-01")
    assert pre01["outcome"] == "CANNOT_EVALUATE" and pre01["drugs"] == ["lidocaine"]


def test_seed_json_round_trips_to_the_result_computed_in_process(cli: _Cli) -> None:
    """The printed JSON reads back, validated, into the very result the library computes."""
    text = cli(*SCREEN_SEED_JSON).stdout
    assessment = Assessment.from_json(text)
    assert assessment == screen(ROOT / SEED)
    assert assessment.to_json() == text.rstrip("\n")


# ---------------------------------------------------------------------------------------------
# gate


def test_gate_proceeds_for_a_patient_with_nothing_against_today(cli: _Cli) -> None:
    run = cli(*GATE_PASSING)
    run.assert_no_traceback()
    assert (run.code, run.lines[0].split()) == (0, ["PROCEED", "session", "1", PASSING_SESSION])
    assert run.drugs() == {
        "IV lidocaine": "no",
        "IV ketamine (low dose)": "no",
    }
    assert "Holds the session" not in run.lines
    assert run.protocol_line()["profile"] == "gate"


def test_gate_json_round_trips_and_gives_the_gate_decision(cli: _Cli) -> None:
    text = cli(*GATE_PASSING_JSON).stdout
    result = json.loads(text)
    assert result["gate"] == {"decision": "PROCEED", "session": 1, "blocking": [], "reviewed": []}
    assert Assessment.from_json(text) == check_session(ROOT / PASSING_SESSION)


def _session_file(tmp_path: Path, name: str, patch: dict[str, Any]) -> str:
    data = yaml.safe_load((ROOT / PASSING_SESSION).read_text(encoding="utf-8"))
    target = tmp_path / name
    target.write_text(yaml.safe_dump(merge(data, patch), sort_keys=False), encoding="utf-8")
    return str(target)


@pytest.mark.parametrize(
    ("patch", "code", "decision", "heading", "rule"),
    [
        (
            {"session": {"vitals": {"systolic_bp_mmhg": 172}}},
            8,
            "HOLD",
            "Holds the session",
            "GATE-02",
        ),
        (
            {"demographics": {"pregnancy_status": "pregnant"}},
            5,
            "INELIGIBLE",
            "Stops the course",
            "LID-CI-12",
        ),
        (
            {"demographics": {"weight_kg": None}},
            8,
            "HOLD",
            "Holds the session",
            "GATE-10",
        ),
    ],
    ids=["systolic-172", "pregnant", "weight-missing"],
)
def test_gate_holds_or_stops_and_names_the_rule(
    cli: _Cli,
    tmp_path: Path,
    patch: dict[str, Any],
    code: int,
    decision: str,
    heading: str,
    rule: str,
) -> None:
    patient = _session_file(tmp_path, "today.yaml", patch)
    run = cli("gate", patient)
    run.assert_no_traceback()
    assert (run.code, run.lines[0].split()[:3]) == (code, [decision, "session", "1"])
    blocking = [line.split()[1] for line in run.section(heading)]
    assert rule in blocking
    if rule == "GATE-10":
        (line,) = run.section("To record before this session")
        assert line.split()[:2] == ["CANNOT_EVALUATE", "`patient.weight_kg`"]


def test_gate_without_a_session_block_is_an_input_error_in_that_file(cli: _Cli) -> None:
    run = cli(*GATE_WITHOUT_SESSION)
    run.assert_no_traceback()
    assert run.code == 2
    assert run.stdout == ""
    assert run.stderr.startswith(f"error {PASSING}: missing_field: "), run.stderr
    assert "(at $.session)" in run.stderr


# ---------------------------------------------------------------------------------------------
# test: golden cases and rule coverage


def test_the_shipped_golden_cases_pass_and_cover_every_rule(cli: _Cli) -> None:
    run = cli(*TEST_SHIPPED_CASES)
    run.assert_no_traceback()
    assert run.code == 0, run.stdout
    assert re.fullmatch(r"(\d+) of \1 golden cases pass \(reference\)", run.lines[-2]), run.lines
    assert (
        run.lines[-1] == "every rule of the shipped rulesets fires in one case and not in another"
    )


def test_a_failing_case_and_the_uncovered_rules_are_reported(cli: _Cli) -> None:
    run = cli(*TEST_FAILING_CASES)
    run.assert_no_traceback()
    assert run.code == 1
    case = f"{GOLDEN_FAILING}/screening/seed-called-eligible.yaml"
    assert run.lines[:2] == [
        f"FAIL {case} (The seed patient, wrongly expected ELIGIBLE)",
        "  - decision is CANNOT_EVALUATE, expected ELIGIBLE",
    ]
    assert (
        "0 of 1 golden cases pass (durable-rules cross-checked by the reference evaluator)"
        in run.lines
    )
    uncovered = next(line for line in run.lines if line.endswith("rules not covered:"))
    assert int(uncovered.split()[0]) > 100
    assert "  pretests PRE-01: in no golden case's fired or not_fired" in run.lines


# ---------------------------------------------------------------------------------------------
# screen: one exit code per decision


@pytest.mark.parametrize("case", DECISIONS, ids=lambda case: Path(case.patient).name)
def test_exit_code_and_first_line_follow_the_decision(cli: _Cli, case: Decision) -> None:
    run = cli("screen", case.patient)
    run.assert_no_traceback()
    assert (run.code, run.lines[0].split()) == (case.code, [case.decision, case.patient])
    assert run.stderr == ""
    criteria = [line.split()[-2] for line in run.section("Criteria")[1:]]
    if case.reason is None:
        assert "Reasons" not in run.lines
        assert criteria == ["established"] * 3
    else:
        reasons = [line.split()[:2] for line in run.section("Reasons")]
        assert [case.decision, case.reason] in reasons
        assert set(criteria) != {"established"}


def test_unrecorded_fibromyalgia_assessment_is_reported_as_missing(cli: _Cli) -> None:
    run = cli("screen", FIBROMYALGIA_NULL)
    missing = run.section("Missing or incomplete data")
    dx2016 = next(line for line in missing if line.split()[0] == "DX2016-01")
    assert "acr.widespread_pain_index" in dx2016
    assert "acr.symptom_duration_months" in dx2016


def test_missing_data_that_decides_the_outcome_is_not_labelled_for_information(
    cli: _Cli,
) -> None:
    run = cli("screen", FIBROMYALGIA_NULL)
    missing = run.section("Missing or incomplete data")
    dx2016 = next(line for line in missing if line.split()[0] == "DX2016-01")
    assert dx2016.endswith("(CANNOT_EVALUATE)"), dx2016


# ---------------------------------------------------------------------------------------------
# screen: bad input


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda case: Path(case.file).name)
def test_bad_input_names_file_line_path_and_code(cli: _Cli, case: BadInput) -> None:
    run = cli("screen", case.file)
    run.assert_no_traceback()
    assert run.code == 2
    assert run.stdout == ""
    place = case.file if case.line is None else f"{case.file}:{case.line}:{case.column}"
    assert run.error_lines[0].startswith(f"error {place}: {case.code}: "), run.stderr
    if case.path != "$":
        assert f"(at {case.path})" in run.error_lines[0]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda case: Path(case.file).name)
def test_bad_input_with_json_prints_the_errors_as_json(cli: _Cli, case: BadInput) -> None:
    run = cli("screen", case.file, "--json")
    run.assert_no_traceback()
    assert run.code == 2
    assert run.stderr == ""
    errors = json.loads(run.stdout)["errors"]
    assert errors and all(
        set(error) == {"code", "message", "file", "line", "column", "path", "hint"}
        for error in errors
    )
    first = errors[0]
    assert (first["file"], first["code"], first["line"], first["column"], first["path"]) == (
        case.file,
        case.code,
        case.line,
        case.column,
        case.path,
    )


def test_misspelled_field_suggests_the_right_name(cli: _Cli) -> None:
    run = cli("screen", f"{INPUTS}/misspelled_field.yaml")
    assert run.error_lines[0].endswith("hint: did you mean `weight_kg`?")


@pytest.mark.parametrize(
    ("patient", "line"), CRASHING_INPUTS, ids=["impossible-date", "unknown-tag"]
)
def test_unconstructible_yaml_value_is_an_input_error(cli: _Cli, patient: str, line: int) -> None:
    run = cli("screen", patient)
    run.assert_no_traceback()
    assert run.code == 2
    assert re.match(rf"error {re.escape(patient)}:{line}:\d+: [a-z_]+: ", run.stderr), run.stderr


@pytest.mark.parametrize(
    ("patient", "code", "line", "path"), JSON_ERRORS, ids=["out-of-range", "duplicate-key"]
)
def test_json_patient_errors_name_the_line_and_path(
    cli: _Cli, patient: str, code: str, line: int, path: str
) -> None:
    run = cli("screen", patient, "--json")
    assert run.code == 2
    error = json.loads(run.stdout)["errors"][0]
    assert (error["code"], error["line"], error["path"]) == (code, line, path)


# ---------------------------------------------------------------------------------------------
# screen: ruleset errors


def test_screen_with_an_invalid_ruleset_reports_the_ruleset_error(
    cli: _Cli, invalid_ruleset_errors: set[tuple[str, int, int, str]]
) -> None:
    run = cli(*SCREEN_WITH_INVALID_RULESET)
    run.assert_no_traceback()
    assert run.code == 6
    assert run.stdout == "", "no decision is given with a broken ruleset"
    matched = [_ERROR_LINE.match(line) for line in run.error_lines]
    assert all(matched), run.stderr
    reported = {
        (Path(m["file"]).name, int(m["line"]), int(m["column"]), m["code"])
        for m in matched
        if m is not None
    }
    expected = {
        (Path(file).name, line, column, code)
        for file, line, column, code in invalid_ruleset_errors
        if file == INVALID_RULESET
    }
    assert reported == expected


def test_screen_with_a_missing_ruleset_names_the_file(cli: _Cli) -> None:
    run = cli(*SCREEN_WITH_MISSING_RULESET)
    run.assert_no_traceback()
    assert run.code == 6
    assert run.stderr.startswith(f"error {MISSING_RULESET}: unreadable_file: "), run.stderr


# ---------------------------------------------------------------------------------------------
# check


def test_check_accepts_the_shipped_rulesets(cli: _Cli) -> None:
    run = cli(*CHECK_RULESETS)
    run.assert_no_traceback()
    assert run.code == 0
    assert run.stderr == ""
    ok = [
        re.fullmatch(
            r"ok rulesets/(\S+): (\S+) (\S+), (\d+) (?:rules|parameters|signs), "
            r"(sha256:[0-9a-f]{64})",
            line,
        )
        for line in run.lines
    ]
    assert all(ok), run.stdout
    checked = {(m[1], m[2]): m for m in ok if m is not None}
    # Every ruleset file once, and the protocol once per profile; the tables are not rulesets.
    assert set(checked) == {
        ("eligibility.yaml", "eligibility"),
        ("contraindications.yaml", "contraindications"),
        ("interactions.yaml", "interactions"),
        ("pretests.yaml", "pretests"),
        ("gate.yaml", "gate"),
        ("protocol.yaml", "systemic_desensitisation/screening"),
        ("protocol.yaml", "systemic_desensitisation/gate"),
        ("course.yaml", "course"),
        ("protocol.yaml", "systemic_desensitisation/course"),
        ("halts.yaml", "halts"),
        ("protocol.yaml", "systemic_desensitisation/monitor"),
        ("dosing.yaml", "dosing"),
        ("monitoring.yaml", "monitoring"),
    }
    assert run.lines[-2].startswith("ok rulesets/dosing.yaml: dosing 1.0.0, ")
    assert " parameters, " in run.lines[-2]
    assert run.lines[-1].startswith("ok rulesets/monitoring.yaml: monitoring 1.0.0, ")
    assert " signs, " in run.lines[-1]
    screened = cli(*SCREEN_SEED).protocol_line()
    screening = checked["protocol.yaml", "systemic_desensitisation/screening"]
    assert (screening[3], screening[5]) == (screened["version"], screened["hash"])
    assert int(screening[4]) == sum(
        int(checked[f"{name}.yaml", name][4])
        for name in ("eligibility", "contraindications", "interactions", "pretests")
    )


def test_check_reports_every_error_of_every_file_in_one_run(
    cli: _Cli, invalid_ruleset_errors: set[tuple[str, int, int, str]]
) -> None:
    run = cli(*CHECK_INVALID)
    run.assert_no_traceback()
    assert run.code == 6
    assert run.stdout == ""
    matched = [_ERROR_LINE.match(line) for line in run.error_lines]
    assert all(matched), run.stderr
    reported = {
        (m["file"], int(m["line"]), int(m["column"]), m["code"]) for m in matched if m is not None
    }
    assert reported == invalid_ruleset_errors


def test_check_json_gives_the_errors_as_json(
    cli: _Cli, invalid_ruleset_errors: set[tuple[str, int, int, str]]
) -> None:
    run = cli(*CHECK_INVALID_JSON)
    run.assert_no_traceback()
    assert run.code == 6
    errors = json.loads(run.stdout)["errors"]
    reported = {(e["file"], e["line"], e["column"], e["code"]) for e in errors}
    assert reported == invalid_ruleset_errors
    assert all(e["path"].startswith("$.rules[") and e["message"] for e in errors)


def test_check_reports_an_unknown_yaml_tag_as_a_ruleset_error(cli: _Cli) -> None:
    run = cli(*CHECK_TAGGED_RULESET)
    run.assert_no_traceback()
    assert run.code == 6
    assert re.match(rf"error {re.escape(TAGGED_RULESET)}:5:\d+: [a-z_]+: ", run.stderr), run.stderr


# ---------------------------------------------------------------------------------------------
# schema and help


def test_schema_to_stdout_is_the_committed_schema(cli: _Cli) -> None:
    run = cli(*SCHEMA_TO_STDOUT)
    run.assert_no_traceback()
    assert run.code == 0
    assert run.stdout == (ROOT / "rulesets" / "schema.json").read_text(encoding="utf-8")
    assert json.loads(run.stdout)["$schema"].startswith("https://json-schema.org/")


def test_schema_to_a_file_writes_the_committed_schema(cli: _Cli, tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    run = cli("schema", "--output", str(target))
    run.assert_no_traceback()
    assert run.code == 0
    assert run.lines == [f"wrote {target}"]
    committed = (ROOT / "rulesets" / "schema.json").read_text(encoding="utf-8")
    assert target.read_text(encoding="utf-8") == committed


@pytest.mark.parametrize(
    ("command", "purpose"), HELP, ids=["cds-rules", "screen", "gate", "test", "check", "schema"]
)
def test_help_explains_each_command(cli: _Cli, command: tuple[str, ...], purpose: str) -> None:
    run = cli(*command, "--help")
    assert run.code == 0
    text = " ".join(run.stdout.split())
    assert f"Usage: cds-rules {' '.join(command)}".rstrip() in text
    assert purpose in text
    if not command:
        assert all(name in text for name in ("screen", "check", "schema"))
    if command == ("screen",):
        assert all(flag in text for flag in ("--json", "--cross-check", "--engine", "--ruleset"))


def test_check_reports_an_error_of_a_shared_ruleset_once(cli: _Cli, tmp_path: Path) -> None:
    """interactions.yaml is in both profiles and, when they fail, is compiled on its own too."""
    shutil.copytree(ROOT / "rulesets", tmp_path / "rulesets")
    broken = tmp_path / "rulesets" / "interactions.yaml"
    text = broken.read_text(encoding="utf-8")
    broken.write_text(
        text.replace("med.drug_class: {eq: methylxanthine}", "med.drug_class: {eq: 3}", 1),
        encoding="utf-8",
    )
    run = cli("check", str(tmp_path / "rulesets"))
    run.assert_no_traceback()
    assert run.code == 6
    assert len(run.error_lines) == 1, run.stderr
    assert run.error_lines[0].startswith(f"error {broken}:")


# ---------------------------------------------------------------------------------------------
# dose and check-dose


def test_dose_plan_for_the_seed_gives_mg_ml_and_rates_at_the_concentration_in_hand(
    cli: _Cli,
) -> None:
    at_21 = cli(
        "dose", SEED, "--session", "7", "--lidocaine-mg-per-ml", "21", "--ketamine-mg-per-ml", "10"
    )
    at_20 = cli(
        "dose", SEED, "--session", "7", "--lidocaine-mg-per-ml", "20", "--ketamine-mg-per-ml", "10"
    )
    for run in (at_21, at_20):
        run.assert_no_traceback()
        assert run.code == 3  # no height: actual-weight dosing for review
        assert run.lines[0].split()[:5] == ["NEEDS_REVIEW", "dose", "plan", "for", "session"]
        lidocaine = run.section("IV lidocaine (DOSE-LID-01)")
        assert lidocaine[0].strip() == "5 mg/kg x 85 kg (actual weight) = 425 mg"
        ketamine = run.section("IV ketamine (DOSE-KET-01)")
        assert ketamine[0].strip() == "0.176 mg/kg x 85 kg (actual weight) = 15 mg"
        assert any("DOSE-LID-02" in line and "height" in line for line in run.section("Notes"))
    assert at_21.section("IV lidocaine (DOSE-LID-01)")[1].strip() == "volume 20.23 mL of 21 mg/mL"
    assert at_20.section("IV lidocaine (DOSE-LID-01)")[1].strip() == "volume 21.25 mL of 20 mg/mL"


def test_dose_needs_the_concentrations_and_never_assumes_one(cli: _Cli) -> None:
    run = cli("dose", SEED, "--session", "1", "--ketamine-mg-per-ml", "10")
    assert run.code == 2
    assert "--lidocaine-mg-per-ml" in run.stderr


@pytest.mark.parametrize(
    ("mg", "code", "first"),
    [("20", 9, "REJECT"), ("17", 0, "ACCEPT"), ("17.01", 9, "REJECT")],
)
def test_check_dose_accepts_up_to_the_limit_and_rejects_with_the_maximum(
    cli: _Cli, mg: str, code: int, first: str
) -> None:
    run = cli("check-dose", SEED, "--drug", "ketamine", "--mg", mg)
    run.assert_no_traceback()
    assert (run.code, run.lines[0].split()[:3]) == (code, [first, "ketamine", mg])
    assert run.lines[1].strip() == "permitted maximum 17 mg (0.2 mg/kg)"
    if first == "REJECT":
        assert "DOSE-KET-02" in run.lines[2] and "the maximum is 17 mg" in run.lines[2]


def test_check_dose_json(cli: _Cli) -> None:
    run = cli("check-dose", SEED, "--drug", "ketamine", "--mg", "20", "--json")
    result = json.loads(run.stdout)
    assert (result["decision"], result["max_mg"], result["ordered_mg_per_kg"]) == (
        "REJECT",
        17.0,
        0.2353,
    )
