"""Compile a ruleset spec into a ``CompiledRuleset``: checked, engine-ready and content-hashed.

Compiling is an ordered list of named stages that add to one error list, so an author sees every
problem of a file in one run. Everything slow or risky happens here, once: resolving field paths
and types, ordering rules for forward chaining, emitting durable-rules' JSON and hashing.

Three-valued logic. A fact field may be unknown, and an instrument score may be known only
within bounds. Each rule therefore compiles twice: a *certain* variant that fires when the
condition is TRUE, and a *possible* variant that fires when it is not FALSE. A rule whose
possible variant fired but whose certain variant did not is UNKNOWN: its result depends on
missing data, which the evaluation reports by path. Derived facts follow the same split:
certain firings assert ``d:<name>``, possible firings assert ``pd:<name>``. No rule uses the
engine's ``$not`` or relies on a missing attribute: every test is on an explicit
``<field>__known`` flag or on score bounds ``<field>__min``/``__max``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import Location, RulesetError, RulesetErrors
from .loader import LoadedRuleset, did_you_mean
from .model import DERIVED_PREFIX, POSSIBLE_PREFIX, FactType, FieldInfo, base_fact_types
from .spec import (
    AllSpec,
    AnySpec,
    ConditionSpec,
    CriterionSpec,
    Evidence,
    FindingSpec,
    LeafSpec,
    Outcome,
    ReferenceSpec,
    RuleSpec,
    SourceSpec,
)
from .yamlio import Positions

__all__ = [
    "COMPILER_VERSION",
    "CompiledAll",
    "CompiledAny",
    "CompiledAssert",
    "CompiledCondition",
    "CompiledLeaf",
    "CompiledReference",
    "CompiledRule",
    "CompiledRuleset",
    "EngineRule",
    "compile_ruleset",
    "derived_key",
    "derived_values",
    "engine_value",
]

#: Bumped whenever the compiled form of the same YAML changes; part of the content hash.
COMPILER_VERSION = "1"

#: durable-rules refuses or misbehaves past these; refuse at compile time instead.
MAX_PATTERNS_PER_RULE = 16
MAX_PROPERTIES_PER_FACT = 250
#: Ruleset creation hangs past ~512 distinct tests under one engine node; keep well clear.
MAX_TESTS_PER_FACT_TYPE = 400
MAX_ALTERNATIVES_PER_RULE = 32
MAX_LIST_VALUES = 64
#: Stop compiling a file after this many errors.
MAX_ERRORS = 100

Variant = Literal["certain", "possible"]
SENTINEL_RULE = "sentinel"
SENTINEL_TYPE = "$sentinel"
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\}")


@dataclass(frozen=True)
class CompiledReference:
    """A value taken from another matched fact: ``alias.field * times + plus``."""

    alias: str
    field: str
    times: float
    plus: float


@dataclass(frozen=True)
class CompiledLeaf:
    """One resolved, type-checked test."""

    alias: str
    field: FieldInfo
    operator: str
    value: Any
    reference: CompiledReference | None
    path: str


@dataclass(frozen=True)
class CompiledAll:
    children: tuple[CompiledCondition, ...]


@dataclass(frozen=True)
class CompiledAny:
    children: tuple[CompiledCondition, ...]


CompiledCondition = CompiledAll | CompiledAny | CompiledLeaf


@dataclass(frozen=True)
class CompiledAssert:
    """A derived fact to assert, with literal or referenced property values."""

    fact: str
    values: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class CompiledRule:
    """A rule resolved against the fact model."""

    index: int
    id: str
    title: str
    sources: tuple[str, ...]
    evidence: Evidence
    patterns: tuple[tuple[str, FactType], ...]
    condition: CompiledCondition
    asserts: CompiledAssert | None
    finding: FindingSpec | None
    on_missing: Outcome | None
    leaves: tuple[CompiledLeaf, ...]
    location: Location
    #: The drugs this rule's finding is about; empty: the whole protocol.
    drugs: tuple[str, ...] = ()

    def consumes(self) -> tuple[str, ...]:
        """Derived facts this rule's patterns need."""
        return tuple(fact_type.name for _, fact_type in self.patterns if fact_type.derived)


@dataclass(frozen=True)
class EngineRule:
    """One durable-rules rule: a variant of a ruleset rule, for one alternative of its condition."""

    name: str
    rule_index: int
    variant: Variant
    aliases: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class CompiledRuleset:
    """A checked ruleset, ready to evaluate many patients. Immutable; safe to share."""

    id: str
    version: str
    title: str
    content_hash: str
    file: str | None
    sources: dict[str, SourceSpec]
    fact_types: dict[str, FactType]
    criteria: tuple[CriterionSpec, ...]
    rules: tuple[CompiledRule, ...]
    #: Rule indexes in dependency order: a rule comes after every rule asserting what it needs.
    order: tuple[int, ...]
    engine_rules: dict[str, EngineRule]
    #: durable-rules JSON ruleset (``run`` is bound by the engine module).
    engine_definition: dict[str, Any]
    role: Literal["decision", "module"] = "decision"

    @property
    def label(self) -> str:
        return f"{self.id} {self.version} ({self.content_hash.removeprefix('sha256:')[:12]})"


