"""The course as a picture: each day's doses against the plan the rules allowed and the dosing
table's limits, the days the rules allowed no escalation, adverse events, and the pain scores.

One figure (1600 x 1000 px), three panels sharing the course day:

* lidocaine mg/kg given (solid) and planned (dashed, hollow markers), with the table's mg/kg
  maximum and its absolute mg cap as mg/kg of the dosing weight; adverse events along the top;
* ketamine mg/kg given and planned, with the table's mg/kg maximum and minimum; a dose over
  the maximum is red and says by how much;
* VNRS before and after each session joined by an arrow, the baseline (session 1 before) and,
  when the caller passes them, the response bands as decreases from the baseline.

A day whose previous session did not allow a drug to escalate is shaded in that drug's panel; a
dose that rose anyway is marked "escalation not allowed", or "not shown" when the record lacks
the data to show the rise was allowed. A value not recorded is left out (a gap, never a zero)
and the legends say which days lack it. Every limit comes from the dosing table.

The picture is drawn with matplotlib's object API on the Agg canvas (no pyplot, no GUI) and
matplotlib's default style, whatever the user's settings. The same report gives the same SVG,
byte for byte; its text stays text, and the marks a reader may look for carry ids
(``lidocaine-day-2-escalation-not-allowed``, ``ketamine-day-7-over-maximum``,
``adverse-events-day-1``, ``vnrs-after``, ...).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

from matplotlib import style
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import ScaledTranslation, blended_transform_factory
from matplotlib.typing import LineStyleType

from .course import CourseReport, DrugDay, SessionReport
from .dosing import DRUGS, DosingTable, Drug, fmt
from .errors import InputError, Location
from .spec import CourseAction

__all__ = ["CourseSeries", "chart_series", "draw_course"]

Verdict = Literal["allowed", "not allowed", "not shown"]

_SIZE_IN = (16.0, 10.0)
_DPI = 100
_FORMATS = {".png": "png", ".svg": "svg"}
#: Room between a panel and its legend, for the labels of the limits.
_LEGEND_GAP_IN = 1.25
#: The before-to-after arrow is drawn this far (inches) left of the VNRS markers.
_ARROW_OFFSET_IN = 0.14
_CENT = Decimal("0.01")

_RC: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.titleweight": "bold",
    "axes.labelsize": 12,
    "legend.fontsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    # Text stays text in the SVG (searchable, readable by assistive technology), and the
    # element ids come from a fixed salt so that the same report gives the same file.
    "svg.fonttype": "none",
    "svg.hashsalt": "cds-rules-course-chart",
}

_LIDOCAINE = "#1f5fa8"
_KETAMINE = "#1b7f5f"
_LIMIT = "#8b1a1a"
_FLOOR = "#6b6b6b"
_OVER = "#d62728"
_NOT_SHOWN = "#7a7a7a"
_ALLOWED = "#2e7d32"
_EVENT = "#7b2d8e"
_BASELINE = "#333333"
_BANDS = ("#6a9fd4", "#2f6db3", "#173f73")
_BEFORE = "#555555"
_AFTER = "#c2410c"
_CHANGE = "#444444"
_GRID = "#e6e6e6"

_SHADE = {"held": "#ffe3c2", "lowered": "#ffc999", "stopped": "#f6c4c4"}
_SHADE_LABEL = {
    "held": "shaded: previous session allowed no escalation (hold)",
    "lowered": "shaded: previous session lowered the dose",
    "stopped": "shaded: the course had stopped (complete or discontinued)",
}
_VERDICT_MARK: dict[Verdict, tuple[str, str, str, str]] = {
    # text on the chart, legend marker, colour, legend label
    "not allowed": (
        "✕ escalation\nnot allowed",
        "$✕$",
        _OVER,
        "dose rose although the rules allowed no escalation",
    ),
    "not shown": (
        "not shown:\ndata missing",
        "$?$",
        _NOT_SHOWN,
        "dose rose; not shown allowed: data missing",
    ),
    "allowed": ("✓ escalation\nallowed", "$✓$", _ALLOWED, "dose rose as the rules allowed"),
}


# ---------------------------------------------------------------------------------------------
# What is plotted


@dataclass(frozen=True)
class CourseSeries:
    """The values the chart plots, by course day; a value not recorded is absent, never 0.
    A day with two sessions holds the later one's values (the chart says so)."""

    days: tuple[int, ...]
    lidocaine_given: dict[int, Decimal]
    lidocaine_plan: dict[int, Decimal]
    ketamine_given: dict[int, Decimal]
    ketamine_plan: dict[int, Decimal]
    vnrs_before: dict[int, Decimal]
    vnrs_after: dict[int, Decimal]
    #: Session 1's VNRS before, as the response rules read it.
    baseline_vnrs: Decimal | None
    lidocaine_max_mg_per_kg: Decimal
    lidocaine_cap_mg: Decimal
    #: The absolute cap as mg/kg of the dosing weight (None without a dosing weight).
    lidocaine_cap_mg_per_kg: Decimal | None
    ketamine_max_mg_per_kg: Decimal
    ketamine_min_mg_per_kg: Decimal
    #: Per drug, the days whose previous session did not allow escalation, with its decision.
    held: dict[str, dict[int, CourseAction]]
    #: Per drug, the days its dose rose, and whether the rules allowed it.
    escalations: dict[str, dict[int, Verdict]]
    #: Per drug, the days its dose was over the maximum (the order check rejected it).
    over_maximum: dict[str, tuple[int, ...]]
    #: Each day's adverse events as ``G<grade> · LAST <tier>`` codes, one per event.
    adverse_events: dict[int, tuple[str, ...]]
    adverse_events_not_recorded: tuple[int, ...]


