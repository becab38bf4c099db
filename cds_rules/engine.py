"""The only module that imports durable-rules: a hardened, synchronous harness around it.

durable-rules 2.0.28 is unmaintained and has defects that matter in a clinical path. Each is
made impossible here, at this module's border:

* Sessions and facts are looked up by a 32-bit FNV-1 hash of their ids, so two patients whose
  ids collide share facts and a fact whose id collides is dropped as a duplicate. No caller
  identifier ever reaches the engine: the harness numbers its own sessions, evaluates one
  patient at a time per engine (a lock), deletes the session afterwards, and gives facts ids
  whose hashes it has checked are distinct within the session.
* At most 1,024 live sessions per ruleset: there is never more than one, and an engine whose
  session could not be deleted refuses further work.
* ``delete_state`` segfaults on a session in which no action ran: every session starts with a
  sentinel fact that a sentinel rule acts on.
* A fact that matches no rule raises ``MessageNotHandledException``: here that is a normal,
  empty result.
* The stock ``Host`` starts timer threads that may run actions after a call returned: the host
  here starts none, and every action runs inside the call that asserted its facts.
* Exceptions raised in actions are swallowed into the engine's state: every action is wrapped,
  its error recorded, and the evaluation fails with ``EngineError``.
* Numbers compared with strings compare as text, a missing attribute fails every test, and a
  join reading another fact's missing attribute fails the whole assertion (error 311): facts
  are encoded from typed records only, every field is always present (numbers as floats; an
  unknown value has a neutral value of its type and ``__known: false``, and every test is
  guarded by that flag; scores as bounds), and every property is type-checked against the
  compiled fact types before it is asserted. Rules never use ``$not`` and every pattern tests
  the fact type (the compiler).
* The action context does not say which rule fired: each action is bound to its engine rule
  name, so firings are recorded in order with the facts each matched.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import version as _package_version
from typing import Any

import durable.engine as _durable
import durable_rules_engine as _c_engine

from .compiler import SENTINEL_TYPE, CompiledRuleset, derived_key, derived_values, engine_value
from .errors import EngineError
from .model import DERIVED_PREFIX, POSSIBLE_PREFIX, FactType
from .records import Record, Score

__all__ = [
    "ENGINE_NAME",
    "DurableEngine",
    "EngineFiring",
    "EngineRun",
    "fnv1_32",
]

ENGINE_NAME = f"durable-rules {_package_version('durable-rules')}"

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1_32(text: str) -> int:
    """The engine's 32-bit hash of an id (``fnv1Hash32`` in its C source).

    Despite its name it xors, then multiplies, per byte; bytes are C ``char`` (signed), so a
    byte over 127 is sign-extended before the xor.
    """
    value = _FNV_OFFSET
    for byte in text.encode("utf-8"):
        value ^= byte if byte < 128 else (byte - 256) & 0xFFFFFFFF
        value = (value * _FNV_PRIME) & 0xFFFFFFFF
    return value


@dataclass(frozen=True)
class EngineFiring:
    """One action run: the engine rule and, per alias, the key of the fact it matched."""

    rule_name: str
    matched: dict[str, str]


@dataclass
class EngineRun:
    """Everything one evaluation produced, in firing order."""

    firings: list[EngineFiring] = field(default_factory=list)
    #: Derived facts asserted, by key, in order: (key, asserting engine rule, certain?).
    derived: list[tuple[str, str, bool]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _QuietHost(_durable.Host):  # type: ignore[misc]
    """A durable Host that starts no background timer threads."""

    def _run(self) -> None:
        return None


@dataclass
class _Session:
    sid: str
    run: EngineRun
    used_hashes: set[int] = field(default_factory=set)
    next_fact: int = 0
    keys_by_id: dict[str, str] = field(default_factory=dict)
    asserted_derived: set[str] = field(default_factory=set)

    def fact_id(self) -> str:
        """A fresh fact id whose engine hash is unique within this session."""
        while True:
            self.next_fact += 1
            candidate = f"f{self.next_fact}"
            digest = fnv1_32(candidate)
            if digest not in self.used_hashes:
                self.used_hashes.add(digest)
                return candidate


#: Numbers beyond this are refused: the engine parses integers as 64-bit and no clinical value
#: comes near it.
_MAX_MAGNITUDE = 1e12


def _number_json(value: float) -> str:
    """A float in positional notation: the engine's JSON parser rejects exponents (``1e-07``)."""
    if value != value or abs(value) > _MAX_MAGNITUDE:
        raise EngineError("invalid_fact", f"number `{value!r}` cannot be given to the engine")
    text = format(Decimal(repr(value)), "f")
    return text if "." in text else text + ".0"