# --------------------------------------------------------------------------------------------
# Formulas: a condition rendered for one variant, before splitting into engine patterns.


@dataclass(frozen=True)
class _Atom:
    alias: str
    test: dict[str, Any]


@dataclass(frozen=True)
class _And:
    items: tuple[_Formula, ...]


@dataclass(frozen=True)
class _Or:
    items: tuple[_Formula, ...]


@dataclass(frozen=True)
class _True:
    pass


_Formula = _Atom | _And | _Or | _True
_OPS = {"ne": "$neq", "lt": "$lt", "lte": "$lte", "gt": "$gt", "gte": "$gte"}
_FLIP = {"lt": "gt", "lte": "gte", "gt": "lt", "gte": "lte"}


def engine_value(value: Any) -> Any:
    """Normalise a value as the engine must see it: numbers as floats (never text)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"not an engine value: {value!r}")


def derived_values(asserts: CompiledAssert, lookup: Callable[[str, str], Any]) -> dict[str, Any]:
    """Property values of a derived fact, reading referenced fields through ``lookup``.

    ``lookup(alias, field)`` returns a matched fact's field value, or None when unknown.
    """
    values: dict[str, Any] = {}
    for name, given in asserts.values:
        if isinstance(given, CompiledReference):
            found = lookup(given.alias, given.field)
            if found is not None and (given.times, given.plus) != (1, 0):
                found = found * given.times + given.plus
            values[name] = found
        else:
            values[name] = given
    return values


def derived_key(fact: str, values: dict[str, Any]) -> str:
    """Identity of a derived fact, the same in every evaluator: name and sorted properties."""
    normal = {k: engine_value(v) for k, v in sorted(values.items())}
    return f"{fact}{json.dumps(normal, sort_keys=True, separators=(',', ':'))}"


def _pattern_name(alias: str) -> str:
    return f"x_{alias}"


def _compare(operator: str, prop: str, rhs: Any) -> dict[str, Any]:
    if operator == "eq":
        return {prop: rhs}
    return {_OPS[operator]: {prop: rhs}}


def _reference_rhs(reference: CompiledReference) -> Any:
    rhs: Any = {_pattern_name(reference.alias): reference.field}
    if reference.times != 1.0:
        rhs = {"$mul": {"$l": rhs, "$r": float(reference.times)}}
    if reference.plus != 0.0:
        rhs = {"$add": {"$l": rhs, "$r": float(reference.plus)}}
    return rhs


def _value_test(leaf: CompiledLeaf) -> dict[str, Any]:
    name = leaf.field.name
    if leaf.operator == "in":
        tests = [{name: engine_value(v)} for v in leaf.value]
        return tests[0] if len(tests) == 1 else {"$or": tests}
    if leaf.operator == "not_in":
        tests = [{"$neq": {name: engine_value(v)}} for v in leaf.value]
        return tests[0] if len(tests) == 1 else {"$and": tests}
    rhs = _reference_rhs(leaf.reference) if leaf.reference else engine_value(leaf.value)
    return _compare(leaf.operator, name, rhs)


def _score_formula(leaf: CompiledLeaf, variant: Variant) -> _Formula:
    """Score comparisons on bounds: certain uses the bound that must hold, possible the other."""
    low, high, c = f"{leaf.field.name}__min", f"{leaf.field.name}__max", engine_value(leaf.value)
    alias, op = leaf.alias, leaf.operator
    certain = variant == "certain"
    if op in ("gt", "gte"):
        return _Atom(alias, _compare(op, low if certain else high, c))
    if op in ("lt", "lte"):
        return _Atom(alias, _compare(op, high if certain else low, c))
    if op == "eq":
        if certain:
            return _And((_Atom(alias, {low: c}), _Atom(alias, {high: c})))
        return _And((_Atom(alias, {"$lte": {low: c}}), _Atom(alias, {"$gte": {high: c}})))
    # ne
    if certain:
        return _Or((_Atom(alias, {"$lt": {high: c}}), _Atom(alias, {"$gt": {low: c}})))
    return _Or((_Atom(alias, {"$neq": {low: c}}), _Atom(alias, {"$neq": {high: c}})))


def _leaf_formula(leaf: CompiledLeaf, variant: Variant) -> _Formula:
    if leaf.field.kind == "score":
        return _score_formula(leaf, variant)
    known = f"{leaf.field.name}__known"
    if leaf.operator == "recorded":
        return _Atom(leaf.alias, {known: True}) if variant == "certain" else _True()
    reference = leaf.reference
    if variant == "certain":
        items: list[_Formula] = [_Atom(leaf.alias, {known: True})]
        if reference:
            items.append(_Atom(reference.alias, {f"{reference.field}__known": True}))
        items.append(_Atom(leaf.alias, _value_test(leaf)))
        return _And(tuple(items))
    alternatives: list[_Formula] = [_Atom(leaf.alias, {known: False})]
    if reference:
        alternatives.append(_Atom(reference.alias, {f"{reference.field}__known": False}))
    alternatives.append(_Atom(leaf.alias, _value_test(leaf)))
    return _Or(tuple(alternatives))


def _formula(condition: CompiledCondition, variant: Variant) -> _Formula:
    if isinstance(condition, CompiledLeaf):
        return _leaf_formula(condition, variant)
    items = tuple(_formula(child, variant) for child in condition.children)
    return _And(items) if isinstance(condition, CompiledAll) else _Or(items)


def _aliases(formula: _Formula) -> frozenset[str]:
    if isinstance(formula, _Atom):
        return frozenset((formula.alias,))
    if isinstance(formula, _True):
        return frozenset()
    return frozenset().union(*(_aliases(item) for item in formula.items))


def _render(formula: _Formula) -> dict[str, Any] | None:
    """One engine expression for a formula on a single pattern; None means no constraint."""
    if isinstance(formula, _Atom):
        return formula.test
    if isinstance(formula, _True):
        return None
    rendered = [_render(item) for item in formula.items]
    if isinstance(formula, _Or):
        if any(item is None for item in rendered):
            return None
        return rendered[0] if len(rendered) == 1 else {"$or": rendered}
    kept = [item for item in rendered if item is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else {"$and": kept}


_Conjunction = dict[str, list[dict[str, Any]]]


def _is_join(test: Any) -> bool:
    """Whether an engine test reads another pattern's field (``{"x_alias": "field"}``)."""
    if isinstance(test, dict):
        if len(test) == 1:
            ((key, value),) = test.items()
            if key.startswith("x_") and isinstance(value, str):
                return True
        return any(_is_join(value) for value in test.values())
    if isinstance(test, list):
        return any(_is_join(item) for item in test)
    return False


