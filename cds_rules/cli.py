"""The ``cds-rules`` command line: a thin adapter from files and flags to the core.

Exit codes: ``screen``: 0 ELIGIBLE, 3 NEEDS_REVIEW, 4 CANNOT_EVALUATE, 5 INELIGIBLE;
``gate``: 0 PROCEED, 8 HOLD, 5 INELIGIBLE; ``test``: 0 all cases pass (and, with
``--coverage``, every rule covered), 1 otherwise. For every command: 2 bad input or usage,
6 ruleset errors, 7 engine failure (no decision). Errors are printed as
``place: code: message``, never as a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import select
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .api import DEFAULT_PROTOCOL, default_rulesets_dir, evaluator_for
from .dosing import (
    DosePlan,
    DosingTable,
    DrugDose,
    Note,
    check_order,
    fmt,
    load_dosing_table,
    parameter_count,
    plan_session,
)
from .errors import CdsRulesError, EngineError, InputError, Location, RulesetError
from .evaluation import Evaluation, Finding, MissingData
from .facts import PatientFacts, load_patient
from .loader import load_rulesets
from .monitor_events import MonitoringTable, event_to_json, load_monitoring_table
from .monitor_view import action_lines, summary_lines
from .protocol import Assessment, assessor_for, compile_profile, load_protocol
from .spec import Outcome

__all__ = ["EXIT_CODES", "app", "main"]

EXIT_CODES = {
    Outcome.ELIGIBLE: 0,
    Outcome.NEEDS_REVIEW: 3,
    Outcome.CANNOT_EVALUATE: 4,
    Outcome.INELIGIBLE: 5,
}
GATE_EXIT_CODES = {"PROCEED": 0, "HOLD": 8, "INELIGIBLE": 5}
EXIT_TEST_FAILED = 1
EXIT_INPUT_ERROR = 2
EXIT_RULESET_ERROR = 6
EXIT_ENGINE_ERROR = 7
EXIT_AUDIT_ERROR = 10
EXIT_CHAIN_BROKEN = 11

_STYLE = {
    Outcome.ELIGIBLE: "bold green",
    Outcome.NEEDS_REVIEW: "bold yellow",
    Outcome.HOLD: "bold magenta",
    Outcome.CANNOT_EVALUATE: "bold magenta",
    Outcome.INELIGIBLE: "bold red",
    Outcome.INFO: "dim",
}

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Clinical decision support for IV lidocaine + ketamine desensitisation in fibromyalgia.",
)


class EngineChoice(str, Enum):
    durable = "durable"
    reference = "reference"


def _discard_stdout() -> None:
    """Send later writes, and the interpreter's last flush, nowhere: the reader has gone."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class _Console(Console):
    """A console that falls silent when its reader stops early (``| head -1``).

    Rich exits with status 1 there; a command that has decided keeps its own exit code.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        if not self.stderr:
            _discard_stdout()


def _console(stderr: bool = False) -> Console:
    return _Console(stderr=stderr, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _reader_may_stop_early() -> Iterator[None]:
    """Print to a reader that may close standard output early (``| head -1``).

    The command has already decided; it keeps its exit code instead of failing on the write.
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()


def _fail(errors: list[CdsRulesError] | CdsRulesError, code: int, as_json: bool) -> NoReturn:
    items = (
        list(getattr(errors, "errors", None) or [errors])
        if not isinstance(errors, list)
        else errors
    )
    if as_json:
        with _reader_may_stop_early():
            print(
                json.dumps({"errors": [e.to_dict() for e in items]}, indent=2, ensure_ascii=False)
            )
    else:
        console = _console(stderr=True)
        for error in items:
            console.print(f"[red]error[/red] {escape(str(error))}")
    raise typer.Exit(code)