def chart_series(report: CourseReport, table: DosingTable) -> CourseSeries:
    """The series and limits :func:`draw_course` plots, from the report and the dosing table."""
    sessions = report.sessions
    dosing_kg = report.weight.dosing_kg
    cap_mg = table.lidocaine.cap_mg.d
    cap_per_kg = (
        (cap_mg / dosing_kg).quantize(_CENT, rounding=ROUND_HALF_UP)
        if dosing_kg is not None and dosing_kg > 0
        else None
    )
    held: dict[str, dict[int, CourseAction]] = {drug: {} for drug in DRUGS}
    escalations: dict[str, dict[int, Verdict]] = {drug: {} for drug in DRUGS}
    for previous, session in itertools.pairwise(sessions):
        for drug in DRUGS:
            action = previous.next.by_drug[drug]
            if action != CourseAction.ESCALATE:
                held[drug][session.day] = action
            verdict = _verdict(session, previous, drug)
            if verdict is not None:
                escalations[drug][session.day] = verdict
    drawn = _drawn(report)
    return CourseSeries(
        days=tuple(s.day for s in sessions),
        lidocaine_given={s.day: s.lidocaine.given_mg_per_kg for s in drawn},
        lidocaine_plan=_recorded((s.day, s.lidocaine.plan_mg_per_kg) for s in drawn),
        ketamine_given={s.day: s.ketamine.given_mg_per_kg for s in drawn},
        ketamine_plan=_recorded((s.day, s.ketamine.plan_mg_per_kg) for s in drawn),
        vnrs_before=_recorded((s.day, s.vnrs_before) for s in drawn),
        vnrs_after=_recorded((s.day, s.vnrs_after) for s in drawn),
        baseline_vnrs=sessions[0].response.baseline_vnrs,
        lidocaine_max_mg_per_kg=table.lidocaine.max_mg_per_kg.d,
        lidocaine_cap_mg=cap_mg,
        lidocaine_cap_mg_per_kg=cap_per_kg,
        ketamine_max_mg_per_kg=table.ketamine.max_mg_per_kg.d,
        ketamine_min_mg_per_kg=table.ketamine.min_mg_per_kg.d,
        held=held,
        escalations=escalations,
        over_maximum={
            drug: tuple(s.day for s in drawn if _rejected(_dose(s, drug))) for drug in DRUGS
        },
        adverse_events={
            s.day: tuple(_event_code(e.grade, e.last_tier) for e in s.adverse_events)
            for s in drawn
            if s.adverse_events
        },
        adverse_events_not_recorded=tuple(s.day for s in drawn if s.adverse_events is None),
    )


