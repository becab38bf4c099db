"""Hypothesis strategies for rule-facing records, biased to the rulesets' threshold edges.

Every record type normalisation produces is generated (patient, acr, labs, ecg, trials,
therapies, conditions, allergies, medications, and a session for the gate), with unknown fields,
score bounds, undocumented collections (one placeholder record) and documented-empty ones.
Numbers are drawn near each threshold the given rulesets test (:func:`rule_edges`: the value
itself and just either side) as well as anywhere in a plausible range; text fields closed by a
terminology table take the table's values; text the rules compare with (a drug, a therapy)
takes those values and a few others.
"""

from __future__ import annotations

import typing
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hypothesis import strategies as st

from cds_rules.compiler import CompiledRuleset
from cds_rules.model import FieldInfo, base_fact_types
from cds_rules.records import (
    AcrRecord,
    AdverseEventRecord,
    AllergyRecord,
    ConditionRecord,
    CourseEventRecord,
    CourseSessionRecord,
    EcgChangeRecord,
    EcgRecord,
    HaltRecord,
    LabsRecord,
    MedicationRecord,
    PatientRecord,
    PauseRecord,
    Record,
    ResponseRecord,
    Score,
    SedationRecord,
    SessionRecord,
    SignRecord,
    TherapyRecord,
    TrialRecord,
    VitalsRecord,
)

__all__ = ["Edges", "patient_records", "rule_edges"]

Key = tuple[str, str]  # (fact type, field)


@dataclass(frozen=True)
class Edges:
    """What the rules test: numbers per field, and text values per open text field."""

    numbers: Mapping[Key, frozenset[float]] = field(default_factory=dict)
    texts: Mapping[Key, frozenset[str]] = field(default_factory=dict)
    #: Closed value sets of text fields set by terminology tables (``Terminology.vocabulary``).
    vocabulary: Mapping[Key, tuple[str, ...]] = field(default_factory=dict)


def rule_edges(
    rulesets: Iterable[CompiledRuleset],
    vocabulary: Mapping[Key, tuple[str, ...]] | None = None,
    washouts: Iterable[float] = (),
) -> Edges:
    """The numbers and text every rule of ``rulesets`` compares a base fact's field with.

    A comparison with another fact's field (``{field: med.washout_days}``) adds the referenced
    field's values (``washouts``, from the drug table) to the tested field, so both sides meet.
    """
    numbers: dict[Key, set[float]] = defaultdict(set)
    texts: dict[Key, set[str]] = defaultdict(set)
    base = base_fact_types()
    for ruleset in rulesets:
        for rule in ruleset.rules:
            types = {alias: fact_type.name for alias, fact_type in rule.patterns}
            for leaf in rule.leaves:
                fact_type = types.get(leaf.alias)
                if fact_type not in base:
                    continue  # a derived fact: asserted by rules, never generated
                key = (fact_type, leaf.field.name)
                if leaf.reference is not None:
                    reference = leaf.reference
                    numbers[key].update(w * reference.times + reference.plus for w in washouts)
                    continue
                values = leaf.value if isinstance(leaf.value, list | tuple) else [leaf.value]
                for value in values:
                    if isinstance(value, bool) or value is None:
                        continue
                    if isinstance(value, int | float):
                        numbers[key].add(float(value))
                    elif isinstance(value, str):
                        texts[key].add(value)
    washout_key = ("medication", "washout_days")
    numbers[washout_key].update(float(w) for w in washouts)
    return Edges(
        numbers={key: frozenset(values) for key, values in numbers.items()},
        texts={key: frozenset(values) for key, values in texts.items()},
        vocabulary=dict(vocabulary or {}),
    )


