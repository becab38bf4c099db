"""Rule-facing fact records: the flat shapes that rules test.

Patient input (``facts.py``) is nested and close to FHIR; rules never see it. Normalisation
(``normalise.py``) turns one validated patient into a tuple of these records. The compiler
reads the field types declared here to type-check every rule condition, so a rule that tests
a misspelled field or compares a number with text fails at compile time.

Every field may be ``None``: unknown is not false. A rule whose outcome depends on an unknown
field is reported as UNKNOWN with the field's path, never as a silent non-match.

Instrument scores are :class:`Score` values: when some items of an instrument are unknown the
score is known only within bounds (the seed patient's 2016 symptom severity is 8 to 10), and
rules compare against the bounds with three-valued logic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = [
    "RECORD_TYPES",
    "AcrRecord",
    "AdverseEventRecord",
    "AllergyRecord",
    "ConditionRecord",
    "CourseEventRecord",
    "CourseSessionRecord",
    "EcgChangeRecord",
    "EcgRecord",
    "HaltRecord",
    "LabsRecord",
    "MedicationRecord",
    "PatientRecord",
    "PauseRecord",
    "Record",
    "ResponseRecord",
    "Score",
    "SedationRecord",
    "SessionRecord",
    "SignRecord",
    "TherapyRecord",
    "TrialRecord",
    "VitalsRecord",
    "documented",
]


class Score(BaseModel):
    """An instrument score, exact when ``minimum == maximum``, else known only within bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    minimum: int
    maximum: int
    unknown_items: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _ordered(self) -> Score:
        if self.minimum > self.maximum:
            raise ValueError(f"score minimum {self.minimum} exceeds maximum {self.maximum}")
        return self

    @property
    def exact(self) -> bool:
        return self.minimum == self.maximum

    def __str__(self) -> str:
        return str(self.minimum) if self.exact else f"{self.minimum}-{self.maximum}"