def _recorded(pairs: Iterable[tuple[int, Decimal | None]]) -> dict[int, Decimal]:
    return {day: value for day, value in pairs if value is not None}


def _dose(session: SessionReport, drug: Drug) -> DrugDay:
    return session.lidocaine if drug == "lidocaine" else session.ketamine


def _rejected(dose: DrugDay) -> bool:
    return dose.check is not None and dose.check.decision == "REJECT"


def _verdict(session: SessionReport, previous: SessionReport, drug: Drug) -> Verdict | None:
    """Whether ``drug``'s rise on this day was allowed. Per drug: one drug may rise as allowed
    while the other rises against a hold."""
    escalation = session.escalation
    if drug not in escalation.escalated:
        return None
    if previous.next.by_drug[drug] == CourseAction.ESCALATE:
        return "allowed"
    if escalation.verdict == "not shown":
        return "not shown"
    return "not allowed"


def _event_code(grade: int | None, last_tier: int | None) -> str:
    code = f"G{grade}" if grade is not None else "G?"
    if last_tier is None:
        return f"{code} · LAST ?"
    if last_tier > 0:
        return f"{code} · LAST {last_tier}"
    return code


# ---------------------------------------------------------------------------------------------
# Drawing


def draw_course(
    report: CourseReport,
    table: DosingTable,
    path: Path,
    *,
    response_lines: Sequence[tuple[str, Decimal]] = (),
) -> Path:
    """Draw ``report`` to ``path``, a ``.png`` or ``.svg`` file, and return the path.

    ``response_lines`` are ``(label, percent decrease)`` pairs, such as the response bands of
    the course rules; each is drawn at that decrease from the baseline VNRS. Without them only
    the baseline is drawn. Raises ``InputError`` (at ``--chart``) for another suffix, before
    drawing anything, and ``OSError`` when the file cannot be written.
    """
    path = Path(path)
    kind = _FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            "invalid_value",
            f"cannot draw `{path}`: the chart is a .png or .svg file",
            Location(path="--chart"),
        )
    series = chart_series(report, table)
    with style.context(["default", _RC]):
        figure = Figure(
            figsize=_SIZE_IN, dpi=_DPI, layout=ConstrainedLayoutEngine(h_pad=0.08, hspace=0.03)
        )
        FigureCanvasAgg(figure)
        _draw(figure, report, table, series, response_lines)
        title = f"Course {report.course}"
        if kind == "svg":
            figure.savefig(path, format="svg", metadata={"Date": None, "Title": title})
        else:
            figure.savefig(path, format="png", dpi=_DPI, metadata={"Title": title})
    return path


def _draw(
    figure: Figure,
    report: CourseReport,
    table: DosingTable,
    series: CourseSeries,
    response_lines: Sequence[tuple[str, Decimal]],
) -> None:
    lido, ket, vnrs = figure.subplots(3, 1, sharex=True, height_ratios=[1.15, 1.0, 1.0])
    figure.suptitle(_title(report), fontsize=14, parse_math=False)
    _lidocaine_panel(lido, report, table, series)
    _ketamine_panel(ket, report, table, series)
    _vnrs_panel(vnrs, report, series, response_lines)
    vnrs.set_xlim(min(series.days) - 0.6, max(series.days) + 0.6)
    drawn = _drawn(report)
    vnrs.set_xticks([s.day for s in drawn], [_day_label(s) for s in drawn])
    vnrs.set_xlabel("Course day")


