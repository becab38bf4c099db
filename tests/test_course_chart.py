"""The course chart: files a user opens, and the texts and marks a clinician reads on them.

Courses are the seed course (fixtures/courses/seed.yaml) and modified copies of it written to
``tmp_path``; every chart is a real PNG or SVG file, read back as an image or parsed as XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.image
import pytest
import yaml

from cds_rules.course import CourseReport, CourseRunner, load_course, response_thresholds
from cds_rules.course_chart import chart_series, draw_course
from cds_rules.dosing import DosingTable, fmt, load_dosing_table
from cds_rules.errors import InputError
from cds_rules.protocol import CompiledProfile, compile_profile
from cds_rules.spec import CourseAction

ROOT = Path(__file__).resolve().parents[1]
SEED_COURSE = ROOT / "fixtures" / "courses" / "seed.yaml"
SEED_PATIENT = ROOT / "fixtures" / "patients" / "seed.yaml"
SVG = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Edit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def table() -> DosingTable:
    return load_dosing_table(ROOT / "rulesets" / "dosing.yaml")


@pytest.fixture(scope="module")
def profile() -> CompiledProfile:
    return compile_profile(ROOT / "rulesets" / "protocol.yaml", "course")


@pytest.fixture(scope="module")
def runner(profile: CompiledProfile, table: DosingTable) -> CourseRunner:
    return CourseRunner(profile, table)


@pytest.fixture(scope="module")
def seed(runner: CourseRunner) -> CourseReport:
    return runner.run(load_course(SEED_COURSE))


@pytest.fixture(scope="module")
def seed_svg(
    seed: CourseReport,
    table: DosingTable,
    profile: CompiledProfile,
    tmp_path_factory: pytest.TempPathFactory,
) -> ET.Element:
    path = tmp_path_factory.mktemp("chart") / "seed.svg"
    draw_course(seed, table, path, response_lines=response_thresholds(profile))
    return ET.parse(path).getroot()


def course_variant(tmp_path: Path, edit: Edit) -> Path:
    """A copy of the seed course, changed by ``edit``, with its patient at an absolute path."""
    data = yaml.safe_load(SEED_COURSE.read_text(encoding="utf-8"))
    data["patient"] = str(SEED_PATIENT)
    edit(data)
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def texts(root: ET.Element) -> list[str]:
    """Every text shown in the SVG, one string per line of text."""
    return ["".join(element.itertext()) for element in root.iter(f"{SVG}text")]


def group(root: ET.Element, gid: str) -> ET.Element:
    found = [element for element in root.iter(f"{SVG}g") if element.get("id") == gid]
    assert len(found) == 1, f"expected one element with id {gid!r}, found {len(found)}"
    return found[0]


def tick_x(root: ET.Element, label: str) -> float:
    """The x of the x-axis tick labelled ``label`` (``day 4``)."""
    for element in root.iter(f"{SVG}text"):
        if "".join(element.itertext()) == label and element.get("x") is not None:
            return float(element.get("x", "nan"))
    raise AssertionError(f"no tick label {label!r}")


# ---------------------------------------------------------------------------------------------
# Files


def test_seed_course_renders_to_a_png_of_1600_by_1000_pixels(
    seed: CourseReport, table: DosingTable, tmp_path: Path
) -> None:
    path = draw_course(seed, table, tmp_path / "seed.png")

    assert path == tmp_path / "seed.png"
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 20_000
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (1000, 1600)


def test_seed_course_svg_is_well_formed_and_the_picture_size(seed_svg: ET.Element) -> None:
    assert seed_svg.tag == f"{SVG}svg"
    assert seed_svg.get("viewBox") == "0 0 1152 720"  # 16 x 10 inches at 72 points an inch
    ids = [element.get("id") for element in seed_svg.iter() if element.get("id")]
    assert len(ids) == len(set(ids))


def test_same_report_gives_a_byte_identical_svg(
    seed: CourseReport, table: DosingTable, profile: CompiledProfile, tmp_path: Path
) -> None:
    lines = response_thresholds(profile)
    first = draw_course(seed, table, tmp_path / "first.svg", response_lines=lines)
    second = draw_course(seed, table, tmp_path / "second.svg", response_lines=lines)

    assert first.read_bytes() == second.read_bytes()


def test_user_matplotlib_settings_do_not_change_the_chart(
    seed: CourseReport, table: DosingTable, tmp_path: Path
) -> None:
    plain = draw_course(seed, table, tmp_path / "plain.svg")
    with matplotlib.rc_context(
        {"svg.fonttype": "path", "svg.hashsalt": None, "font.size": 30, "lines.linewidth": 9}
    ):
        styled = draw_course(seed, table, tmp_path / "styled.svg")

    assert styled.read_bytes() == plain.read_bytes()
    assert matplotlib.rcParams["svg.fonttype"] == "path"  # the caller's settings are restored


@pytest.mark.parametrize("name", ["course.jpg", "course", "course.svg.txt", "course.pdf"])
def test_unsupported_suffix_is_an_input_error_at_chart(
    seed: CourseReport, table: DosingTable, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    with pytest.raises(InputError) as raised:
        draw_course(seed, table, path)

    error = raised.value
    assert error.code == "invalid_value"
    assert error.location.path == "--chart"
    assert str(error).startswith("--chart: invalid_value:")
    assert ".png or .svg" in error.message
    assert not path.exists()


def test_suffix_is_read_without_regard_to_case(
    seed: CourseReport, table: DosingTable, tmp_path: Path
) -> None:
    path = draw_course(seed, table, tmp_path / "SEED.SVG")

    assert ET.parse(path).getroot().tag == f"{SVG}svg"


# ---------------------------------------------------------------------------------------------
# What a clinician reads on the seed course


def test_seed_svg_labels_the_lidocaine_limits_with_the_tables_numbers(
    seed: CourseReport, seed_svg: ET.Element, table: DosingTable
) -> None:
    shown = texts(seed_svg)
    maximum = table.lidocaine.max_mg_per_kg.d
    cap = table.lidocaine.cap_mg.d
    kg = seed.weight.dosing_kg
    assert kg == Decimal("85")
    per_kg = (cap / kg).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    assert f"maximum {fmt(maximum)} mg/kg per session ({table.lidocaine.rule})" in shown
    assert f"max {fmt(maximum)}" in shown
    assert f"{fmt(cap)} mg cap = {fmt(per_kg)} mg/kg at {fmt(kg)} kg" in shown
    assert "500 mg cap = 5.88 mg/kg at 85 kg" in shown


def test_seed_svg_labels_the_ketamine_limits_with_the_tables_numbers(
    seed_svg: ET.Element, table: DosingTable
) -> None:
    shown = texts(seed_svg)
    maximum = fmt(table.ketamine.max_mg_per_kg.d)
    minimum = fmt(table.ketamine.min_mg_per_kg.d)

    assert f"maximum {maximum} mg/kg of actual weight ({table.ketamine.cap_rule})" in shown
    assert f"minimum {minimum} mg/kg when given ({table.ketamine.rule})" in shown
    assert f"max {maximum}" in shown
    assert f"min {minimum}" in shown


def test_seed_svg_marks_day_7_ketamine_over_the_maximum(seed_svg: ET.Element) -> None:
    note = group(seed_svg, "ketamine-day-7-over-maximum")

    assert texts(note) == ["20 mg = 0.235 mg/kg > 0.2"]
    assert "over the maximum (order check: REJECT)" in texts(seed_svg)
    assert not [
        e
        for e in seed_svg.iter(f"{SVG}g")
        if e.get("id", "").endswith("over-maximum") and e.get("id") != "ketamine-day-7-over-maximum"
    ]


def test_seed_svg_marks_day_2_escalation_not_allowed_and_later_rises_not_shown(
    seed_svg: ET.Element,
) -> None:
    for drug in ("lidocaine", "ketamine"):
        assert texts(group(seed_svg, f"{drug}-day-2-escalation-not-allowed")) == [
            "✕ escalation",
            "not allowed",
        ]
    for day in (3, 4, 5, 6, 7):
        assert texts(group(seed_svg, f"lidocaine-day-{day}-escalation-not-shown")) == [
            "not shown:",
            "data missing",
        ]
    shown = texts(seed_svg)
    assert "dose rose although the rules allowed no escalation" in shown
    assert "shaded: previous session allowed no escalation (hold)" in shown


def test_seed_svg_shows_the_adverse_event_and_the_days_without_a_record(
    seed_svg: ET.Element,
) -> None:
    assert texts(group(seed_svg, "adverse-events-day-1")) == [
        "G1 · LAST 1 mild dizziness post infusion"
    ]
    assert "adverse events not recorded: days 2–7" in texts(seed_svg)


def test_seed_svg_shows_the_pain_panel(seed_svg: ET.Element, profile: CompiledProfile) -> None:
    shown = texts(seed_svg)

    assert "Pain VNRS (0–10)" in shown
    assert "baseline 8 (session 1, before)" in shown
    assert "VNRS before not recorded: days 3–7" in shown
    for label, percent in response_thresholds(profile):
        level = (Decimal(8) * (1 - percent / 100)).quantize(Decimal("0.01"))
        assert f"{label}: −{fmt(percent)}% from baseline = {fmt(level)}" in shown
    assert "moderately important: −30% from baseline = 5.6" in shown
    assert "substantial: −50% from baseline = 4" in shown
    assert len(list(group(seed_svg, "vnrs-after").iter(f"{SVG}use"))) == 7
    assert len(list(group(seed_svg, "vnrs-before").iter(f"{SVG}use"))) == 2


def test_seed_svg_title_names_course_weight_products_and_outcome(
    seed_svg: ET.Element,
) -> None:
    shown = texts(seed_svg)

    assert (
        "Course seed-moktan-2025 · dosing weight 85 kg (actual weight) · "
        "lidocaine 21 mg/mL, ketamine 10 mg/mL"
    ) in shown
    second = [t for t in shown if t.startswith("7 sessions · status ")]
    assert len(second) == 1
    assert second[0].endswith("after day 7: COURSE_COMPLETE")


def test_without_response_lines_only_the_baseline_is_drawn(
    seed: CourseReport, table: DosingTable, tmp_path: Path
) -> None:
    root = ET.parse(draw_course(seed, table, tmp_path / "plain.svg")).getroot()
    ids = {element.get("id") for element in root.iter(f"{SVG}g")}

    assert "vnrs-baseline" in ids
    assert not [i for i in ids if i and i.startswith("vnrs-response")]
    assert not [t for t in texts(root) if "from baseline =" in t]


# ---------------------------------------------------------------------------------------------
# The plotted series


def test_seed_series(seed: CourseReport, table: DosingTable) -> None:
    series = chart_series(seed, table)

    assert series.days == (1, 2, 3, 4, 5, 6, 7)
    doses = ("3.5", "3.75", "4", "4.25", "4.5", "4.75", "5")
    assert series.lidocaine_given == {
        day: Decimal(dose) for day, dose in zip(series.days, doses, strict=True)
    }
    assert series.lidocaine_plan[1] == Decimal("3.5")
    assert series.lidocaine_plan[7] == Decimal("4.75")
    assert series.ketamine_given[7] == Decimal("0.235")
    assert series.ketamine_given[1] == 0  # none given is a dose of 0, not a missing value
    assert series.vnrs_before == {1: Decimal(8), 2: Decimal(6)}
    assert series.vnrs_after == {
        1: Decimal(6),
        2: Decimal(5),
        3: Decimal(5),
        4: Decimal(5),
        5: Decimal(4),
        6: Decimal(4),
        7: Decimal(3),
    }
    assert series.baseline_vnrs == Decimal(8)
    assert series.lidocaine_max_mg_per_kg == table.lidocaine.max_mg_per_kg.d
    assert series.lidocaine_cap_mg == table.lidocaine.cap_mg.d
    assert series.lidocaine_cap_mg_per_kg == Decimal("5.88")
    assert series.ketamine_max_mg_per_kg == table.ketamine.max_mg_per_kg.d
    assert series.ketamine_min_mg_per_kg == table.ketamine.min_mg_per_kg.d
    for drug in ("lidocaine", "ketamine"):
        assert series.held[drug] == {day: CourseAction.HOLD_DOSE for day in range(2, 8)}
    assert series.escalations["lidocaine"] == {
        2: "not allowed",
        3: "not shown",
        4: "not shown",
        5: "not shown",
        6: "not shown",
        7: "not shown",
    }
    assert series.escalations["ketamine"] == {2: "not allowed", 4: "not shown", 7: "not shown"}
    assert series.over_maximum == {"lidocaine": (), "ketamine": (7,)}
    assert series.adverse_events == {1: ("G1 · LAST 1",)}
    assert series.adverse_events_not_recorded == (2, 3, 4, 5, 6, 7)


def test_vnrs_not_recorded_is_a_gap_not_a_zero(
    runner: CourseRunner, table: DosingTable, tmp_path: Path
) -> None:
    def edit(course: dict[str, Any]) -> None:
        course["sessions"][3]["vnrs"] = {"before": 5, "after": None}

    report = runner.run(load_course(course_variant(tmp_path, edit)))
    assert report.sessions[3].vnrs_after is None

    series = chart_series(report, table)
    assert 4 not in series.vnrs_after
    assert sorted(series.vnrs_after) == [1, 2, 3, 5, 6, 7]
    assert 0 not in series.vnrs_after.values()
    assert series.vnrs_before == {1: Decimal(8), 2: Decimal(6), 4: Decimal(5)}

    root = ET.parse(draw_course(report, table, tmp_path / "course.svg")).getroot()
    after = [float(u.get("x", "nan")) for u in group(root, "vnrs-after").iter(f"{SVG}use")]
    assert len(after) == 6
    assert all(abs(x - tick_x(root, "day 4")) > 1 for x in after)
    before = [float(u.get("x", "nan")) for u in group(root, "vnrs-before").iter(f"{SVG}use")]
    assert any(abs(x - tick_x(root, "day 4")) < 1 for x in before)
    assert "VNRS after not recorded: day 4" in texts(root)
    assert "VNRS before not recorded: days 3, 5–7" in texts(root)


def test_no_baseline_draws_no_baseline_or_response_lines(
    runner: CourseRunner, table: DosingTable, profile: CompiledProfile, tmp_path: Path
) -> None:
    def edit(course: dict[str, Any]) -> None:
        course["sessions"][0]["vnrs"] = {"before": None, "after": 6}

    report = runner.run(load_course(course_variant(tmp_path, edit)))
    assert chart_series(report, table).baseline_vnrs is None

    path = draw_course(
        report, table, tmp_path / "course.svg", response_lines=response_thresholds(profile)
    )
    root = ET.parse(path).getroot()
    ids = {element.get("id") for element in root.iter(f"{SVG}g")}
    assert not [i for i in ids if i and i.startswith(("vnrs-baseline", "vnrs-response"))]
    assert "baseline not recorded (session 1 VNRS before)" in texts(root)


def test_a_fully_recorded_course_shows_allowed_rises_a_lowered_day_and_an_overdose(
    runner: CourseRunner, table: DosingTable, tmp_path: Path
) -> None:
    def edit(course: dict[str, Any]) -> None:
        for index, session in enumerate(course["sessions"]):
            session.update(
                started_at=f"2025-03-{index + 1:02d}T09:00:00+00:00",
                delivered_percent=100,
                gate_passed=True,
                max_poss=1,
                min_rass=0,
                adverse_events=[],
                halts=[],
            )
        course["sessions"][2]["adverse_events"] = [
            {"term": "nausea", "category": None, "grade": 2, "last_tier": 0, "attributable": True}
        ]
        course["sessions"][4]["lidocaine"] = {"mg_per_kg": 6.5}

    report = runner.run(load_course(course_variant(tmp_path, edit)))
    series = chart_series(report, table)

    assert series.escalations["lidocaine"][2] == "allowed"
    assert 2 not in series.held["lidocaine"]
    assert series.held["lidocaine"][4] == report.sessions[2].next.by_drug["lidocaine"]
    assert series.held["lidocaine"][4] != CourseAction.ESCALATE
    assert series.escalations["lidocaine"][4] == "not allowed"
    assert series.adverse_events == {3: ("G2",)}
    assert series.adverse_events_not_recorded == ()
    assert series.over_maximum["lidocaine"] == (5,)

    root = ET.parse(draw_course(report, table, tmp_path / "course.svg")).getroot()
    shown = texts(root)
    assert texts(group(root, "lidocaine-day-2-escalation-allowed")) == [
        "✓ escalation",
        "allowed",
    ]
    assert texts(group(root, "lidocaine-day-4-escalation-not-allowed"))[1] == "not allowed"
    assert texts(group(root, "adverse-events-day-3")) == ["G2 nausea"]
    assert texts(group(root, "lidocaine-day-5-over-maximum")) == ["552.5 mg = 6.5 mg/kg > 5"]
    assert "dose rose as the rules allowed" in shown
    assert not [t for t in shown if "not recorded" in t and "adverse" in t]


def test_two_sessions_on_one_day_are_drawn_and_said_to_share_the_day(
    runner: CourseRunner, table: DosingTable, tmp_path: Path
) -> None:
    def edit(course: dict[str, Any]) -> None:
        course["sessions"][1]["day"] = 1
        course["sessions"][1]["adverse_events"] = [
            {
                "term": "tinnitus",
                "category": None,
                "grade": 1,
                "last_tier": 1,
                "attributable": True,
            },
            {"term": "nausea", "category": None, "grade": 1, "last_tier": 0, "attributable": True},
        ]

    report = runner.run(load_course(course_variant(tmp_path, edit)))
    assert [s.day for s in report.sessions[:2]] == [1, 1]

    root = ET.parse(draw_course(report, table, tmp_path / "course.svg")).getroot()
    assert "several sessions on day 1: the last one is drawn" in texts(root)
    ids = [element.get("id") for element in root.iter() if element.get("id")]
    assert len(ids) == len(set(ids))
    assert texts(group(root, "adverse-events-day-1")) == ["G1 · LAST 1 tinnitus", "G1 nausea"]