class Record(BaseModel):
    """Base of all rule-facing records. ``fact_type`` is the name rules use."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fact_type: ClassVar[str]
    #: What a placeholder record means, for a clinician ("no ECG on file").
    absent: ClassVar[str] = "not recorded"
    #: True for a record that stands for an undocumented collection (e.g. prior trials
    #: ``null``): every field is unknown, so rules over it can only be UNKNOWN.
    placeholder: bool = False

    def rule_fields(self) -> dict[str, Any]:
        """Field values as rules see them (without ``placeholder``)."""
        return {
            name: getattr(self, name) for name in type(self).model_fields if name != "placeholder"
        }


class PatientRecord(Record):
    """Demographics and the current clinical state of the patient."""

    fact_type: ClassVar[str] = "patient"

    age_years: float | None = None
    sex: Literal["female", "male"] | None = None
    weight_kg: float | None = None
    height_cm: float | None = None
    pregnancy_status: Literal["pregnant", "not_pregnant"] | None = None
    childbearing_potential: bool | None = None
    #: Current average pain, 0-10 numeric rating scale.
    pain_nrs: float | None = None
    #: Medication review, untreated depression/sleep disorder and non-medical factors reviewed.
    confounders_reviewed: bool | None = None
    breastfeeding: bool | None = None
    #: The latest pregnancy test on or before ``as_of``, and its age in hours.
    pregnancy_test: Literal["positive", "negative"] | None = None
    pregnancy_test_age_hours: float | None = None


class AcrRecord(Record):
    """ACR fibromyalgia instrument scores (computed in ``scoring.py``)."""

    fact_type: ClassVar[str] = "acr"

    widespread_pain_index: Score
    #: 2016 generalized-pain regions (0-5); jaw, chest and abdomen do not count.
    generalized_pain_regions: Score
    #: Symptom severity with the 2011/2016 part B (three 0/1 items), 0-12.
    symptom_severity_2016: Score
    #: Symptom severity with the 2010 part B (physician 0-3 estimate), 0-12.
    symptom_severity_2010: Score
    #: Polysymptomatic distress = WPI + 2016 symptom severity, 0-31.
    polysymptomatic_distress: Score
    symptom_duration_months: float | None = None
    #: 2010/2011 exclusion clause: another disorder would explain the pain.
    other_disorder_explains_pain: bool | None = None


class TrialRecord(Record):
    """One prior pharmacological trial for fibromyalgia."""

    fact_type: ClassVar[str] = "trial"
    absent: ClassVar[str] = "prior fibromyalgia drug trials (`prior_trials`) are not recorded"

    drug: str | None = None
    dose_mg_per_day: float | None = None
    duration_weeks: float | None = None
    stop_reason: Literal["ongoing", "insufficient_effect", "intolerance", "other"] | None = None
    response: Literal["none", "minimal", "partial", "good"] | None = None


class TherapyRecord(Record):
    """One prior non-pharmacological therapy."""

    fact_type: ClassVar[str] = "therapy"
    absent: ClassVar[str] = "non-pharmacological therapies are not recorded"

    therapy: str | None = None
    supervised: bool | None = None
    duration_weeks: float | None = None
    sessions_per_week: float | None = None
    sessions: int | None = None


class LabsRecord(Record):
    """Latest laboratory value per analyte on or before ``as_of``, in canonical units."""

    fact_type: ClassVar[str] = "labs"

    cbc: Literal["normal", "abnormal"] | None = None
    esr_mm_per_h: float | None = None
    crp_mg_per_l: float | None = None
    tsh_miu_per_l: float | None = None
    ck_u_per_l: float | None = None
    #: Whether the laboratory flagged the latest result abnormal; None when there is no result.
    esr_flagged_abnormal: bool | None = None
    crp_flagged_abnormal: bool | None = None
    tsh_flagged_abnormal: bool | None = None
    ck_flagged_abnormal: bool | None = None
    # Pre-infusion tests: value in the canonical unit, age of the result in days (from
    # ``as_of``) and the laboratory's abnormal flag.
    potassium_mmol_per_l: float | None = None
    potassium_age_days: float | None = None
    potassium_flagged_abnormal: bool | None = None
    sodium_mmol_per_l: float | None = None
    sodium_age_days: float | None = None
    sodium_flagged_abnormal: bool | None = None
    magnesium_mmol_per_l: float | None = None
    magnesium_age_days: float | None = None
    magnesium_flagged_abnormal: bool | None = None
    calcium_mmol_per_l: float | None = None
    calcium_age_days: float | None = None
    calcium_flagged_abnormal: bool | None = None
    alt_u_per_l: float | None = None
    alt_age_days: float | None = None
    alt_flagged_abnormal: bool | None = None
    ast_u_per_l: float | None = None
    ast_age_days: float | None = None
    ast_flagged_abnormal: bool | None = None
    bilirubin_umol_per_l: float | None = None
    bilirubin_age_days: float | None = None
    bilirubin_flagged_abnormal: bool | None = None
    albumin_g_per_l: float | None = None
    albumin_age_days: float | None = None
    albumin_flagged_abnormal: bool | None = None
    creatinine_umol_per_l: float | None = None
    creatinine_age_days: float | None = None
    creatinine_flagged_abnormal: bool | None = None
    egfr_ml_per_min: float | None = None
    egfr_age_days: float | None = None
    egfr_flagged_abnormal: bool | None = None


class EcgRecord(Record):
    """The latest 12-lead ECG on or before ``as_of``; a placeholder when there is none."""

    fact_type: ClassVar[str] = "ecg"
    absent: ClassVar[str] = "no 12-lead ECG on file (`ecgs`)"

    age_days: float | None = None
    rhythm: (
        Literal[
            "sinus",
            "sinus_bradycardia",
            "sinus_tachycardia",
            "sinus_arrhythmia",
            "atrial_fibrillation",
            "atrial_flutter",
            "junctional",
            "paced",
            "other",
        ]
        | None
    ) = None
    av_block: (
        Literal[
            "none",
            "first_degree",
            "second_degree_mobitz_i",
            "second_degree_mobitz_ii",
            "second_degree_2_to_1",
            "high_grade",
            "third_degree",
        ]
        | None
    ) = None
    sinoatrial_block: bool | None = None
    pre_excitation: bool | None = None
    intraventricular_conduction: (
        Literal[
            "normal",
            "incomplete_rbbb",
            "rbbb",
            "lbbb",
            "left_anterior_fascicular_block",
            "left_posterior_fascicular_block",
            "nonspecific_ivcd",
            "bifascicular_block",
            "trifascicular_block",
        ]
        | None
    ) = None
    pr_ms: float | None = None
    qrs_ms: float | None = None
    qtc_ms: float | None = None


class ConditionRecord(Record):
    """One problem-list entry, mapped to a concept of the condition table."""

    fact_type: ClassVar[str] = "condition"
    absent: ClassVar[str] = "the problem list (`diagnoses`) is not recorded"

    #: A concept of ``conditions.yaml``, or ``unclassified``.
    concept: str | None = None
    display: str | None = None
    status: Literal["active", "in_remission", "resolved"] | None = None
    days_since_onset: float | None = None
    days_since_last_event: float | None = None
    controlled: bool | None = None
    functioning: bool | None = None
    nyha_class: float | None = None
    lvef_percent: float | None = None
    child_pugh_class: Literal["A", "B", "C"] | None = None


class AllergyRecord(Record):
    """One recorded allergy, one record per drug class of the substance."""

    fact_type: ClassVar[str] = "allergy"
    absent: ClassVar[str] = "the allergy list (`allergies`) is not recorded"

    substance: str | None = None
    #: The drug-table ingredient, or ``unclassified``.
    ingredient: str | None = None
    #: A class of ``drugs.yaml``, ``none`` (a known drug in no class) or ``unclassified``.
    drug_class: str | None = None
    classified: bool | None = None


class MedicationRecord(Record):
    """One medication, one record per drug class of each of its ingredients."""

    fact_type: ClassVar[str] = "medication"
    absent: ClassVar[str] = "the medication list (`current_medications`) is not recorded"

    drug: str | None = None
    #: The drug-table ingredient, or ``unclassified``.
    ingredient: str | None = None
    #: A class of ``drugs.yaml``, ``none`` (a known drug in no class) or ``unclassified``.
    drug_class: str | None = None
    classified: bool | None = None
    status: Literal["active", "stopped"] | None = None
    days_since_started: float | None = None
    days_since_stopped: float | None = None
    #: From the drug table: how long after stopping the drug still counts.
    washout_days: float | None = None
    #: Whether the drug counts today: taken, or stopped fewer than ``washout_days`` ago. A
    #: stopped drug whose stop date is not recorded counts (its washout cannot be shown to
    #: have passed); unknown only when the table gives no washout for a stopped drug.
    in_effect: bool | None = None
    #: For messages: ``taken``, ``stopped 3 days ago`` or ``stopped, date not recorded``.
    use: str | None = None


class SessionRecord(Record):
    """The session about to start (pre-session gate only)."""

    fact_type: ClassVar[str] = "session"

    number: float | None = None
    vitals_age_minutes: float | None = None
    systolic_bp_mmhg: float | None = None
    diastolic_bp_mmhg: float | None = None
    diastolic_recheck_mmhg: float | None = None
    heart_rate_bpm: float | None = None
    spo2_percent: float | None = None
    on_room_air: bool | None = None
    respiratory_rate_per_min: float | None = None
    poss: float | None = None
    rass: float | None = None
    chest_pain: bool | None = None
    palpitations: bool | None = None
    syncope: bool | None = None
    new_neurological_deficit: bool | None = None
    severe_headache: bool | None = None
    visual_change: bool | None = None
    #: Any local anaesthetic block by another route recorded (``false``: asked, none).
    local_anaesthetic_block: bool | None = None
    local_anaesthetic_in_place: bool | None = None
    hours_since_local_anaesthetic_block: float | None = None
    monitored_bay: bool | None = None
    resuscitation_equipment: bool | None = None
    defibrillator: bool | None = None
    airway_equipment: bool | None = None
    benzodiazepine_available: bool | None = None
    lipid_emulsion_20_percent_ml: float | None = None
    dedicated_iv_access: bool | None = None
    hours_since_solid_food: float | None = None
    hours_since_clear_fluid: float | None = None
    consent_documented: bool | None = None


# ---------------------------------------------------------------------------------------------
# Course records: one session just given, and what it decides for the next (``course.py``).

#: What kind of adverse event: the course rules act on LAST signs, seizures, arrhythmias,
#: conduction block, anaphylaxis and psychomimetic effects by name.
AdverseEventCategory = Literal[
    "last_sign",
    "seizure",
    "arrhythmia",
    "conduction_block",
    "anaphylaxis",
    "psychomimetic",
    "sedation",
    "respiratory",
    "hypertension",
    "hypotension",
    "heart_rate",
    "nausea_vomiting",
    "other",
]

#: Patient Global Impression of Change, seven points.
Pgic = Literal[
    "very_much_improved",
    "much_improved",
    "minimally_improved",
    "no_change",
    "minimally_worse",
    "much_worse",
    "very_much_worse",
]


class CourseSessionRecord(Record):
    """One session of the course that has been given; the next session is decided from it."""

    fact_type: ClassVar[str] = "course_session"
    absent: ClassVar[str] = "session not recorded"

    number: float | None = None
    #: Sessions the course may still give after this one (SES-MAX, from the dosing table).
    sessions_remaining: float | None = None
    first_session: bool | None = None
    #: Hours from the start of the previous session (unknown for the first session).
    hours_since_previous: float | None = None
    #: Percent of the planned dose of this session that was delivered.
    delivered_percent: float | None = None
    max_poss: float | None = None
    min_rass: float | None = None
    #: The pre-session gate of this session passed (PROCEED).
    gate_passed: bool | None = None
    #: Whether the session's adverse events, halts and course events were recorded (an empty
    #: list is "none"; not recorded is unknown).
    adverse_events_recorded: bool | None = None
    halts_recorded: bool | None = None
    course_events_recorded: bool | None = None


class AdverseEventRecord(Record):
    """One adverse event of the session, graded (CTCAE v5)."""

    fact_type: ClassVar[str] = "adverse_event"
    absent: ClassVar[str] = "the session's adverse events are not recorded"

    term: str | None = None
    category: AdverseEventCategory | None = None
    grade: float | None = None
    #: LAST tier of the sign (0: not a sign of local anaesthetic toxicity).
    last_tier: float | None = None
    attributable: bool | None = None


class HaltRecord(Record):
    """One halt rule that fired during the session."""

    fact_type: ClassVar[str] = "halt"
    absent: ClassVar[str] = "the session's halts are not recorded"

    rule: str | None = None
    times: float | None = None
    resolved: bool | None = None
    rapid_recovery: bool | None = None


class CourseEventRecord(Record):
    """Something that ends the course whatever the doses: pregnancy, consent withdrawn."""

    fact_type: ClassVar[str] = "course_event"
    absent: ClassVar[str] = "whether the course should stop (pregnancy, consent) is not recorded"

    event: Literal["pregnancy_detected", "consent_withdrawn"] | None = None


class ResponseRecord(Record):
    """Pain response so far (RESP-01): change of the VNRS from the baseline, as decreases."""

    fact_type: ClassVar[str] = "response"
    absent: ClassVar[str] = "no pain score recorded"

    #: ``course`` after a session; ``follow_up`` after the course.
    phase: Literal["course", "follow_up"] | None = None
    after_session: float | None = None
    baseline_vnrs: float | None = None
    current_vnrs: float | None = None
    decrease_points: float | None = None
    decrease_percent: float | None = None
    pgic: Pgic | None = None
    #: Decrease of BPI pain interference (0-10) from the baseline.
    bpi_interference_decrease: float | None = None


# ---------------------------------------------------------------------------------------------
# During the infusion (``monitor.py``): what the halt rules see at each event. Each is built
# afresh from the session's events up to the event being evaluated; times are from the events.


class VitalsRecord(Record):
    """The latest vital signs of the session, against the session's baseline."""

    fact_type: ClassVar[str] = "vitals"
    absent: ClassVar[str] = "no vital signs recorded"

    sbp: float | None = None
    dbp: float | None = None
    hr: float | None = None
    spo2: float | None = None
    rr: float | None = None
    #: Percent change of the latest SBP from the baseline SBP: rise and fall (0 if none).
    sbp_rise_percent: float | None = None
    sbp_fall_percent: float | None = None
    #: Seconds the current run of readings has stayed past the monitoring table's run
    #: threshold (``runs`` in monitoring.yaml), from its first reading to its latest; 0 when
    #: the latest reading is not past it.
    spo2_low_seconds: float | None = None
    hr_high_seconds: float | None = None
    #: Minutes from the latest reading of each to now (the event being evaluated).
    minutes_since_bp: float | None = None
    minutes_since_spo2: float | None = None
    minutes_since_hr: float | None = None
    minutes_since_rr: float | None = None
    minutes_since_sedation: float | None = None
    #: Minutes from the latest symptom check (a ``symptoms`` event, empty or not) to now.
    minutes_since_symptom_check: float | None = None
    #: Any sign or symptom present now (from the latest symptom check).
    symptomatic: bool | None = None
    #: The session is running: started and not yet ended.
    running: bool | None = None