def _title(report: CourseReport) -> str:
    weight = report.weight
    if weight.dosing_kg is None:
        kg = "dosing weight not recorded"
    else:
        kg = f"dosing weight {fmt(weight.dosing_kg)} kg"
        if weight.basis == "actual":
            kg += " (actual weight)"
        elif weight.basis is not None:
            actual = "" if weight.actual_kg is None else f"; actual {fmt(weight.actual_kg)} kg"
            kg += f" ({weight.basis} weight{actual})"
    products = ", ".join(
        f"{name.removesuffix('_mg_per_ml')} {fmt(value)} mg/mL"
        for name, value in report.products.items()
    )
    last = report.last
    actions = last.next.by_drug
    if len(set(actions.values())) == 1:
        decided = last.next.action.value
    else:
        decided = ", ".join(f"{drug} {action.value}" for drug, action in actions.items())
    count = len(report.deviations)
    return (
        f"Course {report.course} · {kg} · {products}\n"
        f"{_count(len(report.sessions), 'session')} · status {report.status.value} · "
        f"{_count(count, 'deviation')} from the rules · "
        f"after day {last.day}: {decided}"
    )


def _drawn(report: CourseReport) -> list[SessionReport]:
    """The sessions drawn: of several on one day, the last (the series hold its values)."""
    last = {session.day: session for session in report.sessions}
    return list(last.values())


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _day_label(session: SessionReport) -> str:
    if session.number == session.day:
        return f"day {session.day}"
    return f"day {session.day}\nsession {session.number}"


def _days(days: Sequence[int]) -> str:
    """``day 2``, ``days 3–7``, ``days 2, 4–6``."""
    runs: list[list[int]] = []
    for day in sorted(set(days)):
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    text = ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)
    return ("day " if len(set(days)) == 1 else "days ") + text


def _gaps(days: Sequence[int], values: Mapping[int, Decimal]) -> tuple[list[int], list[float]]:
    """x and y over every day, NaN (a gap in the line) where the value was not recorded."""
    return list(days), [float(values[d]) if d in values else math.nan for d in days]


def _points(values: Mapping[int, Decimal]) -> tuple[list[int], list[float]]:
    """The recorded values only, for markers."""
    days = sorted(values)
    return days, [float(values[d]) for d in days]


def _limits(values: Iterable[Decimal], *, below: float, above: float) -> tuple[float, float]:
    numbers = [float(v) for v in values]
    low, high = min(numbers), max(numbers)
    span = (high - low) or max(abs(high), 1.0)
    return low - below * span, high + above * span


def _finish(ax: Axes, ylabel: str, title: str) -> None:
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    ax.grid(axis="y", color=_GRID, zorder=0)


def _legend(ax: Axes, handles: Sequence[Any], notes: Sequence[str] = ()) -> None:
    """The panel's legend, right of the panel and of the limits' labels; ``notes`` (what was
    not recorded, and the like) in grey italics after the entries."""
    extra = [Line2D([], [], linestyle="none", label=note) for note in notes]
    legend = ax.legend(
        handles=[*handles, *extra],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        bbox_transform=ax.transAxes
        + ScaledTranslation(_LEGEND_GAP_IN, 0, ax.figure.dpi_scale_trans),
        borderaxespad=0.0,
        frameon=False,
        handlelength=2.4,
    )
    texts = legend.get_texts()
    for text in texts:
        text.set_parse_math(False)
    for text in texts[len(handles) :]:
        text.set_color(_NOT_SHOWN)
        text.set_fontstyle("italic")


