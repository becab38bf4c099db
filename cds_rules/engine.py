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
* The stock ``Host`` starts timer threads that may run actions after a call returned, and its
  ``Promise`` layer swallows exceptions raised in actions into the engine's state. Neither is
  used: this module drives the C engine's action loop itself, synchronously, so every action
  runs inside the call that asserted its facts, and an action's error abandons the action and
  fails the evaluation with ``EngineError``.
* Numbers compared with strings compare as text, a missing attribute fails every test, and a
  join reading another fact's missing attribute fails the whole assertion (error 311): facts
  are encoded from typed records only, every field is always present (numbers as floats; an
  unknown value has a neutral value of its type and ``__known: false``, and every test is
  guarded by that flag; scores as bounds), and every property is type-checked against the
  compiled fact types before it is asserted. Rules never use ``$not`` and every pattern tests
  the fact type (the compiler).
* The engine's JSON parser rejects numbers in exponent notation (``1e-07``), which Python's
  ``json`` writes for small and large floats: facts are serialised here with positional
  numbers, and the compiler refuses rule constants the parser could not read.
* The C engine reads numbers with ``atof``, which follows the process locale: under a
  comma-decimal locale 5.9 is read as 5 and a rule's 0.5 as 0. The engine refuses to work
  unless the decimal point is ``.``. It also stores string lengths in 16 bits, so text of
  64 KiB or more (as JSON) is refused before it reaches the engine.
* A comparison with another fact's field (a join) is silently dropped when the same pattern
  also holds an ``$and``/``$or`` test: ``med.days_since_started < ecg.age_days`` beside
  ``med.drug_class == "beta_blocker"`` fires whatever the dates. The compiler refuses that
  shape (``unsupported_join``) and the join is written from the other fact.
* The action context does not say which rule fired: each action is bound to its engine rule
  name, so firings are recorded in order with the facts each matched.