def _join_beside_compound_test(alternatives: list[_Conjunction]) -> str | None:
    """The alias of a pattern that holds a join next to an ``$and``/``$or`` test, if any.

    durable-rules 2.0.28 drops the join from such a pattern: ``med.days_since_started <
    ecg.age_days`` with ``med.drug_class == "beta_blocker"`` on the same pattern fires for any
    ``days_since_started``. A join beside plain tests (``known`` flags) is evaluated correctly.
    """
    for alternative in alternatives:
        for alias, tests in alternative.items():
            joins = [test for test in tests if _is_join(test)]
            compound = [
                test for test in tests if not _is_join(test) and {"$and", "$or"} & set(test)
            ]
            if joins and compound:
                return alias
    return None


def _alternatives(formula: _Formula) -> list[_Conjunction]:
    """Disjunctive normal form at pattern level: OR splits only where it spans patterns."""
    aliases = _aliases(formula)
    if len(aliases) <= 1:
        rendered = _render(formula)
        if rendered is None:
            return [{}]
        return [{next(iter(aliases)): [rendered]}]
    if isinstance(formula, _Or):
        return [alt for item in formula.items for alt in _alternatives(item)]
    assert isinstance(formula, _And)
    result: list[_Conjunction] = [{}]
    for item in formula.items:
        merged: list[_Conjunction] = []
        for left, right in itertools.product(result, _alternatives(item)):
            combined = {alias: list(tests) for alias, tests in left.items()}
            for alias, tests in right.items():
                combined.setdefault(alias, []).extend(tests)
            merged.append(combined)
        result = merged
        if len(result) > MAX_ALTERNATIVES_PER_RULE:
            break
    return result


# --------------------------------------------------------------------------------------------
# Compile context and stages.


@dataclass
class _Context:
    loaded: LoadedRuleset
    #: Allowed values of text fields set by terminology tables: ``(fact type, field) -> values``.
    vocabulary: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    #: Drug names rules may name in ``drugs``; ``None`` accepts any.
    drugs: tuple[str, ...] | None = None
    errors: list[RulesetError] = field(default_factory=list)
    fact_types: dict[str, FactType] = field(default_factory=dict)
    rules: list[CompiledRule | None] = field(default_factory=list)
    order: tuple[int, ...] = ()
    engine_rules: dict[str, EngineRule] = field(default_factory=dict)
    engine_definition: dict[str, Any] = field(default_factory=dict)

    @property
    def positions(self) -> Positions:
        return self.loaded.positions

    def error(
        self,
        code: str,
        message: str,
        parts: tuple[str | int, ...],
        hint: str | None = None,
        key: bool = False,
    ) -> None:
        self.errors.append(self.positions.error(code, message, parts, hint, key))


def _stage_identity(ctx: _Context) -> None:
    seen: dict[str, int] = {}
    for index, rule in enumerate(ctx.loaded.spec.rules):
        if rule.id in seen:
            first = ctx.positions.location(("rules", seen[rule.id], "id")).line
            ctx.error(
                "duplicate_rule_id",
                f"rule id `{rule.id}` is already used on line {first}",
                ("rules", index, "id"),
            )
        seen.setdefault(rule.id, index)