def _limit_line(
    ax: Axes,
    value: Decimal,
    text: str,
    gid: str,
    *,
    color: str,
    linestyle: LineStyleType,
    width: float = 1.6,
) -> None:
    """A horizontal limit across the panel, labelled just right of the panel at its height."""
    ax.axhline(float(value), color=color, linestyle=linestyle, linewidth=width, zorder=1, gid=gid)
    ax.annotate(
        text,
        xy=(1.0, float(value)),
        xycoords=blended_transform_factory(ax.transAxes, ax.transData),
        xytext=(4, 0),
        textcoords="offset points",
        ha="left",
        va="center",
        fontsize=10,
        color=color,
        fontweight="bold",
        annotation_clip=False,
        parse_math=False,
        gid=f"{gid}-label",
    )


def _limit_handle(label: str, color: str, linestyle: LineStyleType, width: float = 1.6) -> Line2D:
    return Line2D([], [], color=color, linestyle=linestyle, linewidth=width, label=label)


def _shade(ax: Axes, held: Mapping[int, CourseAction]) -> list[Patch]:
    """Shade the days the previous session allowed no escalation; legend patches for them."""
    kinds: set[str] = set()
    for day, action in sorted(held.items()):
        kind = (
            "held"
            if action == CourseAction.HOLD_DOSE
            else "lowered"
            if action == CourseAction.DEESCALATE
            else "stopped"
        )
        kinds.add(kind)
        ax.axvspan(day - 0.5, day + 0.5, color=_SHADE[kind], zorder=0, linewidth=0)
    return [
        Patch(facecolor=_SHADE[kind], edgecolor="none", label=_SHADE_LABEL[kind])
        for kind in _SHADE
        if kind in kinds
    ]


def _dose_lines(ax: Axes, drug: Drug, series: CourseSeries, color: str) -> list[Line2D]:
    given = series.lidocaine_given if drug == "lidocaine" else series.ketamine_given
    plan = series.lidocaine_plan if drug == "lidocaine" else series.ketamine_plan
    (planned,) = ax.plot(
        *_gaps(series.days, plan),
        linestyle="--",
        linewidth=1.5,
        marker="o",
        markersize=8,
        markerfacecolor="white",
        markeredgewidth=1.6,
        color=color,
        alpha=0.8,
        zorder=3,
        label="plan the rules allowed (from the previous session)",
        gid=f"{drug}-plan",
    )
    (charted,) = ax.plot(
        *_gaps(series.days, given),
        linestyle="-",
        linewidth=2.4,
        marker="o",
        markersize=9,
        color=color,
        zorder=4,
        label="given",
        gid=f"{drug}-given",
    )
    return [charted, planned]


def _over_maximum(
    ax: Axes,
    report: CourseReport,
    drug: Drug,
    series: CourseSeries,
) -> list[Line2D]:
    """Red markers on the doses over the maximum, each with what it was and by how much."""
    days = series.over_maximum[drug]
    if drug == "lidocaine":
        maximum, cap_mg = series.lidocaine_max_mg_per_kg, series.lidocaine_cap_mg
    else:
        maximum, cap_mg = series.ketamine_max_mg_per_kg, None
    for session in _drawn(report):
        if session.day not in days:
            continue
        dose = _dose(session, drug)
        y = float(dose.given_mg_per_kg)
        ax.plot([session.day], [y], marker="o", markersize=13, color=_OVER, zorder=5)
        if cap_mg is None or dose.given_mg_per_kg > maximum:
            note = f"{fmt(dose.given_mg)} mg = {fmt(dose.given_mg_per_kg)} mg/kg > {fmt(maximum)}"
        else:
            note = f"{fmt(dose.given_mg)} mg > {fmt(cap_mg)} mg cap"
        ax.annotate(
            note,
            xy=(session.day, y),
            xytext=(-14, 4),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=10.5,
            fontweight="bold",
            color=_OVER,
            zorder=7,
            bbox={
                "boxstyle": "round,pad=0.2",
                "facecolor": "white",
                "edgecolor": "none",
                "alpha": 0.85,
            },
            gid=f"{drug}-day-{session.day}-over-maximum",
        )
    if not days:
        return []
    return [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=10,
            color=_OVER,
            label="over the maximum (order check: REJECT)",
        )
    ]