def _print_evaluation(evaluation: Evaluation, patient_file: str) -> None:
    console = _console()
    decision = evaluation.decision
    console.print(f"[{_STYLE[decision]}]{decision.value}[/]  {escape(patient_file)}")
    reasons = [f for f in evaluation.findings if f.outcome != Outcome.INFO]
    if reasons:
        console.print("\n[bold]Reasons[/bold]")
        for finding in reasons:
            sources = ", ".join(finding.sources)
            evidence = finding.evidence.value if finding.evidence else "-"
            console.print(
                f"  [{_STYLE[finding.outcome]}]{finding.outcome.value:<15}[/] "
                f"[bold]{finding.rule_id}[/bold] {escape(finding.message)} "
                f"[dim]({sources}; evidence {evidence})[/dim]"
            )
    missing = [m for m in evaluation.missing if m.paths]
    if missing:
        console.print("\n[bold]Missing or incomplete data[/bold]")
        for item in missing:
            effect = item.outcome.value if item.outcome else "for information"
            console.print(
                f"  [bold]{item.rule_id}[/bold] needs {', '.join(item.paths)} [dim]({effect})[/dim]"
            )
            for detail in item.details:
                console.print(f"      {escape(detail)}")
    table = Table(title=None, show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("criterion")
    table.add_column("status")
    table.add_column("rules")
    for criterion in evaluation.criteria:
        colour = (
            "green"
            if criterion.status == "established"
            else ("magenta" if criterion.status == "unknown" else "red")
        )
        table.add_row(
            escape(criterion.title),
            f"[{colour}]{criterion.status}[/]",
            ", ".join(criterion.established_by),
        )
    console.print("\n[bold]Criteria[/bold]")
    console.print(table)
    notes = [f for f in evaluation.findings if f.outcome == Outcome.INFO]
    if notes:
        console.print("\n[bold]Also noted[/bold]")
        for finding in notes:
            console.print(
                f"  [bold]{finding.rule_id}[/bold] {escape(finding.message)} "
                f"[dim]({', '.join(finding.sources)})[/dim]"
            )
    ruleset = evaluation.ruleset
    checked = "; cross-checked with the reference evaluator" if evaluation.cross_checked else ""
    console.print(
        f"\n[dim]ruleset {ruleset.id} {ruleset.version} {ruleset.content_hash}; "
        f"{evaluation.engine}{checked}; as of {evaluation.as_of.isoformat()}[/dim]"
    )


def _load_facts(patient_file: Path, as_json: bool) -> PatientFacts:
    try:
        return load_patient(patient_file)
    except InputError as error:
        _fail(error, EXIT_INPUT_ERROR, as_json)
    except OSError as error:
        _fail(
            InputError("unreadable_file", f"cannot read `{patient_file}`: {error.strerror}"),
            EXIT_INPUT_ERROR,
            as_json,
        )


def _ruleset_failure(path: Path, error: Exception, as_json: bool) -> NoReturn:
    if isinstance(error, RulesetError):
        _fail(error, EXIT_RULESET_ERROR, as_json)
    reason = getattr(error, "strerror", None) or str(error)
    _fail(
        RulesetError(
            "unreadable_file",
            f"cannot read ruleset `{path}`: {reason.lower()}",
            Location(file=str(path)),
        ),
        EXIT_RULESET_ERROR,
        as_json,
    )


def _in_file(error: InputError, file: str) -> list[CdsRulesError]:
    """The errors of a whole-patient check, placed in the patient's file."""
    items: list[CdsRulesError] = []
    for item in getattr(error, "errors", None) or [error]:
        location = item.location
        if location.file is None:
            location = dataclasses.replace(location, file=file)
        items.append(type(item)(item.code, item.message, location, item.hint))
    return items


@dataclasses.dataclass(frozen=True)
class _Audit:
    """Where and how a decision is recorded (``--no-audit``: not at all)."""

    enabled: bool
    url: str | None
    patient_ref: str | None
    encounter_ref: str | None
    redact: tuple[str, ...]


_AuditDb = Annotated[
    str | None,
    typer.Option(
        "--audit-db",
        help="Audit store URL (default: $CDS_RULES_AUDIT_URL, else "
        "~/.local/share/cds-rules/audit.sqlite).",
    ),
]
_NoAudit = Annotated[
    bool, typer.Option("--no-audit", help="Do not record the decision (a dry run).")
]
_PatientRef = Annotated[
    str | None, typer.Option(help="The caller's patient reference, kept with the record.")
]
_EncounterRef = Annotated[
    str | None, typer.Option(help="The caller's encounter reference, kept with the record.")
]
_Redact = Annotated[
    list[str] | None,
    typer.Option(
        help="A fact path not to store (e.g. demographics.name, medications.*.note); also "
        "$CDS_RULES_AUDIT_REDACT, comma-separated. Repeatable."
    ),
]


def _audit_options(
    no_audit: bool,
    url: str | None,
    patient_ref: str | None,
    encounter_ref: str | None,
    redact: list[str] | None,
) -> _Audit:
    configured = [p.strip() for p in os.environ.get("CDS_RULES_AUDIT_REDACT", "").split(",")]
    paths = tuple(dict.fromkeys([*(p for p in configured if p), *(redact or [])]))
    return _Audit(not no_audit, url, patient_ref, encounter_ref, paths)


def _record(
    audit: _Audit,
    as_json: bool,
    *,
    kind: str,
    input_data: Any,
    ruleset: tuple[str, str, str],
    sources: Callable[[], tuple[str, dict[str, str]]] | None,
    engine: str,
    fired: list[dict[str, Any]],
    findings: list[dict[str, Any]],
    missing: list[dict[str, Any]],
    decision: str,
    result: Any,
    store: Any = None,
) -> Any:
    """Record one decision before it is shown (fail closed: no record, no decision)."""
    if not audit.enabled:
        return None
    from .audit import AuditError, AuditStore, record_decision

    try:
        target = store if store is not None else AuditStore(audit.url)
        record_decision(
            target,
            kind=kind,
            input_data=input_data,
            ruleset=ruleset,
            sources=sources,
            engine=engine,
            fired=fired,
            findings=findings,
            missing=missing,
            decision=decision,
            result=result,
            patient_ref=audit.patient_ref,
            encounter_ref=audit.encounter_ref,
            redact_paths=audit.redact,
        )
        return target
    except AuditError as error:
        _fail(error, EXIT_AUDIT_ERROR, as_json)


def _dosing_record(
    audit: _Audit,
    as_json: bool,
    kind: str,
    table_path: Path,
    dosing: DosingTable,
    input_data: Any,
    result: Any,
    decision: str,
) -> None:
    from .audit import table_source

    content_hash, files = table_source(table_path)
    data = result.to_dict() if hasattr(result, "to_dict") else json.loads(result.to_json())
    notes = list(data.get("notes", []))
    fired = [
        {"rule_id": n.get("rule"), "title": n.get("message", ""), "matched": []} for n in notes
    ]
    _record(
        audit,
        as_json,
        kind=kind,
        input_data=input_data,
        ruleset=(f"{dosing.table}", dosing.version, content_hash),
        sources=lambda: (table_path.name, files),
        engine="cds-rules dose arithmetic",
        fired=fired,
        findings=notes,
        missing=[],
        decision=decision,
        result=data,
    )  # fmt: skip


def _course_record(
    audit: _Audit,
    as_json: bool,
    loaded: Any,
    report: Any,
    profile: Any,
    protocol_path: Path,
    table_path: Path,
) -> None:
    if not audit.enabled:
        return
    from .audit import combined_source

    content_hash, sources = combined_source(
        protocol_path, "course", table_path, profile.protocol.content_hash
    )
    fired, findings, missing = [], [], []
    for session in report.sessions:
        evaluation = session.evaluation.to_dict()
        fired += [{**f, "session": session.number} for f in evaluation["fired"]]
        findings += [{**f, "session": session.number} for f in evaluation["findings"]]
        missing += [{**m, "session": session.number} for m in evaluation["missing"]]
    _record(
        audit,
        as_json,
        kind="course",
        input_data={
            "course": loaded.spec.model_dump(mode="json"),
            "patient": loaded.patient.model_dump(mode="json"),
        },
        ruleset=(f"{profile.protocol.id}/course+dosing", profile.protocol.version, content_hash),
        sources=sources,
        engine=report.sessions[0].evaluation.engine if report.sessions else "none",
        fired=fired,
        findings=findings,
        missing=missing,
        decision=report.status.value,
        result=json.loads(report.to_json()),
    )


def _assess(
    patient_file: Path,
    protocol: Path | None,
    profile: str,
    engine: EngineChoice,
    cross_check: bool,
    as_json: bool,
    audit: _Audit | None = None,
) -> Assessment:
    facts = _load_facts(patient_file, as_json)
    protocol_path = protocol or default_rulesets_dir() / DEFAULT_PROTOCOL
    try:
        assessor = assessor_for(
            protocol_path, profile, engine=engine.value, cross_check=cross_check
        )
    except (RulesetError, OSError) as error:
        _ruleset_failure(protocol_path, error, as_json)
    try:
        assessment = assessor.assess(facts)
    except InputError as error:
        _fail(_in_file(error, str(patient_file)), EXIT_INPUT_ERROR, as_json)
    except EngineError as error:
        _fail(error, EXIT_ENGINE_ERROR, as_json)
    if audit is not None and audit.enabled:
        from .audit import AuditError, AuditStore, record_assessment

        try:
            record_assessment(
                AuditStore(audit.url),
                assessment,
                facts,
                protocol_path,
                patient_ref=audit.patient_ref,
                encounter_ref=audit.encounter_ref,
                redact_paths=audit.redact,
            )
        except AuditError as error:
            _fail(error, EXIT_AUDIT_ERROR, as_json)
    return assessment


def _print_finding(console: Console, finding: Finding, indent: str = "  ") -> None:
    sources = ", ".join(finding.sources)
    evidence = finding.evidence.value if finding.evidence else "-"
    drugs = f" [{'/'.join(finding.drugs)}]" if finding.drugs else ""
    console.print(
        f"{indent}[{_STYLE[finding.outcome]}]{finding.outcome.value:<15}[/] "
        f"[bold]{finding.rule_id}[/bold]{escape(drugs)} {escape(finding.message)} "
        f"[dim]({sources}; evidence {evidence})[/dim]"
    )


def _missing_summary(missing: tuple[MissingData, ...]) -> list[tuple[Outcome, str, list[str]]]:
    """What to record, grouped: one line per absent record (``no 12-lead ECG on file``), one
    for laboratory results, one per other field; each with the most restrictive outcome it
    holds and the rules waiting for it, most restrictive first. A result listed at one outcome
    is not repeated at a milder one."""
    labs = "laboratory results not recorded or too old:"
    # (key, part) -> [outcome, rules]; part is a lab test, or "" for a whole record or field
    needed: dict[tuple[str, str], tuple[list[Outcome], list[str]]] = {}
    for item in missing:
        if item.outcome is None or item.outcome == Outcome.INFO:
            continue
        for path, detail in zip(item.paths, item.details, strict=False):
            _, _, absent = detail.partition(" is not recorded: ")
            if absent:
                key = (absent, "")
            elif path.startswith("labs."):
                key = (labs, path.removeprefix("labs.").split("_")[0])
            else:
                key = (f"`{path}` not recorded", "")
            outcomes, rules = needed.setdefault(key, ([], []))
            outcomes.append(item.outcome)
            if item.rule_id not in rules:
                rules.append(item.rule_id)
    lines: dict[tuple[Outcome, str], tuple[list[str], list[str]]] = {}
    for (what, part), (outcomes, rules) in needed.items():
        worst = max(outcomes, key=lambda outcome: outcome.severity)
        parts, line_rules = lines.setdefault((worst, what), ([], []))
        if part:
            parts.append(part)
        line_rules.extend(rule for rule in rules if rule not in line_rules)
    ordered = sorted(lines.items(), key=lambda entry: -entry[0][0].severity)
    return [
        (outcome, f"{what} {', '.join(parts)}" if parts else what, rules)
        for (outcome, what), (parts, rules) in ordered
    ]


def _print_to_record(
    console: Console, missing: tuple[MissingData, ...], heading: str, gate: bool
) -> None:
    summary = _missing_summary(missing)
    if not summary:
        return
    console.print(f"\n[bold]{heading}[/bold]")
    for found, what, rules in summary:
        # At the gate no review lifts missing data: whatever it would be at screening, it holds.
        outcome = Outcome.HOLD if gate and found == Outcome.NEEDS_REVIEW else found
        console.print(
            f"  [{_STYLE[outcome]}]{outcome.value:<15}[/] {escape(what)} "
            f"[dim]({len(rules)} rule{'s' if len(rules) != 1 else ''}: {', '.join(rules)})[/dim]"
        )


def _print_missing(console: Console, missing: tuple[MissingData, ...]) -> None:
    shown = [m for m in missing if m.paths]
    if not shown:
        return
    console.print("\n[bold]Missing or incomplete data[/bold]")
    for item in shown:
        effect = item.outcome.value if item.outcome else "for information"
        console.print(
            f"  [bold]{item.rule_id}[/bold] needs {', '.join(item.paths)} [dim]({effect})[/dim]"
        )
        for detail in item.details:
            console.print(f"      {escape(detail)}")


def _print_assessment(assessment: Assessment, patient_file: str) -> None:
    console = _console()
    decision = assessment.decision
    gate = assessment.gate
    if gate is not None:
        style = {"PROCEED": "bold green", "HOLD": "bold magenta", "INELIGIBLE": "bold red"}
        console.print(
            f"[{style[gate.decision]}]{gate.decision}[/]  session {gate.session}  "
            f"{escape(patient_file)}"
        )
    else:
        console.print(f"[{_STYLE[decision]}]{decision.value}[/]  {escape(patient_file)}")
    console.print("\n[bold]Drugs[/bold]")
    for verdict in assessment.drugs:
        label = (
            "no contraindication found"
            if verdict.outcome == Outcome.ELIGIBLE
            else verdict.outcome.value
        )
        reasons = ", ".join(dict.fromkeys(f.rule_id for f in verdict.reasons))
        console.print(
            f"  {escape(verdict.title):<24} [{_STYLE[verdict.outcome]}]{label}[/]"
            + (f" [dim]({reasons})[/dim]" if reasons else "")
        )
    for pathway in assessment.pathways:
        console.print(
            f"  [{_STYLE[pathway.outcome]}]{pathway.pathway}: {pathway.outcome.value}[/] "
            f"[bold]{pathway.id}[/bold] {escape(pathway.message)}"
        )
    _print_to_record(
        console,
        assessment.missing,
        "To record before this session" if gate is not None else "To record before a decision",
        gate=gate is not None,
    )
    if gate is not None:
        if gate.blocking:
            heading = "Stops the course" if gate.decision == "INELIGIBLE" else "Holds the session"
            console.print(f"\n[bold]{heading}[/bold]")
            for finding in gate.blocking:
                _print_finding(console, finding)
        if gate.reviewed:
            console.print("\n[bold]Reviewed before this session[/bold]")
            for item in gate.reviewed:
                subject = f" ({escape(item.subject)})" if item.subject else ""
                console.print(
                    f"  [bold]{item.rule_id}[/bold]{subject} by {escape(item.reviewer)} "
                    f"at {item.at.isoformat()}"
                )
    else:
        decisive = [f for f in assessment.findings if f.outcome != Outcome.INFO]
        if decisive:
            console.print("\n[bold]Reasons[/bold]")
            for finding in decisive:
                _print_finding(console, finding)
    _print_missing(console, assessment.missing)
    if assessment.criteria:
        table = Table(title=None, show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("criterion")
        table.add_column("status")
        table.add_column("rules")
        for criterion in assessment.criteria:
            colour = (
                "green"
                if criterion.status == "established"
                else ("magenta" if criterion.status == "unknown" else "red")
            )
            table.add_row(
                escape(criterion.title),
                f"[{colour}]{criterion.status}[/]",
                ", ".join(criterion.established_by),
            )
        console.print("\n[bold]Criteria[/bold]")
        console.print(table)
    notes = [f for f in assessment.findings if f.outcome == Outcome.INFO]
    if notes:
        console.print("\n[bold]Also noted[/bold]")
        for finding in notes:
            console.print(
                f"  [bold]{finding.rule_id}[/bold] {escape(finding.message)} "
                f"[dim]({', '.join(finding.sources)})[/dim]"
            )
    checked = "; cross-checked with the reference evaluator" if assessment.cross_checked else ""
    rulesets = ", ".join(f"{e.ruleset.id} {e.ruleset.version}" for e in assessment.evaluations)
    protocol = assessment.protocol
    console.print(
        f"\n[dim]protocol {protocol.id} {protocol.version} {protocol.content_hash}; "
        f"profile {assessment.profile} ({rulesets}); "
        f"{assessment.engine}{checked}; as of {assessment.as_of.isoformat()}[/dim]"
    )


_CROSS_CHECK_HELP = "Also run the reference evaluator; fail if they disagree."


@app.command()
def screen(
    patient_file: Annotated[Path, typer.Argument(help="Patient facts, YAML or JSON.")],
    ruleset: Annotated[
        Path | None,
        typer.Option(help="Evaluate this one ruleset file instead of the screening profile."),
    ] = None,
    protocol: Annotated[
        Path | None, typer.Option(help="Protocol file (default: rulesets/protocol.yaml).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    cross_check: Annotated[bool, typer.Option("--cross-check", help=_CROSS_CHECK_HELP)] = False,
    engine: Annotated[EngineChoice, typer.Option(help="Evaluator to use.")] = EngineChoice.durable,
    audit_db: _AuditDb = None,
    no_audit: _NoAudit = False,
    patient_ref: _PatientRef = None,
    encounter_ref: _EncounterRef = None,
    redact: _Redact = None,
) -> None:
    """Screen one patient for eligibility and print the decision with its reasons.

    The screening profile checks the diagnosis, refractory status, work-up, both drugs'
    contraindications and interactions, and the pre-infusion tests, with a verdict per drug.
    """
    if ruleset is None:
        audit = _audit_options(no_audit, audit_db, patient_ref, encounter_ref, redact)
        assessment = _assess(
            patient_file, protocol, "screening", engine, cross_check, as_json, audit
        )
        with _reader_may_stop_early():
            if as_json:
                print(assessment.to_json())
            else:
                _print_assessment(assessment, str(patient_file))
        raise typer.Exit(EXIT_CODES.get(assessment.decision, EXIT_CODES[Outcome.CANNOT_EVALUATE]))
    facts = _load_facts(patient_file, as_json)
    try:
        evaluator = evaluator_for(ruleset, engine=engine.value, cross_check=cross_check)
    except (RulesetError, OSError) as error:
        _ruleset_failure(ruleset, error, as_json)
    try:
        evaluation = evaluator.evaluate(facts)
    except EngineError as error:
        _fail(error, EXIT_ENGINE_ERROR, as_json)
    result = evaluation.to_dict()
    _record(
        _audit_options(no_audit, audit_db, patient_ref, encounter_ref, redact),
        as_json,
        kind="screening",
        input_data=facts.model_dump(mode="json"),
        ruleset=(result["ruleset"]["id"], result["ruleset"]["version"],
                 result["ruleset"]["content_hash"]),
        sources=lambda: (ruleset.name, {ruleset.name: ruleset.read_text(encoding="utf-8")}),
        engine=result["engine"],
        fired=result["fired"],
        findings=result["findings"],
        missing=result["missing"],
        decision=result["decision"],
        result=result,
    )  # fmt: skip
    with _reader_may_stop_early():
        if as_json:
            print(evaluation.to_json())
        else:
            _print_evaluation(evaluation, str(patient_file))
    raise typer.Exit(EXIT_CODES.get(evaluation.decision, EXIT_CODES[Outcome.CANNOT_EVALUATE]))


@app.command()
def gate(
    patient_file: Annotated[
        Path, typer.Argument(help="Patient facts with today's `session` block, YAML or JSON.")
    ],
    protocol: Annotated[
        Path | None, typer.Option(help="Protocol file (default: rulesets/protocol.yaml).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    cross_check: Annotated[bool, typer.Option("--cross-check", help=_CROSS_CHECK_HELP)] = False,
    engine: Annotated[EngineChoice, typer.Option(help="Evaluator to use.")] = EngineChoice.durable,
    audit_db: _AuditDb = None,
    no_audit: _NoAudit = False,
    patient_ref: _PatientRef = None,
    encounter_ref: _EncounterRef = None,
    redact: _Redact = None,
) -> None:
    """Check before a daily session: PROCEED, HOLD or INELIGIBLE, with the reasons.

    Every contraindication and interaction is re-checked against today's facts, then today's
    vitals, sedation, new symptoms, pregnancy test, weight and readiness.
    """
    audit = _audit_options(no_audit, audit_db, patient_ref, encounter_ref, redact)
    assessment = _assess(patient_file, protocol, "gate", engine, cross_check, as_json, audit)
    assert assessment.gate is not None
    with _reader_may_stop_early():
        if as_json:
            print(assessment.to_json())
        else:
            _print_assessment(assessment, str(patient_file))
    raise typer.Exit(GATE_EXIT_CODES[assessment.gate.decision])


# ---------------------------------------------------------------------------------------------
# Doses

DOSE_CHECK_EXIT_CODES = {"ACCEPT": 0, "NEEDS_REVIEW": 3, "CANNOT_EVALUATE": 4, "REJECT": 9}


class DrugChoice(str, Enum):
    lidocaine = "lidocaine"
    ketamine = "ketamine"


def _dosing_table(path: Path | None, as_json: bool) -> DosingTable:
    table_path = path or default_rulesets_dir() / "dosing.yaml"
    try:
        return load_dosing_table(table_path)
    except (RulesetError, OSError) as error:
        _ruleset_failure(table_path, error, as_json)


def _as_option(error: InputError, names: dict[str, str] | None = None) -> InputError:
    """An error in a command-line value, named as the option the user typed."""
    path = error.location.path
    option = (names or {}).get(path, f"--{path.replace('_', '-')}")
    return InputError(
        error.code, error.message.replace(f"`{path}`", f"`{option}`"), Location(path=option)
    )


def _print_note(console: Console, note: Note) -> None:
    console.print(
        f"  [{_STYLE[note.outcome]}]{note.outcome.value:<15}[/] [bold]{note.rule}[/bold] "
        f"{escape(note.message)}"
    )


def _print_dose(console: Console, title: str, dose: DrugDose) -> None:
    minutes = (fmt(dose.shortest_infusion_min), fmt(dose.longest_infusion_min))
    console.print(f"\n[bold]{title}[/bold] ({dose.rule})")
    console.print(
        f"  {fmt(dose.mg_per_kg)} mg/kg x {fmt(dose.weight_kg)} kg ({dose.weight_basis} weight) "
        f"= [bold]{fmt(dose.mg)} mg[/bold]" + (" (capped)" if dose.capped else "")
    )
    console.print(
        f"  volume [bold]{fmt(dose.ml)} mL[/bold] of {fmt(dose.concentration_mg_per_ml)} mg/mL"
    )
    console.print(
        f"  rate {fmt(dose.mg_per_h[0])} mg/h ({fmt(dose.mg_per_kg_per_h[0])} mg/kg/h) over "
        f"{minutes[0]} min to {fmt(dose.mg_per_h[1])} mg/h ({fmt(dose.mg_per_kg_per_h[1])} "
        f"mg/kg/h) over {minutes[1]} min"
    )


def _print_plan(plan: DosePlan, patient_file: str, table: DosingTable) -> None:
    console = _console()
    console.print(
        f"[{_STYLE[plan.outcome]}]{plan.outcome.value}[/]  dose plan for session {plan.session}  "
        f"{escape(patient_file)}"
    )
    weight = plan.weight
    console.print(f"\n[bold]Weight[/bold] ({table.weight.rule})")
    parts = [
        f"actual {fmt(weight.actual_kg)} kg"
        if weight.actual_kg is not None
        else "actual: not recorded",
        f"height {fmt(weight.height_cm)} cm"
        if weight.height_cm is not None
        else "height: not recorded",
    ]
    if weight.ibw_kg is not None:
        parts.append(f"ideal (Devine, {weight.sex}) {fmt(weight.ibw_kg)} kg")
    if weight.adjusted_kg is not None:
        parts.append(f"adjusted {fmt(weight.adjusted_kg)} kg")
    if weight.dosing_kg is not None:
        parts.append(f"lidocaine dosed on {weight.basis} weight {fmt(weight.dosing_kg)} kg")
    console.print("  " + "; ".join(parts))
    if plan.notes:
        console.print("\n[bold]Notes[/bold]")
        for note in plan.notes:
            _print_note(console, note)
    if plan.lidocaine is not None:
        _print_dose(console, "IV lidocaine", plan.lidocaine)
    if plan.ketamine is not None:
        _print_dose(console, "IV ketamine", plan.ketamine)
    elif plan.lidocaine is not None:
        console.print(
            f"\n[bold]IV ketamine[/bold] ({table.ketamine.rule}): none in session "
            f"{plan.session} (from session {int(table.ketamine.first_session.value)})"
        )
    if plan.bag_ml is not None and plan.bag_ml_per_h is not None and plan.lidocaine is not None:
        drugs = " + ".join(
            f"{fmt(dose.ml)} mL {dose.drug}" for dose in (plan.lidocaine, plan.ketamine) if dose
        )
        console.print("\n[bold]Bag[/bold]")
        console.print(
            f"  {fmt(table.lidocaine.diluent_ml.d)} mL diluent + {drugs} = "
            f"[bold]{fmt(plan.bag_ml)} mL[/bold]: {fmt(plan.bag_ml_per_h[0])} mL/h over "
            f"{fmt(plan.lidocaine.shortest_infusion_min)} min, {fmt(plan.bag_ml_per_h[1])} mL/h "
            f"over {fmt(plan.lidocaine.longest_infusion_min)} min"
        )
    console.print(
        f"\n[dim]dosing table {table.version}; the ceiling for session {plan.session} if every "
        "earlier session escalated (the course decides whether it may)[/dim]"
    )


@app.command()
def dose(
    patient_file: Annotated[Path, typer.Argument(help="Patient facts, YAML or JSON.")],
    session: Annotated[int, typer.Option(help="Session number (1 = the first day).")],
    lidocaine_mg_per_ml: Annotated[
        float, typer.Option(help="Concentration of the lidocaine product in hand, mg/mL.")
    ],
    ketamine_mg_per_ml: Annotated[
        float, typer.Option(help="Concentration of the ketamine product in hand, mg/mL.")
    ],
    table: Annotated[
        Path | None, typer.Option(help="Dosing table (default: rulesets/dosing.yaml).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    audit_db: _AuditDb = None,
    no_audit: _NoAudit = False,
    patient_ref: _PatientRef = None,
    encounter_ref: _EncounterRef = None,
    redact: _Redact = None,
) -> None:
    """Dose plan for one session: each drug in mg/kg, mg, mL of the product in hand and mg/h.

    The concentrations are required: the same mg in a 20 or a 21 mg/mL product is a different
    volume, and none is assumed.
    """
    facts = _load_facts(patient_file, as_json)
    dosing = _dosing_table(table, as_json)
    try:
        plan = plan_session(
            facts,
            session,
            lidocaine_mg_per_ml=lidocaine_mg_per_ml,
            ketamine_mg_per_ml=ketamine_mg_per_ml,
            table=dosing,
        )
    except InputError as error:
        _fail(_as_option(error), EXIT_INPUT_ERROR, as_json)
    _dosing_record(
        _audit_options(no_audit, audit_db, patient_ref, encounter_ref, redact),
        as_json,
        "dose_plan",
        table or default_rulesets_dir() / "dosing.yaml",
        dosing,
        {
            "patient": facts.model_dump(mode="json"),
            "session": session,
            "lidocaine_mg_per_ml": lidocaine_mg_per_ml,
            "ketamine_mg_per_ml": ketamine_mg_per_ml,
        },
        plan,
        plan.outcome.value,
    )
    with _reader_may_stop_early():
        if as_json:
            print(plan.to_json())
        else:
            _print_plan(plan, str(patient_file), dosing)
    raise typer.Exit(EXIT_CODES.get(plan.outcome, EXIT_CODES[Outcome.CANNOT_EVALUATE]))


@app.command("check-dose")
def check_dose(
    patient_file: Annotated[Path, typer.Argument(help="Patient facts, YAML or JSON.")],
    drug: Annotated[DrugChoice, typer.Option(help="The drug ordered.")],
    mg: Annotated[float, typer.Option(help="The ordered dose for the session, mg.")],
    table: Annotated[
        Path | None, typer.Option(help="Dosing table (default: rulesets/dosing.yaml).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the check as JSON.")] = False,
    audit_db: _AuditDb = None,
    no_audit: _NoAudit = False,
    patient_ref: _PatientRef = None,
    encounter_ref: _EncounterRef = None,
    redact: _Redact = None,
) -> None:
    """Check an ordered dose: ACCEPT, or REJECT with the permitted maximum.

    Exit codes: 0 ACCEPT, 9 REJECT, 3 NEEDS_REVIEW (maximum on actual weight, height not
    recorded), 4 CANNOT_EVALUATE (no weight).
    """
    facts = _load_facts(patient_file, as_json)
    dosing = _dosing_table(table, as_json)
    try:
        result = check_order(facts, drug.value, mg, table=dosing)
    except InputError as error:
        _fail(_as_option(error, {"ordered_mg": "--mg"}), EXIT_INPUT_ERROR, as_json)
    _dosing_record(
        _audit_options(no_audit, audit_db, patient_ref, encounter_ref, redact),
        as_json,
        "dose_check",
        table or default_rulesets_dir() / "dosing.yaml",
        dosing,
        {"patient": facts.model_dump(mode="json"), "drug": drug.value, "ordered_mg": mg},
        result,
        result.decision,
    )
    with _reader_may_stop_early():
        if as_json:
            print(result.to_json())
        else:
            console = _console()
            style = {"ACCEPT": "bold green", "REJECT": "bold red"}.get(
                result.decision, "bold magenta"
            )
            per_kg = (
                f" = {fmt(result.ordered_mg_per_kg)} mg/kg of {result.weight_basis} weight "
                f"{fmt(result.weight_kg)} kg"
                if result.ordered_mg_per_kg is not None and result.weight_kg is not None
                else ""
            )
            console.print(
                f"[{style}]{result.decision}[/]  {result.drug} {fmt(result.ordered_mg)} mg"
                f"{per_kg}  {escape(str(patient_file))}"
            )
            if result.max_mg is not None:
                console.print(
                    f"  permitted maximum {fmt(result.max_mg)} mg "
                    f"({fmt(result.max_mg_per_kg)} mg/kg)"
                )
            for note in result.notes:
                _print_note(console, note)
            console.print(f"[dim]dosing table {dosing.version}[/dim]")
    raise typer.Exit(DOSE_CHECK_EXIT_CODES[result.decision])


def _course_console() -> Console:
    """A console wide enough for the course table when output is not a terminal."""
    console = _console()
    if not console.is_terminal:
        console = _Console(highlight=False, soft_wrap=False, width=160)
    return console


@app.command()
def course(
    course_file: Annotated[Path, typer.Argument(help="Course file, YAML or JSON.")],
    chart: Annotated[
        Path | None,
        typer.Option(help="Also draw the course to this file (.png or .svg)."),
    ] = None,
    protocol: Annotated[
        Path | None, typer.Option(help="Protocol file (default: rulesets/protocol.yaml).")
    ] = None,
    table: Annotated[
        Path | None, typer.Option(help="Dosing table (default: rulesets/dosing.yaml).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the course as JSON.")] = False,
    cross_check: Annotated[bool, typer.Option("--cross-check", help=_CROSS_CHECK_HELP)] = False,
    engine: Annotated[EngineChoice, typer.Option(help="Evaluator to use.")] = EngineChoice.durable,
    audit_db: _AuditDb = None,
    no_audit: _NoAudit = False,
    patient_ref: _PatientRef = None,
    encounter_ref: _EncounterRef = None,
    redact: _Redact = None,
) -> None:
    """A course day by day: each dose given against the plan the rules allowed, whether each
    escalation was allowed (ESC-01..04, SES-MAX), the next session's decision with its
    reasons, and the pain response (RESP-01..07).

    Exit codes: 0 nothing to review, 3 NEEDS_REVIEW (a deviation or a finding to review),
    4 CANNOT_EVALUATE (data missing for a decision), 5 a session stopped the course
    (DISCONTINUE_COURSE); 2 bad input, 6 ruleset errors, 7 engine failure.
    """
    from .course import CourseRunner, load_course, response_thresholds

    try:
        loaded = load_course(course_file)
    except InputError as error:
        _fail(_in_file(error, str(course_file)), EXIT_INPUT_ERROR, as_json)
    dosing = _dosing_table(table, as_json)
    protocol_path = protocol or default_rulesets_dir() / DEFAULT_PROTOCOL
    try:
        runner = CourseRunner(
            compile_profile(protocol_path, "course"),
            dosing,
            engine=engine.value,
            cross_check=cross_check,
        )
    except (RulesetError, OSError) as error:
        _ruleset_failure(protocol_path, error, as_json)
    try:
        report = runner.run(loaded)
    except InputError as error:
        _fail(_in_file(error, str(course_file)), EXIT_INPUT_ERROR, as_json)
    except EngineError as error:
        _fail(error, EXIT_ENGINE_ERROR, as_json)
    _course_record(
        _audit_options(no_audit, audit_db, patient_ref, encounter_ref, redact),
        as_json,
        loaded,
        report,
        runner.profile,
        protocol_path,
        table or default_rulesets_dir() / "dosing.yaml",
    )
    if chart is not None:
        from .course_chart import draw_course

        try:
            draw_course(report, dosing, chart, response_lines=response_thresholds(runner.profile))
        except InputError as error:
            _fail(error, EXIT_INPUT_ERROR, as_json)
        except OSError as error:
            _fail(
                InputError(
                    "unwritable_file",
                    f"cannot write `{chart}`: {(error.strerror or str(error)).lower()}",
                    Location(path="--chart"),
                ),
                EXIT_INPUT_ERROR,
                as_json,
            )
    with _reader_may_stop_early():
        if as_json:
            print(report.to_json())
        else:
            from .course_view import print_course

            console = _course_console()
            print_course(report, dosing, console)
            if chart is not None:
                console.print(f"chart: {escape(str(chart))}")
    raise typer.Exit(EXIT_CODES.get(report.status, 0))


MONITOR_EXIT_CODES = {"CONTINUE": 0, "SLOW": 3, "PAUSE": 3, "STOP": 5}


def _monitoring_table(path: Path | None, as_json: bool) -> MonitoringTable:
    table_path = path or default_rulesets_dir() / "monitoring.yaml"
    try:
        return load_monitoring_table(table_path)
    except (RulesetError, OSError) as error:
        _ruleset_failure(table_path, error, as_json)


def _emit(lines: list[str]) -> None:
    for line in lines:
        print(line)
    sys.stdout.flush()


@app.command()
def monitor(
    session_file: Annotated[
        str,
        typer.Argument(
            help="Session events as JSON lines, or `-` to read them from standard input as "
            "they arrive (e.g. behind `tail -f`)."
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per event (the actions).")
    ] = False,
    now: Annotated[
        str | None,
        typer.Option(
            help="After the last event, evaluate the session at this time (ISO 8601 with an "
            "offset), e.g. for overdue vitals."
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(help="Keep the session's events in this directory (one file per session)."),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            help="Resume this stored session (with --store): replay its events, then go on "
            "with the input."
        ),
    ] = None,
    summary: Annotated[
        Path | None,
        typer.Option(help="Write the session summary, as a course file's session, to this file."),
    ] = None,
    tick: Annotated[
        float | None,
        typer.Option(
            min=0.1,
            help="With `-`: when no event has come for this many seconds, evaluate the session "
            "at the clock's time (a `now` event, stored like the others), so overdue readings "
            "and persisting signs are flagged while the input is quiet.",
        ),
    ] = None,
    protocol: Annotated[
        Path | None, typer.Option(help="Protocol file (default: rulesets/protocol.yaml).")
    ] = None,
    table: Annotated[
        Path | None,
        typer.Option(help="Monitoring table (default: rulesets/monitoring.yaml)."),
    ] = None,
    cross_check: Annotated[bool, typer.Option("--cross-check", help=_CROSS_CHECK_HELP)] = False,
    engine: Annotated[EngineChoice, typer.Option(help="Evaluator to use.")] = EngineChoice.durable,
    audit_db: _AuditDb = None,
    no_audit: _NoAudit = False,
    patient_ref: _PatientRef = None,
    encounter_ref: _EncounterRef = None,
    redact: _Redact = None,
) -> None:
    """During the infusion: at each event, whether each drug continues, slows, pauses or
    stops (HALT-*, MON-LID), with the alerts, their instructions and triggering events, what
    a pause awaits, and the observation required after the session (POST-01..04).

    A file is replayed and its timeline printed; `-` reads events as they arrive and prints
    the state of each drug after every event. Exit codes: 0 every drug continued, 3 a drug
    was slowed or paused (or a halt rule held during the observation after the infusion), 5 a
    drug was stopped; 2 bad input (the first bad event of a file
    stops the replay; from standard input a bad event is reported and skipped), 6 ruleset
    errors, 7 engine failure.
    """
    from .monitor import FileStore, Monitor

    monitoring = _monitoring_table(table, as_json)
    protocol_path = protocol or default_rulesets_dir() / DEFAULT_PROTOCOL
    try:
        profile = compile_profile(protocol_path, "monitor")
    except (RulesetError, OSError) as error:
        _ruleset_failure(protocol_path, error, as_json)
    if tick is not None and session_file != "-":
        _fail(
            InputError("invalid_option", "--tick is for `-` (live input)", Location(path="--tick")),
            EXIT_INPUT_ERROR,
            as_json,
        )
    if resume is not None and store is None:
        _fail(
            InputError("missing_option", "--resume needs --store", Location(path="--resume")),
            EXIT_INPUT_ERROR,
            as_json,
        )
    options: dict[str, Any] = {"engine": engine.value, "cross_check": cross_check}
    session_store = FileStore(store) if store is not None else None
    live = session_file == "-"
    previous = None
    worst = 0
    bad_input = False

    audit = _audit_options(no_audit, audit_db, patient_ref, encounter_ref, redact)
    audit_store: Any = None
    replaying = False  # events replayed from the session store were recorded when they came
    from .audit import combined_source

    monitor_hash, monitor_sources = combined_source(
        protocol_path,
        "monitor",
        table or default_rulesets_dir() / "monitoring.yaml",
        profile.protocol.content_hash,
    )

    def show(actions: Any) -> None:
        nonlocal previous, worst, audit_store
        if audit.enabled and actions.refused is None and not replaying:
            evaluation = actions.evaluation.to_dict() if actions.evaluation else {}
            data = actions.to_dict()
            audit_store = _record(
                audit,
                as_json,
                kind="monitor",
                input_data={
                    "session": watcher.session,
                    "seq": actions.event.seq,
                    "event": json.loads(event_to_json(watcher.events[actions.event.seq - 1])),
                },
                ruleset=(
                    f"{profile.protocol.id}/monitor+monitoring",
                    profile.protocol.version,
                    monitor_hash,
                ),
                sources=monitor_sources if audit_store is None else None,
                engine=evaluation.get("engine", "none"),
                fired=evaluation.get("fired", []),
                findings=evaluation.get("findings", []),
                missing=evaluation.get("missing", []),
                decision=";".join(f"{d}={s['action']}" for d, s in data["drugs"].items()),
                result=data,
                store=audit_store,
            )
        for state in actions.drugs.values():
            worst = max(worst, MONITOR_EXIT_CODES.get(state.action, 0))
        if any(alert.after_end for alert in actions.alerts):
            worst = max(worst, MONITOR_EXIT_CODES["PAUSE"])  # a halt during observation
        if as_json:
            _emit([actions.to_json()])
        else:
            _emit(action_lines(actions, previous=previous, always=live))
        previous = actions

    try:
        if resume is not None:
            assert session_store is not None
            watcher, replayed = Monitor.resume(
                profile, monitoring, session_store, resume, **options
            )
            if not replayed:
                _fail(
                    InputError(
                        "unknown_session",
                        f"no stored events for session `{resume}` in {store}",
                        Location(path="--resume"),
                    ),
                    EXIT_INPUT_ERROR,
                    as_json,
                )
            replaying = True
            for actions in replayed:
                show(actions)
            replaying = False
        else:
            watcher = Monitor(profile, monitoring, store=session_store, **options)
        source = "<stdin>" if live else session_file
        lines: Iterator[str | None]
        if live:
            lines = _live_lines(tick) if tick is not None else iter(sys.stdin.readline, "")
        else:
            try:
                lines = iter(Path(session_file).read_text(encoding="utf-8").splitlines())
            except (OSError, UnicodeDecodeError) as error:
                _fail(
                    InputError(
                        "unreadable_file",
                        f"cannot read `{session_file}`: "
                        f"{getattr(error, 'strerror', None) or error}",
                        Location(file=session_file),
                    ),
                    EXIT_INPUT_ERROR,
                    as_json,
                )
        with _reader_may_stop_early():
            number = 0
            for text in lines:
                if text is None:  # --tick: no input for a while; the time passes
                    clock = datetime.now(UTC).replace(microsecond=0)
                    latest = watcher.events[-1].at if watcher.events else None
                    if latest is not None and not watcher.ended and clock > latest:
                        show(watcher.observe({"type": "now", "at": clock.isoformat()}))
                    continue
                number += 1
                if not text.strip():
                    continue
                try:
                    actions = watcher.observe(text, source=source, line=number)
                except InputError as error:
                    if not live:
                        _fail(error, EXIT_INPUT_ERROR, as_json)
                    bad_input = True
                    for item in getattr(error, "errors", None) or [error]:
                        print(f"error {item}", file=sys.stderr, flush=True)
                    held = watcher.refuse(text, error)
                    if held is not None:
                        show(held)
                    continue
                show(actions)
            if now is not None and watcher.session is not None and not watcher.ended:
                try:
                    actions = watcher.observe(
                        {"type": "now", "at": now}, source="--now", store=False
                    )
                except InputError as error:
                    _fail(error, EXIT_INPUT_ERROR, as_json)
                show(actions)
            if watcher.session is None:
                _fail(
                    InputError("no_events", "no session events were read", Location(file=source)),
                    EXIT_INPUT_ERROR,
                    as_json,
                )
            report = watcher.summary()
            if not as_json:
                _emit(summary_lines(report))
    except EngineError as error:
        _fail(error, EXIT_ENGINE_ERROR, as_json)
    if summary is not None:
        import yaml

        try:
            summary.write_text(
                yaml.safe_dump([report.course_session()], sort_keys=False, allow_unicode=True),
                encoding="utf-8",
            )
        except OSError as error:
            _fail(
                InputError(
                    "unwritable_file",
                    f"cannot write `{summary}`: {(error.strerror or str(error)).lower()}",
                    Location(path="--summary"),
                ),
                EXIT_INPUT_ERROR,
                as_json,
            )
    raise typer.Exit(EXIT_INPUT_ERROR if bad_input else worst)


def _live_lines(tick: float) -> Iterator[str | None]:
    """Standard input's lines as they arrive, and ``None`` after ``tick`` seconds without one."""
    fd = sys.stdin.fileno()
    pending = b""
    while True:
        ready, _, _ = select.select([fd], [], [], tick)
        if not ready:
            yield None
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            if pending:
                yield pending.decode("utf-8", errors="replace")
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line.decode("utf-8", errors="replace")


def _is_table(path: Path, name: str) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return re.search(rf"^table:\s*{name}\s*$", text, flags=re.MULTILINE) is not None


def _is_dosing_table(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return re.search(r"^table:\s*dosing\s*$", text, flags=re.MULTILINE) is not None


def _kind_of_file(path: Path) -> str:
    """``protocol``, ``table`` or ``ruleset``, from the file's first top-level key."""
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line[:1].isalpha():
                    key = line.split(":", 1)[0].strip()
                    return {"protocol": "protocol", "table": "table"}.get(key, "ruleset")
    except (OSError, UnicodeDecodeError):
        pass
    return "ruleset"


@app.command()
def check(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Ruleset files or directories (default: the rulesets directory)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print errors as JSON.")] = False,
) -> None:
    """Load and compile rulesets; report every error of every file, exit non-zero on any.

    A protocol file is checked with its terminology tables and every profile's rulesets, each
    compiled against the tables; tables are checked through the protocol that names them.
    """
    from .compiler import compile_ruleset

    files: list[Path] = []
    for path in paths or [default_rulesets_dir()]:
        if path.is_dir():
            files.extend(sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")))
        else:
            files.append(path)
    protocols = [f for f in files if _kind_of_file(f) == "protocol"]
    covered: set[Path] = set()
    errors: list[CdsRulesError] = []
    rows: list[dict[str, object]] = []
    for protocol_file in protocols:
        try:
            spec = load_protocol(protocol_file)
        except RulesetError as error:
            errors.extend(getattr(error, "errors", [error]))
            continue
        for name in spec.profiles:
            try:
                profile = compile_profile(protocol_file, name)
            except RulesetError as error:
                # A ruleset in several profiles reports each of its errors once, and is not
                # compiled again on its own below.
                errors.extend(
                    e
                    for e in getattr(error, "errors", [error])
                    if str(e) not in {str(seen) for seen in errors}
                )
                covered.update(
                    (protocol_file.parent / ruleset).resolve()
                    for ruleset in spec.profiles[name].rulesets
                )
                continue
            for compiled in profile.rulesets:
                file = Path(compiled.file or "")
                covered.add(file.resolve())
                if not any(row["file"] == compiled.file for row in rows):
                    rows.append(
                        {
                            "file": compiled.file,
                            "id": compiled.id,
                            "version": compiled.version,
                            "content_hash": compiled.content_hash,
                            "rules": len(compiled.rules),
                        }
                    )
            rows.append(
                {
                    "file": str(protocol_file),
                    "id": f"{spec.protocol}/{name}",
                    "version": spec.version,
                    "content_hash": profile.protocol.content_hash,
                    "rules": sum(len(c.rules) for c in profile.rulesets),
                }
            )
    for table_file in (f for f in files if _kind_of_file(f) == "table"):
        if _is_table(table_file, "monitoring"):
            try:
                monitoring = load_monitoring_table(table_file)
            except RulesetError as error:
                errors.extend(getattr(error, "errors", [error]))
                continue
            rows.append(
                {
                    "file": str(table_file),
                    "id": monitoring.table,
                    "version": monitoring.version,
                    "content_hash": "sha256:" + hashlib.sha256(table_file.read_bytes()).hexdigest(),
                    "rules": len(monitoring.signs),
                    "unit": "signs",
                }
            )
            continue
        if not _is_dosing_table(table_file):
            continue  # terminology tables are checked through the protocol that names them
        try:
            dosing = load_dosing_table(table_file)
        except RulesetError as error:
            errors.extend(getattr(error, "errors", [error]))
            continue
        rows.append(
            {
                "file": str(table_file),
                "id": dosing.table,
                "version": dosing.version,
                "content_hash": "sha256:" + hashlib.sha256(table_file.read_bytes()).hexdigest(),
                "rules": parameter_count(dosing),
                "unit": "parameters",
            }
        )
    others = [f for f in files if _kind_of_file(f) == "ruleset" and f.resolve() not in covered]
    loaded, load_errors = load_rulesets(others)
    errors.extend(load_errors)
    for item in loaded:
        try:
            compiled = compile_ruleset(item)
        except RulesetError as error:
            errors.extend(getattr(error, "errors", [error]))
            continue
        rows.append(
            {
                "file": compiled.file,
                "id": compiled.id,
                "version": compiled.version,
                "content_hash": compiled.content_hash,
                "rules": len(compiled.rules),
            }
        )
    if errors:
        _fail(errors, EXIT_RULESET_ERROR, as_json)
    if as_json:
        with _reader_may_stop_early():
            print(json.dumps({"rulesets": rows}, indent=2))
        return
    console = _console()
    with _reader_may_stop_early():
        for row in rows:
            console.print(
                f"[green]ok[/green] {escape(str(row['file']))}: {row['id']} {row['version']}, "
                f"{row['rules']} {row.get('unit', 'rules')}, {row['content_hash']}"
            )
        if not rows:
            console.print("no ruleset files found")
    if not rows:
        raise typer.Exit(EXIT_RULESET_ERROR)


@app.command("test")
def run_tests(
    cases: Annotated[
        Path | None,
        typer.Option(help="Golden cases directory (default: tests/golden beside the rulesets)."),
    ] = None,
    coverage: Annotated[
        bool,
        typer.Option(
            "--coverage",
            help="Also list every shipped rule that no case fires or no case shows not firing; "
            "fail if any.",
        ),
    ] = False,
    engine: Annotated[
        EngineChoice | None,
        typer.Option(help="Evaluator (default: durable-rules cross-checked by the reference)."),
    ] = None,
) -> None:
    """Run the golden clinical cases and report each failure in a clinician's terms."""
    from .golden import (
        coverage_gaps,
        describe,
        describe_dose,
        discover,
        discover_dose_cases,
        dose_coverage_gaps,
        dose_problems,
        evaluate_case,
        evaluate_dose_case,
        problems_with,
    )

    rulesets = default_rulesets_dir()
    repo = rulesets.resolve().parent
    cases_dir = cases or repo / "tests" / "golden"
    console = _console()
    if not cases_dir.is_dir():
        _fail(
            InputError(
                "missing_directory",
                f"no golden cases directory `{cases_dir}`",
                Location(file=str(cases_dir)),
            ),
            EXIT_INPUT_ERROR,
            as_json=False,
        )
    mode = "cross_check" if engine is None else engine.value
    try:
        found = discover(cases_dir, repo, rulesets)
    except RulesetError as error:
        _fail(error, EXIT_RULESET_ERROR, as_json=False)
    failed = 0
    valid = []
    with _reader_may_stop_early():
        for case_file in found:
            if case_file.case is None:
                failed += 1
                console.print(
                    f"[red]invalid[/red] {escape(case_file.name)}: {escape(str(case_file.error))}"
                )
                continue
            valid.append(case_file.case)
            try:
                result = evaluate_case(case_file, mode, repo, rulesets)  # type: ignore[arg-type]
            except CdsRulesError as error:
                failed += 1
                console.print(f"[red]error[/red] {escape(case_file.name)}: {escape(str(error))}")
                continue
            problems = problems_with(case_file.case.expected, result)
            expected_failure = case_file.case.xfail is not None
            if problems and not expected_failure:
                failed += 1
                console.print(
                    f"[red]FAIL[/red] {escape(case_file.name)} ({escape(case_file.case.title)})"
                )
                for problem in problems:
                    console.print(f"  - {escape(problem)}")
                console.print(escape(describe(result)))
            elif not problems and expected_failure:
                failed += 1
                console.print(
                    f"[red]XPASS[/red] {escape(case_file.name)}: marked xfail "
                    f"({escape(str(case_file.case.xfail))}) but passes"
                )
        dose_cases = discover_dose_cases(cases_dir, repo)
        valid_doses = []
        for dose_file in dose_cases:
            if dose_file.case is None:
                failed += 1
                console.print(
                    f"[red]invalid[/red] {escape(dose_file.name)}: {escape(str(dose_file.error))}"
                )
                continue
            valid_doses.append(dose_file.case)
            try:
                dose_result = evaluate_dose_case(dose_file, repo, rulesets)
            except CdsRulesError as error:
                failed += 1
                console.print(f"[red]error[/red] {escape(dose_file.name)}: {escape(str(error))}")
                continue
            dose_issues = dose_problems(dose_file.case.expected, dose_result)
            if dose_issues:
                failed += 1
                console.print(
                    f"[red]FAIL[/red] {escape(dose_file.name)} ({escape(dose_file.case.title)})"
                )
                for problem in dose_issues:
                    console.print(f"  - {escape(problem)}")
                console.print(escape(describe_dose(dose_result)))
        from .course_golden import (
            course_coverage_gaps,
            course_problems,
            describe_course,
            discover_course_cases,
            evaluate_course_case,
        )

        course_cases = discover_course_cases(cases_dir, repo)
        valid_courses = []
        for course_file in course_cases:
            if course_file.case is None:
                failed += 1
                console.print(
                    f"[red]invalid[/red] {escape(course_file.name)}: "
                    f"{escape(str(course_file.error))}"
                )
                continue
            valid_courses.append(course_file.case)
            try:
                course_result = evaluate_course_case(
                    course_file,
                    repo,
                    rulesets,
                    engine="durable" if mode == "cross_check" else mode,  # type: ignore[arg-type]
                    cross_check=mode == "cross_check",
                )
            except (CdsRulesError, ValueError) as error:
                failed += 1
                console.print(f"[red]error[/red] {escape(course_file.name)}: {escape(str(error))}")
                continue
            course_issues = course_problems(course_file.case.expected, course_result)
            if course_issues:
                failed += 1
                console.print(
                    f"[red]FAIL[/red] {escape(course_file.name)} ({escape(course_file.case.title)})"
                )
                for problem in course_issues:
                    console.print(f"  - {escape(problem)}")
                console.print(
                    escape(describe_course(course_result, course_file.case.expected.session))
                )
        from .monitor_golden import (
            ENGINES,
            describe_monitor,
            discover_monitor_cases,
            evaluate_monitor_case,
            monitor_coverage_gaps,
            monitor_problems,
            monitor_setup,
        )

        try:
            monitor_cases = discover_monitor_cases(cases_dir, repo, rulesets)
            setup = monitor_setup(rulesets)
        except RulesetError as error:
            _fail(error, EXIT_RULESET_ERROR, as_json=False)
        valid_monitor = []
        # Both evaluators by default, each checked against the case and against the other.
        engines = ENGINES if engine is None else tuple(e for e in ENGINES if e == engine.value)
        for monitor_file in monitor_cases:
            monitor_case = monitor_file.case
            if monitor_case is None:
                failed += 1
                console.print(
                    f"[red]invalid[/red] {escape(monitor_file.name)}: "
                    f"{escape(str(monitor_file.error))}"
                )
                continue
            valid_monitor.append(monitor_case)
            try:
                runs = evaluate_monitor_case(
                    monitor_file, setup, engines, cross_check=mode == "cross_check"
                )
            except CdsRulesError as error:
                failed += 1
                console.print(f"[red]error[/red] {escape(monitor_file.name)}: {escape(str(error))}")
                continue
            monitor_issues = monitor_problems(monitor_file, runs)
            if monitor_issues and monitor_case.xfail is None:
                failed += 1
                console.print(f"[red]FAIL[/red] {escape(monitor_file.name)}")
                for problem in monitor_issues:
                    console.print(f"  - {escape(problem)}")
                console.print(escape(describe_monitor(monitor_file, next(iter(runs.values())))))
            elif not monitor_issues and monitor_case.xfail is not None:
                failed += 1
                console.print(
                    f"[red]XPASS[/red] {escape(monitor_file.name)}: marked xfail "
                    f"({escape(monitor_case.xfail)}) but passes"
                )
        total = len(found) + len(dose_cases) + len(course_cases) + len(monitor_cases)
        how = (
            "durable-rules cross-checked by the reference evaluator"
            if mode == "cross_check"
            else mode
        )
        console.print(f"{total - failed} of {total} golden cases pass ({how})")
        gaps = (
            coverage_gaps(valid, rulesets)
            + dose_coverage_gaps(valid_doses, rulesets)
            + course_coverage_gaps(valid_courses, rulesets)
            + monitor_coverage_gaps(valid_monitor, rulesets)
            if coverage
            else []
        )
        if coverage:
            if gaps:
                console.print(f"[red]{len(gaps)} rules not covered[/red]:")
                for gap in gaps:
                    console.print(f"  {escape(str(gap))}")
            else:
                console.print(
                    "every rule of the shipped rulesets fires in one case and not in another"
                )
    if failed or gaps:
        raise typer.Exit(EXIT_TEST_FAILED)


@app.command()
def schema(
    output: Annotated[
        Path | None,
        typer.Option(
            help="Write here (default: schema.json in the rulesets directory); '-' prints it."
        ),
    ] = None,
) -> None:
    """Export the JSON Schema of the rule language, for editors to validate YAML as typed."""
    from .schema import render_schema, write_schema

    if output is not None and str(output) == "-":
        with _reader_may_stop_early():
            sys.stdout.write(render_schema())
        return
    destination = output or default_rulesets_dir() / "schema.json"
    try:
        target = write_schema(destination)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        hint = (
            "give a file name, not a directory"
            if destination.is_dir()
            else "check that the directory exists and is writable"
        )
        _fail(
            InputError(
                "unwritable_file",
                f"cannot write `{destination}`: {reason}",
                Location(file=str(destination)),
                hint,
            ),
            EXIT_INPUT_ERROR,
            as_json=False,
        )
    with _reader_may_stop_early():
        _console().print(f"wrote {escape(str(target))}")


# ---------------------------------------------------------------------------------------------
# The audit trail

audit_app = typer.Typer(
    no_args_is_help=True,
    help="The audit trail: every recorded decision, verifiable and replayable.",
)
app.add_typer(audit_app, name="audit")


def _store(url: str | None, as_json: bool = False) -> Any:
    from .audit import AuditError, AuditStore

    try:
        return AuditStore(url)
    except AuditError as error:
        _fail(error, EXIT_AUDIT_ERROR, as_json)


@audit_app.command("verify")
def audit_verify(audit_db: _AuditDb = None) -> None:
    """Walk the hash chain; report the first record that was changed, deleted, inserted or
    reordered. Exit codes: 0 the chain holds, 11 it does not, 10 the store cannot be read."""
    from .audit import AuditError

    store = _store(audit_db)
    try:
        count, problem = store.verify()
    except AuditError as error:
        _fail(error, EXIT_AUDIT_ERROR, False)
    if problem is None:
        print(f"ok: {count} records, the chain holds ({store.location})")
        return
    print(
        f"chain broken at record {problem.record_id} (#{problem.seq}): {problem.code}: "
        f"{problem.message}; {count} records before it hold"
    )
    raise typer.Exit(EXIT_CHAIN_BROKEN)


@audit_app.command("list")
def audit_list(
    audit_db: _AuditDb = None,
    patient_ref: Annotated[str | None, typer.Option(help="Only this patient.")] = None,
    rule: Annotated[str | None, typer.Option(help="Only records where this rule fired.")] = None,
    decision: Annotated[str | None, typer.Option(help="Only this decision.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind (screening, gate).")] = None,
    since: Annotated[str | None, typer.Option(help="Recorded at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Recorded at or before (ISO 8601).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per record.")] = False,
) -> None:
    """The recorded decisions, oldest first, one line each."""
    from .audit import AuditError

    store = _store(audit_db, as_json)
    try:
        records = list(
            store.records(
                patient_ref=patient_ref,
                rule_id=rule,
                decision=decision,
                kind=kind,
                since=since,
                until=until,
            )
        )
    except (AuditError, ValueError) as error:
        _fail(
            error
            if isinstance(error, AuditError)
            else InputError("invalid_value", str(error), Location(path="--since/--until")),
            EXIT_AUDIT_ERROR if isinstance(error, AuditError) else EXIT_INPUT_ERROR,
            as_json,
        )
    with _reader_may_stop_early():
        for record in records:
            if as_json:
                summary = {
                    k: v
                    for k, v in record.to_dict().items()
                    if k in ("seq", "record_id", "recorded_at", "kind", "patient_ref",
                             "encounter_ref", "decision", "ruleset_id", "ruleset_version",
                             "ruleset_hash")
                }  # fmt: skip
                print(json.dumps(summary, sort_keys=True))
            else:
                print(
                    f"#{record.seq} {record.record_id} {record.recorded_at} {record.kind} "
                    f"{record.patient_ref or '-'} {record.decision} "
                    f"{record.ruleset_id} {record.ruleset_version}"
                )


@audit_app.command("show")
def audit_show(
    record_id: Annotated[str, typer.Argument(help="The record id (from `audit list`).")],
    audit_db: _AuditDb = None,
) -> None:
    """One decision: what it was, why (each rule that fired, its title and sources, and the
    fact values it matched), why not (the facts that were missing), and under which ruleset."""
    store = _store(audit_db)
    record = store.get(record_id)
    if record is None:
        _fail(
            InputError("unknown_record", f"no audit record `{record_id}`", Location(path="ID")),
            EXIT_INPUT_ERROR,
            False,
        )
    findings = {f["rule_id"]: f for f in record.findings}
    print(f"record {record.record_id} (#{record.seq}), {record.kind}, {record.recorded_at}")
    print(f"patient {record.patient_ref or '-'}, encounter {record.encounter_ref or '-'}")
    print(f"decision: {record.decision}")
    print("why:")
    for fired in record.fired:
        finding = findings.get(fired["rule_id"], {})
        sources = ", ".join(finding.get("sources", ()))
        print(
            f"  {fired['rule_id']} {fired['title']}"
            + (f" [{finding['outcome']}; {sources}]" if finding else "")
        )
        for matched in fired.get("matched", ()):
            values = ", ".join(f"{k}={v}" for k, v in sorted(matched["values"].items()))
            print(f"    {matched['fact_type']}: {values}")
    print("why not (missing):" if record.missing else "why not (missing): nothing")
    for missing in record.missing:
        print(f"  {missing['rule_id']} {missing['title']}: {', '.join(missing['paths'])}")
    print(
        f"ruleset: {record.ruleset_id} {record.ruleset_version} {record.ruleset_hash}; "
        f"{record.engine}; cds-rules {record.package_version}"
    )
    print(f"input {record.input_digest}; redacted: {', '.join(record.redacted) or 'nothing'}")
    print(f"hash {record.record_hash}, after {record.prev_hash}")


@audit_app.command("replay")
def audit_replay(
    record_id: Annotated[str, typer.Argument(help="The record id (from `audit list`).")],
    with_current: Annotated[
        bool,
        typer.Option(
            "--with-current", help="What today's rules (rulesets/protocol.yaml) would say instead."
        ),
    ] = False,
    protocol: Annotated[
        Path | None, typer.Option(help="With --with-current: this protocol file.")
    ] = None,
    audit_db: _AuditDb = None,
) -> None:
    """Evaluate the stored input again under the stored ruleset version and confirm the same
    decision and firings (or show the difference). Exit codes: 0 the same, 1 different, 10 the
    store cannot be read."""
    from .audit import AuditError, replay_record

    store = _store(audit_db)
    current = None
    if with_current:
        current = protocol or default_rulesets_dir() / DEFAULT_PROTOCOL
    try:
        replayed = replay_record(store, record_id, with_current=current)
    except AuditError as error:
        _fail(error, EXIT_AUDIT_ERROR, False)
    except (RulesetError, InputError) as error:
        _fail(error, EXIT_INPUT_ERROR, False)
    for note in replayed.notes:
        print(f"note: {note}")
    print(f"replayed under {replayed.ruleset}")
    if replayed.same:
        print(f"same: {replayed.decision}, {len(replayed.fired)} rules fired as recorded")
        return
    print(f"different: recorded {replayed.record.decision}, now {replayed.decision}")
    for difference in replayed.differences:
        print(f"  {difference}")
    raise typer.Exit(EXIT_TEST_FAILED)


@audit_app.command("export")
def audit_export(
    output: Annotated[
        Path | None, typer.Option(help="Write here instead of standard output.")
    ] = None,
    audit_db: _AuditDb = None,
) -> None:
    """Every record, oldest first, as JSON lines (each with its hash and the previous one),
    for an external archive."""
    store = _store(audit_db)
    lines = (json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False) for r in store.records())
    if output is None:
        with _reader_may_stop_early():
            for line in lines:
                print(line)
        return
    with output.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line + "\n")


def main() -> None:
    """Console entry point: never shows a traceback for an expected error."""
    try:
        app()
    except CdsRulesError as error:  # anything not handled by a command
        _console(stderr=True).print(f"[red]error[/red] {escape(str(error))}")
        sys.exit(EXIT_ENGINE_ERROR if isinstance(error, EngineError) else EXIT_INPUT_ERROR)
