"""The fact model as the compiler and both evaluators see it: fact types and their fields.

Base fact types come from the records in ``records.py``; derived fact types from a ruleset's
``derived`` section. Each field has a kind (number, boolean, text, score), and text fields may
have a closed set of allowed values.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from .records import RECORD_TYPES, Record, Score

__all__ = ["DERIVED_PREFIX", "POSSIBLE_PREFIX", "FactType", "FieldInfo", "Kind", "base_fact_types"]

Kind = Literal["number", "boolean", "text", "score"]

#: Engine type tags of derived facts: established (certain) and not ruled out (possible).
DERIVED_PREFIX = "d:"
POSSIBLE_PREFIX = "pd:"


@dataclass(frozen=True)
class FieldInfo:
    """One field a rule may test."""

    name: str
    kind: Kind
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class FactType:
    """A fact type: a base record type or a ruleset's derived fact."""

    name: str
    fields: dict[str, FieldInfo]
    derived: bool
    title: str = ""


def _field_info(name: str, annotation: Any) -> FieldInfo:
    options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = options
    if annotation is Score:
        return FieldInfo(name, "score")
    if annotation is bool:
        return FieldInfo(name, "boolean")
    if annotation in (int, float):
        return FieldInfo(name, "number")
    if annotation is str:
        return FieldInfo(name, "text")
    if typing.get_origin(annotation) is Literal:
        return FieldInfo(name, "text", tuple(str(arg) for arg in typing.get_args(annotation)))
    raise TypeError(f"record field `{name}` has a type rules cannot test: {annotation!r}")


def _record_fact_type(record: type[Record]) -> FactType:
    fields = {
        name: _field_info(name, info.annotation)
        for name, info in record.model_fields.items()
        if name != "placeholder"
    }
    return FactType(record.fact_type, fields, derived=False, title=record.__doc__ or "")


def base_fact_types() -> dict[str, FactType]:
    """The fact types built from the records, keyed by name."""
    return {name: _record_fact_type(record) for name, record in RECORD_TYPES.items()}
