"""The ``cds-rules`` command line: a thin adapter from files and flags to the core.

Exit codes: 0 ELIGIBLE, 3 NEEDS_REVIEW, 4 CANNOT_EVALUATE, 5 INELIGIBLE (the decision);
2 bad input or usage, 6 ruleset errors, 7 engine failure (no decision). Errors are printed as
``place: code: message``, never as a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .api import DEFAULT_RULESET, default_rulesets_dir, evaluator_for
from .errors import CdsRulesError, EngineError, InputError, Location, RulesetError
from .evaluation import Evaluation
from .facts import load_patient
from .loader import load_rulesets
from .spec import Outcome

__all__ = ["EXIT_CODES", "app", "main"]

EXIT_CODES = {
    Outcome.ELIGIBLE: 0,
    Outcome.NEEDS_REVIEW: 3,
    Outcome.CANNOT_EVALUATE: 4,
    Outcome.INELIGIBLE: 5,
}
EXIT_INPUT_ERROR = 2
EXIT_RULESET_ERROR = 6
EXIT_ENGINE_ERROR = 7

_STYLE = {
    Outcome.ELIGIBLE: "bold green",
    Outcome.NEEDS_REVIEW: "bold yellow",
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


@app.command()
def screen(
    patient_file: Annotated[Path, typer.Argument(help="Patient facts, YAML or JSON.")],
    ruleset: Annotated[Path | None, typer.Option(help="Ruleset file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    cross_check: Annotated[
        bool,
        typer.Option(
            "--cross-check", help="Also run the reference evaluator; fail if they disagree."
        ),
    ] = False,
    engine: Annotated[EngineChoice, typer.Option(help="Evaluator to use.")] = EngineChoice.durable,
) -> None:
    """Screen one patient for eligibility and print the decision with its reasons."""
    ruleset_path = ruleset or default_rulesets_dir() / DEFAULT_RULESET
    try:
        facts = load_patient(patient_file)
    except InputError as error:
        _fail(error, EXIT_INPUT_ERROR, as_json)
    except OSError as error:
        _fail(
            InputError("unreadable_file", f"cannot read `{patient_file}`: {error.strerror}"),
            EXIT_INPUT_ERROR,
            as_json,
        )
    try:
        evaluator = evaluator_for(ruleset_path, engine=engine.value, cross_check=cross_check)
    except RulesetError as error:
        _fail(error, EXIT_RULESET_ERROR, as_json)
    except OSError as error:
        _fail(
            RulesetError(
                "unreadable_file",
                f"cannot read ruleset `{ruleset_path}`: {(error.strerror or str(error)).lower()}",
                Location(file=str(ruleset_path)),
            ),
            EXIT_RULESET_ERROR,
            as_json,
        )
    try:
        evaluation = evaluator.evaluate(facts)
    except EngineError as error:
        _fail(error, EXIT_ENGINE_ERROR, as_json)
    with _reader_may_stop_early():
        if as_json:
            print(evaluation.to_json())
        else:
            _print_evaluation(evaluation, str(patient_file))
    raise typer.Exit(EXIT_CODES[evaluation.decision])


@app.command()
def check(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Ruleset files or directories (default: the rulesets directory)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print errors as JSON.")] = False,
) -> None:
    """Load and compile rulesets; report every error of every file, exit non-zero on any."""
    from .compiler import compile_ruleset

    files: list[Path] = []
    for path in paths or [default_rulesets_dir()]:
        if path.is_dir():
            files.extend(sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")))
        else:
            files.append(path)
    loaded, errors = load_rulesets(files)
    compiled = []
    for item in loaded:
        try:
            compiled.append(compile_ruleset(item))
        except RulesetError as error:
            errors.extend(getattr(error, "errors", [error]))
    if errors:
        _fail(list(errors), EXIT_RULESET_ERROR, as_json)
    if as_json:
        with _reader_may_stop_early():
            print(
                json.dumps(
                    {
                        "rulesets": [
                            {
                                "file": c.file,
                                "id": c.id,
                                "version": c.version,
                                "content_hash": c.content_hash,
                                "rules": len(c.rules),
                            }
                            for c in compiled
                        ]
                    },
                    indent=2,
                )
            )
        return
    console = _console()
    with _reader_may_stop_early():
        for c in compiled:
            console.print(
                f"[green]ok[/green] {escape(str(c.file))}: {c.id} {c.version}, "
                f"{len(c.rules)} rules, {c.content_hash}"
            )
        if not compiled:
            console.print("no ruleset files found")
    if not compiled:
        raise typer.Exit(EXIT_RULESET_ERROR)


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


def main() -> None:
    """Console entry point: never shows a traceback for an expected error."""
    try:
        app()
    except CdsRulesError as error:  # anything not handled by a command
        _console(stderr=True).print(f"[red]error[/red] {escape(str(error))}")
        sys.exit(EXIT_ENGINE_ERROR if isinstance(error, EngineError) else EXIT_INPUT_ERROR)