class SedationRecord(Record):
    """The latest sedation score of the session."""

    fact_type: ClassVar[str] = "sedation"
    absent: ClassVar[str] = "no sedation score recorded"

    scale: Literal["poss", "rass"] | None = None
    score: float | None = None


class SignRecord(Record):
    """A sign or symptom present now (from the latest symptom check), from the sign table."""

    fact_type: ClassVar[str] = "sign"
    absent: ClassVar[str] = "no symptom check recorded"

    name: str | None = None
    category: (
        Literal[
            "last_sign",
            "psychomimetic",
            "nausea",
            "vomiting",
            "allergic",
            "hypertensive",
            "other",
        ]
        | None
    ) = None
    #: LAST tier (0: not a sign of local anaesthetic toxicity).
    last_tier: float | None = None
    #: CTCAE grade where the report gives one (psychomimetic effects always).
    grade: float | None = None
    #: Minutes since the sign was first reported present in its current run.
    minutes_present: float | None = None


class EcgChangeRecord(Record):
    """An ECG change reported during the session (changes are not withdrawn)."""

    fact_type: ClassVar[str] = "ecg_change"
    absent: ClassVar[str] = "no ECG change reported"

    finding: (
        Literal[
            "new_av_block",
            "ventricular_ectopy_run",
            "vt_vf",
            "new_af",
            "qrs_measured",
            "other",
        ]
        | None
    ) = None
    qrs_ms: float | None = None
    baseline_qrs_ms: float | None = None
    #: Percent widening of the QRS from the baseline (unknown without both).
    qrs_widening_percent: float | None = None


