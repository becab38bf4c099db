"""Plain-text lines for the monitor: one state line per event, the alerts under it, and the
session summary. Plain text (no colour codes, one flush per event) so that the output reads
the same on a terminal, in a log file and behind ``tail -f``."""

from __future__ import annotations

from collections.abc import Iterable

from .monitor import Actions, Alert, DrugState, SessionSummary

__all__ = ["action_lines", "state_line", "summary_lines"]


def _drug(state: DrugState) -> str:
    if state.action == "NOT_GIVEN":
        return f"{state.drug} -"
    if state.action == "ENDED":
        return f"{state.drug} ended"
    text = f"{state.drug} {state.action}"
    if state.action == "SLOW" and state.rate_percent is not None:
        text += f" <={state.rate_percent:g}%"
    if state.rules and state.action != "CONTINUE":
        text += f" ({', '.join(state.rules)})"
    if state.staff not in ("running", "ended", "not given"):
        text += f" [staff: {state.staff}]"
    return text


def state_line(actions: Actions) -> str:
    """``09:40:00 #14 symptoms | lidocaine PAUSE (HALT-LAST-01) | ketamine CONTINUE``"""
    event = actions.event
    drugs = " | ".join(_drug(s) for s in actions.drugs.values())
    return f"{event.at.strftime('%H:%M:%S')} #{event.seq} {event.type:<8} | {drugs}"


def _alert_lines(alert: Alert) -> Iterable[str]:
    acts = ", ".join(f"{d} {a}" for d, a in alert.actions.items())
    if alert.kind == "cannot_decide":
        yield f"  CANNOT DECIDE [{acts}]: {alert.message}"
        return
    if alert.after_end:
        where = "after the infusion"
    elif all(action == "CONTINUE" for action in alert.actions.values()):
        where = "the drugs go on"
    else:
        where = acts
    yield f"  ALERT {alert.rule} [{where}]: {alert.message}"
    triggers = ", ".join(
        f"#{t.seq} {t.type} {t.at.strftime('%H:%M:%S')}" for t in alert.triggered_by
    )
    if triggers:
        yield f"    from: {triggers}"
    for step in alert.instructions:
        yield f"    - {step}"
    for line in alert.lipid_rescue:
        yield f"    - {line}"
    if alert.resume and not alert.after_end:
        yield f"    resumes when: {alert.resume}"
    if alert.observe_minutes is not None:
        yield (
            f"    observe at least {alert.observe_minutes:g} min after the session "
            f"({alert.observe_rule})"
        )
    if alert.course:
        yield f"    next session: {alert.course}"
    yield f"    source: {', '.join(alert.sources)} ({alert.evidence})"


def action_lines(actions: Actions, *, previous: Actions | None, always: bool) -> list[str]:
    """The lines for one event: the state line when something changed (or ``always``), then
    its alerts, lifted pauses, awaited conditions and warnings."""
    changed = previous is None or any(
        (s.action, s.rate_percent, s.rules, s.staff) != (p.action, p.rate_percent, p.rules, p.staff)
        for s, p in zip(actions.drugs.values(), previous.drugs.values(), strict=True)
    )
    news = actions.alerts or actions.lifted or actions.warnings or actions.refused
    if not (always or changed or news):
        return []
    lines = [state_line(actions)]
    if actions.refused:
        lines[0] = lines[0].replace(
            f"#{actions.event.seq} {actions.event.type:<8}", "REFUSED    ", 1
        )
        lines.append(f"  REFUSED {actions.refused}: the drugs are held until it is sent again")
    for alert in actions.alerts:
        lines.extend(_alert_lines(alert))
    for text in actions.lifted:
        lines.append(f"  LIFTED {text}")
    for text in actions.warnings:
        lines.append(f"  WARNING {text}")
    if changed or news:
        for state in actions.drugs.values():
            for awaited in state.awaiting:
                lines.append(f"  {state.drug} awaits {awaited}")
    return lines


def summary_lines(summary: SessionSummary) -> list[str]:
    lines = [
        f"session {summary.session}: "
        + (f"ended {summary.ended_at.strftime('%H:%M:%S')}" if summary.ended_at else "not ended"),
        "  delivered: "
        + (
            f"{summary.delivered_percent:g}% of the planned dose"
            if summary.delivered_percent is not None
            else "not recorded"
        ),
        "  halts: "
        + (
            ", ".join(
                f"{h['rule']} x{h['times']}{'' if h['resolved'] else ' (still holding)'}"
                for h in summary.halts
            )
            or "none"
        ),
        "  stopped: "
        + (", ".join(f"{d} ({', '.join(r)})" for d, r in summary.stopped.items()) or "nothing"),
        f"  max POSS: {summary.max_poss if summary.max_poss is not None else 'not scored'}; "
        f"min RASS: {summary.min_rass if summary.min_rass is not None else 'not scored'}",
        "  adverse events: "
        + (
            "; ".join(
                f"{a['term']} (grade {a['grade'] if a['grade'] is not None else 'not given'}"
                + (f", LAST tier {a['last_tier']}" if a["last_tier"] else "")
                + ")"
                for a in summary.adverse_events
            )
            or "none"
        ),
        f"  observe after the session: at least {summary.observe_minutes:g} min "
        f"({', '.join(summary.observe_rules)})",
        "  discharge when: " + "; ".join(summary.discharge),
    ]
    return lines
