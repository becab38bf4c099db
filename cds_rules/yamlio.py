"""YAML reading that keeps positions and refuses duplicate keys.

PyYAML silently keeps the last of two equal keys; in a clinical threshold file that is a silent
wrong dose, so a duplicate is an error here. Every mapping, sequence and scalar keeps the line and
column where it starts, so later stages can point an author at the exact place of a problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Location, RulesetError

__all__ = ["Positions", "YamlDocument", "json_path", "load_yaml_text"]


def json_path(parts: tuple[str | int, ...]) -> str:
    """Render path parts as a JSON path: ``$.rules[3].when.all[0]``."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            text += f".{part}"
        else:
            text += f"[{part!r}]"
    return text


@dataclass
class Positions:
    """Map from path parts to the 1-based (line, column) where that value starts."""

    file: str | None
    _starts: dict[tuple[str | int, ...], tuple[int, int]] = field(default_factory=dict)
    _keys: dict[tuple[str | int, ...], tuple[int, int]] = field(default_factory=dict)

    def __contains__(self, parts: object) -> bool:
        return parts in self._starts

    def location(self, parts: tuple[str | int, ...], *, key: bool = False) -> Location:
        """Location of the value at ``parts``, or of its key; falls back to the nearest parent."""
        probe = parts
        while True:
            table = self._keys if key and probe == parts else self._starts
            if probe in table:
                line, column = table[probe]
                return Location(self.file, line, column, json_path(parts))
            if not probe:
                return Location(self.file, None, None, json_path(parts))
            probe = probe[:-1]


@dataclass
class YamlDocument:
    """Parsed YAML data with the positions of every node."""

    data: Any
    positions: Positions


class _Builder:
    def __init__(self, file: str | None) -> None:
        self.positions = Positions(file)
        self.errors: list[RulesetError] = []
        self._scalars = yaml.SafeLoader("")

    def build(self, node: yaml.Node, parts: tuple[str | int, ...]) -> Any:
        self.positions._starts[parts] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, (*parts, "<key>"))
                if not isinstance(key, str | int | float | bool):
                    self.errors.append(
                        RulesetError(
                            "invalid_key",
                            "mapping keys must be plain scalars",
                            self.positions.location(parts),
                        )
                    )
                    continue
                child = (*parts, str(key))
                key_position = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in result:
                    first_line = self.positions._keys[child][0]
                    self.errors.append(
                        RulesetError(
                            "duplicate_key",
                            f"duplicate key `{key}` (first defined on line {first_line})",
                            Location(self.positions.file, *key_position, json_path(child)),
                            hint="remove one of them; YAML would silently keep the last",
                        )
                    )
                    continue
                self.positions._keys[child] = key_position
                result[key] = self.build(value_node, child)
            self.positions._starts.pop((*parts, "<key>"), None)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*parts, index)) for index, item in enumerate(node.value)]
        try:
            return self._scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as error:  # an unknown tag, an impossible date
            problem = getattr(error, "problem", None) or str(error)
            self.errors.append(
                RulesetError(
                    "invalid_value",
                    f"cannot read `{node.value}`: {str(problem).lower()}",
                    self.positions.location(parts),
                )
            )
            return None


def load_yaml_text(text: str, file: str | None = None) -> YamlDocument:
    """Parse one YAML document; raise ``RulesetError`` for syntax errors and duplicate keys.

    The caller decides which error family a problem belongs to: patient files convert these
    into input errors.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        location = Location(
            file, mark.line + 1 if mark else None, mark.column + 1 if mark else None
        )
        hint = None
        if error.context and error.context_mark:
            hint = f"{error.context} started on line {error.context_mark.line + 1}"
        raise RulesetError("yaml_syntax", str(error.problem or error), location, hint) from None
    builder = _Builder(file)
    data = None if node is None else builder.build(node, ())
    if builder.errors:
        from .errors import RulesetErrors

        raise RulesetErrors(builder.errors)
    return YamlDocument(data, builder.positions)


def load_yaml_file(path: Path) -> YamlDocument:
    """Read and parse a YAML file (see :func:`load_yaml_text`)."""
    return load_yaml_text(path.read_text(encoding="utf-8"), str(path))