def fact_json(fact: dict[str, Any]) -> str:
    """Serialise an engine fact: strings and flags as JSON, numbers positionally."""
    parts = []
    for key, value in fact.items():
        if isinstance(value, float):
            encoded = _number_json(value)
        elif isinstance(value, bool | str):
            encoded = json.dumps(value, ensure_ascii=False)
        else:
            raise EngineError(
                "invalid_fact", f"property `{key}` has a value the engine cannot take: `{value!r}`"
            )
        parts.append(f"{json.dumps(key)}:{encoded}")
    return "{" + ",".join(parts) + "}"


_NEUTRAL: dict[str, Any] = {"number": 0.0, "boolean": False, "text": ""}


def _encode_fields(fact_type: FactType, values: dict[str, Any]) -> dict[str, Any]:
    """Engine properties for typed values: explicit known flags, score bounds, numbers as floats."""
    encoded: dict[str, Any] = {}
    for name, info in fact_type.fields.items():
        value = values.get(name)
        if info.kind == "score":
            if not isinstance(value, Score):
                raise EngineError("invalid_fact", f"`{fact_type.name}.{name}` must be a score")
            encoded[f"{name}__min"] = float(value.minimum)
            encoded[f"{name}__max"] = float(value.maximum)
            continue
        if value is None:
            # Always present: a join that reads an absent property of another fact makes the
            # engine fail (error 311). The neutral value is never decisive: every test is
            # guarded by the `__known` flag.
            encoded[name] = _NEUTRAL[info.kind]
            encoded[f"{name}__known"] = False
            continue
        expected = {"number": (int, float), "boolean": (bool,), "text": (str,)}[info.kind]
        if not isinstance(value, expected) or (info.kind == "number" and isinstance(value, bool)):
            raise EngineError(
                "invalid_fact",
                f"`{fact_type.name}.{name}` must be {info.kind}, got `{value!r}`",
            )
        encoded[name] = engine_value(value)
        encoded[f"{name}__known"] = True
    return encoded