def _verdicts(ax: Axes, drug: Drug, verdicts: Mapping[int, Verdict]) -> list[Line2D]:
    """Each rise's verdict in a strip along the bottom of the panel."""
    strip = blended_transform_factory(ax.transData, ax.transAxes)
    for day, verdict in sorted(verdicts.items()):
        text, _, color, _ = _VERDICT_MARK[verdict]
        ax.text(
            day,
            0.03,
            text,
            transform=strip,
            ha="center",
            va="bottom",
            fontsize=9,
            color=color,
            fontweight="bold" if verdict == "not allowed" else "normal",
            linespacing=1.1,
            zorder=6,
            gid=f"{drug}-day-{day}-escalation-{verdict.replace(' ', '-')}",
        )
    shown = set(verdicts.values())
    return [
        Line2D([], [], linestyle="none", marker=marker, markersize=10, color=color, label=label)
        for verdict, (_, marker, color, label) in _VERDICT_MARK.items()
        if verdict in shown
    ]


def _adverse_events(
    ax: Axes, report: CourseReport, series: CourseSeries, notes: list[str]
) -> list[Line2D]:
    """Adverse events as triangles along the top of the panel, with grade, LAST tier, term."""
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for session in _drawn(report):
        if not session.adverse_events:
            continue
        codes = [_event_code(e.grade, e.last_tier) for e in session.adverse_events]
        ax.plot(
            [session.day],
            [0.95],
            transform=top,
            marker="v",
            markersize=13,
            color=_EVENT,
            linestyle="none",
            zorder=6,
        )
        ax.annotate(
            "\n".join(
                f"{code} {_short(event.term)}"
                for code, event in zip(codes, session.adverse_events, strict=True)
            ),
            xy=(session.day, 0.95),
            xycoords=top,
            xytext=(9, 0),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=9.5,
            color=_EVENT,
            fontweight="bold",
            parse_math=False,
            zorder=6,
            gid=f"adverse-events-day-{session.day}",
        )
    if series.adverse_events_not_recorded:
        notes.append(f"adverse events not recorded: {_days(series.adverse_events_not_recorded)}")
    if not series.adverse_events:
        return []
    return [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="v",
            markersize=10,
            color=_EVENT,
            label="adverse event (CTCAE grade G, LAST tier)",
        )
    ]


def _short(term: str, length: int = 30) -> str:
    return term if len(term) <= length else term[: length - 1].rstrip() + "…"


def _lidocaine_panel(
    ax: Axes, report: CourseReport, table: DosingTable, series: CourseSeries
) -> None:
    handles: list[Any] = _dose_lines(ax, "lidocaine", series, _LIDOCAINE)
    notes: list[str] = []
    maximum = series.lidocaine_max_mg_per_kg
    _limit_line(
        ax, maximum, f"max {fmt(maximum)}", "lidocaine-maximum", color=_LIMIT, linestyle="-"
    )
    handles.append(
        _limit_handle(
            f"maximum {fmt(maximum)} mg/kg per session ({table.lidocaine.rule})", _LIMIT, "-"
        )
    )
    limits = [maximum]
    cap, cap_mg = series.lidocaine_cap_mg_per_kg, series.lidocaine_cap_mg
    kg = report.weight.dosing_kg
    if cap is not None and kg is not None:
        _limit_line(
            ax, cap, f"{fmt(cap_mg)} mg = {fmt(cap)}", "lidocaine-cap", color=_LIMIT, linestyle="-."
        )
        handles.append(
            _limit_handle(f"{fmt(cap_mg)} mg cap = {fmt(cap)} mg/kg at {fmt(kg)} kg", _LIMIT, "-.")
        )
        limits.append(cap)
    else:
        notes.append(f"{fmt(cap_mg)} mg cap not drawn: no dosing weight")
    handles += _over_maximum(ax, report, "lidocaine", series)
    handles += _shade(ax, series.held["lidocaine"])
    handles += _verdicts(ax, "lidocaine", series.escalations["lidocaine"])
    handles += _adverse_events(ax, report, series, notes)
    shared = sorted({day for day in series.days if series.days.count(day) > 1})
    if shared:
        notes.append(f"several sessions on {_days(shared)}: the last one is drawn")
    values = [*series.lidocaine_given.values(), *series.lidocaine_plan.values(), *limits]
    # Room below for the verdicts, above for the adverse events.
    ax.set_ylim(*_limits(values, below=0.45, above=0.75))
    _finish(
        ax,
        "Lidocaine\nmg/kg of dosing weight",
        "Lidocaine: dose given vs the plan the rules allowed",
    )
    _legend(ax, handles, notes)


