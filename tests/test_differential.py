"""durable-rules and the reference evaluator must agree on every patient, for every ruleset.

Generated patients (2000 a ruleset; CDS_RULES_DIFFERENTIAL_EXAMPLES sets another number), biased
to the thresholds the shipped rules test, with unknown fields, score bounds, undocumented and
empty collections, ECGs, problem lists, allergies, medications and pre-session facts, go
through both evaluators; firings, derived facts and the whole result must be identical. The
examples are derandomised: every run tests the same patients, so a failure reproduces.

Each ruleset is compiled as the protocol compiles it (against the terminology tables); the
protocol and its tables themselves are not rulesets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cds_rules.api import DEFAULT_PROTOCOL, compile_file, default_rulesets_dir
from cds_rules.compiler import CompiledRuleset
from cds_rules.evaluation import Evaluator
from cds_rules.protocol import compile_profile, load_protocol
from cds_rules.records import Record
from cds_rules.terminology import Terminology

from .strategies import Edges, patient_records, rule_edges

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
RULESETS_DIR = default_rulesets_dir()
PROTOCOL = RULESETS_DIR / DEFAULT_PROTOCOL


def _is_ruleset(path: Path) -> bool:
    """A ruleset file; not the protocol (``protocol:``) nor a terminology table (``table:``)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return isinstance(data, dict) and not {"protocol", "table"} & set(data)


RULESETS = [path for path in sorted(RULESETS_DIR.glob("*.yaml")) if _is_ruleset(path)]


@dataclass(frozen=True)
class Shipped:
    """Every shipped ruleset compiled, the terminology, and the edges the rules test."""

    rulesets: dict[str, CompiledRuleset]  # by file name
    terminology: Terminology
    edges: Edges


@cache
def _shipped() -> Shipped:
    spec = load_protocol(PROTOCOL)
    compiled: dict[str, CompiledRuleset] = {}
    terminology: Terminology | None = None
    for name in spec.profiles:
        profile = compile_profile(PROTOCOL, name)
        terminology = profile.terminology
        for ruleset in profile.rulesets:
            compiled.setdefault(Path(ruleset.file or "").name, ruleset)
    assert terminology is not None
    for path in RULESETS:  # a ruleset no profile names is compiled on its own
        if path.name not in compiled:
            compiled[path.name] = compile_file(path)
    drugs = terminology.drugs
    washouts = {
        float(entry.washout_days)
        for entry in drugs.spec.ingredients.values()
        if entry.washout_days is not None
    }
    edges = rule_edges(compiled.values(), terminology.vocabulary(), washouts)
    return Shipped(compiled, terminology, edges)


@pytest.fixture(scope="module")
def shipped() -> Shipped:
    return _shipped()


@pytest.fixture(scope="module", params=RULESETS, ids=lambda p: p.stem)
def evaluators(
    request: pytest.FixtureRequest, shipped: Shipped
) -> tuple[Evaluator, Evaluator, st.SearchStrategy[tuple[Record, ...]]]:
    compiled = shipped.rulesets[request.param.name]
    return (
        Evaluator(compiled, engine="durable", terminology=shipped.terminology),
        Evaluator(compiled, engine="reference", terminology=shipped.terminology),
        patient_records(shipped.edges),
    )


def test_every_shipped_ruleset_is_tested() -> None:
    """The protocol's rulesets are here; the protocol and its tables are not."""
    names = {path.name for path in RULESETS}
    protocol = load_protocol(PROTOCOL)
    named = {name for profile in protocol.profiles.values() for name in profile.rulesets}
    assert named <= names
    assert DEFAULT_PROTOCOL not in names
    assert {protocol.terminology.drugs, protocol.terminology.conditions}.isdisjoint(names)


def test_patients_include_every_fact_type_the_rules_require(shipped: Shipped) -> None:
    """Each fact type a shipped rule requires is generated with known values, not only as a
    placeholder, so the rules over it are exercised on both evaluators."""
    required = sorted(
        {
            fact_type.name
            for compiled in shipped.rulesets.values()
            for rule in compiled.rules
            for _, fact_type in rule.patterns
            if not fact_type.derived
        }
    )
    assert {"ecg", "condition", "allergy", "medication", "session"} & set(required)
    seen: set[str] = set()

    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(patient_records(shipped.edges))
    def generated(records: tuple[Record, ...]) -> None:
        seen.update(
            r.fact_type
            for r in records
            if not r.placeholder and any(v is not None for v in r.rule_fields().values())
        )

    generated()
    assert set(required) <= seen, f"never generated with known values: {set(required) - seen}"


@settings(
    max_examples=int(os.environ.get("CDS_RULES_DIFFERENTIAL_EXAMPLES", "2000")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_durable_and_reference_agree(
    evaluators: tuple[Evaluator, Evaluator, st.SearchStrategy[tuple[Record, ...]]],
    data: st.DataObject,
) -> None:
    durable, reference, strategy = evaluators
    records = data.draw(strategy, label="records")
    firings_d, derived_d = durable.firings(records)
    firings_r, derived_r = reference.firings(records)
    assert {f.signature() for f in firings_d} == {f.signature() for f in firings_r}
    assert {(k, c) for k, _, c in derived_d} == {(k, c) for k, _, c in derived_r}
    result_d = durable.evaluate_records(records, AS_OF).to_dict()
    result_r = reference.evaluate_records(records, AS_OF).to_dict()
    for result in (result_d, result_r):
        result.pop("engine")
        # firing order is each evaluator's own; compare the fired rules as sets
        result["fired"] = sorted((f["rule_id"], str(f["matched"])) for f in result["fired"])
        result["derived"] = sorted(str(d) for d in result["derived"])
    assert result_d == result_r
    event(f"decision {result_d['decision']}")
