"""Normalisation: one validated patient becomes the flat records that rules test.

The output is always, in this order: one ``PatientRecord``, one ``AcrRecord``, one
``LabsRecord``, then the ``TrialRecord`` values in input order, then the ``TherapyRecord``
values in input order. An undocumented collection (``null``) becomes one placeholder record
whose fields are all unknown, so rules over it report UNKNOWN; a collection documented as
empty (``[]``) produces no records, so rules over it simply do not match.
"""

from __future__ import annotations

from .facts import FibromyalgiaFacts, LabResult, PatientFacts
from .records import (
    AcrRecord,
    LabsRecord,
    PatientRecord,
    Record,
    TherapyRecord,
    TrialRecord,
)
from .scoring import (
    generalized_pain_regions,
    polysymptomatic_distress,
    symptom_severity_2010,
    symptom_severity_2016,
    symptom_severity_part_a,
    widespread_pain_index,
)

__all__ = ["to_records"]


def to_records(facts: PatientFacts) -> tuple[Record, ...]:
    """The rule-facing records of one patient, in a fixed order (see the module docstring)."""
    records: list[Record] = [_patient_record(facts), _acr_record(facts.fibromyalgia)]
    records.append(_labs_record(facts))
    if facts.prior_trials is None:
        records.append(TrialRecord(placeholder=True))
    else:
        records.extend(
            TrialRecord(
                drug=trial.drug,
                dose_mg_per_day=trial.dose_mg_per_day,
                duration_weeks=trial.duration_weeks,
                stop_reason=trial.stop_reason,
                response=trial.response,
            )
            for trial in facts.prior_trials
        )
    if facts.nonpharmacological_therapies is None:
        records.append(TherapyRecord(placeholder=True))
    else:
        records.extend(
            TherapyRecord(
                therapy=therapy.therapy,
                supervised=therapy.supervised,
                duration_weeks=therapy.duration_weeks,
                sessions_per_week=therapy.sessions_per_week,
                sessions=therapy.sessions,
            )
            for therapy in facts.nonpharmacological_therapies
        )
    return tuple(records)


def _patient_record(facts: PatientFacts) -> PatientRecord:
    demographics = facts.demographics
    return PatientRecord(
        age_years=demographics.age_years,
        sex=demographics.sex,
        weight_kg=demographics.weight_kg,
        height_cm=demographics.height_cm,
        pregnancy_status=demographics.pregnancy_status,
        # A pregnancy entails childbearing potential: stated, not imputed.
        childbearing_potential=(
            True
            if demographics.pregnancy_status == "pregnant"
            else demographics.childbearing_potential
        ),
        pain_nrs=facts.pain_nrs,
        confounders_reviewed=facts.confounders_reviewed,
        contraindications_reviewed=facts.contraindications_reviewed,
    )


def _acr_record(fibromyalgia: FibromyalgiaFacts | None) -> AcrRecord:
    """Instrument scores; a missing block or item widens the bounds to everything possible."""
    block = fibromyalgia or FibromyalgiaFacts()
    sites = block.site_states()
    part_a_facts = block.sss_part_a
    part_a = (
        symptom_severity_part_a()
        if part_a_facts is None
        else symptom_severity_part_a(
            fatigue=part_a_facts.fatigue,
            waking_unrefreshed=part_a_facts.waking_unrefreshed,
            cognitive_symptoms=part_a_facts.cognitive_symptoms,
            subtotal=part_a_facts.subtotal,
        )
    )
    part_b = block.sss_part_b_2016
    severity_2016 = symptom_severity_2016(
        part_a,
        headaches=part_b.headaches if part_b else None,
        lower_abdominal_pain_or_cramps=part_b.lower_abdominal_pain_or_cramps if part_b else None,
        depression=part_b.depression if part_b else None,
    )
    pain_index = widespread_pain_index(sites)
    return AcrRecord(
        widespread_pain_index=pain_index,
        generalized_pain_regions=generalized_pain_regions(sites),
        symptom_severity_2016=severity_2016,
        symptom_severity_2010=symptom_severity_2010(part_a, block.sss_part_b_2010),
        polysymptomatic_distress=polysymptomatic_distress(pain_index, severity_2016),
        symptom_duration_months=block.symptom_duration_months,
        other_disorder_explains_pain=block.other_disorder_explains_pain,
    )


def _labs_record(facts: PatientFacts) -> LabsRecord:
    """Latest result per test taken on or before ``as_of``, in the test's canonical unit.

    Tests that ``LabsRecord`` has no field for (vitamin D, vitamin B12) are validated on
    input but not passed to rules.
    """
    latest: dict[str, LabResult] = {}
    for lab in facts.labs or ():
        if lab.taken_at > facts.as_of:
            continue
        current = latest.get(lab.test)
        if current is None or lab.taken_at > current.taken_at:
            latest[lab.test] = lab
    cbc = latest.get("cbc")

    def canonical(test: str) -> float | None:
        lab = latest.get(test)
        return None if lab is None else lab.canonical_value()

    def flagged(test: str) -> bool | None:
        # A result with no interpretation was reported without a flag: known, not flagged.
        lab = latest.get(test)
        return None if lab is None else lab.interpretation == "abnormal"

    return LabsRecord(
        cbc=None if cbc is None else cbc.interpretation,
        esr_mm_per_h=canonical("esr"),
        crp_mg_per_l=canonical("crp"),
        tsh_miu_per_l=canonical("tsh"),
        ck_u_per_l=canonical("ck"),
        esr_flagged_abnormal=flagged("esr"),
        crp_flagged_abnormal=flagged("crp"),
        tsh_flagged_abnormal=flagged("tsh"),
        ck_flagged_abnormal=flagged("ck"),
    )
