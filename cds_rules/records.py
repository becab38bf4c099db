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

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = [
    "RECORD_TYPES",
    "AcrRecord",
    "LabsRecord",
    "PatientRecord",
    "Record",
    "Score",
    "TherapyRecord",
    "TrialRecord",
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
    #: A clinician has screened both drugs' contraindications and interactions.
    contraindications_reviewed: bool | None = None


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

    drug: str | None = None
    dose_mg_per_day: float | None = None
    duration_weeks: float | None = None
    stop_reason: Literal["ongoing", "insufficient_effect", "intolerance", "other"] | None = None
    response: Literal["none", "minimal", "partial", "good"] | None = None


class TherapyRecord(Record):
    """One prior non-pharmacological therapy."""

    fact_type: ClassVar[str] = "therapy"

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


RECORD_TYPES: dict[str, type[Record]] = {
    cls.fact_type: cls for cls in (PatientRecord, AcrRecord, TrialRecord, TherapyRecord, LabsRecord)
}