def _stage_sources(ctx: _Context) -> None:
    registry = ctx.loaded.spec.sources
    for index, rule in enumerate(ctx.loaded.spec.rules):
        for position, source in enumerate(rule.sources):
            if source not in registry:
                ctx.error(
                    "unknown_source",
                    f"source `{source}` is not in the ruleset's sources",
                    ("rules", index, "sources", position),
                    did_you_mean(source, registry),
                )


def _stage_fact_types(ctx: _Context) -> None:
    base = base_fact_types()
    for (type_name, field_name), allowed in ctx.vocabulary.items():
        fact_type = base[type_name]
        info = fact_type.fields[field_name]
        fields = {**fact_type.fields, field_name: FieldInfo(info.name, info.kind, allowed)}
        base[type_name] = FactType(fact_type.name, fields, fact_type.derived, fact_type.title)
    ctx.fact_types = dict(base)
    for name, derived in ctx.loaded.spec.derived.items():
        if name in base:
            ctx.error(
                "derived_shadows_fact",
                f"derived fact `{name}` has the name of a fact type",
                ("derived", name),
                key=True,
            )
            continue
        fields = {prop: FieldInfo(prop, kind) for prop, kind in derived.properties.items()}
        ctx.fact_types[name] = FactType(name, fields, derived=True, title=derived.title)
    for name, fact_type in ctx.fact_types.items():
        properties = 4 + 2 * len(fact_type.fields)
        if properties > MAX_PROPERTIES_PER_FACT:
            ctx.error(
                "too_many_properties",
                f"fact type `{name}` would need {properties} engine properties "
                f"(limit {MAX_PROPERTIES_PER_FACT})",
                ("derived", name),
            )


