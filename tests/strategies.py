"""Hypothesis strategies for rule-facing records, biased to the ruleset's threshold edges."""

from __future__ import annotations

from hypothesis import strategies as st

from cds_rules.records import (
    AcrRecord,
    LabsRecord,
    PatientRecord,
    Record,
    Score,
    TherapyRecord,
    TrialRecord,
)


def _maybe(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(st.none(), strategy)


def _edge_numbers(*edges: float, low: float = 0, high: float = 100) -> st.SearchStrategy[float]:
    near = [v for e in edges for v in (e - 0.1, e, e + 0.1) if low <= v <= high]
    return st.one_of(st.sampled_from(near), st.floats(low, high, allow_nan=False))


def scores(low: int, high: int, edges: tuple[int, ...]) -> st.SearchStrategy[Score]:
    points = sorted({v for e in edges for v in (e - 1, e, e + 1) if low <= v <= high} | {low, high})

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


patients = st.builds(
    PatientRecord,
    age_years=_maybe(_edge_numbers(40, 50, 60, low=18, high=90)),
    sex=_maybe(st.sampled_from(["female", "male"])),
    weight_kg=_maybe(_edge_numbers(40, 70, low=30, high=200)),
    height_cm=_maybe(_edge_numbers(160, low=120, high=210)),
    pregnancy_status=_maybe(st.sampled_from(["pregnant", "not_pregnant"])),
    pain_nrs=_maybe(_edge_numbers(5, low=0, high=10)),
    confounders_reviewed=_maybe(st.booleans()),
)

acr_records = st.builds(
    AcrRecord,
    widespread_pain_index=scores(0, 19, (3, 4, 6, 7)),
    generalized_pain_regions=scores(0, 5, (4,)),
    symptom_severity_2016=scores(0, 12, (5, 9)),
    symptom_severity_2010=scores(0, 12, (5, 9)),
    polysymptomatic_distress=scores(0, 31, (3, 4, 7, 8, 11, 12, 19, 20)),
    symptom_duration_months=_maybe(_edge_numbers(3, high=300)),
    other_disorder_explains_pain=_maybe(st.booleans()),
)

labs_records = st.builds(
    LabsRecord,
    cbc=_maybe(st.sampled_from(["normal", "abnormal"])),
    esr_mm_per_h=_maybe(_edge_numbers(20, 25, 30, 45, high=120)),
    crp_mg_per_l=_maybe(_edge_numbers(5, high=50)),
    tsh_miu_per_l=_maybe(_edge_numbers(4, high=20)),
    ck_u_per_l=_maybe(_edge_numbers(200, high=1000)),
)

DRUGS = [
    "duloxetine",
    "pregabalin",
    "milnacipran",
    "amitriptyline",
    "cyclobenzaprine",
    "gabapentin",
]
trials = st.builds(
    TrialRecord,
    drug=_maybe(st.sampled_from(DRUGS)),
    dose_mg_per_day=_maybe(st.sampled_from([0, 10, 25, 59.9, 60, 99, 100, 150, 299, 300, 450])),
    duration_weeks=_maybe(st.sampled_from([1, 5.9, 6, 11.9, 12, 52, 520])),
    stop_reason=_maybe(st.sampled_from(["ongoing", "insufficient_effect", "intolerance", "other"])),
    response=_maybe(st.sampled_from(["none", "minimal", "partial", "good"])),
)

THERAPIES = [
    "supervised_aerobic_exercise",
    "structured_exercise",
    "strengthening_exercise",
    "cbt",
    "physiotherapy",
    "relaxation_therapy",
    "hydrotherapy",
    "acupuncture",
    "massage",
]
therapies = st.builds(
    TherapyRecord,
    therapy=_maybe(st.sampled_from(THERAPIES)),
    supervised=_maybe(st.booleans()),
    duration_weeks=_maybe(st.sampled_from([4, 11.9, 12, 26])),
    sessions_per_week=_maybe(st.sampled_from([1, 1.9, 2, 3])),
    sessions=_maybe(st.sampled_from([4, 7, 8, 12])),
)


def _collection(
    items: st.SearchStrategy[Record], placeholder: Record
) -> st.SearchStrategy[list[Record]]:
    """A documented list (possibly empty), or an undocumented one (one placeholder record)."""
    return st.one_of(st.lists(items, max_size=4), st.just([placeholder]))


@st.composite
def patient_records(draw: st.DrawFn) -> tuple[Record, ...]:
    """One patient's records, as normalisation would produce them."""
    records: list[Record] = [draw(patients), draw(acr_records), draw(labs_records)]
    records += draw(_collection(trials, TrialRecord(placeholder=True)))
    records += draw(_collection(therapies, TherapyRecord(placeholder=True)))
    return tuple(records)