class PauseRecord(Record):
    """A pause a halt rule has imposed on a drug this session: active, or lifted."""

    fact_type: ClassVar[str] = "pause"
    absent: ClassVar[str] = "no pause"

    rule: str | None = None
    drug: Literal["lidocaine", "ketamine"] | None = None
    active: bool | None = None
    #: Minutes from the start of the pause to now.
    minutes: float | None = None


_R = TypeVar("_R", bound=Record)
_Item = TypeVar("_Item")


def documented(
    kind: type[_R], items: Iterable[_Item] | None, build: Callable[[_Item], _R]
) -> list[_R]:
    """One record per item of a documented list (``[]``: none); for a list that was not
    documented (``None``), one placeholder record, so rules over it are UNKNOWN."""
    if items is None:
        return [kind(placeholder=True)]
    return [build(item) for item in items]


RECORD_TYPES: dict[str, type[Record]] = {
    cls.fact_type: cls
    for cls in (
        PatientRecord,
        AcrRecord,
        TrialRecord,
        TherapyRecord,
        LabsRecord,
        EcgRecord,
        ConditionRecord,
        AllergyRecord,
        MedicationRecord,
        SessionRecord,
        CourseSessionRecord,
        AdverseEventRecord,
        HaltRecord,
        CourseEventRecord,
        ResponseRecord,
        VitalsRecord,
        SedationRecord,
        SignRecord,
        EcgChangeRecord,
        PauseRecord,
    )
}