class _RuleCompiler:
    def __init__(self, ctx: _Context, index: int, rule: RuleSpec) -> None:
        self.ctx = ctx
        self.index = index
        self.rule = rule
        self.base: tuple[str | int, ...] = ("rules", index)
        self.patterns: dict[str, FactType] = {}
        self.leaves: list[CompiledLeaf] = []
        self.failed = False

    def error(
        self,
        code: str,
        message: str,
        parts: tuple[str | int, ...],
        hint: str | None = None,
        key: bool = False,
    ) -> None:
        self.failed = True
        self.ctx.error(code, message, (*self.base, *parts), hint, key)

    def compile(self) -> CompiledRule | None:
        rule = self.rule
        if len(rule.requires) > MAX_PATTERNS_PER_RULE:
            self.error(
                "too_many_patterns",
                f"rule requires {len(rule.requires)} facts (limit {MAX_PATTERNS_PER_RULE})",
                ("requires",),
            )
        for alias, type_name in rule.requires.items():
            fact_type = self.ctx.fact_types.get(type_name)
            if fact_type is None:
                self.error(
                    "unknown_fact_type",
                    f"unknown fact type `{type_name}`",
                    _requires_parts(self.ctx, self.index, alias)[2:],
                    did_you_mean(type_name, self.ctx.fact_types),
                )
                continue
            self.patterns[alias] = fact_type
        condition = self.condition(rule.when, ("when",))
        asserts = self.asserts()
        self.finding(rule.then.finding)
        known_drugs = self.ctx.drugs
        for position, drug in enumerate(rule.drugs):
            if known_drugs is not None and drug not in known_drugs:
                self.error(
                    "unknown_drug",
                    f"unknown drug `{drug}`",
                    ("drugs", position),
                    did_you_mean(drug, known_drugs) or f"drugs: {', '.join(known_drugs)}",
                )
        if rule.drugs and rule.then.finding is None:
            self.error(
                "drugs_without_finding",
                "`drugs` names what a finding is about; this rule has no finding",
                ("drugs",),
            )
        if rule.then.assert_ is None and rule.then.finding is None:
            self.error(
                "rule_does_nothing", "a rule must `assert` a fact or emit a `finding`", ("then",)
            )
        on_missing = rule.on_missing
        finding = rule.then.finding
        acts = finding is not None and finding.action is not None
        if on_missing is None and finding and (finding.outcome != Outcome.INFO or acts):
            on_missing = Outcome.CANNOT_EVALUATE
        # A rule that holds, lowers or stops the next dose is decisive whatever its outcome:
        # missing data under it must not let the course escalate.
        floor = (
            Outcome.CANNOT_EVALUATE
            if acts
            else _missing_floor(finding.outcome if finding else None)
        )
        if on_missing is not None and on_missing.severity < floor.severity:
            self.error(
                "invalid_on_missing",
                f"`on_missing: {on_missing.value}` is less restrictive than this rule allows: "
                "missing data must not weaken the decision",
                ("on_missing",),
                f"use {floor.value} or a more restrictive outcome",
            )
        if self.failed or condition is None:
            return None
        return CompiledRule(
            index=self.index,
            id=rule.id,
            title=rule.title,
            sources=tuple(rule.sources),
            evidence=rule.evidence,
            patterns=tuple(self.patterns.items()),
            condition=condition,
            asserts=asserts,
            finding=rule.then.finding,
            on_missing=on_missing,
            leaves=tuple(self.leaves),
            location=self.ctx.positions.location(self.base),
            drugs=tuple(rule.drugs),
        )

    def resolve(
        self, path: str, parts: tuple[str | int, ...], key: bool
    ) -> tuple[str, FieldInfo] | None:
        alias, _, name = path.partition(".")
        fact_type = self.patterns.get(alias)
        if fact_type is None and alias in self.rule.requires:
            self.failed = True  # its fact type is unknown: already reported at `requires`
            return None
        if fact_type is None:
            self.error(
                "unknown_alias",
                f"`{alias}` is not a fact this rule requires (requires: "
                f"{', '.join(self.rule.requires)})",
                parts,
                did_you_mean(alias, self.rule.requires),
                key,
            )
            return None
        info = fact_type.fields.get(name)
        if info is None:
            self.error(
                "unknown_field",
                f"fact `{fact_type.name}` has no field `{name}`",
                parts,
                did_you_mean(name, fact_type.fields)
                or f"fields: {', '.join(fact_type.fields) or '(none)'}",
                key,
            )
            return None
        return alias, info

    def condition(
        self, node: ConditionSpec, parts: tuple[str | int, ...]
    ) -> CompiledCondition | None:
        if isinstance(node, AllSpec | AnySpec):
            key = "all" if isinstance(node, AllSpec) else "any"
            children = [
                self.condition(child, (*parts, key, i))
                for i, child in enumerate(node.all if isinstance(node, AllSpec) else node.any)
            ]
            if any(child is None for child in children):
                return None
            kept = tuple(c for c in children if c is not None)
            return CompiledAll(kept) if key == "all" else CompiledAny(kept)
        return self.leaf(node, (*parts, node.path))

    def leaf(self, leaf: LeafSpec, parts: tuple[str | int, ...]) -> CompiledLeaf | None:
        resolved = self.resolve(leaf.path, parts, key=True)
        if resolved is None:
            return None
        alias, info = resolved
        operator, value = leaf.operator, leaf.value
        value_parts = (*parts, operator)
        reference: CompiledReference | None = None
        if operator == "recorded":
            if value is not True:
                self.error("invalid_value", "`recorded` takes `true`", value_parts)
                return None
        elif operator in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                self.error("type_mismatch", f"`{operator}` takes a non-empty list", value_parts)
                return None
            if len(value) > MAX_LIST_VALUES:
                self.error(
                    "too_many_values",
                    f"`{operator}` lists {len(value)} values (limit {MAX_LIST_VALUES})",
                    value_parts,
                    "use a derived fact or a class table instead",
                )
                return None
            if info.kind == "score":
                self.error(
                    "invalid_operator", f"`{operator}` cannot test score `{leaf.path}`", value_parts
                )
                return None
            for position, item in enumerate(value):
                if not self.check_value(info, item, (*value_parts, position), leaf.path):
                    return None
            value = tuple(value)
        elif isinstance(value, ReferenceSpec):
            reference = self.reference(value, alias, info, value_parts)
            if reference is None:
                return None
        else:
            if operator in ("lt", "lte", "gt", "gte") and info.kind not in ("number", "score"):
                self.error(
                    "invalid_operator",
                    f"`{operator}` compares numbers; `{leaf.path}` is {info.kind}",
                    value_parts,
                    "use `eq`, `ne`, `in` or `not_in`",
                )
                return None
            if not self.check_value(info, value, value_parts, leaf.path):
                return None
        compiled = CompiledLeaf(alias, info, operator, value, reference, leaf.path)
        self.leaves.append(compiled)
        return compiled

    def check_value(
        self, info: FieldInfo, value: Any, parts: tuple[str | int, ...], path: str
    ) -> bool:
        kind = info.kind
        ok = (
            (
                kind in ("number", "score")
                and isinstance(value, int | float)
                and not isinstance(value, bool)
            )
            or (kind == "boolean" and isinstance(value, bool))
            or (kind == "text" and isinstance(value, str))
        )
        if not ok:
            shown = json.dumps(value)
            self.error(
                "type_mismatch",
                f"`{path}` is {'a number' if kind in ('number', 'score') else kind}; "
                f"`{shown}` is {_kind_of(value)}",
                parts,
                "write the number without quotes"
                if kind in ("number", "score") and isinstance(value, str)
                else None,
            )
            return False
        if kind in ("number", "score") and (abs(value) > 1e12 or "e" in repr(float(value))):
            self.error(
                "invalid_value",
                f"`{value}` is outside the numbers the engine can parse",
                parts,
                "write it as a plain decimal between 0.0001 and 10^12",
            )
            return False
        if info.allowed is not None and value not in info.allowed:
            self.error(
                "invalid_value",
                f"`{value}` is not a value of `{path}`",
                parts,
                did_you_mean(str(value), info.allowed) or f"values: {', '.join(info.allowed)}",
            )
            return False
        return True

    def reference(
        self, spec: ReferenceSpec, alias: str, info: FieldInfo, parts: tuple[str | int, ...]
    ) -> CompiledReference | None:
        resolved = self.resolve(spec.field, (*parts, "field"), key=False)
        if resolved is None:
            return None
        other_alias, other = resolved
        aliases = list(self.rule.requires)
        if other_alias == alias:
            self.error(
                "self_reference",
                "a field cannot be compared with its own fact's field",
                (*parts, "field"),
            )
            return None
        if aliases.index(other_alias) > aliases.index(alias):
            self.error(
                "reference_order",
                f"`{other_alias}` must be listed before `{alias}` in `requires` to be referenced",
                (*parts, "field"),
            )
            return None
        if "score" in (info.kind, other.kind):
            self.error(
                "invalid_operator",
                "scores cannot be compared with other facts' fields",
                (*parts, "field"),
            )
            return None
        if info.kind != other.kind or (info.kind != "number" and (spec.times, spec.plus) != (1, 0)):
            self.error(
                "type_mismatch",
                f"cannot compare {info.kind} with {other.kind} `{spec.field}`"
                + (" scaled" if (spec.times, spec.plus) != (1, 0) else ""),
                (*parts, "field"),
            )
            return None
        return CompiledReference(other_alias, other.name, spec.times, spec.plus)

    def asserts(self) -> CompiledAssert | None:
        spec = self.rule.then.assert_
        if spec is None:
            return None
        parts: tuple[str | int, ...] = ("then", "assert")
        target = self.ctx.fact_types.get(spec.fact)
        if target is None or not target.derived:
            derived = [n for n, t in self.ctx.fact_types.items() if t.derived]
            self.error(
                "unknown_derived_fact",
                f"`{spec.fact}` is not a declared derived fact",
                (*parts, "fact"),
                did_you_mean(spec.fact, derived) or "declare it under `derived:`",
            )
            return None
        values: list[tuple[str, Any]] = []
        for prop, given in spec.set.items():
            info = target.fields.get(prop)
            if info is None:
                self.error(
                    "unknown_field",
                    f"derived fact `{spec.fact}` has no property `{prop}`",
                    (*parts, "set", prop),
                    did_you_mean(prop, target.fields),
                    key=True,
                )
                continue
            if isinstance(given, ReferenceSpec):
                resolved = self.resolve(given.field, (*parts, "set", prop, "field"), key=False)
                if resolved is None:
                    continue
                other_alias, other = resolved
                if other.kind != info.kind or (
                    info.kind != "number" and (given.times, given.plus) != (1, 0)
                ):
                    self.error(
                        "type_mismatch",
                        f"`{prop}` is {info.kind}; `{given.field}` is {other.kind}",
                        (*parts, "set", prop),
                    )
                    continue
                values.append(
                    (prop, CompiledReference(other_alias, other.name, given.times, given.plus))
                )
            elif self.check_value(info, given, (*parts, "set", prop), f"{spec.fact}.{prop}"):
                values.append((prop, given))
        missing = set(target.fields) - set(spec.set)
        if missing:
            self.error(
                "missing_property",
                f"assert of `{spec.fact}` does not set {', '.join(sorted(missing))}",
                (*parts, "set"),
            )
        return CompiledAssert(spec.fact, tuple(values))

    def finding(self, finding: FindingSpec | None) -> None:
        if finding is None:
            return
        for match in _PLACEHOLDER.finditer(finding.message):
            self.resolve(
                f"{match.group(1)}.{match.group(2)}", ("then", "finding", "message"), key=False
            )
        if finding.subject is not None:
            self.resolve(finding.subject, ("then", "finding", "subject"), key=False)
        if finding.outcome == Outcome.ELIGIBLE:
            self.error(
                "invalid_outcome",
                "a finding cannot declare ELIGIBLE: eligibility comes only from criteria",
                ("then", "finding", "outcome"),
            )
        action = finding.action
        if action is not None:
            amounts = [
                name
                for name in ("lidocaine_mg_per_kg", "ketamine_mg")
                if getattr(action, name) is not None
            ]
            if action.next == "DEESCALATE" and len(amounts) < 2:
                self.error(
                    "invalid_action",
                    "a DEESCALATE action says by how much for each drug",
                    ("then", "finding", "action"),
                    "give `lidocaine_mg_per_kg` and `ketamine_mg` (negative numbers)",
                )
            elif action.next != "DEESCALATE" and amounts:
                self.error(
                    "invalid_action",
                    f"only DEESCALATE changes a dose; {action.next} cannot have `{amounts[0]}`",
                    ("then", "finding", "action", amounts[0]),
                )
        intra = finding.intra
        if intra is not None:
            where = ("then", "finding", "intra")
            if action is not None:
                self.error(
                    "invalid_action",
                    "a finding acts either now (`intra`) or on the next session (`action`)",
                    where,
                )
            if intra.action == "PAUSE" and intra.resume is None:
                self.error(
                    "invalid_action",
                    "a PAUSE says what lifts it",
                    where,
                    'add `resume:` (e.g. "SBP under 160 and rise at most 20%")',
                )
            if intra.action != "PAUSE" and (
                intra.resume is not None or intra.resume_rate_percent is not None
            ):
                self.error(
                    "invalid_action",
                    f"only a PAUSE resumes; {intra.action} cannot have `resume`",
                    where,
                )
            if (intra.action == "SLOW") != (intra.rate_percent is not None):
                self.error(
                    "invalid_action",
                    "a SLOW says to what rate (`rate_percent`), and only a SLOW does",
                    where,
                )
            if (intra.observe_rule is None) != (intra.observe_minutes is None):
                self.error(
                    "invalid_action",
                    "an observation time names its rule (`observe_rule`) and its minutes",
                    where,
                )


