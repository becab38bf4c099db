"""The course as a clinician reads it: a day-by-day table, then what each session decided.

Text only (``rich``); the picture is ``course_chart.py``.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .course import CourseReport, DrugDay, SessionReport, status_label
from .dosing import DosePlan, DosingTable, fmt
from .spec import CourseAction, Outcome

__all__ = ["print_course", "status_label"]

_STYLE = {
    Outcome.INFO: "bold green",
    Outcome.ELIGIBLE: "bold green",
    Outcome.NEEDS_REVIEW: "bold yellow",
    Outcome.HOLD: "bold magenta",
    Outcome.CANNOT_EVALUATE: "bold magenta",
    Outcome.INELIGIBLE: "bold red",
}
_ACTION_STYLE = {
    CourseAction.ESCALATE: "green",
    CourseAction.HOLD_DOSE: "yellow",
    CourseAction.DEESCALATE: "magenta",
    CourseAction.COURSE_COMPLETE: "cyan",
    CourseAction.DISCONTINUE_COURSE: "bold red",
}
_ESCALATION_STYLE = {
    "first session": "dim",
    "no escalation": "dim",
    "allowed": "green",
    "not allowed": "bold red",
    "not shown": "yellow",
}


def _n(value: Decimal | None, missing: str = "-") -> str:
    return missing if value is None else fmt(value)


def _signed(value: Decimal) -> str:
    return ("-" if value > 0 else "+") + fmt(abs(value))


def _mark(day: DrugDay) -> str:
    return {
        "above plan": " [bold red]▲[/]",
        "below plan": " [dim]▼[/]",
        "not planned": " [red]![/]",
    }.get(day.versus_plan, "")


def _lidocaine_cells(day: DrugDay) -> tuple[str, str]:
    given = f"{fmt(day.given_mg_per_kg)}{_mark(day)}"
    if day.check is not None and day.check.decision == "REJECT":
        given += " [bold red]REJECT[/]"
    return given, _n(day.plan_mg_per_kg, "none")


def _ketamine_cells(day: DrugDay) -> tuple[str, str]:
    if day.given_mg == 0:
        given = f"0{_mark(day)}"
    else:
        given = f"{fmt(day.given_mg)} ({fmt(day.given_mg_per_kg)}){_mark(day)}"
    if day.check is not None and day.check.decision == "REJECT":
        given += " [bold red]REJECT[/]"
    return given, _n(day.plan_mg, "none")


def _vnrs(session: SessionReport) -> str:
    return f"{_n(session.vnrs_before)}→{_n(session.vnrs_after)}"


def _change(session: SessionReport) -> str:
    response = session.response
    if response.decrease_points is None:
        return "-"
    text = _signed(response.decrease_points)
    if response.decrease_percent is not None:
        text += f" ({_signed(response.decrease_percent)}%)"
    return text


def _next(session: SessionReport) -> str:
    decision = session.next
    actions = set(decision.by_drug.values())
    if len(actions) == 1:
        action = decision.action
        text = f"[{_ACTION_STYLE[action]}]{action.value}[/]"
    else:
        text = ", ".join(
            f"{drug} [{_ACTION_STYLE[action]}]{action.value}[/]"
            for drug, action in decision.by_drug.items()
        )
    if decision.status not in (Outcome.INFO, Outcome.ELIGIBLE):
        text += f" [{_STYLE[decision.status]}]{decision.status.value}[/]"
    return text


def _plan_line(plan: DosePlan) -> str:
    parts = []
    if plan.lidocaine is not None:
        lido = plan.lidocaine
        if lido.capped:
            effective = (lido.mg / lido.weight_kg).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)
            parts.append(
                f"lidocaine {fmt(lido.mg)} mg = {fmt(lido.ml)} mL: the {fmt(lido.mg_per_kg)} "
                f"mg/kg step is over the cap, so {fmt(effective)} mg/kg"
            )
        else:
            parts.append(
                f"lidocaine {fmt(lido.mg_per_kg)} mg/kg = {fmt(lido.mg)} mg = {fmt(lido.ml)} mL"
            )
    if plan.ketamine is not None:
        ket = plan.ketamine
        parts.append(f"ketamine {fmt(ket.mg)} mg ({fmt(ket.mg_per_kg)} mg/kg) = {fmt(ket.ml)} mL")
    else:
        parts.append("no ketamine")
    return "; ".join(parts)


def print_course(report: CourseReport, table: DosingTable, console: Console) -> None:
    status = report.status
    console.print(
        f"[{_STYLE[status]}]{status_label(status)}[/]  course {escape(report.course)}  "
        f"{escape(report.file)}"
    )
    weight = report.weight
    basis = (
        f"lidocaine dosed on {weight.basis} weight {fmt(weight.dosing_kg)} kg"
        if weight.dosing_kg is not None
        else "no dosing weight"
    )
    patient = f"patient {escape(report.patient_file)}; " if report.patient_file else ""
    products = report.products
    console.print(
        f"{patient}{basis}; ketamine on actual weight {_n(weight.actual_kg)} kg; products: "
        f"lidocaine {fmt(products['lidocaine_mg_per_ml'])} mg/mL, ketamine "
        f"{fmt(products['ketamine_mg_per_ml'])} mg/mL"
    )
    for note in weight.notes:
        if note.outcome != Outcome.INFO:
            console.print(
                f"  [{_STYLE[note.outcome]}]{note.outcome.value}[/] [bold]{note.rule}[/bold] "
                f"{escape(note.message)}"
            )
    given = len(report.sessions)
    by_drug = report.last.next.by_drug
    endings = {
        CourseAction.COURSE_COMPLETE: "complete",
        CourseAction.DISCONTINUE_COURSE: "discontinued",
    }
    if len(set(by_drug.values())) == 1:
        ending = (
            f": the course is {endings[report.last.next.action]}"
            if report.last.next.action in endings
            else ""
        )
    else:
        ending = "".join(
            f"; {drug} {endings[action]} for the course"
            for drug, action in by_drug.items()
            if action in endings
        )
    console.print(f"{given} of {report.max_sessions} sessions given{ending}")

    grid = Table(show_lines=False, header_style="bold", pad_edge=False)
    for name, justify in (
        ("Day", "right"),
        ("Lidocaine mg/kg\ngiven", "left"),
        ("\nplan", "left"),
        ("Ketamine mg (mg/kg)\ngiven", "left"),
        ("\nplan", "left"),
        ("Escalation", "left"),
        ("VNRS\nbefore→after", "left"),
        ("Change from\nbaseline", "left"),
        ("Next session", "left"),
    ):
        grid.add_column(name, justify=justify)  # type: ignore[arg-type]
    for session in report.sessions:
        lido_given, lido_plan = _lidocaine_cells(session.lidocaine)
        ket_given, ket_plan = _ketamine_cells(session.ketamine)
        verdict = session.escalation.verdict
        grid.add_row(
            str(session.day),
            lido_given,
            lido_plan,
            ket_given,
            ket_plan,
            f"[{_ESCALATION_STYLE[verdict]}]{verdict}[/]",
            _vnrs(session),
            _change(session),
            _next(session),
        )
    console.print(grid)
    console.print(
        "[dim]▲ above the plan the previous session allowed, ▼ below it; REJECT: over the "
        "permitted maximum; change = decrease from the session-1 VNRS before (RESP-01)[/dim]"
    )

    if report.deviations:
        console.print("\n[bold]Against the rules[/bold]")
        for line in report.deviations:
            console.print(f"  [bold red]•[/] {escape(line)}")

    console.print("\n[bold]Session by session[/bold]")
    for session in report.sessions:
        _print_session(session, console)

    _print_response(report, console)
    console.print(
        f"\n[dim]rules {report.ruleset.id} {report.ruleset.version} "
        f"({report.ruleset.content_hash.removeprefix('sha256:')[:12]}); dosing table "
        f"{report.dosing_table}; engine {report.sessions[0].evaluation.engine}"
        + (", cross-checked" if report.sessions[0].evaluation.cross_checked else "")
        + "[/dim]"
    )
    del table


def _print_session(session: SessionReport, console: Console) -> None:
    decision = session.next
    console.print(
        f"\n  [bold]Session {session.number}[/bold] (day {session.day}) → {_next(session)}"
    )
    escalation = session.escalation
    if escalation.verdict in ("allowed", "not allowed", "not shown"):
        console.print(
            f"    escalation [{_ESCALATION_STYLE[escalation.verdict]}]{escalation.verdict}[/]: "
            f"{escape(escalation.message)}"
        )
    for day in (session.lidocaine, session.ketamine):
        if day.check is not None and day.check.decision != "ACCEPT":
            for note in day.check.notes:
                if note.about == "order":
                    console.print(
                        f"    [bold red]{day.check.decision}[/] [bold]{note.rule}[/bold] "
                        f"{escape(note.message)}"
                    )
        for note in day.notes:
            console.print(
                f"    [{_STYLE[note.outcome]}]{note.outcome.value}[/] [bold]{note.rule}[/bold] "
                f"{escape(note.message)}"
            )
    for finding in decision.reasons:
        action = f" → {finding.action.next}" if finding.action is not None else ""
        drugs = f" ({', '.join(finding.drugs)})" if finding.drugs else ""
        console.print(
            f"    [{_STYLE[finding.outcome]}]{finding.outcome.value:<15}[/] "
            f"[bold]{finding.rule_id}[/bold]{drugs}{action}: {escape(finding.message)}"
        )
    if decision.to_record:
        console.print(
            f"    [{_STYLE[Outcome.CANNOT_EVALUATE]}]not recorded[/]: "
            f"{escape(', '.join(decision.to_record))} (until recorded the next session cannot "
            "escalate, and a more restrictive finding cannot be ruled out)"
        )
    if decision.escalation_ready == "established" and decision.action == CourseAction.ESCALATE:
        console.print("    [green]ESC-01 met[/]: nothing holds the dose")
    for note in decision.notes:
        console.print(f"    [dim]{note.rule}[/dim] {escape(note.message)}")
    if decision.plan is not None:
        console.print(f"    next session {decision.plan.session}: {_plan_line(decision.plan)}")
    else:
        console.print("    no further session")


def _print_response(report: CourseReport, console: Console) -> None:
    console.print("\n[bold]Response[/bold] (RESP-01..07)")
    last = report.last.response
    if last.baseline_vnrs is None:
        console.print(
            "  baseline VNRS (session 1 before) not recorded: no response can be computed"
        )
        return
    console.print(f"  baseline VNRS {fmt(last.baseline_vnrs)} (session 1, before)")
    response = last
    if response.current_vnrs is not None and response.decrease_points is not None:
        percent = (
            f", {_signed(response.decrease_percent)}%"
            if response.decrease_percent is not None
            else ""
        )
        console.print(
            f"  after session {report.last.number}: VNRS {fmt(response.current_vnrs)}, "
            f"{_signed(response.decrease_points)} points{percent}: "
            f"[bold]{response.band or 'band unknown'}[/bold] "
            f"({', '.join(r for r in response.rules if r.startswith(('RESP-02', 'RESP-03')))})"
        )
    else:
        console.print(f"  after session {report.last.number}: VNRS not recorded")
    futile, undecided, passed = [], [], []
    for session in report.sessions:
        if any(f.rule_id == "RESP-06" for f in session.next.reasons):
            futile.append(session.number)
        elif any(m.rule_id == "RESP-06" for m in session.next.missing):
            undecided.append(session.number)
        elif session.response.decrease_points is not None and any(
            r.startswith("RESP-0") for r in session.response.rules
        ):
            passed.append(session.number)
    if futile:
        console.print(
            "  [bold yellow]futility (RESP-06)[/]: under 2 points and under 30% after session "
            + ", ".join(map(str, futile))
            + ": review before continuing"
        )
    if undecided:
        console.print(
            "  [bold magenta]futility (RESP-06) cannot be decided[/] after session "
            + ", ".join(map(str, undecided))
            + ": VNRS after the session not recorded (or a baseline of 0, from which no "
            "percent change can be computed)"
        )
    checked = [n for n in passed if n >= 4]
    if checked and not futile:
        console.print(
            "  futility check (RESP-06, from session 4): not futile after session "
            + ", ".join(map(str, checked))
        )
    elif not futile and not undecided:
        console.print("  futility check (RESP-06): from session 4")
    for item in report.follow_up:
        r = item.response
        if r.current_vnrs is None or r.decrease_points is None:
            console.print(
                f"  {escape(item.label)} ({fmt(item.weeks_after_course)} weeks): VNRS not recorded"
            )
            continue
        percent = f", {_signed(r.decrease_percent)}%" if r.decrease_percent is not None else ""
        console.print(
            f"  {escape(item.label)} ({fmt(item.weeks_after_course)} weeks): VNRS "
            f"{fmt(r.current_vnrs)}, {_signed(r.decrease_points)} points{percent}: "
            f"[bold]{r.band or 'band unknown'}[/bold]"
        )