def _maybe(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(st.none(), strategy)


def _edge_numbers(*edges: float, low: float = 0, high: float = 100) -> st.SearchStrategy[float]:
    near = sorted({v for e in edges for v in (e - 0.1, e, e + 0.1) if low <= v <= high})
    anywhere = st.floats(low, high, allow_nan=False)
    return st.one_of(st.sampled_from(near), anywhere) if near else anywhere


def scores(low: int, high: int, edges: Iterable[float]) -> st.SearchStrategy[Score]:
    whole = {int(e) for e in edges if float(e).is_integer()}
    points = sorted({v for e in whole for v in (e - 1, e, e + 1) if low <= v <= high} | {low, high})

    @st.composite
    def build(draw: st.DrawFn) -> Score:
        first = draw(st.one_of(st.sampled_from(points), st.integers(low, high)))
        spread = draw(st.sampled_from([0, 0, 0, 1, 2, 3]))
        return Score(
            minimum=first,
            maximum=min(high, first + spread),
            unknown_items=("item",) if spread else (),
        )

    return build()


# Plausible ranges of numbers (the rest: around the rules' thresholds, from 0 to at least 100).
RANGES: dict[Key, tuple[float, float]] = {
    ("patient", "age_years"): (18, 90),
    ("patient", "weight_kg"): (30, 200),
    ("patient", "height_cm"): (120, 210),
    ("patient", "pain_nrs"): (0, 10),
    ("patient", "pregnancy_test_age_hours"): (0, 24 * 30),
    ("acr", "symptom_duration_months"): (0, 300),
    ("labs", "esr_mm_per_h"): (0, 120),
    ("labs", "crp_mg_per_l"): (0, 50),
    ("labs", "tsh_miu_per_l"): (0, 20),
    ("labs", "ck_u_per_l"): (0, 1000),
    ("ecg", "age_days"): (0, 730),
    ("ecg", "pr_ms"): (80, 400),
    ("ecg", "qrs_ms"): (60, 200),
    ("ecg", "qtc_ms"): (340, 600),
    ("condition", "nyha_class"): (1, 4),
    ("condition", "lvef_percent"): (10, 75),
    ("medication", "washout_days"): (0, 60),
    ("medication", "days_since_stopped"): (0, 90),
    ("session", "number"): (1, 10),
    ("session", "systolic_bp_mmhg"): (60, 220),
    ("session", "diastolic_bp_mmhg"): (30, 140),
    ("session", "diastolic_recheck_mmhg"): (30, 140),
    ("session", "heart_rate_bpm"): (30, 180),
    ("session", "spo2_percent"): (70, 100),
    ("session", "respiratory_rate_per_min"): (4, 40),
    ("session", "poss"): (1, 4),
    ("session", "rass"): (-5, 4),
    ("session", "lipid_emulsion_20_percent_ml"): (0, 1000),
}

# Thresholds known from the clinical reference, kept whatever the rulesets say today.
KNOWN_EDGES: dict[Key, tuple[float, ...]] = {
    ("patient", "age_years"): (40, 50, 60),
    ("patient", "weight_kg"): (40, 70),
    ("patient", "height_cm"): (160,),
    ("patient", "pain_nrs"): (5,),
    ("patient", "pregnancy_test_age_hours"): (72,),
    ("acr", "symptom_duration_months"): (3,),
    ("labs", "esr_mm_per_h"): (20, 25, 30, 45),
    ("labs", "crp_mg_per_l"): (5,),
    ("labs", "tsh_miu_per_l"): (4,),
    ("labs", "ck_u_per_l"): (200,),
    ("ecg", "age_days"): (183,),
    ("ecg", "pr_ms"): (200,),
    ("ecg", "qrs_ms"): (120,),
    ("ecg", "qtc_ms"): (460, 470, 500),
    ("trial", "dose_mg_per_day"): (60, 100, 150, 300, 450),
    ("trial", "duration_weeks"): (6, 12),
    ("therapy", "duration_weeks"): (12,),
    ("therapy", "sessions_per_week"): (2,),
    ("therapy", "sessions"): (8,),
}

# Score bounds of the ACR instruments, and the thresholds known from the clinical reference.
SCORES: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "widespread_pain_index": (0, 19, (3, 4, 6, 7)),
    "generalized_pain_regions": (0, 5, (4,)),
    "symptom_severity_2016": (0, 12, (5, 9)),
    "symptom_severity_2010": (0, 12, (5, 9)),
    "polysymptomatic_distress": (0, 31, (3, 4, 7, 8, 11, 12, 19, 20)),
}

# Open text: values rules compare with come from the rulesets; these are others a patient has.
KNOWN_TEXTS: dict[Key, tuple[str, ...]] = {
    ("trial", "drug"): (
        "duloxetine",
        "pregabalin",
        "milnacipran",
        "amitriptyline",
        "cyclobenzaprine",
        "gabapentin",
    ),
    ("therapy", "therapy"): (
        "supervised_aerobic_exercise",
        "structured_exercise",
        "strengthening_exercise",
        "cbt",
        "physiotherapy",
        "relaxation_therapy",
        "hydrotherapy",
        "acupuncture",
        "massage",
    ),
    ("medication", "drug"): ("duloxetine", "amiodarone 200 mg tablets", "bupivacaine", "x"),
    ("allergy", "substance"): ("lidocaine", "penicillin", "ketamine"),
    ("condition", "display"): ("fibromyalgia", "hypothyroidism", "something else"),
}

_TEXT_FALLBACK = ("unclassified", "other")


def _number(key: Key, edges: Edges) -> st.SearchStrategy[object]:
    found = sorted(edges.numbers.get(key, frozenset()) | set(KNOWN_EDGES.get(key, ())))
    low, high = RANGES.get(key, (0.0, 100.0))
    if found:
        low, high = min(low, found[0] - 1), max(high, found[-1] + 1)
    return _maybe(_edge_numbers(*found, low=low, high=high))


