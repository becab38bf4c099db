"""An independent evaluator of compiled rulesets, in plain Python.

It reads the compiled condition trees (not the engine JSON) and evaluates them over the typed
records with Kleene three-valued logic, rule by rule in dependency order. It shares no matching
code with the durable-rules path, so running both on the same patient and comparing firings
checks the engine, and it is the fallback should durable-rules stop building.
"""

from __future__ import annotations

import itertools
import operator as _operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .compiler import (
    CompiledAll,
    CompiledAny,
    CompiledCondition,
    CompiledLeaf,
    CompiledRuleset,
    derived_key,
    derived_values,
)
from .records import Record, Score

__all__ = [
    "REFERENCE_NAME",
    "BoundFact",
    "ReferenceEvaluator",
    "ReferenceFiring",
    "ReferenceRun",
    "Truth",
    "evaluate_condition",
]

REFERENCE_NAME = "reference evaluator"


class Truth(Enum):
    """Kleene truth values."""

    FALSE = 0
    UNKNOWN = 1
    TRUE = 2


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _operator.eq,
    "ne": _operator.ne,
    "lt": _operator.lt,
    "lte": _operator.le,
    "gt": _operator.gt,
    "gte": _operator.ge,
}


@dataclass(frozen=True)
class BoundFact:
    """A fact as conditions see it: its identity and its field values."""

    key: str
    values: dict[str, Any]


@dataclass(frozen=True)
class ReferenceFiring:
    rule_index: int
    variant: str
    matched: dict[str, str]


@dataclass
class ReferenceRun:
    firings: list[ReferenceFiring] = field(default_factory=list)
    #: (key, rule index, certain?) for every derived fact asserted.
    derived: list[tuple[str, int, bool]] = field(default_factory=list)


def _as_number(value: Any) -> Any:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _score_truth(score: Score, op: str, constant: float) -> Truth:
    low, high = score.minimum, score.maximum
    if op == "eq":
        if low == high == constant:
            return Truth.TRUE
        return Truth.UNKNOWN if low <= constant <= high else Truth.FALSE
    if op == "ne":
        if constant < low or constant > high:
            return Truth.TRUE
        return Truth.FALSE if low == high == constant else Truth.UNKNOWN
    compare = _COMPARE[op]
    results = {compare(low, constant), compare(high, constant)}
    if results == {True}:
        return Truth.TRUE
    return Truth.FALSE if results == {False} else Truth.UNKNOWN


def _leaf_truth(leaf: CompiledLeaf, binding: dict[str, BoundFact]) -> Truth:
    value = binding[leaf.alias].values.get(leaf.field.name)
    if leaf.field.kind == "score":
        assert isinstance(value, Score)
        return _score_truth(value, leaf.operator, float(leaf.value))
    if leaf.operator == "recorded":
        return Truth.TRUE if value is not None else Truth.UNKNOWN
    if value is None:
        return Truth.UNKNOWN
    value = _as_number(value)
    if leaf.operator in ("in", "not_in"):
        inside = value in {_as_number(v) for v in leaf.value}
        return Truth.TRUE if inside == (leaf.operator == "in") else Truth.FALSE
    if leaf.reference is not None:
        other = binding[leaf.reference.alias].values.get(leaf.reference.field)
        if other is None:
            return Truth.UNKNOWN
        rhs = _as_number(other)
        if (leaf.reference.times, leaf.reference.plus) != (1, 0):
            rhs = rhs * leaf.reference.times + leaf.reference.plus
    else:
        rhs = _as_number(leaf.value)
    return Truth.TRUE if _COMPARE[leaf.operator](value, rhs) else Truth.FALSE


def evaluate_condition(condition: CompiledCondition, binding: dict[str, BoundFact]) -> Truth:
    """Kleene evaluation of a condition tree over one binding of aliases to facts."""
    if isinstance(condition, CompiledLeaf):
        return _leaf_truth(condition, binding)
    truths = [evaluate_condition(child, binding) for child in condition.children]
    if isinstance(condition, CompiledAll):
        return min(truths, key=lambda t: t.value)
    assert isinstance(condition, CompiledAny)
    return max(truths, key=lambda t: t.value)


def _reader(binding: dict[str, BoundFact]) -> Callable[[str, str], Any]:
    def read(alias: str, name: str) -> Any:
        return binding[alias].values.get(name)

    return read


class ReferenceEvaluator:
    """Evaluates a compiled ruleset without durable-rules."""

    def __init__(self, compiled: CompiledRuleset) -> None:
        self._compiled = compiled

    def run(self, facts: Sequence[tuple[str, Record]]) -> ReferenceRun:
        """Evaluate one patient's ``(key, record)`` pairs; same contract as the engine's run."""
        compiled = self._compiled
        by_type: dict[str, list[BoundFact]] = {}
        for key, record in facts:
            by_type.setdefault(record.fact_type, []).append(BoundFact(key, record.rule_fields()))
        derived: dict[bool, dict[str, list[BoundFact]]] = {True: {}, False: {}}
        seen: set[tuple[bool, str]] = set()
        run = ReferenceRun()
        for index in compiled.order:
            rule = compiled.rules[index]
            for certain in (True, False):
                pools = [
                    derived[certain].get(fact_type.name, [])
                    if fact_type.derived
                    else by_type.get(fact_type.name, [])
                    for _, fact_type in rule.patterns
                ]
                aliases = [alias for alias, _ in rule.patterns]
                for combination in itertools.product(*pools):
                    if len({id(fact) for fact in combination}) < len(combination):
                        continue  # one fact never fills two patterns of one rule
                    binding = dict(zip(aliases, combination, strict=True))
                    truth = evaluate_condition(rule.condition, binding)
                    if truth is Truth.FALSE or (certain and truth is not Truth.TRUE):
                        continue
                    run.firings.append(
                        ReferenceFiring(
                            index,
                            "certain" if certain else "possible",
                            {alias: fact.key for alias, fact in binding.items()},
                        )
                    )
                    if rule.asserts is None:
                        continue
                    values = derived_values(rule.asserts, _reader(binding))
                    key = derived_key(rule.asserts.fact, values)
                    if (certain, key) in seen:
                        continue
                    seen.add((certain, key))
                    run.derived.append((key, index, certain))
                    derived[certain].setdefault(rule.asserts.fact, []).append(
                        BoundFact(key, values)
                    )
        return run
