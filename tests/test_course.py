"""``cds-rules course``: the course table a clinician reads, its exit codes and its errors.

The command runs as a user runs it (the installed executable, from the repository root) on the
seed course (fixtures/courses/seed.yaml), the documented example course, and the broken course
files of tests/cli_inputs/courses/. What each rule decides is in the golden course cases
(tests/golden/course/); here: what the output says, and that bad input is refused by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from cds_rules.course import CourseRunner, load_course
from cds_rules.dosing import load_dosing_table
from cds_rules.errors import RulesetErrors
from cds_rules.protocol import compile_profile
from cds_rules.spec import CourseAction

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "cds-rules"
SEED_COURSE = "fixtures/courses/seed.yaml"
DOCUMENTED = "fixtures/courses/documented.yaml"
INPUTS = "tests/cli_inputs/courses"


@cache
def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def _row(output: str, day: int) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"│ {day:>2} │"))


def test_seed_course_is_cannot_evaluate_with_its_data_gaps_named() -> None:
    result = run("course", SEED_COURSE)
    assert result.returncode == 4, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("CANNOT_EVALUATE  course seed-moktan-2025")
    assert "7 of 7 sessions given: the course is complete" in result.stdout
    assert (
        "not recorded: gate_passed, halts, max_poss, min_rass, delivered_percent" in result.stdout
    )


def test_seed_day_2_escalation_conflicts_with_esc_02() -> None:
    out = run("course", SEED_COURSE).stdout
    row = _row(out, 2)
    assert "3.75 ▲" in row and "not allowed" in row
    assert (
        "session 2: lidocaine 3.75 mg/kg is above the plan of 3.5 mg/kg: escalated against "
        "ESC-02-LAST, CTCAE-G1" in out
    )
    assert (
        "ESC-02-LAST → HOLD_DOSE: mild dizziness post infusion is a tier-1 sign of local "
        "anaesthetic toxicity: hold the dose (no escalation)" in out
    )


def test_seed_day_7_ketamine_over_0_2_mg_per_kg_is_rejected() -> None:
    out = run("course", SEED_COURSE).stdout
    assert "20 (0.235) ▲ REJECT" in _row(out, 7)
    assert (
        "REJECT DOSE-KET-02 20 mg for 85 kg is 0.2353 mg/kg, over the limit of 0.2 mg/kg of "
        "actual weight: the maximum is 17 mg" in out
    )


def test_seed_end_of_course_response_band() -> None:
    out = run("course", SEED_COURSE).stdout
    assert (
        "after session 7: VNRS 3, -5 points, -62.5%: substantial (RESP-02-SUBSTANTIAL, RESP-03)"
        in out
    )
    assert "futility check (RESP-06, from session 4): not futile after session 4, 5, 6, 7" in out
    assert "3-month call (13 weeks): VNRS 4, -4 points, -50%: substantial" in out
    assert "-2 (-25%)" in _row(out, 1)


def test_documented_course_escalates_and_exits_0() -> None:
    result = run("course", DOCUMENTED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK  course documented-example")
    assert "ESCALATE" in _row(result.stdout, 2)
    assert "next session 3: lidocaine 4 mg/kg = 272 mg = 13.6 mL; ketamine 10 mg" in result.stdout
    assert (
        "DOSE-KET-02 ketamine 15 mg would be over 0.2 mg/kg of actual weight (13.5 mg): the dose "
        "holds at 10 mg" in result.stdout
    )


def test_json_output_carries_every_session_with_its_audit_trail() -> None:
    result = run("course", SEED_COURSE, "--json")
    assert result.returncode == 4
    data = json.loads(result.stdout)
    assert [s["number"] for s in data["sessions"]] == [1, 2, 3, 4, 5, 6, 7]
    day1 = data["sessions"][0]
    assert day1["next"]["action"] == "HOLD_DOSE"
    assert day1["next"]["status"] == "CANNOT_EVALUATE"
    fired = [rule["rule_id"] for rule in day1["evaluation"]["fired"]]
    assert {"ESC-02-LAST", "CTCAE-G1"} <= set(fired)
    assert day1["evaluation"]["ruleset"]["id"] == "course"
    assert data["ruleset"]["content_hash"].startswith("sha256:")
    assert data["sessions"][6]["ketamine"]["check"]["decision"] == "REJECT"
    assert data["sessions"][6]["ketamine"]["check"]["max_mg"] == 17


def test_reference_engine_and_cross_check_give_the_same_course() -> None:
    durable = json.loads(run("course", SEED_COURSE, "--json").stdout)
    reference = json.loads(run("course", SEED_COURSE, "--json", "--engine", "reference").stdout)
    checked = run("course", SEED_COURSE, "--json", "--cross-check")
    assert checked.returncode == 4
    for data in (durable, reference):
        for part in (*data["sessions"], *data["follow_up"]):
            evaluation = part["evaluation"]
            assert evaluation.pop("engine")
            evaluation.pop("cross_checked")
            # The engines fire in different orders; what fired, on which facts, is the same.
            for rule in evaluation["fired"]:
                rule.pop("sequence")
            evaluation["fired"].sort(key=lambda rule: rule["rule_id"])
    assert durable == reference


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        (
            "missing_fields",
            [
                "missing_fields.yaml:7:5: missing_field: missing required field `max_poss` "
                "(at $.sessions[0].max_poss)",
                "missing_fields.yaml:18:5: unknown_field: unknown field `remark` "
                "(at $.sessions[0].remark)",
            ],
        ),
        (
            "bad_values",
            [
                "bad_values.yaml:11:24: invalid_value: invalid value `100`: Input should be a "
                "valid number (at $.sessions[0].delivered_percent)",
                "bad_values.yaml:16:71: invalid_value: invalid value `6`: Input should be less "
                "than or equal to 5 (at $.sessions[0].adverse_events[0].grade)",
            ],
        ),
        (
            "out_of_order",
            [
                "out_of_order.yaml:6:13: invalid_value: session 1 of the file is numbered 2: "
                "sessions are listed in order from 1 (at $.sessions[0].number)"
            ],
        ),
        (
            "day_mismatch",
            [
                "day_mismatch.yaml:21:10: invalid_value: session 2 is on day 2, 1 days after "
                "session 1, but starts 3 calendar days after it (at $.sessions[1].day)"
            ],
        ),
        (
            "wrong_ampoule",
            [
                "wrong_ampoule.yaml:5:33: out_of_range: `products.lidocaine_mg_per_ml` 200 mg/mL "
                "is outside the products in use (5-25 mg/mL): check the ampoule "
                "(at $.products.lidocaine_mg_per_ml)"
            ],
        ),
    ],
)
def test_bad_course_files_are_refused_naming_each_field(name: str, lines: list[str]) -> None:
    result = run("course", f"{INPUTS}/{name}.yaml")
    assert result.returncode == 2
    assert result.stdout == ""
    errors = [line.removeprefix(f"error {INPUTS}/") for line in result.stderr.splitlines()]
    assert errors == lines
    assert "Traceback" not in result.stderr


def test_missing_course_file_is_an_input_error() -> None:
    result = run("course", f"{INPUTS}/no_such_course.yaml")
    assert result.returncode == 2
    assert "unreadable_file: cannot read `tests/cli_inputs/courses/no_such_course.yaml`" in (
        result.stderr
    )


def test_a_screening_profile_refuses_next_session_actions(tmp_path: Path) -> None:
    rulesets = tmp_path / "rulesets"
    rulesets.mkdir()
    for name in ("drugs.yaml", "conditions.yaml", "course.yaml"):
        (rulesets / name).write_text((ROOT / "rulesets" / name).read_text())
    screening = "rulesets: [eligibility.yaml, contraindications.yaml, interactions.yaml, "
    protocol = (ROOT / "rulesets" / "protocol.yaml").read_text()
    assert screening in protocol
    (rulesets / "protocol.yaml").write_text(
        protocol.replace(screening + "pretests.yaml]", "rulesets: [course.yaml]")
    )
    with pytest.raises(RulesetErrors) as raised:
        compile_profile(rulesets / "protocol.yaml", "screening")
    codes = {error.code for error in raised.value.errors}
    assert codes == {"action_outside_course"}
    assert "rule `ESC-01-GATE` has a next-session `action`" in str(raised.value)


def test_a_course_runner_needs_a_course_profile() -> None:
    with pytest.raises(ValueError, match="not a course profile"):
        CourseRunner(
            compile_profile(ROOT / "rulesets" / "protocol.yaml", "gate"),
            load_dosing_table(ROOT / "rulesets" / "dosing.yaml"),
        )


def test_missing_weight_gives_no_plan_and_never_escalates(tmp_path: Path) -> None:
    patient = (ROOT / "fixtures/patients/passing.yaml").read_text()
    (tmp_path / "patient.yaml").write_text(patient.replace("weight_kg: 68", "weight_kg: null"))
    course = (ROOT / DOCUMENTED).read_text().replace("../patients/passing.yaml", "patient.yaml")
    (tmp_path / "course.yaml").write_text(course)
    report = CourseRunner(
        compile_profile(ROOT / "rulesets" / "protocol.yaml", "course"),
        load_dosing_table(ROOT / "rulesets" / "dosing.yaml"),
    ).run(load_course(tmp_path / "course.yaml"))
    assert report.status.value == "CANNOT_EVALUATE"
    for session in report.sessions:
        assert session.next.plan is None or session.next.plan.lidocaine is None
        assert set(session.next.by_drug.values()) == {CourseAction.HOLD_DOSE}


def test_ketamine_only_stop_is_said_per_drug(tmp_path: Path) -> None:
    """HALT-PSY-03 stops ketamine for the course; lidocaine goes on: the header says so."""
    patient = ROOT / "fixtures" / "patients" / "passing.yaml"
    lines = (
        (ROOT / DOCUMENTED)
        .read_text()
        .replace("../patients/passing.yaml", str(patient))
        .splitlines(keepends=True)
    )
    last_halts = max(i for i, line in enumerate(lines) if line.strip() == "halts: []")
    lines[last_halts] = "    halts: [{rule: HALT-PSY-03, times: 1, resolved: true}]\n"
    path = tmp_path / "psy03.yaml"
    path.write_text("".join(lines))
    result = subprocess.run(
        [str(CLI), "course", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "2 of 7 sessions given; ketamine discontinued for the course" in result.stdout
    assert "lidocaine HOLD_DOSE, ketamine DISCONTINUE_COURSE" in _row(result.stdout, 2)


def test_heavy_patient_capped_lidocaine_and_low_ketamine_start(tmp_path: Path) -> None:
    """110 kg, 200 cm man: 4.75 mg/kg would be 522.5 mg, so the plan is the 500 mg cap, said in
    mg/kg too; ketamine's 10 mg start is under 0.1 mg/kg (11 mg) and needs review."""
    patient = (ROOT / "fixtures/patients/passing.yaml").read_text()
    for old, new in (
        ("weight_kg: 68", "weight_kg: 110"),
        ("height_cm: 165", "height_cm: 200"),
        ("sex: female", "sex: male"),
    ):
        assert old in patient
        patient = patient.replace(old, new)
    (tmp_path / "patient.yaml").write_text(patient)
    course = (
        (ROOT / DOCUMENTED)
        .read_text()
        .replace("../patients/passing.yaml", "patient.yaml")
        .replace("{mg_per_kg: 3.5, mg: 238, ml: 11.9}", "{mg_per_kg: 4.5}")
        .replace("{mg_per_kg: 3.75, mg: 255, ml: 12.75}", "{mg_per_kg: 4.5}")
    )
    (tmp_path / "course.yaml").write_text(course)
    result = subprocess.run(
        [str(CLI), "course", str(tmp_path / "course.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert (
        "next session 2: lidocaine 500 mg = 25 mL: the 4.75 mg/kg step is over the cap, so "
        "4.54 mg/kg; ketamine 10 mg (0.091 mg/kg) = 1 mL" in result.stdout
    )
    assert (
        "DOSE-KET-01 ketamine 10 mg is under 0.1 mg/kg of 110 kg (11 mg): review the dose"
        in result.stdout
    )