"""

from __future__ import annotations

import contextlib
import json
import locale
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import version as _package_version
from typing import Any

import durable_rules_engine as _c_engine

from .compiler import (
    SENTINEL_RULE,
    SENTINEL_TYPE,
    CompiledRuleset,
    derived_key,
    derived_values,
)
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


#: Result codes of the C engine's assert calls (see ``Ruleset._handle_result`` in durable).
_NOT_HANDLED = 1
_OBSERVED = 2
_QUEUED = 3


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


_EXPONENT_OR_SPECIAL = re.compile(r"[0-9][eE][-+]?[0-9]|NaN|Infinity")


def fact_json(fact: dict[str, Any]) -> str:
    """Serialise an engine fact: strings and flags as JSON, numbers positionally.

    The C-accelerated encoder is used when its output has no exponent and no NaN/Infinity;
    otherwise (or when the check cannot tell, e.g. such text inside a string) each value is
    written positionally, and a number the engine cannot take is refused.
    """
    text = json.dumps(fact, ensure_ascii=False, separators=(",", ":"))
    if not _EXPONENT_OR_SPECIAL.search(text):
        return text
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

#: Longest text, in UTF-8 bytes of its JSON form, the engine reads whole (16-bit lengths).
_MAX_TEXT_BYTES = 0xFFFF - 1


_EXPECTED: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "boolean": (bool,),
    "text": (str,),
}


def _encode_fields(fact_type: FactType, values: dict[str, Any]) -> dict[str, Any]:
    """Engine properties for typed values: explicit known flags, score bounds, numbers as floats."""
    encoded: dict[str, Any] = {}
    for name, info in fact_type.fields.items():
        value = values.get(name)
        kind = info.kind
        if kind == "score":
            if not isinstance(value, Score):
                raise EngineError("invalid_fact", f"`{fact_type.name}.{name}` must be a score")
            encoded[name + "__min"] = float(value.minimum)
            encoded[name + "__max"] = float(value.maximum)
            continue
        if value is None:
            # Always present: a join that reads an absent property of another fact makes the
            # engine fail (error 311). The neutral value is never decisive: every test is
            # guarded by the `__known` flag.
            encoded[name] = _NEUTRAL[kind]
            encoded[name + "__known"] = False
            continue
        if not isinstance(value, _EXPECTED[kind]) or (kind == "number" and isinstance(value, bool)):
            raise EngineError(
                "invalid_fact",
                f"`{fact_type.name}.{name}` must be {kind}, got `{value!r}`",
            )
        if kind == "number":
            value = float(value)  # type: ignore[arg-type]
            if not abs(value) <= _MAX_MAGNITUDE:  # also refuses NaN
                raise EngineError(
                    "invalid_fact", f"`{fact_type.name}.{name}` = `{value!r}` is out of range"
                )
        # A character takes at most 6 bytes in JSON (`\u001f`): shorter texts always fit.
        if isinstance(value, str) and 6 * len(value) > _MAX_TEXT_BYTES:
            # The engine compares a string by the length of its JSON text (escapes included,
            # so a `"` counts twice) kept in 16 bits: a longer text would be read cut short
            # (`duloxetine` followed by 65,536 characters reads as `duloxetine`).
            size = len(json.dumps(value, ensure_ascii=False).encode("utf-8")) - 2
            if size > _MAX_TEXT_BYTES:
                raise EngineError(
                    "invalid_fact",
                    f"`{fact_type.name}.{name}` is text of {size} bytes in json "
                    f"(the engine reads at most {_MAX_TEXT_BYTES})",
                )
        encoded[name] = value
        encoded[name + "__known"] = True
    return encoded


def _refuse_unsafe_locale() -> None:
    """Refuse to work when the C library would misread numbers.

    The engine reads numbers with the C library's ``atof``, which follows the process's
    ``LC_NUMERIC`` locale: under a comma-decimal locale (``de_DE.UTF-8``) a CRP of 5.9 reads
    as 5 and a rule constant of 0.5 as 0.
    """
    decimal_point = locale.localeconv()["decimal_point"]
    if decimal_point != ".":
        raise EngineError(
            "unsafe_locale",
            f"the process locale uses `{decimal_point}` as its decimal point, so the engine "
            "would misread numbers",
            hint='call `locale.setlocale(locale.LC_NUMERIC, "C")` before using the engine, '
            "or do not set a comma-decimal LC_NUMERIC/LC_ALL locale in this process",
        )


class DurableEngine:
    """Evaluates patients with durable-rules' C engine over one compiled ruleset.

    The engine's Python layer (``Host``, ``Ruleset``, ``Closure``, ``Promise``) is not used: it
    starts timer threads, swallows action errors and serialises numbers in a form the C parser
    rejects. This class drives the C engine's documented action loop itself, synchronously:
    assert a fact, then take each action the assertion made ready, run it, complete it.

    Thread-safe: evaluations on one engine are serialised. Create one engine per compiled
    ruleset and reuse it.
    """

    def __init__(self, compiled: CompiledRuleset) -> None:
        _refuse_unsafe_locale()
        self._compiled = compiled
        self._lock = threading.Lock()
        self._name = f"cds_{compiled.id}_{uuid.uuid4().hex[:12]}"
        self._session_number = 0
        self._broken: str | None = None
        self._rules = compiled.engine_rules
        self._fact_types = compiled.fact_types
        try:
            self._handle = _c_engine.create_ruleset(
                self._name, json.dumps(compiled.engine_definition, ensure_ascii=False)
            )
        except Exception as error:
            raise EngineError(
                "engine_failed", f"the engine refused the ruleset: {error}"
            ) from error

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            try:
                _c_engine.delete_ruleset(handle)
            except Exception:  # interpreter shutdown: nothing left to free
                pass

    @property
    def compiled(self) -> CompiledRuleset:
        return self._compiled

    def run(self, facts: Sequence[tuple[str, Record]]) -> EngineRun:
        """Evaluate one patient's records (``(key, record)`` pairs) in a fresh session."""
        with self._lock:
            if self._broken:
                raise EngineError("engine_unusable", self._broken)
            _refuse_unsafe_locale()
            self._session_number += 1
            session = _Session(sid=str(self._session_number), run=EngineRun())
            try:
                self._assert(session, {"t": SENTINEL_TYPE}, None)
                for key, record in facts:
                    fact_type = self._fact_types[record.fact_type]
                    encoded = _encode_fields(fact_type, record.rule_fields())
                    encoded["t"] = record.fact_type
                    self._assert(session, encoded, key)
                state = json.loads(_c_engine.get_state(self._handle, session.sid))
                if isinstance(state, dict) and "exception" in state:
                    raise EngineError("engine_failed", f"engine state: {state['exception']}")
            finally:
                self._delete(session.sid)
            return session.run

    def _assert(self, session: _Session, fact: dict[str, Any], key: str | None) -> None:
        """Assert one fact and run, synchronously, every action it makes ready."""
        fact_id = session.fact_id()
        session.keys_by_id[fact_id] = key or fact_id
        payload = {"sid": session.sid, "id": fact_id, **fact}
        state_handle = self._submit(payload)
        if state_handle is None:
            return
        try:
            result = _c_engine.start_action_for_state(self._handle, state_handle)
        except Exception as error:
            raise EngineError("engine_failed", f"{type(error).__name__}: {error}") from error
        while result:
            message = json.loads(result[1])
            ((rule_name, matched),) = message.items()
            try:
                self._act(session, rule_name, matched)
            except BaseException as error:
                with contextlib.suppress(Exception):
                    _c_engine.abandon_action(self._handle, state_handle)
                if isinstance(error, EngineError):
                    raise
                raise EngineError(
                    "action_failed",
                    f"rule action `{rule_name}` failed: {type(error).__name__}: {error}",
                ) from error
            try:
                following = _c_engine.complete_and_start_action(self._handle, state_handle)
            except Exception as error:
                raise EngineError("engine_failed", f"{type(error).__name__}: {error}") from error
            result = (None, following) if following else None

    def _submit(self, payload: dict[str, Any]) -> Any:
        """Assert a fact in the C engine; None when it matched no rule (a normal outcome)."""
        try:
            result = _c_engine.assert_fact(self._handle, fact_json(payload))
        except Exception as error:
            raise EngineError("engine_failed", f"{type(error).__name__}: {error}") from error
        if result[0] == _NOT_HANDLED:
            return None
        if result[0] == _OBSERVED:
            raise EngineError(
                "duplicate_fact", f"the engine dropped fact `{payload['id']}` as a duplicate"
            )
        if result[0] == _QUEUED:  # its actions would run later, outside this evaluation
            raise EngineError(
                "engine_failed", f"the engine queued fact `{payload['id']}` instead of running it"
            )
        return result[1]

    def _act(self, session: _Session, rule_name: str, message: dict[str, Any]) -> None:
        if rule_name == SENTINEL_RULE:
            return
        engine_rule = self._rules[rule_name]
        matched_facts: dict[str, dict[str, Any]] = {
            alias: message[f"x_{alias}"] for alias in engine_rule.aliases
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
        fact_type = self._fact_types[rule.asserts.fact]
        fact_id = session.fact_id()
        session.keys_by_id[fact_id] = key
        fact = {"sid": session.sid, "id": fact_id, "t": tag, **_encode_fields(fact_type, values)}
        # Actions this fact makes ready join the loop in `_assert` (same session and state).
        self._submit(fact)

    def _delete(self, sid: str) -> None:
        try:
            _c_engine.delete_state(self._handle, sid)
        except Exception as error:  # keep sessions bounded: refuse further work instead
            self._broken = f"session {sid} could not be deleted: {error}"