def _missing_floor(outcome: Outcome | None) -> Outcome:
    """The least restrictive outcome missing data may give under a rule with this finding.

    Missing data under a decisive rule or criterion never yields INFO or ELIGIBLE: at least
    NEEDS_REVIEW (the default is CANNOT_EVALUATE; an author may choose review, e.g. while the
    data's own requirement is handled by another rule).
    """
    if outcome is None or outcome == Outcome.INFO:
        return Outcome.INFO
    return Outcome.NEEDS_REVIEW


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def _stage_rules(ctx: _Context) -> None:
    ctx.rules = [
        _RuleCompiler(ctx, index, rule).compile()
        for index, rule in enumerate(ctx.loaded.spec.rules)
    ]


def _requires_parts(ctx: _Context, index: int, alias: str) -> tuple[str | int, ...]:
    """Path of one `requires` entry, whether written as a list or as an alias mapping."""
    requires = ctx.loaded.spec.rules[index].requires
    if ("rules", index, "requires", 0) in ctx.positions:
        return ("rules", index, "requires", list(requires).index(alias))
    return ("rules", index, "requires", alias)


def _stage_dependencies(ctx: _Context) -> None:
    """Order rules so a rule runs after every rule asserting what it needs; refuse cycles."""
    rules = [rule for rule in ctx.rules if rule is not None]
    # Facts some rule asserts, counting rules that failed to compile (already reported).
    declared = {r.then.assert_.fact for r in ctx.loaded.spec.rules if r.then.assert_}
    producers: dict[str, list[int]] = {}
    for rule in rules:
        if rule.asserts:
            producers.setdefault(rule.asserts.fact, []).append(rule.index)
    for rule in rules:
        for alias, fact_type in rule.patterns:
            if fact_type.derived and fact_type.name not in declared:
                ctx.error(
                    "never_asserted",
                    f"no rule asserts `{fact_type.name}`, so this rule can never fire",
                    _requires_parts(ctx, rule.index, alias),
                )
    for position, criterion in enumerate(ctx.loaded.spec.criteria):
        if criterion.if_not_established.severity < Outcome.NEEDS_REVIEW.severity:
            ctx.error(
                "invalid_outcome",
                f"`if_not_established: {criterion.if_not_established.value}` would let a patient "
                "through without this criterion",
                ("criteria", position, "if_not_established"),
                "use NEEDS_REVIEW, CANNOT_EVALUATE or INELIGIBLE",
            )
        floor = _missing_floor(criterion.if_not_established)
        if criterion.if_unknown.severity < floor.severity:
            ctx.error(
                "invalid_outcome",
                f"`if_unknown: {criterion.if_unknown.value}` is less restrictive than this "
                "criterion allows: missing data must not weaken the decision",
                ("criteria", position, "if_unknown"),
                f"use {floor.value} or a more restrictive outcome",
            )
        target = ctx.fact_types.get(criterion.fact)
        if target is None or not target.derived:
            ctx.error(
                "unknown_derived_fact",
                f"criterion fact `{criterion.fact}` is not declared",
                ("criteria", position, "fact"),
            )
        elif criterion.fact not in declared:
            ctx.error(
                "never_asserted",
                f"no rule asserts `{criterion.fact}`: this criterion can never be established",
                ("criteria", position, "fact"),
            )
    if ctx.loaded.spec.role == "module" and ctx.loaded.spec.criteria:
        ctx.error(
            "module_with_criteria",
            "a `role: module` ruleset only contributes findings; it cannot declare criteria",
            ("criteria",),
            "move the criteria to the profile's decision ruleset, or remove `role: module`",
        )
    if ctx.loaded.spec.role == "decision" and not ctx.loaded.spec.criteria:
        ctx.error(
            "no_criteria",
            "the ruleset declares no criteria, so no patient could ever be ELIGIBLE",
            ("rules",),
            "add `criteria:` naming the derived facts that must hold, or declare "
            "`role: module` for a ruleset that only contributes findings to a profile",
        )
    by_index = {rule.index: rule for rule in rules}
    order: list[int] = []
    state: dict[int, str] = {}

    def visit(index: int, trail: tuple[str, ...]) -> None:
        if state.get(index) == "done":
            return
        if state.get(index) == "active":
            cycle = " -> ".join((*trail, by_index[index].id))
            ctx.error(
                "derived_cycle", f"rules depend on each other in a cycle: {cycle}", ("rules", index)
            )
            return
        state[index] = "active"
        for name in by_index[index].consumes():
            for producer in producers.get(name, []):
                visit(producer, (*trail, by_index[index].id))
        state[index] = "done"
        order.append(index)

    for rule in rules:
        visit(rule.index, ())
    ctx.order = tuple(order)


