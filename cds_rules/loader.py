"""Load ruleset YAML files into ``RulesetSpec`` models, reporting every error with its place.

Loading checks shape (unknown fields, missing fields, wrong kinds of values, malformed
conditions). Whether paths and values make sense against the fact model is the compiler's job.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import spec as _spec
from .errors import RulesetError, RulesetErrors
from .spec import OPERATORS, AllSpec, AnySpec, ConditionSpec, LeafSpec, RulesetSpec
from .yamlio import Positions, YamlDocument, load_yaml_text, read_utf8

__all__ = ["LoadedRuleset", "did_you_mean", "load_ruleset", "load_ruleset_text", "load_rulesets"]

#: Stop collecting after this many errors in one file: past it, most are consequences.
MAX_ERRORS_PER_FILE = 100


@dataclass(frozen=True)
class LoadedRuleset:
    """A validated ruleset spec, the text it came from, and where each part of it stands."""

    spec: RulesetSpec
    positions: Positions
    text: str
    file: str | None


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest choice, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def _all_field_names() -> set[str]:
    names: set[str] = set()
    for value in vars(_spec).values():
        if isinstance(value, type) and issubclass(value, BaseModel):
            for name, info in value.model_fields.items():
                names.add(info.alias or name)
    return names


_FIELD_NAMES = _all_field_names()

_CODES = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "enum": "invalid_value",
    "literal_error": "invalid_value",
    "string_pattern_mismatch": "invalid_format",
    "too_short": "empty",
    "string_too_short": "empty",
}


class _ConditionParser:
    """Turns the compact YAML condition syntax into condition specs, collecting errors."""

    def __init__(self, positions: Positions, errors: list[RulesetError]) -> None:
        self.positions = positions
        self.errors = errors

    def _error(
        self,
        code: str,
        message: str,
        parts: tuple[str | int, ...],
        hint: str | None = None,
        key: bool = False,
    ) -> None:
        self.errors.append(self.positions.error(code, message, parts, hint, key))

    def parse(self, node: Any, parts: tuple[str | int, ...]) -> ConditionSpec | None:
        if not isinstance(node, dict) or len(node) != 1:
            self._error(
                "invalid_condition",
                "a condition is a mapping with exactly one key: `all`, `any` or a field path",
                parts,
                hint="write `- acr.widespread_pain_index: {gte: 7}`",
            )
            return None
        ((key, value),) = node.items()
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                self._error(
                    "invalid_condition",
                    f"`{key}` takes a non-empty list of conditions",
                    (*parts, key),
                )
                return None
            children = [
                self.parse(child, (*parts, key, index)) for index, child in enumerate(value)
            ]
            if any(child is None for child in children):
                return None
            return AllSpec(all=children) if key == "all" else AnySpec(any=children)  # type: ignore[arg-type]
        if not isinstance(key, str) or "." not in key:
            self._error(
                "invalid_condition",
                f"`{key}` is neither `all`, `any` nor a field path like `patient.weight_kg`",
                (*parts, str(key)),
                hint=did_you_mean(str(key), ["all", "any"]),
                key=True,
            )
            return None
        leaf_parts = (*parts, key)
        if not isinstance(value, dict) or len(value) != 1:
            self._error(
                "invalid_condition",
                f"the test of `{key}` is a mapping with one operator, like `{{gte: 7}}`",
                leaf_parts,
                hint=f"operators: {', '.join(OPERATORS)}",
            )
            return None
        ((operator, operand),) = value.items()
        if operator not in OPERATORS:
            self._error(
                "unknown_operator",
                f"unknown operator `{operator}`",
                (*leaf_parts, str(operator)),
                hint=did_you_mean(str(operator), OPERATORS) or f"operators: {', '.join(OPERATORS)}",
                key=True,
            )
            return None
        if isinstance(operand, dict):
            try:
                operand = _spec.ReferenceSpec.model_validate(operand)
            except ValidationError as error:
                self.errors.extend(_pydantic_errors(error, self.positions, (*leaf_parts, operator)))
                return None
        return LeafSpec(path=key, operator=operator, value=operand)


def _walk_existing(data: Any, loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """Keep the parts of a pydantic ``loc`` that exist in the data (drops union tags)."""
    parts: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            parts.append(part)
        elif isinstance(node, dict) and part == "assert_" and "assert" in node:
            node = node["assert"]
            parts.append("assert")
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            parts.append(part)
        elif isinstance(node, dict | list):
            continue
        else:
            break
    return tuple(parts)


def _pydantic_errors(
    error: ValidationError, positions: Positions, base: tuple[str | int, ...] = (), data: Any = None
) -> list[RulesetError]:
    found: list[RulesetError] = []
    for item in error.errors():
        loc = tuple(item["loc"])
        kind = item["type"]
        code = _CODES.get(kind, "invalid_value" if "parsing" in kind or "type" in kind else kind)
        parts = base + (
            _walk_existing(data, loc)
            if data is not None
            else tuple(part for part in loc if isinstance(part, str | int))
        )
        hint = None
        if kind == "extra_forbidden":
            name = str(loc[-1])
            message = f"unknown field `{name}`"
            hint = did_you_mean(name, _FIELD_NAMES)
            parts = (*parts[:-1], name) if parts and parts[-1] == name else (*parts, name)
            location = positions.location(parts, key=True)
        elif kind == "missing":
            message = f"missing required field `{loc[-1]}`"
            location = positions.location(parts)
            location = type(location)(
                location.file, location.line, location.column, location.path + f".{loc[-1]}"
            )
        else:
            given = item.get("input")
            shown = f" `{given}`" if isinstance(given, str | int | float | bool) else ""
            message = f"invalid value{shown}: {item['msg'][0].lower()}{item['msg'][1:]}"
            location = positions.location(parts)
        found.append(RulesetError(code, message, location, hint))
    return found


def load_ruleset_text(text: str, file: str | None = None) -> LoadedRuleset:
    """Validate one ruleset document; raise ``RulesetErrors`` with every problem found."""
    document: YamlDocument = load_yaml_text(text, file)
    data = document.data
    errors: list[RulesetError] = []
    if not isinstance(data, dict):
        raise RulesetErrors(
            [
                RulesetError(
                    "invalid_ruleset",
                    "a ruleset file is a YAML mapping",
                    document.positions.location(()),
                )
            ]
        )
    parser = _ConditionParser(document.positions, errors)
    prepared = dict(data)
    rules = data.get("rules")
    if isinstance(rules, list):
        prepared_rules: list[Any] = []
        for index, rule in enumerate(rules):
            if isinstance(rule, dict) and "when" in rule:
                condition = parser.parse(rule["when"], ("rules", index, "when"))
                rule = {**rule, "when": condition if condition is not None else {"all": []}}
            prepared_rules.append(rule)
        prepared["rules"] = prepared_rules
    try:
        spec = RulesetSpec.model_validate(prepared)
    except ValidationError as error:
        for found in _pydantic_errors(error, document.positions, data=data):
            # a condition already reported by the parser shows up again as an empty `all`
            if ".when" in found.location.path and any(
                e.location.path.startswith(found.location.path.split(".when")[0] + ".when")
                for e in errors
            ):
                continue
            errors.append(found)
        raise RulesetErrors(errors[:MAX_ERRORS_PER_FILE]) from None
    if errors:
        raise RulesetErrors(errors[:MAX_ERRORS_PER_FILE])
    return LoadedRuleset(spec, document.positions, text, file)


def load_ruleset(path: Path | str) -> LoadedRuleset:
    """Read and validate one ruleset file."""
    path = Path(path)
    try:
        text = read_utf8(path)
    except OSError as error:
        raise RulesetErrors(
            [
                RulesetError(
                    "unreadable_file", f"cannot read file: {error.strerror}", _location(str(path))
                )
            ]
        ) from None
    except RulesetError as error:  # `invalid_encoding`: the file is not UTF-8
        raise RulesetErrors([error]) from None
    return load_ruleset_text(text, str(path))


def _location(file: str) -> Any:
    from .errors import Location

    return Location(file=file)


def load_rulesets(paths: Iterable[Path | str]) -> tuple[list[LoadedRuleset], list[RulesetError]]:
    """Load many files, returning what loaded and every error of every file (never stopping)."""
    loaded: list[LoadedRuleset] = []
    errors: list[RulesetError] = []
    for path in paths:
        try:
            loaded.append(load_ruleset(path))
        except RulesetErrors as group:
            errors.extend(e for e in group.errors if isinstance(e, RulesetError))
        except RulesetError as error:
            errors.append(error)
    return loaded, errors