def _ketamine_panel(
    ax: Axes, report: CourseReport, table: DosingTable, series: CourseSeries
) -> None:
    handles: list[Any] = _dose_lines(ax, "ketamine", series, _KETAMINE)
    maximum, minimum = series.ketamine_max_mg_per_kg, series.ketamine_min_mg_per_kg
    _limit_line(ax, maximum, f"max {fmt(maximum)}", "ketamine-maximum", color=_LIMIT, linestyle="-")
    _limit_line(
        ax, minimum, f"min {fmt(minimum)}", "ketamine-minimum", color=_FLOOR, linestyle="--"
    )
    handles.append(
        _limit_handle(
            f"maximum {fmt(maximum)} mg/kg of actual weight ({table.ketamine.cap_rule})",
            _LIMIT,
            "-",
        )
    )
    handles.append(
        _limit_handle(
            f"minimum {fmt(minimum)} mg/kg when given ({table.ketamine.rule})", _FLOOR, "--"
        )
    )
    handles += _over_maximum(ax, report, "ketamine", series)
    handles += _shade(ax, series.held["ketamine"])
    handles += _verdicts(ax, "ketamine", series.escalations["ketamine"])
    values = [*series.ketamine_given.values(), *series.ketamine_plan.values(), maximum, minimum]
    low, high = _limits([Decimal(0), *values], below=0.0, above=0.2)
    # Room below zero for the verdicts, with no negative doses on the axis.
    ax.set_ylim(low - 0.38 * (high - low), high)
    ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= high])
    _finish(
        ax, "Ketamine\nmg/kg of actual weight", "Ketamine: dose given vs the plan the rules allowed"
    )
    none_given = [s.day for s in report.sessions if s.ketamine.given_mg == 0]
    notes = [f"no ketamine given: {_days(none_given)} (drawn at 0)"] if none_given else []
    _legend(ax, handles, notes)