def _stage_engine(ctx: _Context) -> None:
    """Emit durable-rules JSON: each rule twice (certain, possible), split into alternatives."""
    definition: dict[str, Any] = {SENTINEL_RULE: {"all": [{"x_s": {"t": SENTINEL_TYPE}}]}}
    engine_rules: dict[str, EngineRule] = {}
    tests: dict[str, set[str]] = {}
    for rule in ctx.rules:
        if rule is None:
            continue
        for variant in ("certain", "possible"):
            alternatives = _alternatives(_formula(rule.condition, variant))
            if len(alternatives) > MAX_ALTERNATIVES_PER_RULE:
                ctx.error(
                    "too_many_alternatives",
                    f"the condition expands to more than {MAX_ALTERNATIVES_PER_RULE} "
                    "alternatives across facts",
                    ("rules", rule.index, "when"),
                    "group `any` branches by fact, or split the rule",
                )
                break
            unsafe = _join_beside_compound_test(alternatives)
            if unsafe is not None:
                ctx.error(
                    "unsupported_join",
                    f"`{unsafe}` is compared with another fact's field and also tested in "
                    "other ways: durable-rules ignores such a comparison (the rule would fire "
                    "whatever the values)",
                    ("rules", rule.index, "when"),
                    f"write the comparison on the other fact, referring to `{unsafe}` (e.g. "
                    "`ecg.age_days: {gt: {field: med.days_since_started}}` instead of "
                    "`med.days_since_started: {lt: {field: ecg.age_days}}`), and list "
                    f"`{unsafe}` first in `requires`; if both facts are tested in other ways, "
                    "split the rule",
                )
                break
            for number, alternative in enumerate(alternatives):
                name = f"r{rule.index}_{variant[0]}{number}"
                patterns = []
                for alias, fact_type in rule.patterns:
                    if fact_type.derived:
                        tag = DERIVED_PREFIX if variant == "certain" else POSSIBLE_PREFIX
                        tag += fact_type.name
                    else:
                        tag = fact_type.name
                    own = alternative.get(alias, [])
                    tests.setdefault(tag, set()).update(json.dumps(t, sort_keys=True) for t in own)
                    expression = {"$and": [{"t": tag}, *own]} if own else {"t": tag}
                    patterns.append({_pattern_name(alias): expression})
                definition[name] = {"all": patterns}
                engine_rules[name] = EngineRule(
                    name,
                    rule.index,
                    variant,
                    tuple(alias for alias, _ in rule.patterns),
                )
    for tag, distinct in tests.items():
        if len(distinct) > MAX_TESTS_PER_FACT_TYPE:
            ctx.error(
                "too_many_tests",
                f"rules test facts of type `{tag}` in {len(distinct)} distinct ways "
                f"(limit {MAX_TESTS_PER_FACT_TYPE}): the engine would hang",
                ("rules",),
                "move long value lists into a class table",
            )
    ctx.engine_rules = engine_rules
    ctx.engine_definition = definition