class DurableEngine:
    """Evaluates patients with durable-rules over one compiled ruleset.

    Thread-safe: evaluations on one engine are serialised. Create one engine per compiled
    ruleset and reuse it; creating the engine compiles the ruleset into the C engine.
    """

    def __init__(self, compiled: CompiledRuleset) -> None:
        self._compiled = compiled
        self._lock = threading.Lock()
        self._name = f"cds_{compiled.id}_{uuid.uuid4().hex[:12]}"
        self._session_number = 0
        self._session: _Session | None = None
        self._broken: str | None = None
        definition = copy.deepcopy(compiled.engine_definition)
        for name, rule in definition.items():
            rule["run"] = self._bind(name)
        self._host = _QuietHost()
        self._host.register_rulesets({self._name: definition})

    @property
    def compiled(self) -> CompiledRuleset:
        return self._compiled

    def _bind(self, rule_name: str) -> Callable[[Any], None]:
        def action(closure: Any) -> None:
            session = self._session
            if session is None:  # an action outside an evaluation: never expected
                return
            try:
                self._act(session, rule_name, closure)
            except BaseException as error:  # recorded, then raised to the caller
                session.run.errors.append(f"{rule_name}: {type(error).__name__}: {error}")

        return action

    def _act(self, session: _Session, rule_name: str, closure: Any) -> None:
        if rule_name == "sentinel":
            return
        engine_rule = self._compiled.engine_rules[rule_name]
        matched_facts: dict[str, dict[str, Any]] = {
            alias: dict(closure._m[f"x_{alias}"]) for alias in engine_rule.aliases
        }
        matched = {alias: session.keys_by_id[fact["id"]] for alias, fact in matched_facts.items()}
        session.run.firings.append(EngineFiring(rule_name, matched))
        rule = self._compiled.rules[engine_rule.rule_index]
        if rule.asserts is None:
            return

        def lookup(alias: str, name: str) -> Any:
            fact = matched_facts[alias]
            return fact.get(name) if fact.get(f"{name}__known") else None

        values = derived_values(rule.asserts, lookup)
        key = derived_key(rule.asserts.fact, values)
        certain = engine_rule.variant == "certain"
        tag = (DERIVED_PREFIX if certain else POSSIBLE_PREFIX) + rule.asserts.fact
        if tag + key in session.asserted_derived:
            return
        session.asserted_derived.add(tag + key)
        session.run.derived.append((key, rule_name, certain))
        fact_type = self._compiled.fact_types[rule.asserts.fact]
        fact = {
            "sid": session.sid,
            "id": session.fact_id(),
            "t": tag,
            **_encode_fields(fact_type, values),
        }
        session.keys_by_id[fact["id"]] = key
        ruleset = self._host.get_ruleset(self._name)
        try:
            ruleset._handle_result(_c_engine.assert_fact(ruleset._handle, fact_json(fact)), fact)
        except _durable.MessageNotHandledException:
            pass  # no rule consumes this derived fact: the decision step reads it

    def run(self, facts: Sequence[tuple[str, Record]]) -> EngineRun:
        """Evaluate one patient's records (``(key, record)`` pairs) in a fresh session."""
        with self._lock:
            if self._broken:
                raise EngineError("engine_unusable", self._broken)
            self._session_number += 1
            session = _Session(sid=str(self._session_number), run=EngineRun())
            self._session = session
            try:
                self._assert(session, {"t": SENTINEL_TYPE})
                for key, record in facts:
                    fact_type = self._compiled.fact_types[record.fact_type]
                    encoded = _encode_fields(fact_type, record.rule_fields())
                    encoded["t"] = record.fact_type
                    self._assert(session, encoded, key)
                state = self._host.get_state(self._name, session.sid)
                if isinstance(state, dict) and "exception" in state:
                    session.run.errors.append(f"engine state: {state['exception']}")
                if session.run.errors:
                    raise EngineError(
                        "action_failed", "a rule action failed: " + "; ".join(session.run.errors)
                    )
            finally:
                self._session = None
                self._delete(session.sid)
            return session.run

    def _assert(self, session: _Session, fact: dict[str, Any], key: str | None = None) -> None:
        fact_id = session.fact_id()
        session.keys_by_id[fact_id] = key or fact_id
        payload = {"sid": session.sid, "id": fact_id, **fact}
        ruleset = self._host.get_ruleset(self._name)
        outcome: list[Any] = []

        def complete(error: Any, state: Any) -> None:
            outcome.append(error)

        try:
            handle = ruleset._handle_result(
                _c_engine.assert_fact(ruleset._handle, fact_json(payload)), payload
            )
            ruleset.do_actions(handle, complete)
            if outcome and outcome[0]:
                raise (
                    outcome[0]
                    if isinstance(outcome[0], BaseException)
                    else EngineError("engine_failed", str(outcome[0]))
                )
        except EngineError:
            raise
        except _durable.MessageNotHandledException:
            pass  # matched no rule: an empty result, not an error
        except _durable.MessageObservedException as error:
            raise EngineError(
                "duplicate_fact", f"the engine dropped fact `{fact_id}` as a duplicate"
            ) from error
        except Exception as error:
            raise EngineError("engine_failed", f"{type(error).__name__}: {error}") from error
        if session.run.errors:
            raise EngineError(
                "action_failed", "a rule action failed: " + "; ".join(session.run.errors)
            )

    def _delete(self, sid: str) -> None:
        try:
            self._host.delete_state(self._name, sid)
        except Exception as error:  # keep sessions bounded: refuse further work instead
            self._broken = f"session {sid} could not be deleted: {error}"


def check_live(engines: Iterable[DurableEngine]) -> list[str]:
    """Names of engines that refuse work (a session could not be deleted)."""
    return [engine._name for engine in engines if engine._broken]
