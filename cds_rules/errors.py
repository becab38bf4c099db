"""Errors of cds_rules, in two families that are never mixed.

    CdsRulesError                 base: code, location, message, hint
    ├── RulesetError              the rule author's error, found when loading/compiling YAML
    │   (raised as RulesetErrors, which carries every error of every file in one run)
    ├── InputError                the caller's error, found when validating patient facts
    │   (raised as InputErrors, which carries every problem found in the input)
    └── EngineError               the engine failed or disagreed with itself; fail closed
        └── CrossCheckError       durable-rules and the reference evaluator disagreed

Every error has a stable snake_case ``code`` that tests and clients match on, and knows where
it is: a file, line and column where there is one, and a JSON path such as
``$.rules[3].when.all[0]`` or ``$.demographics.weight_kg``. ``str(error)`` reads like
``rulesets/eligibility.yaml:42:7: unknown_field: unknown field `threshhold```.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "CdsRulesError",
    "CrossCheckError",
    "EngineError",
    "InputError",
    "InputErrors",
    "Location",
    "RulesetError",
    "RulesetErrors",
]


@dataclass(frozen=True)
class Location:
    """Where an error is: file, 1-based line and column (when known) and a JSON path."""

    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str = "$"

    def __str__(self) -> str:
        parts = [self.file] if self.file else []
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts) if parts else self.path


class CdsRulesError(Exception):
    """Base of every error raised by cds_rules."""

    def __init__(
        self, code: str, message: str, location: Location | None = None, hint: str | None = None
    ) -> None:
        self.code = code
        self.message = message
        self.location = location or Location()
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.location}: {self.code}: {self.message}"
        if self.location.file is not None and self.location.path != "$":
            text += f" (at {self.location.path})"
        if self.hint:
            text += f"; hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form for ``--json`` output and APIs."""
        return {
            "code": self.code,
            "message": self.message,
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "path": self.location.path,
            "hint": self.hint,
        }


class RulesetError(CdsRulesError):
    """A problem in a ruleset (the author's error), found at load or compile time."""


class InputError(CdsRulesError):
    """A problem in patient input (the caller's error), found before evaluation."""


class EngineError(CdsRulesError):
    """The rule engine failed; the evaluation produced no decision (fail closed)."""


class CrossCheckError(EngineError):
    """The durable-rules engine and the reference evaluator disagreed on a patient."""


class _ErrorGroup(CdsRulesError):
    """Several errors reported together, so an author or caller sees every problem at once."""

    member: type[CdsRulesError] = CdsRulesError

    def __init__(self, errors: Iterable[CdsRulesError]) -> None:
        self.errors: Sequence[CdsRulesError] = tuple(errors)
        first = self.errors[0] if self.errors else None
        count = len(self.errors)
        super().__init__(
            first.code if first else "no_errors",
            f"{count} error{'s' if count != 1 else ''}",
            first.location if first else None,
        )

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)


class RulesetErrors(_ErrorGroup, RulesetError):
    """Every ruleset error found in one load/compile run."""


class InputErrors(_ErrorGroup, InputError):
    """Every input error found in one patient file or object."""