_STAGES: tuple[tuple[str, Callable[[_Context], None]], ...] = (
    ("identity", _stage_identity),
    ("sources", _stage_sources),
    ("fact_types", _stage_fact_types),
    ("rules", _stage_rules),
    ("dependencies", _stage_dependencies),
    ("engine", _stage_engine),
)


def _content_hash(ctx: _Context) -> str:
    payload = {
        "compiler": COMPILER_VERSION,
        "ruleset": ctx.loaded.spec.model_dump(mode="json", by_alias=True),
        "facts": {
            name: [[f.name, f.kind, f.allowed] for f in t.fields.values()]
            for name, t in sorted(ctx.fact_types.items())
        },
        "engine": ctx.engine_definition,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def stage_names() -> Iterator[str]:
    """The compiler's stages, in order."""
    return (name for name, _ in _STAGES)


def compile_ruleset(
    loaded: LoadedRuleset,
    *,
    vocabulary: dict[tuple[str, str], tuple[str, ...]] | None = None,
    drugs: tuple[str, ...] | None = None,
) -> CompiledRuleset:
    """Check and compile one loaded ruleset; raise ``RulesetErrors`` with every problem found.

    ``vocabulary`` closes text fields over a terminology table's values (a misspelled drug
    class is then a compile error); ``drugs`` is the protocol's drug names.
    """
    ctx = _Context(loaded, vocabulary=dict(vocabulary or {}), drugs=drugs)
    for _name, stage in _STAGES:
        stage(ctx)
        if len(ctx.errors) >= MAX_ERRORS:
            break
    if ctx.errors:
        raise RulesetErrors(ctx.errors[:MAX_ERRORS])
    spec = loaded.spec
    return CompiledRuleset(
        id=spec.ruleset,
        version=spec.version,
        title=spec.title,
        content_hash=_content_hash(ctx),
        file=loaded.file,
        sources=dict(spec.sources),
        fact_types=ctx.fact_types,
        criteria=tuple(spec.criteria),
        rules=tuple(rule for rule in ctx.rules if rule is not None),
        order=ctx.order,
        engine_rules=ctx.engine_rules,
        engine_definition=ctx.engine_definition,
        role=spec.role,
    )
