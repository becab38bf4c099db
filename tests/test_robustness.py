"""Hostile, malformed and impossible input: each ends in an error a user can act on.

Every case states what a user sees: the error's code and place (file, line and column, or the
JSON path), the exit code of ``cds-rules``, and never a traceback, a hang or a silently wrong
decision. Command-line cases run the installed executable in a subprocess from the repository
root; inputs are in ``tests/robustness_inputs/`` (each states the answer it expects in its
leading comment) or, when large or not UTF-8, written into a temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_rules import evaluator_for
from cds_rules.errors import EngineError, InputError, InputErrors, RulesetError, RulesetErrors
from cds_rules.facts import load_patient, parse_patient
from cds_rules.loader import load_ruleset
from cds_rules.normalise import to_records
from cds_rules.records import TrialRecord
from cds_rules.yamlio import MAX_ALIASES, MAX_DEPTH, load_yaml_text

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "cds-rules"
INPUTS = "tests/robustness_inputs"
PASSING = "fixtures/patients/passing.yaml"
SEED = "fixtures/patients/seed.yaml"
RULESET = ROOT / "rulesets" / "eligibility.yaml"
DECISION_EXIT_CODES = {0, 3, 4, 5}


# ---------------------------------------------------------------------------------------------
# Running the command


@dataclass(frozen=True)
class Run:
    """What a user sees from one command: the exit code, standard output and standard error."""

    code: int
    stdout: str
    stderr: str

    def assert_no_traceback(self) -> None:
        assert "Traceback" not in self.stdout + self.stderr, self.stdout + self.stderr

    @property
    def first_error(self) -> str:
        return self.stderr.splitlines()[0] if self.stderr else ""


def _environment() -> dict[str, str]:
    """A wide, plain terminal: no colour codes and no wrapping, whatever the caller's settings."""
    forced = {"FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    environment = {key: value for key, value in os.environ.items() if key not in forced}
    environment.update(COLUMNS="200", NO_COLOR="1", TERM="dumb", PYTHONIOENCODING="utf-8")
    return environment


def cds_rules(*args: str, timeout: float = 120) -> Run:
    completed = subprocess.run(
        [str(CLI), *args],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr)


def cds_rules_to_a_closed_pipe(*args: str) -> Run:
    """Run with standard output a pipe whose reader has already gone (as `| head -1` ends)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        completed = subprocess.run(
            [str(CLI), *args],
            cwd=ROOT,
            env=_environment(),
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            timeout=120,
            check=False,
        )
    finally:
        os.close(writer)
    return Run(completed.returncode, "", completed.stderr)


def passing_patient() -> dict[str, Any]:
    """The fixture for whom every criterion passes, as data to patch."""
    data: dict[str, Any] = yaml.safe_load((ROOT / PASSING).read_text(encoding="utf-8"))
    return data


def input_errors(data: object) -> list[InputError]:
    with pytest.raises(InputErrors) as caught:
        parse_patient(data, source="patient.json")
    return [error for error in caught.value.errors if isinstance(error, InputError)]


def only_error(data: object) -> InputError:
    errors = input_errors(data)
    assert len(errors) == 1, [str(error) for error in errors]
    return errors[0]


# ---------------------------------------------------------------------------------------------
# The engine refuses a comma-decimal locale


_DECIMAL_POINT = (
    "import locale, sys\n"
    "locale.setlocale(locale.LC_ALL, sys.argv[1])\n"
    "print(locale.localeconv()['decimal_point'])\n"
)

# Screens the passing patient with a CRP of 5.9 mg/L (above the ruleset's 5 mg/L limit) in the
# C locale, then under a comma-decimal locale with the same evaluator and with a new one, then
# again after going back to the C locale; prints what each step gave as JSON.
_SCREEN_UNDER_LOCALE = """
import json, locale, sys
import yaml
from cds_rules.api import compile_file
from cds_rules.errors import EngineError
from cds_rules.evaluation import Evaluator
from cds_rules.facts import parse_patient

name, ruleset, patient = sys.argv[1:4]
data = yaml.safe_load(open(patient, encoding="utf-8"))
crp = next(lab for lab in data["labs"] if lab["test"] == "crp")
crp.update(value=5.9, unit="mg/L")
facts = parse_patient(data)
compiled = compile_file(ruleset)


def outcome(step):
    try:
        evaluation = step()
    except EngineError as error:
        return {"code": error.code, "message": error.message, "hint": error.hint}
    if isinstance(evaluation, Evaluator):
        return {"created": True}
    return {"fired": sorted({finding.rule_id for finding in evaluation.findings})}


evaluator = Evaluator(compiled, engine="durable")
result = {"c_locale": outcome(lambda: evaluator.evaluate(facts))}
locale.setlocale(locale.LC_ALL, name)
result["decimal_point"] = locale.localeconv()["decimal_point"]
result["run"] = outcome(lambda: evaluator.evaluate(facts))
result["create"] = outcome(lambda: Evaluator(compiled, engine="durable"))
locale.setlocale(locale.LC_NUMERIC, "C")
result["after_reset"] = outcome(lambda: evaluator.evaluate(facts))
print(json.dumps(result))
"""


def _decimal_point(name: str, environment: dict[str, str]) -> str | None:
    completed = subprocess.run(
        [sys.executable, "-c", _DECIMAL_POINT, name],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout.strip() if completed.returncode == 0 else None


@pytest.fixture(scope="module")
def comma_locale(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """A locale whose decimal point is a comma and the environment that makes it available.

    An installed German, French or Dutch locale is used if there is one; otherwise one is
    generated with `localedef` into a temporary directory named by ``LOCPATH``.
    """
    environment = dict(os.environ)
    for name in ("de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "nl_NL.UTF-8"):
        if _decimal_point(name, environment) == ",":
            return name, environment
    localedef = shutil.which("localedef")
    if localedef is None:
        pytest.skip("no comma-decimal locale is installed and `localedef` is not available")
    directory = tmp_path_factory.mktemp("locale")
    generated = subprocess.run(
        [localedef, "-i", "de_DE", "-f", "UTF-8", str(directory / "de_DE.UTF-8")],
        capture_output=True,
        text=True,
        check=False,
    )
    environment["LOCPATH"] = str(directory)
    if _decimal_point("de_DE.UTF-8", environment) == ",":
        return "de_DE.UTF-8", environment
    reason = (generated.stderr or generated.stdout).strip() or f"exit {generated.returncode}"
    pytest.skip(f"no comma-decimal locale could be set; `localedef -i de_DE` said: {reason}")


@pytest.fixture(scope="module")
def screened_under_comma_locale(comma_locale: tuple[str, dict[str, str]]) -> dict[str, Any]:
    name, environment = comma_locale
    completed = subprocess.run(
        [sys.executable, "-c", _SCREEN_UNDER_LOCALE, name, str(RULESET), str(ROOT / PASSING)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    assert result["decimal_point"] == ","
    return result


def test_c_locale_reads_a_crp_of_5_9_as_above_the_limit(
    screened_under_comma_locale: dict[str, Any],
) -> None:
    assert "LAB-02-CRP" in screened_under_comma_locale["c_locale"]["fired"]


def test_evaluating_under_a_comma_decimal_locale_is_refused(
    screened_under_comma_locale: dict[str, Any],
) -> None:
    refused = screened_under_comma_locale["run"]
    assert refused["code"] == "unsafe_locale", refused  # not a decision with CRP read as 5
    assert "`,`" in refused["message"]
    assert "LC_NUMERIC" in refused["hint"]


def test_creating_an_engine_under_a_comma_decimal_locale_is_refused(
    screened_under_comma_locale: dict[str, Any],
) -> None:
    refused = screened_under_comma_locale["create"]
    assert refused["code"] == "unsafe_locale", refused  # rule constants would be misread


def test_the_same_evaluator_works_again_after_the_locale_is_reset(
    screened_under_comma_locale: dict[str, Any],
) -> None:
    result = screened_under_comma_locale
    assert result["after_reset"] == result["c_locale"]


# ---------------------------------------------------------------------------------------------
# Text longer than any real name


LONG = "x" * 201


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        (lambda d: d.update(patient_ref=LONG), "$.patient_ref"),
        (lambda d: d["prior_trials"][0].update(drug="duloxetine" + LONG), "$.prior_trials[0].drug"),
        (
            lambda d: d["nonpharmacological_therapies"][1].update(therapy="cbt_" + LONG),
            "$.nonpharmacological_therapies[1].therapy",
        ),
        (
            lambda d: d.update(current_medications=[{"drug": "tramadol", "unit": LONG}]),
            "$.current_medications[0].unit",
        ),
        (lambda d: d["diagnoses"][0].update(display=LONG), "$.diagnoses[0].display"),
        (lambda d: d["diagnoses"][0].update(code=LONG), "$.diagnoses[0].code"),
        (lambda d: d["labs"][2].update(test="crp" + LONG), "$.labs[2].test"),
    ],
    ids=["patient_ref", "drug", "therapy", "unit", "display", "code", "lab-test"],
)
def test_text_over_200_characters_is_too_long(patch: Any, path: str) -> None:
    data = passing_patient()
    patch(data)
    error = only_error(data)
    assert (error.code, error.location.path) == ("too_long", path)
    assert "longer than the 200 accepted" in error.message


def test_text_of_200_characters_is_accepted() -> None:
    data = passing_patient()
    data["diagnoses"][0]["display"] = "y" * 200
    data["nonpharmacological_therapies"][1]["therapy"] = "z" * 200
    facts = parse_patient(data)
    assert facts.diagnoses is not None and facts.diagnoses[0].display == "y" * 200


def test_a_drug_name_past_the_engines_16_bit_length_is_an_input_error() -> None:
    """The engine read `duloxetine` + 65,536 characters as `duloxetine`, an adequate trial."""
    data = passing_patient()
    data["prior_trials"][0]["drug"] = "duloxetine" + "x" * 65536
    error = only_error(data)
    assert (error.code, error.location.path) == ("too_long", "$.prior_trials[0].drug")
    assert "65546 characters" in error.message


@pytest.mark.parametrize(
    "drug",
    ["duloxetine" + "x" * 65536, "duloxetine" + '"' * 32768],
    ids=["65546-bytes", "32778-bytes-of-which-quotes-double-in-json"],
)
def test_the_engine_refuses_text_it_would_read_cut_short(drug: str) -> None:
    records = list(to_records(parse_patient(passing_patient())))
    index = next(i for i, r in enumerate(records) if isinstance(r, TrialRecord))
    records[index] = records[index].model_copy(update={"drug": drug})
    evaluator = evaluator_for(RULESET, engine="durable")
    with pytest.raises(EngineError) as caught:
        evaluator.evaluate_records(records, datetime(2026, 1, 20, 9, tzinfo=UTC))
    assert caught.value.code == "invalid_fact"
    assert "trial.drug" in caught.value.message


def test_long_drug_name_on_the_command_line_names_line_and_path() -> None:
    run = cds_rules("screen", f"{INPUTS}/long_drug_name.yaml")
    run.assert_no_traceback()
    assert run.code == 2
    assert run.first_error.startswith(f"error {INPUTS}/long_drug_name.yaml:5:11: too_long: ")
    assert "(at $.prior_trials[0].drug)" in run.first_error


# ---------------------------------------------------------------------------------------------
# Numbers no patient can have


def _lab(test: str, value: float, unit: str) -> dict[str, Any]:
    return {"test": test, "value": value, "unit": unit, "taken_at": "2026-01-10T09:00:00+00:00"}


def _set_lab(data: dict[str, Any], test: str, value: float, unit: str) -> None:
    data["labs"] = [lab for lab in data["labs"] if lab["test"] != test] + [_lab(test, value, unit)]


# The patched lab is always the last of the patient's labs; its index is computed from the
# patched data (`{last_lab}` in a path), so adding labs to the fixture does not move it.
LAST_LAB = "$.labs[{last_lab}].value"

# (what is patched, the patch, JSON path of the value, the accepted range the message names)
IMPOSSIBLE = [
    ("crp 1e13", lambda d: _set_lab(d, "crp", 1e13, "mg/L"), LAST_LAB, "0-1000 mg/L"),
    ("esr", lambda d: _set_lab(d, "esr", 201, "mm/h"), LAST_LAB, "0-200 mm/h"),
    ("tsh", lambda d: _set_lab(d, "tsh", 1001, "mIU/L"), LAST_LAB, "0-1000 mIU/L"),
    ("ck", lambda d: _set_lab(d, "ck", 1_000_001, "U/L"), LAST_LAB, "0-1000000 U/L"),
    (
        "vitamin d",
        lambda d: d["labs"].append(_lab("vitamin_d", 1e6, "ng/mL")),
        LAST_LAB,
        "0-2000 ng/mL",
    ),
    (
        "vitamin b12",
        lambda d: d["labs"].append(_lab("vitamin_b12", 1_000_001, "pg/mL")),
        LAST_LAB,
        "0-1000000 pg/mL",
    ),
    (
        "trial dose",
        lambda d: d["prior_trials"][0].update(dose_mg_per_day=60000),
        "$.prior_trials[0].dose_mg_per_day",
        "0-10000 mg/day",
    ),
    (
        "trial duration",
        lambda d: d["prior_trials"][0].update(duration_weeks=1e300),
        "$.prior_trials[0].duration_weeks",
        "0-5200 weeks",
    ),
    (
        "therapy duration",
        lambda d: d["nonpharmacological_therapies"][0].update(duration_weeks=5201),
        "$.nonpharmacological_therapies[0].duration_weeks",
        "0-5200 weeks",
    ),
    (
        "sessions per week",
        lambda d: d["nonpharmacological_therapies"][0].update(sessions_per_week=22),
        "$.nonpharmacological_therapies[0].sessions_per_week",
        "0-21 sessions per week",
    ),
    (
        "sessions",
        lambda d: d["nonpharmacological_therapies"][1].update(sessions=1001),
        "$.nonpharmacological_therapies[1].sessions",
        "0-1000 sessions",
    ),
    (
        "symptom duration",
        lambda d: d["fibromyalgia"].update(symptom_duration_months=1e15),
        "$.fibromyalgia.symptom_duration_months",
        "0-1440 months",
    ),
    (
        "current dose",
        lambda d: d.update(current_medications=[{"drug": "tramadol", "dose": 1e10, "unit": "mg"}]),
        "$.current_medications[0].dose",
        "0-1000000000",
    ),
]


@pytest.mark.parametrize(
    ("patch", "path", "accepted"),
    [case[1:] for case in IMPOSSIBLE],
    ids=[case[0] for case in IMPOSSIBLE],
)
def test_impossible_number_is_out_of_range_naming_the_accepted_range(
    patch: Any, path: str, accepted: str
) -> None:
    data = passing_patient()
    labs_before = len(data["labs"])
    patch(data)
    if path == LAST_LAB:
        # the impossible value is the one the patch put last, among all the fixture's labs
        assert len(data["labs"]) in (labs_before, labs_before + 1)
        path = path.format(last_lab=len(data["labs"]) - 1)
    error = only_error(data)
    assert (error.code, error.location.path) == ("out_of_range", path)
    assert f"plausible range {accepted}" in error.message


def test_largest_plausible_numbers_are_accepted() -> None:
    data = passing_patient()
    for test, value, unit in [
        ("crp", 1000, "mg/L"),
        ("esr", 200, "mm/h"),
        ("tsh", 1000, "mIU/L"),
        ("ck", 1_000_000, "U/L"),
    ]:
        _set_lab(data, test, value, unit)
    data["labs"] += [_lab("vitamin_d", 2000, "ng/mL"), _lab("vitamin_b12", 1_000_000, "pg/mL")]
    data["prior_trials"][0].update(dose_mg_per_day=10_000, duration_weeks=5200)
    data["nonpharmacological_therapies"][0].update(sessions_per_week=21)
    data["nonpharmacological_therapies"][1].update(sessions=1000)
    data["fibromyalgia"]["symptom_duration_months"] = 1440
    data["current_medications"] = [{"drug": "benzylpenicillin", "dose": 24e6, "unit": "IU/day"}]
    facts = parse_patient(data)
    assert facts.labs is not None and {lab.test for lab in facts.labs} >= {"crp", "vitamin_d"}


def test_crp_of_1e13_is_an_input_error_not_an_engine_failure() -> None:
    run = cds_rules("screen", f"{INPUTS}/crp_1e13.yaml")
    run.assert_no_traceback()
    assert run.code == 2  # it was 7: the number reached the engine
    assert run.first_error.startswith(f"error {INPUTS}/crp_1e13.yaml:5:24: out_of_range: ")
    assert "0-1000 mg/L" in run.first_error
    assert "(at $.labs[0].value)" in run.first_error


# ---------------------------------------------------------------------------------------------
# Files that are not UTF-8


def _not_utf8(source: Path, target: Path, line: int, column: int) -> Path:
    """A copy of ``source`` with a 0xff byte inserted at ``line``/``column`` (1-based)."""
    lines = source.read_bytes().split(b"\n")
    lines[line - 1] = lines[line - 1][: column - 1] + b"\xff" + lines[line - 1][column - 1 :]
    target.write_bytes(b"\n".join(lines))
    return target


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_patient_file_that_is_not_utf8_names_the_byte_line_and_column(
    tmp_path: Path, suffix: str
) -> None:
    patient = tmp_path / f"patient{suffix}"
    if suffix == ".json":
        (tmp_path / "source").write_text(
            json.dumps(passing_patient(), default=str, indent=2), encoding="utf-8"
        )
        _not_utf8(tmp_path / "source", patient, 3, 5)
    else:
        _not_utf8(ROOT / PASSING, patient, 3, 5)
    run = cds_rules("screen", str(patient))
    run.assert_no_traceback()
    assert run.code == 2
    assert run.first_error.startswith(f"error {patient}:3:5: invalid_encoding: "), run.stderr
    assert "`0xff`" in run.first_error


def test_load_patient_reports_invalid_encoding_as_an_input_error(tmp_path: Path) -> None:
    patient = _not_utf8(ROOT / PASSING, tmp_path / "patient.yaml", 2, 1)
    with pytest.raises(InputErrors) as caught:
        load_patient(patient)
    (error,) = caught.value.errors
    assert (error.code, error.location.line, error.location.column) == ("invalid_encoding", 2, 1)


@pytest.fixture
def ruleset_not_utf8(tmp_path: Path) -> Path:
    """The eligibility ruleset with a 0xff byte at line 3, column 3 (inside a comment)."""
    assert len(RULESET.read_text(encoding="utf-8").splitlines()[2]) > 3
    return _not_utf8(RULESET, tmp_path / "eligibility.yaml", 3, 3)


def test_screen_with_a_ruleset_that_is_not_utf8_is_a_ruleset_error(ruleset_not_utf8: Path) -> None:
    run = cds_rules("screen", PASSING, "--ruleset", str(ruleset_not_utf8))
    run.assert_no_traceback()
    assert run.code == 6
    assert run.stdout == ""
    assert run.first_error.startswith(f"error {ruleset_not_utf8}:3:3: invalid_encoding: ")


def test_check_reports_a_ruleset_that_is_not_utf8(ruleset_not_utf8: Path) -> None:
    run = cds_rules("check", str(ruleset_not_utf8), "--json")
    run.assert_no_traceback()
    assert run.code == 6
    (error,) = json.loads(run.stdout)["errors"]
    assert (error["code"], error["file"], error["line"], error["column"]) == (
        "invalid_encoding",
        str(ruleset_not_utf8),
        3,
        3,
    )
    assert error["hint"] == "save the file as utf-8"


def test_load_ruleset_reports_invalid_encoding_with_every_other_ruleset_error(
    ruleset_not_utf8: Path,
) -> None:
    with pytest.raises(RulesetErrors) as caught:
        load_ruleset(ruleset_not_utf8)
    (error,) = caught.value.errors
    assert isinstance(error, RulesetError)
    assert (error.code, error.location.line, error.location.column) == ("invalid_encoding", 3, 3)


# ---------------------------------------------------------------------------------------------
# schema --output that cannot be written


def test_schema_into_a_missing_directory_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "schema.json"
    run = cds_rules("schema", "--output", str(target))
    run.assert_no_traceback()
    assert run.code == 2
    assert run.first_error.startswith(f"error {target}: unwritable_file: cannot write ")
    assert "no such file or directory" in run.first_error


def test_schema_onto_a_directory_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    run = cds_rules("schema", "--output", str(tmp_path))
    run.assert_no_traceback()
    assert run.code == 2
    assert run.first_error.startswith(f"error {tmp_path}: unwritable_file: ")
    assert run.first_error.endswith("hint: give a file name, not a directory")


# ---------------------------------------------------------------------------------------------
# Deep nesting, alias bombs


def test_json_patient_nested_100000_deep_is_too_deep(tmp_path: Path) -> None:
    prefix = '{"as_of": "2026-01-20T09:00:00+00:00", "x": '
    patient = tmp_path / "deep.json"
    patient.write_text(prefix + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    run = cds_rules("screen", str(patient))
    run.assert_no_traceback()
    assert run.code == 2
    # the object is level 1: the 100th `[` opens level 101
    column = len(prefix) + MAX_DEPTH
    assert run.first_error.startswith(f"error {patient}:1:{column}: too_deep: "), run.stderr


def test_yaml_patient_nested_5000_deep_is_too_deep(tmp_path: Path) -> None:
    patient = tmp_path / "deep.yaml"
    patient.write_text(
        "as_of: 2026-01-20T09:00:00+00:00\nx: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8"
    )
    run = cds_rules("screen", str(patient))
    run.assert_no_traceback()
    assert run.code == 2
    column = len("x: ") + MAX_DEPTH  # the mapping is level 1
    assert run.first_error.startswith(f"error {patient}:2:{column}: too_deep: "), run.stderr


def test_nesting_up_to_the_limit_is_read_and_one_more_level_is_refused() -> None:
    inner = "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1)
    assert load_yaml_text(f"x: {inner}").data["x"] is not None
    with pytest.raises(RulesetError) as caught:
        load_yaml_text(f"x: [{inner}]", "deep.yaml")
    assert (caught.value.code, caught.value.location.line) == ("too_deep", 1)


def test_deep_ruleset_is_a_ruleset_error(tmp_path: Path) -> None:
    ruleset = tmp_path / "deep.yaml"
    ruleset.write_text("id: deep\nrules: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    run = cds_rules("check", str(ruleset))
    run.assert_no_traceback()
    assert run.code == 6
    assert run.first_error.startswith(f"error {ruleset}:2:"), run.stderr
    assert ": too_deep: " in run.first_error


@pytest.mark.parametrize(
    ("file", "code", "line", "column"),
    [
        ("alias_bomb.yaml", "too_large", 9, 45),
        ("many_aliases.yaml", "too_large", 5, 8 + 7 * MAX_ALIASES),
        ("recursive_alias.yaml", "recursive_alias", 4, 27),
    ],
    ids=["billion-laughs", "101-aliases", "recursive-alias"],
)
def test_alias_abuse_is_refused_promptly(file: str, code: str, line: int, column: int) -> None:
    run = cds_rules("screen", f"{INPUTS}/{file}", timeout=60)  # the bomb used to hang
    run.assert_no_traceback()
    assert run.code == 2
    assert run.first_error.startswith(f"error {INPUTS}/{file}:{line}:{column}: {code}: ")


def test_a_few_aliases_are_still_read() -> None:
    document = load_yaml_text("a: &a [1, 2]\nb: *a\nc: *a\n")
    assert document.data == {"a": [1, 2], "b": [1, 2], "c": [1, 2]}


# ---------------------------------------------------------------------------------------------
# A reader that stops early (`cds-rules screen X | head -1`)


@pytest.mark.parametrize(
    "args",
    [
        ("screen", SEED),
        ("screen", SEED, "--json"),
        ("screen", PASSING),
        ("screen", f"{INPUTS}/crp_1e13.yaml", "--json"),
        ("check",),
        ("schema", "--output", "-"),
    ],
    ids=["screen", "screen-json", "screen-eligible", "input-error-json", "check", "schema"],
)
def test_closed_output_keeps_the_exit_code_and_prints_no_traceback(args: tuple[str, ...]) -> None:
    expected = cds_rules(*args).code
    run = cds_rules_to_a_closed_pipe(*args)
    assert run.code == expected, run.stderr  # it was 1 whatever the decision
    assert run.stderr == ""


def test_screen_exit_code_is_the_decision_when_the_reader_stops_early() -> None:
    run = cds_rules_to_a_closed_pipe("screen", SEED)
    assert run.code in DECISION_EXIT_CODES
    assert run.code == cds_rules("screen", SEED).code