def _integer(key: Key, edges: Edges) -> st.SearchStrategy[object]:
    found = sorted(edges.numbers.get(key, frozenset()) | set(KNOWN_EDGES.get(key, ())))
    low, high = RANGES.get(key, (0.0, 100.0))
    if found:
        low, high = min(low, found[0] - 1), max(high, found[-1] + 1)
    near = sorted({int(v) for e in found for v in (e - 1, e, e + 1) if low <= v <= high})
    anywhere = st.integers(int(low), int(high))
    return _maybe(st.one_of(st.sampled_from(near), anywhere) if near else anywhere)


def _text(key: Key, info: FieldInfo, edges: Edges) -> st.SearchStrategy[object]:
    if info.allowed is not None:
        return _maybe(st.sampled_from(info.allowed))
    if key in edges.vocabulary:
        values = edges.vocabulary[key]
    else:
        values = tuple(
            sorted(edges.texts.get(key, frozenset()) | set(KNOWN_TEXTS.get(key, _TEXT_FALLBACK)))
        )
    return _maybe(st.sampled_from(values))


def _field(kind: type[Record], info: FieldInfo, edges: Edges) -> st.SearchStrategy[object]:
    key = (kind.fact_type, info.name)
    if info.kind == "boolean":
        return _maybe(st.booleans())
    if info.kind == "number":
        whole = int in typing.get_args(kind.model_fields[info.name].annotation)
        return _integer(key, edges) if whole else _number(key, edges)
    if info.kind == "score":
        low, high, known = SCORES[info.name]
        return scores(low, high, {*known, *edges.numbers.get(key, frozenset())})
    return _text(key, info, edges)


def records_of(kind: type[Record], edges: Edges) -> st.SearchStrategy[Record]:
    """One record of ``kind`` with every field drawn (unknown included), edges first."""
    fact_type = base_fact_types()[kind.fact_type]
    return st.builds(
        kind,
        **{name: _field(kind, info, edges) for name, info in fact_type.fields.items()},
    )


def _collection(
    items: st.SearchStrategy[Record], placeholder: Record
) -> st.SearchStrategy[list[Record]]:
    """A documented list (possibly empty), or an undocumented one (one placeholder record)."""
    return st.one_of(st.lists(items, max_size=3), st.just([placeholder]))


def patient_records(edges: Edges | None = None) -> st.SearchStrategy[tuple[Record, ...]]:
    """One patient's records, in the order normalisation produces them (``normalise.py``)."""
    edges = edges or Edges()
    single = [records_of(kind, edges) for kind in (PatientRecord, AcrRecord, LabsRecord)]
    ecg = st.one_of(records_of(EcgRecord, edges), st.just(EcgRecord(placeholder=True)))
    collections = [
        _collection(records_of(kind, edges), kind(placeholder=True))
        for kind in (TrialRecord, TherapyRecord, ConditionRecord, AllergyRecord, MedicationRecord)
    ]
    session = st.one_of(st.just([]), records_of(SessionRecord, edges).map(lambda r: [r]))
    # A course session's records (course.py): the session, its response, and its adverse
    # events, halts and course events, each documented (possibly empty) or not.
    course_single = [
        st.one_of(st.just([]), records_of(kind, edges).map(lambda r: [r]))
        for kind in (CourseSessionRecord, ResponseRecord)
    ]
    course_collections = [
        _collection(records_of(kind, edges), kind(placeholder=True))
        for kind in (AdverseEventRecord, HaltRecord, CourseEventRecord)
    ]

    # What the halt rules see at one event of an infusion (monitor.py): the latest vitals and
    # sedation score (or none), the signs present, the ECG reports and the pauses imposed.
    monitor_single = [
        st.one_of(st.just([]), records_of(kind, edges).map(lambda r: [r]))
        for kind in (VitalsRecord, SedationRecord)
    ]
    monitor_collections = [
        st.lists(records_of(kind, edges), max_size=3)
        for kind in (SignRecord, EcgChangeRecord, PauseRecord)
    ]

    @st.composite
    def build(draw: st.DrawFn) -> tuple[Record, ...]:
        records: list[Record] = [draw(strategy) for strategy in single]
        records.append(draw(ecg))
        for collection in collections:
            records += draw(collection)
        records += draw(session)
        for strategy in course_single:
            records += draw(strategy)
        for collection in course_collections:
            records += draw(collection)
        for strategy in monitor_single:
            records += draw(strategy)
        for collection in monitor_collections:
            records += draw(collection)
        return tuple(records)

    return build()