def _vnrs_panel(
    ax: Axes,
    report: CourseReport,
    series: CourseSeries,
    response_lines: Sequence[tuple[str, Decimal]],
) -> None:
    handles: list[Any] = [
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=9,
            markerfacecolor="white",
            markeredgewidth=2,
            color=_BEFORE,
            label="VNRS before the session",
        ),
        Line2D(
            [],
            [],
            linestyle="none",
            marker="o",
            markersize=9,
            color=_AFTER,
            label="VNRS after the session",
        ),
        Line2D(
            [],
            [],
            linestyle="none",
            marker="$↓$",
            markersize=11,
            color=_CHANGE,
            label="change during the session (before → after)",
        ),
    ]
    notes: list[str] = []
    baseline = series.baseline_vnrs
    if baseline is None:
        notes.append("baseline not recorded (session 1 VNRS before)")
    else:
        _limit_line(
            ax,
            baseline,
            f"baseline {fmt(baseline)}",
            "vnrs-baseline",
            color=_BASELINE,
            linestyle="-",
        )
        handles.append(
            _limit_handle(f"baseline {fmt(baseline)} (session 1, before)", _BASELINE, "-")
        )
        for index, (label, percent) in enumerate(sorted(response_lines, key=lambda r: r[1])):
            level = (baseline * (1 - percent / 100)).quantize(_CENT, rounding=ROUND_HALF_UP)
            color = _BANDS[min(index, len(_BANDS) - 1)]
            _limit_line(
                ax,
                level,
                f"−{fmt(percent)}%: {fmt(level)}",
                f"vnrs-response-{index + 1}",
                color=color,
                linestyle=":",
                width=1.8,
            )
            handles.append(
                _limit_handle(
                    f"{label}: −{fmt(percent)}% from baseline = {fmt(level)}", color, ":", 1.8
                )
            )
    # The after values joined faintly, broken where one was not recorded.
    ax.plot(
        *_gaps(series.days, series.vnrs_after), color=_AFTER, linewidth=1.0, alpha=0.45, zorder=2
    )
    beside = ax.transData + ScaledTranslation(-_ARROW_OFFSET_IN, 0, ax.figure.dpi_scale_trans)
    for day in series.days:
        before, after = series.vnrs_before.get(day), series.vnrs_after.get(day)
        if before is None or after is None or before == after:
            continue
        # Beside the markers, so that a one-point change still shows its arrow.
        ax.annotate(
            "",
            xy=(day, float(after)),
            xycoords=beside,
            xytext=(day, float(before)),
            textcoords=beside,
            arrowprops={
                "arrowstyle": "-|>,head_width=0.3,head_length=0.5",
                "color": _CHANGE,
                "linewidth": 2.0,
                "shrinkA": 0,
                "shrinkB": 0,
            },
            zorder=3,
        )
    ax.plot(
        *_points(series.vnrs_before),
        linestyle="none",
        marker="o",
        markersize=10,
        markerfacecolor="white",
        markeredgewidth=2,
        color=_BEFORE,
        zorder=4,
        gid="vnrs-before",
    )
    ax.plot(
        *_points(series.vnrs_after),
        linestyle="none",
        marker="o",
        markersize=10,
        color=_AFTER,
        zorder=4,
        gid="vnrs-after",
    )
    for values, color in ((series.vnrs_before, _BEFORE), (series.vnrs_after, _AFTER)):
        for day, value in sorted(values.items()):
            ax.annotate(
                fmt(value),
                xy=(day, float(value)),
                xytext=(8, 0),
                textcoords="offset points",
                fontsize=10,
                color=color,
                va="center",
            )
    notes += _vnrs_notes(report, series)
    ax.set_ylim(-0.3, 10.6)
    ax.set_yticks(range(0, 11, 2))
    _finish(ax, "Pain VNRS (0–10)", "Pain: VNRS before and after each session")
    _legend(ax, handles, notes)


def _vnrs_notes(report: CourseReport, series: CourseSeries) -> list[str]:
    notes: list[str] = []
    for moment, values in (("before", series.vnrs_before), ("after", series.vnrs_after)):
        missing = [day for day in series.days if day not in values]
        if missing:
            notes.append(f"VNRS {moment} not recorded: {_days(missing)}")
    response = report.last.response
    if response.current_vnrs is not None and response.decrease_percent is not None:
        change = response.decrease_percent
        direction = "below" if change >= 0 else "above"
        band = f" ({response.band})" if response.band else ""
        notes.append(
            f"day {report.last.day}: VNRS {fmt(response.current_vnrs)}, "
            f"{fmt(abs(change))}% {direction} baseline{band}"
        )
    for follow in report.follow_up:
        if follow.response.current_vnrs is not None:
            notes.append(
                f"{follow.label} ({fmt(follow.weeks_after_course)} wk): "
                f"VNRS {fmt(follow.response.current_vnrs)}"
            )
    return notes
