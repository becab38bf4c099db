"""YAML reading that keeps positions and refuses duplicate keys and oversized documents.

PyYAML silently keeps the last of two equal keys; in a clinical threshold file that is a silent
wrong dose, so a duplicate is an error here. Every mapping, sequence and scalar keeps the line and
column where it starts, so later stages can point an author at the exact place of a problem.

A document is refused while it is composed, before any Python data is built, when it nests
deeper than :data:`MAX_DEPTH` (deeper nesting would exhaust Python's stack), uses more than
:data:`MAX_ALIASES` aliases, or would expand to more than :data:`MAX_NODES` nodes (a few hundred
bytes of nested aliases can expand to billions of nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from .errors import Location, RulesetError

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_NODES",
    "Positions",
    "YamlDocument",
    "json_path",
    "load_yaml_text",
    "read_utf8",
]

#: Deepest nesting of mappings and sequences accepted in one document (JSON patients too).
MAX_DEPTH = 100
#: Most aliases (``*name``) accepted in one document.
MAX_ALIASES = 100
#: Most nodes one document may hold once every alias is expanded (keys count as nodes).
MAX_NODES = 100_000


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

    def error(
        self,
        code: str,
        message: str,
        parts: tuple[str | int, ...],
        hint: str | None = None,
        key: bool = False,
    ) -> RulesetError:
        """A ruleset error placed at the value (or, with ``key``, the key) at ``parts``."""
        return RulesetError(code, message, self.location(parts, key=key), hint)

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


_Mark = Any  # a PyYAML mark (pure-Python or libyaml) with 0-based line and column, or None


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document beyond the limits while composing it.

    Each node's size counts the nodes beneath it with every alias expanded, so an alias adds
    the size of the node it names; composing itself never expands an alias.
    """

    def __init__(self, text: str, file: str | None) -> None:
        super().__init__(text)
        self._file = file
        self._depth = 0
        self._aliases = 0
        self._nodes = 0
        self._sizes: dict[int, int] = {}

    def _refuse(self, code: str, message: str, mark: _Mark, hint: str) -> NoReturn:
        if mark is None:
            location = Location(self._file)
        else:
            location = Location(self._file, mark.line + 1, mark.column + 1)
        raise RulesetError(code, message, location, hint)

    def _add_nodes(self, count: int, mark: _Mark) -> None:
        self._nodes += count
        if self._nodes > MAX_NODES:
            self._refuse(
                "too_large",
                f"the document expands to more than {MAX_NODES} values",
                mark,
                "split the data or write repeated values out instead of using aliases",
            )

    def _next_mark(self) -> _Mark:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        return event.start_mark

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self._next_mark()
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                self._refuse(
                    "too_large",
                    f"the document uses more than {MAX_ALIASES} aliases",
                    mark,
                    "write the repeated values out instead of using `*` aliases",
                )
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:  # the alias names a collection that is still open: it contains it
                self._refuse(
                    "recursive_alias",
                    "an alias refers to a collection that contains it",
                    mark,
                    "a value cannot contain itself; write it out",
                )
            self._add_nodes(size, mark)
            return node
        mark = self._next_mark()
        nested = not self.check_event(yaml.ScalarEvent)
        if nested:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                self._refuse(
                    "too_deep",
                    f"mappings and lists are nested more than {MAX_DEPTH} levels deep",
                    mark,
                    "flatten the data; no valid input nests this deep",
                )
        before = self._nodes
        node = super().compose_node(parent, index)
        if nested:
            self._depth -= 1
        self._add_nodes(1, mark)
        if node is not None:
            self._sizes[id(node)] = self._nodes - before
        return node


def load_yaml_text(text: str, file: str | None = None) -> YamlDocument:
    """Parse one YAML document; raise ``RulesetError`` for syntax errors and duplicate keys.

    The caller decides which error family a problem belongs to: patient files convert these
    into input errors.
    """
    loader = _LimitedLoader(text, file)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        location = Location(
            file, mark.line + 1 if mark else None, mark.column + 1 if mark else None
        )
        hint = None
        if error.context and error.context_mark:
            hint = f"{error.context} started on line {error.context_mark.line + 1}"
        raise RulesetError("yaml_syntax", str(error.problem or error), location, hint) from None
    finally:
        loader.dispose()
    builder = _Builder(file)
    data = None if node is None else builder.build(node, ())
    if builder.errors:
        from .errors import RulesetErrors

        raise RulesetErrors(builder.errors)
    return YamlDocument(data, builder.positions)


def read_utf8(path: Path | str) -> str:
    """The text of a UTF-8 file, read as ``Path.read_text`` reads it.

    Raises ``OSError`` when the file cannot be read, and ``RulesetError`` ``invalid_encoding``
    with the line and column of the first byte that is not UTF-8 (patient files convert it
    into an input error).
    """
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        pass
    data = file.read_bytes()  # decoded again for the offset in the whole file
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line_start = before.rfind(b"\n") + 1
        column = len(before[line_start:].decode("utf-8", errors="replace")) + 1
        raise RulesetError(
            "invalid_encoding",
            f"the file is not utf-8 text: byte `0x{data[error.start]:02x}` cannot be decoded",
            Location(str(path), before.count(b"\n") + 1, column),
            hint="save the file as utf-8",
        ) from None
    raise RulesetError(  # the file changed between the two reads
        "invalid_encoding",
        "the file is not utf-8 text",
        Location(str(path)),
        hint="save the file as utf-8",
    )


def load_yaml_file(path: Path) -> YamlDocument:
    """Read and parse a YAML file (see :func:`load_yaml_text`)."""
    return load_yaml_text(read_utf8(path), str(path))
