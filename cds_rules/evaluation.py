"""Evaluate a patient against a compiled ruleset and explain the decision.

The pipeline: validated ``PatientFacts`` -> records -> firings (durable-rules, the reference
evaluator, or both with ``cross_check=True``) -> the decision step -> an immutable, JSON-ready
``Evaluation``.

The decision step is where absence is judged, never in the engine: a criterion is established
only when its derived fact was asserted with certainty; a rule whose result depends on unknown
data is reported with the paths that are missing; and the decision is the most restrictive of
all findings (INELIGIBLE > CANNOT_EVALUATE > NEEDS_REVIEW > ELIGIBLE). ELIGIBLE needs every
declared criterion established: the absence of findings is never eligibility.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, TypeAdapter

from .compiler import CompiledAll, CompiledLeaf, CompiledRule, CompiledRuleset
from .errors import CrossCheckError
from .records import Record, Score
from .reference import (
    REFERENCE_NAME,
    BoundFact,
    ReferenceEvaluator,
    Truth,
    evaluate_condition,
)
from .spec import ActionSpec, Evidence, Outcome
from .terminology import Terminology

__all__ = [
    "CriterionResult",
    "DerivedFact",
    "Evaluation",
    "Evaluator",
    "Finding",
    "FiredRule",
    "MatchedFact",
    "MissingData",
    "RulesetRef",
]

Variant = Literal["certain", "possible"]
_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\}")


#: Results refuse unknown fields when read back from JSON.
_STRICT = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesetRef:
    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    id: str
    version: str
    content_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchedFact:
    """A fact a rule matched, with the values of the fields the rule tests."""

    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    alias: str
    fact_type: str
    key: str
    values: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class FiredRule:
    """A rule whose condition held, in firing order, with the facts it matched."""

    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    sequence: int
    rule_id: str
    title: str
    matched: tuple[MatchedFact, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A reason for the decision: a rule that fired, missing data, or an unmet criterion."""

    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    kind: Literal["rule", "missing_data", "criterion"]
    rule_id: str
    title: str
    outcome: Outcome
    message: str
    sources: tuple[str, ...]
    evidence: Evidence | None
    #: The drugs this finding is about; empty: the whole protocol.
    drugs: tuple[str, ...] = ()
    #: What the finding is about (e.g. the drug), for matching a clinician's review.
    subject: str | None = None
    #: Course rulesets: what the finding does to the next session.
    action: ActionSpec | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingData:
    """A rule that could not be decided: the fact paths it needed that are unknown."""

    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    rule_id: str
    title: str
    paths: tuple[str, ...]
    details: tuple[str, ...]
    outcome: Outcome | None
    drugs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CriterionResult:
    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    fact: str
    title: str
    status: Literal["established", "not_established", "unknown"]
    established_by: tuple[str, ...]
    outcome: Outcome | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DerivedFact:
    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    fact: str
    values: dict[str, Any]
    asserted_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    """The immutable result of screening one patient.

    Plain frozen dataclasses: they are built from values the evaluation produced itself, so
    nothing is re-validated on the way out; ``from_json`` validates fully on the way in.
    """

    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    ruleset: RulesetRef
    as_of: datetime
    engine: str
    cross_checked: bool
    decision: Outcome
    findings: tuple[Finding, ...]
    fired: tuple[FiredRule, ...]
    missing: tuple[MissingData, ...]
    criteria: tuple[CriterionResult, ...]
    derived: tuple[DerivedFact, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (enums as strings, times as ISO 8601)."""
        data: dict[str, Any] = _ADAPTER.dump_python(self, mode="json")
        return data

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Evaluation:
        """Read a result back, validating every field (e.g. from an archive)."""
        return _ADAPTER.validate_json(text, strict=False)


_ADAPTER: TypeAdapter[Evaluation] = TypeAdapter(Evaluation)


# --------------------------------------------------------------------------------------------


class _Firing:
    __slots__ = ("matched", "rule_index", "variant")

    def __init__(self, rule_index: int, variant: str, matched: dict[str, str]) -> None:
        self.rule_index = rule_index
        self.variant = variant
        self.matched = matched

    def signature(self) -> tuple[int, str, tuple[tuple[str, str], ...]]:
        return (self.rule_index, self.variant, tuple(sorted(self.matched.items())))


def _shown(value: Any) -> Any:
    if isinstance(value, Score):
        return value.minimum if value.exact else f"{value.minimum}-{value.maximum}"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _format_value(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(_shown(value))


class Evaluator:
    """Screens patients against one compiled ruleset. Create once; reuse for many patients."""

    def __init__(
        self,
        compiled: CompiledRuleset,
        *,
        engine: Literal["durable", "reference"] = "durable",
        cross_check: bool = False,
        terminology: Terminology | None = None,
    ) -> None:
        self.compiled = compiled
        self.terminology = terminology
        self.cross_check = cross_check
        self.engine_kind = engine
        self._reference = ReferenceEvaluator(compiled)
        self._durable: Any = None
        self._durable_lock = threading.Lock()
        if engine == "durable" or cross_check:
            self._durable = self._make_durable()

    def _make_durable(self) -> Any:
        from .engine import DurableEngine  # the engine library is optional for the reference path

        return DurableEngine(self.compiled)

    @property
    def engine_name(self) -> str:
        if self.engine_kind == "durable":
            from .engine import ENGINE_NAME

            return ENGINE_NAME
        return REFERENCE_NAME

    # -- firings ------------------------------------------------------------------------------

    def _durable_firings(
        self, facts: Sequence[tuple[str, Record]]
    ) -> tuple[list[_Firing], list[tuple[str, int, bool]]]:
        run = self._durable.run(facts)
        rules = self.compiled.engine_rules
        firings = [
            _Firing(rules[f.rule_name].rule_index, rules[f.rule_name].variant, f.matched)
            for f in run.firings
        ]
        derived = [(key, rules[name].rule_index, certain) for key, name, certain in run.derived]
        return firings, derived

    def _reference_firings(
        self, facts: Sequence[tuple[str, Record]]
    ) -> tuple[list[_Firing], list[tuple[str, int, bool]]]:
        run = self._reference.run(facts)
        return ([_Firing(f.rule_index, f.variant, f.matched) for f in run.firings], run.derived)

    def firings(
        self, records: Sequence[Record]
    ) -> tuple[list[_Firing], list[tuple[str, int, bool]]]:
        """Run the configured evaluator(s) over records; cross-check when asked."""
        keyed = [(f"#{index}", record) for index, record in enumerate(records)]
        if self.engine_kind == "durable":
            firings, derived = self._durable_firings(keyed)
        else:
            firings, derived = self._reference_firings(keyed)
        if self.cross_check:
            other_firings, other_derived = (
                self._reference_firings(keyed)
                if self.engine_kind == "durable"
                else self._durable_firings(keyed)
            )
            self._compare(firings, derived, other_firings, other_derived)
        return firings, derived

    def _compare(
        self,
        firings: list[_Firing],
        derived: list[tuple[str, int, bool]],
        other: list[_Firing],
        other_derived: list[tuple[str, int, bool]],
    ) -> None:
        mine = {f.signature() for f in firings}
        theirs = {f.signature() for f in other}
        mine_derived = {(key, certain) for key, _, certain in derived}
        theirs_derived = {(key, certain) for key, _, certain in other_derived}
        if mine == theirs and mine_derived == theirs_derived:
            return
        rules = self.compiled.rules
        only_one = sorted(f"{rules[i].id}/{v}{dict(m)}" for i, v, m in mine - theirs)
        only_other = sorted(f"{rules[i].id}/{v}{dict(m)}" for i, v, m in theirs - mine)
        detail = []
        if only_one:
            detail.append(f"only {self.engine_kind}: {', '.join(only_one[:10])}")
        if only_other:
            detail.append(f"only the other evaluator: {', '.join(only_other[:10])}")
        if mine_derived != theirs_derived:
            detail.append(f"derived facts differ: {sorted(mine_derived ^ theirs_derived)[:10]}")
        raise CrossCheckError(
            "cross_check_failed",
            "durable-rules and the reference evaluator disagree: " + "; ".join(detail),
        )

    # -- decision -----------------------------------------------------------------------------

    def evaluate_records(self, records: Sequence[Record], as_of: datetime) -> Evaluation:
        """Evaluate already-normalised records (see ``evaluate`` for patient facts)."""
        firings, derived = self.firings(records)
        return _decide(
            self.compiled, records, firings, derived, as_of, self.engine_name, self.cross_check
        )

    def evaluate(self, facts: Any) -> Evaluation:
        """Screen one validated patient (``PatientFacts``)."""
        from .normalise import to_records

        return self.evaluate_records(to_records(facts, self.terminology), facts.as_of)


def _fact_values(records: Sequence[Record], key: str) -> tuple[str, dict[str, Any]] | None:
    if key.startswith("#"):
        record = records[int(key[1:])]
        return record.fact_type, record.rule_fields()
    return None


def _record_of(records: Sequence[Record], key: str) -> Record | None:
    return records[int(key[1:])] if key.startswith("#") else None


def _derived_values_from_key(key: str) -> tuple[str, dict[str, Any]]:
    brace = key.index("{")
    return key[:brace], json.loads(key[brace:])


class _FactView(tuple[Record, ...]):
    """The patient's records, with each fact's values read once per evaluation."""

    _cache: dict[str, tuple[str, dict[str, Any]]]

    def __new__(cls, records: Sequence[Record]) -> _FactView:
        view = super().__new__(cls, records)
        view._cache = {}
        return view


def _lookup(records: Sequence[Record], key: str) -> tuple[str, dict[str, Any]]:
    cache: dict[str, tuple[str, dict[str, Any]]] | None = getattr(records, "_cache", None)
    if cache is not None and key in cache:
        return cache[key]
    found = _fact_values(records, key)
    result = found if found is not None else _derived_values_from_key(key)
    if cache is not None:
        cache[key] = result
    return result


def _matched(
    rule: CompiledRule, records: Sequence[Record], matched: dict[str, str]
) -> tuple[MatchedFact, ...]:
    tested: dict[str, list[str]] = {}
    for leaf in rule.leaves:
        tested.setdefault(leaf.alias, []).append(leaf.field.name)
        if leaf.reference:
            tested.setdefault(leaf.reference.alias, []).append(leaf.reference.field)
    result = []
    for alias, fact_type in rule.patterns:
        key = matched[alias]
        _, values = _lookup(records, key)
        names = tested.get(alias, []) if not fact_type.derived else list(values)
        shown = {name: _shown(values.get(name)) for name in dict.fromkeys(names)}
        result.append(MatchedFact(alias=alias, fact_type=fact_type.name, key=key, values=shown))
    return tuple(result)


def _message(rule: CompiledRule, records: Sequence[Record], matched: dict[str, str]) -> str:
    assert rule.finding is not None

    def fill(match: re.Match[str]) -> str:
        alias, name = match.group(1), match.group(2)
        _, values = _lookup(records, matched[alias])
        return _format_value(values.get(name))

    return _PLACEHOLDER.sub(fill, rule.finding.message)


def _subject(rule: CompiledRule, records: Sequence[Record], matched: dict[str, str]) -> str | None:
    path = rule.finding.subject if rule.finding is not None else None
    if path is None:
        return None
    alias, field_name = path.split(".", 1)
    key = matched.get(alias)
    if key is None:
        return None
    value = _lookup(records, key)[1].get(field_name)
    return None if value is None else str(_shown(value))


def _binding(
    rule: CompiledRule, records: Sequence[Record], matched: dict[str, str]
) -> dict[str, Any]:
    return {alias: BoundFact(key, _lookup(records, key)[1]) for alias, key in matched.items()}


def _undecided_leaves(condition: Any, binding: dict[str, Any]) -> list[CompiledLeaf]:
    """Leaves that leave an undecided condition open (decided branches are skipped)."""
    if evaluate_condition(condition, binding) is not Truth.UNKNOWN:
        return []
    if isinstance(condition, CompiledLeaf):
        return [condition]
    return [leaf for child in condition.children for leaf in _undecided_leaves(child, binding)]


def _unknown_paths(
    rule: CompiledRule, records: Sequence[Record], matched: dict[str, str], certain_keys: set[str]
) -> tuple[list[str], list[str]]:
    """The derived facts and fields that leave this rule undecided for one set of facts.

    Only tests that are themselves undecided count: a score known as 8-10 does not leave
    ``>= 5`` open.
    """
    paths: list[str] = []
    details: list[str] = []
    types = dict(rule.patterns)
    for alias, fact_type in rule.patterns:
        if fact_type.derived and matched[alias] not in certain_keys:
            paths.append(fact_type.name)
            details.append(f"{fact_type.title or fact_type.name}: could not be established")
    binding = _binding(rule, records, matched)
    for leaf in _undecided_leaves(rule.condition, binding):
        fields = [(leaf.alias, leaf.field.name)]
        if leaf.reference:
            fields.append((leaf.reference.alias, leaf.reference.field))
        for alias, name in fields:
            value = binding[alias].values.get(name)
            path = f"{types[alias].name}.{name}"
            if path in paths:
                continue
            if value is None:
                paths.append(path)
                record = _record_of(records, matched[alias])
                details.append(
                    f"`{path}` is not recorded"
                    + (f": {record.absent}" if record is not None and record.placeholder else "")
                )
            elif isinstance(value, Score) and not value.exact:
                paths.append(path)
                unknown = ", ".join(value.unknown_items)
                details.append(
                    f"`{path}` is known only as {value.minimum}-{value.maximum}"
                    + (f" (unknown: {unknown})" if unknown else "")
                )
    return paths, details


def _explain(
    rule: CompiledRule, records: Sequence[Record], established: set[str], possible: set[str]
) -> list[str]:
    """Why a criterion-establishing rule did not hold: its unmet top-level conditions."""
    reasons = []
    binding: dict[str, Any] = {}
    for alias, fact_type in rule.patterns:
        if fact_type.derived:
            if fact_type.name not in established:
                state = "unknown" if fact_type.name in possible else "not established"
                reasons.append(f"{fact_type.title or fact_type.name}: {state}")
            continue
        matching = [r for r in records if r.fact_type == fact_type.name]
        if len(matching) != 1:
            reasons.append(f"needs a `{fact_type.name}` fact")
            continue
        binding[alias] = BoundFact(alias, matching[0].rule_fields())
    condition = rule.condition
    conjuncts = condition.children if isinstance(condition, CompiledAll) else (condition,)
    for conjunct in conjuncts:
        if not _aliases_of(conjunct) <= set(binding):
            continue
        truth = evaluate_condition(conjunct, binding)
        if truth is Truth.TRUE:
            continue
        if isinstance(conjunct, CompiledLeaf) and conjunct.operator == "recorded":
            reasons.append(f"`{conjunct.path}` not recorded")
            continue
        state = "not met" if truth is Truth.FALSE else "unknown"
        reasons.append(f"{_describe(conjunct, binding)}: {state}")
    return reasons


def _aliases_of(condition: Any) -> set[str]:
    if isinstance(condition, CompiledLeaf):
        return {condition.alias} | ({condition.reference.alias} if condition.reference else set())
    return set().union(*(_aliases_of(c) for c in condition.children))


_SYMBOL = {
    "eq": "=",
    "ne": "≠",
    "lt": "<",
    "lte": "≤",
    "gt": ">",
    "gte": "≥",
    "in": "in",
    "not_in": "not in",
}


def _describe(condition: Any, binding: dict[str, Any]) -> str:
    if isinstance(condition, CompiledLeaf):
        actual = _format_value(binding[condition.alias].values.get(condition.field.name))
        if condition.operator == "recorded":
            return f"{condition.path} recorded (is {actual})"
        if condition.reference:
            ref = condition.reference
            target = f"{ref.alias}.{ref.field}"
            if ref.times != 1:
                target = f"{target} × {_shown(ref.times)}"
            if ref.plus:
                target = f"{target} + {_shown(ref.plus)}"
        elif isinstance(condition.value, tuple):
            target = "[" + ", ".join(str(v) for v in condition.value) + "]"
        else:
            target = _format_value(condition.value)
        return f"{condition.path} {_SYMBOL[condition.operator]} {target} (is {actual})"
    joiner = " and " if isinstance(condition, CompiledAll) else " or "
    return "(" + joiner.join(_describe(child, binding) for child in condition.children) + ")"


def _criterion_outcome(
    compiled: CompiledRuleset, rule: CompiledRule, unknown_criteria: dict[str, Outcome | None]
) -> Outcome | None:
    """The most restrictive outcome of the unknown criteria this rule's derived fact feeds."""
    if rule.asserts is None or not unknown_criteria:
        return None
    seen: set[str] = set()
    frontier = [rule.asserts.fact]
    while frontier:
        fact = frontier.pop()
        if fact in seen:
            continue
        seen.add(fact)
        frontier.extend(
            consumer.asserts.fact
            for consumer in compiled.rules
            if consumer.asserts is not None and fact in consumer.consumes()
        )
    outcomes = [o for fact, o in unknown_criteria.items() if fact in seen and o is not None]
    return max(outcomes, key=lambda o: o.severity) if outcomes else None


def _decide(
    compiled: CompiledRuleset,
    records: Sequence[Record],
    firings: list[_Firing],
    derived: list[tuple[str, int, bool]],
    as_of: datetime,
    engine: str,
    cross_checked: bool,
) -> Evaluation:
    rules = compiled.rules
    records = _FactView(records)
    certain_rules: dict[int, list[_Firing]] = {}
    possible_rules: dict[int, list[_Firing]] = {}
    for firing in firings:
        target = certain_rules if firing.variant == "certain" else possible_rules
        target.setdefault(firing.rule_index, []).append(firing)
    certain_keys = {key for key, _, certain in derived if certain}

    fired: list[FiredRule] = []
    findings: list[Finding] = []
    seen_signatures: set[tuple[int, tuple[tuple[str, str], ...]]] = set()
    seen_messages: set[tuple[str, str]] = set()
    for firing in firings:
        if firing.variant != "certain":
            continue
        signature = (firing.rule_index, tuple(sorted(firing.matched.items())))
        if signature in seen_signatures:
            continue  # one rule matched the same facts through two alternatives
        seen_signatures.add(signature)
        rule = rules[firing.rule_index]
        fired.append(
            FiredRule(
                sequence=len(fired) + 1,
                rule_id=rule.id,
                title=rule.title,
                matched=_matched(rule, records, firing.matched),
            )
        )
        if rule.finding is not None:
            message = _message(rule, records, firing.matched)
            if (rule.id, message) not in seen_messages:
                seen_messages.add((rule.id, message))
                findings.append(
                    Finding(
                        kind="rule",
                        rule_id=rule.id,
                        title=rule.title,
                        outcome=rule.finding.outcome,
                        message=message,
                        sources=rule.sources,
                        evidence=rule.evidence,
                        drugs=rule.drugs,
                        subject=_subject(rule, records, firing.matched),
                        action=rule.finding.action,
                    )
                )

    unresolved: list[tuple[CompiledRule, tuple[str, ...], tuple[str, ...]]] = []
    for index in compiled.order:
        # Undecided = not ruled out for some set of facts, yet not established for that same
        # set: a rule that holds for one trial still leaves another trial's unknown dose open.
        decided = {tuple(sorted(f.matched.items())) for f in certain_rules.get(index, ())}
        # In the order of the facts matched, not of the engine's firing: both evaluators then
        # name the unknown paths in the same order.
        open_firings = sorted(
            (
                firing
                for firing in possible_rules.get(index, ())
                if tuple(sorted(firing.matched.items())) not in decided
            ),
            key=lambda firing: sorted(firing.matched.items()),
        )
        if not open_firings:
            continue
        rule = rules[index]
        paths: list[str] = []
        details: list[str] = []
        for firing in open_firings:
            more_paths, more_details = _unknown_paths(rule, records, firing.matched, certain_keys)
            for path, detail in zip(more_paths, more_details, strict=True):
                if path not in paths:
                    paths.append(path)
                    details.append(detail)
        unresolved.append((rule, tuple(paths), tuple(details)))
        if rule.on_missing is not None:
            findings.append(
                Finding(
                    kind="missing_data",
                    rule_id=rule.id,
                    title=rule.title,
                    outcome=rule.on_missing,
                    message="cannot decide: " + "; ".join(details) if details else "cannot decide",
                    sources=rule.sources,
                    evidence=rule.evidence,
                    drugs=rule.drugs,
                )
            )

    established_facts = {key.split("{", 1)[0] for key in certain_keys}
    possible_facts = {key.split("{", 1)[0] for key, _, certain in derived if not certain}
    criteria: list[CriterionResult] = []
    for criterion in compiled.criteria:
        producers = [
            rule
            for rule in rules
            if rule.asserts is not None and rule.asserts.fact == criterion.fact
        ]
        ids = tuple(rule.id for rule in producers)
        if criterion.fact in established_facts:
            criteria.append(
                CriterionResult(
                    fact=criterion.fact,
                    title=criterion.title,
                    status="established",
                    established_by=ids,
                    outcome=None,
                )
            )
            continue
        unknown = criterion.fact in possible_facts
        outcome = criterion.if_unknown if unknown else criterion.if_not_established
        criteria.append(
            CriterionResult(
                fact=criterion.fact,
                title=criterion.title,
                status="unknown" if unknown else "not_established",
                established_by=ids,
                outcome=outcome,
            )
        )
        reasons = [
            reason
            for rule in producers
            for reason in _explain(rule, records, established_facts, possible_facts)
        ]
        state = "cannot be established with the data given" if unknown else "not met"
        message = f"{criterion.title}: {state}"
        if reasons:
            message += " — " + "; ".join(dict.fromkeys(reasons))
        sources = tuple(dict.fromkeys(s for rule in producers for s in rule.sources))
        findings.append(
            Finding(
                kind="criterion",
                rule_id=ids[0] if ids else criterion.fact,
                title=criterion.title,
                outcome=outcome,
                message=message,
                sources=sources,
                evidence=producers[0].evidence if producers else None,
            )
        )

    # Missing data under a rule that only feeds a criterion takes that criterion's outcome.
    unknown_criteria = {c.fact: c.outcome for c in criteria if c.status == "unknown"}
    missing = [
        MissingData(
            rule_id=rule.id,
            title=rule.title,
            paths=paths,
            details=details,
            outcome=rule.on_missing or _criterion_outcome(compiled, rule, unknown_criteria),
            drugs=rule.drugs,
        )
        for rule, paths, details in unresolved
    ]

    decisive = [finding.outcome for finding in findings if finding.outcome != Outcome.INFO]
    nothing = Outcome.INFO if compiled.role == "module" else Outcome.ELIGIBLE
    decision = max(decisive, key=lambda o: o.severity) if decisive else nothing
    if decision == Outcome.ELIGIBLE and not all(c.status == "established" for c in criteria):
        decision = Outcome.CANNOT_EVALUATE  # unreachable by construction; never fail open
    order = {rule.id: position for position, rule in enumerate(rules)}
    findings.sort(key=lambda f: (-f.outcome.severity, order.get(f.rule_id, len(order))))

    derived_facts = []
    for key, rule_index, certain in derived:
        if certain:
            name, values = _derived_values_from_key(key)
            derived_facts.append(
                DerivedFact(fact=name, values=values, asserted_by=rules[rule_index].id)
            )
    return Evaluation(
        ruleset=RulesetRef(
            id=compiled.id, version=compiled.version, content_hash=compiled.content_hash
        ),
        as_of=as_of,
        engine=engine,
        cross_checked=cross_checked,
        decision=decision,
        findings=tuple(findings),
        fired=tuple(fired),
        missing=tuple(missing),
        criteria=tuple(criteria),
        derived=tuple(derived_facts),
    )
