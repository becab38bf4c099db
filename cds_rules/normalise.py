"""Normalisation: one validated patient becomes the flat records that rules test.

The output is always, in this order: one ``PatientRecord``, one ``AcrRecord``, one
``LabsRecord``, one ``EcgRecord``, then the ``TrialRecord`` values in input order, the
``TherapyRecord`` values, the ``ConditionRecord`` values, the ``AllergyRecord`` and
``MedicationRecord`` values (one per drug class), and a ``SessionRecord`` when a session is
given. Ages of results and times since events are measured from ``as_of``.

An undocumented collection (``null``) becomes one placeholder record whose fields are all
unknown, so rules over it report UNKNOWN; a collection documented as empty (``[]``) produces
no records, so rules over it simply do not match.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

from .facts import FibromyalgiaFacts, LabResult, PatientFacts, PregnancyTest, SessionFacts
from .records import (
    AcrRecord,
    AllergyRecord,
    ConditionRecord,
    EcgRecord,
    LabsRecord,
    MedicationRecord,
    PatientRecord,
    Record,
    SessionRecord,
    TherapyRecord,
    TrialRecord,
    documented,
)
from .scoring import (
    generalized_pain_regions,
    polysymptomatic_distress,
    symptom_severity_2010,
    symptom_severity_2016,
    symptom_severity_part_a,
    widespread_pain_index,
)
from .terminology import Ingredient, Terminology

__all__ = ["to_records"]


def to_records(facts: PatientFacts, terminology: Terminology | None = None) -> tuple[Record, ...]:
    """The rule-facing records of one patient, in a fixed order (see the module docstring).

    Without ``terminology`` every medication, allergy and diagnosis is ``unclassified``.
    """
    records: list[Record] = [_patient_record(facts), _acr_record(facts.fibromyalgia)]
    records.append(_labs_record(facts))
    records.append(_ecg_record(facts))
    records += documented(
        TrialRecord,
        facts.prior_trials,
        lambda trial: TrialRecord(
            drug=trial.drug,
            dose_mg_per_day=trial.dose_mg_per_day,
            duration_weeks=trial.duration_weeks,
            stop_reason=trial.stop_reason,
            response=trial.response,
        ),
    )
    records += documented(
        TherapyRecord,
        facts.nonpharmacological_therapies,
        lambda therapy: TherapyRecord(
            therapy=therapy.therapy,
            supervised=therapy.supervised,
            duration_weeks=therapy.duration_weeks,
            sessions_per_week=therapy.sessions_per_week,
            sessions=therapy.sessions,
        ),
    )
    records.extend(_condition_records(facts, terminology))
    records.extend(_allergy_records(facts, terminology))
    records.extend(_medication_records(facts, terminology))
    if facts.session is not None:
        records.append(_session_record(facts.session, facts.as_of))
    return tuple(records)


def _days(since: datetime | None, as_of: datetime) -> float | None:
    return None if since is None else (as_of - since).total_seconds() / 86_400


def _hours(since: datetime | None, as_of: datetime) -> float | None:
    return None if since is None else (as_of - since).total_seconds() / 3_600


def _ecg_record(facts: PatientFacts) -> EcgRecord:
    """The latest ECG; no ECG on file (``null`` or ``[]``) is a placeholder: all unknown."""
    ecgs = [ecg for ecg in facts.ecgs or () if ecg.recorded_at <= facts.as_of]
    if not ecgs:
        return EcgRecord(placeholder=True)
    ecg = max(ecgs, key=lambda item: item.recorded_at)
    return EcgRecord(
        age_days=_days(ecg.recorded_at, facts.as_of),
        rhythm=ecg.rhythm,
        av_block=ecg.av_block,
        sinoatrial_block=ecg.sinoatrial_block,
        pre_excitation=ecg.pre_excitation,
        intraventricular_conduction=ecg.intraventricular_conduction,
        pr_ms=ecg.pr_ms,
        qrs_ms=ecg.qrs_ms,
        qtc_ms=ecg.qtc_ms,
    )


def _condition_records(
    facts: PatientFacts, terminology: Terminology | None
) -> list[ConditionRecord]:
    if facts.diagnoses is None:
        return [ConditionRecord(placeholder=True)]
    return [
        ConditionRecord(
            concept=(
                terminology.conditions.classify(item.display, item.code, item.system)
                if terminology
                else "unclassified"
            ),
            display=item.display,
            status=item.status,
            days_since_onset=_days(item.onset_at, facts.as_of),
            days_since_last_event=_days(item.last_event_at, facts.as_of),
            controlled=item.controlled,
            functioning=item.functioning,
            nyha_class=item.nyha_class,
            lvef_percent=item.lvef_percent,
            child_pugh_class=item.child_pugh_class,
        )
        for item in facts.diagnoses
    ]


def _classes(ingredients: tuple[Ingredient, ...]) -> list[tuple[str, str, float | None]]:
    """``(ingredient, class, washout)`` rows; a known drug in no class gives class ``none``."""
    if not ingredients:
        return [("unclassified", "unclassified", None)]
    rows: list[tuple[str, str, float | None]] = []
    for ingredient in ingredients:
        rows.extend(
            (ingredient.name, drug_class, ingredient.washout_days)
            for drug_class in ingredient.classes or ("none",)
        )
    return rows


def _allergy_records(facts: PatientFacts, terminology: Terminology | None) -> list[AllergyRecord]:
    if facts.allergies is None:
        return [AllergyRecord(placeholder=True)]
    records: list[AllergyRecord] = []
    for allergy in facts.allergies:
        found = (
            terminology.drugs.classify(allergy.substance, allergy.code, allergy.system)
            if terminology
            else ()
        )
        # The ingredient itself is a class of one, so a rule can name a single drug.
        records.extend(
            AllergyRecord(
                substance=allergy.substance,
                ingredient=ingredient,
                drug_class=drug_class,
                classified=ingredient != "unclassified",
            )
            for ingredient, drug_class, _ in _classes(found)
        )
    return records


def _medication_records(
    facts: PatientFacts, terminology: Terminology | None
) -> list[MedicationRecord]:
    if facts.current_medications is None:
        return [MedicationRecord(placeholder=True)]
    records: list[MedicationRecord] = []
    for medication in facts.current_medications:
        found = (
            terminology.drugs.classify(medication.drug, medication.code, medication.system)
            if terminology
            else ()
        )
        stopped = _days(medication.stopped_at, facts.as_of)
        records.extend(
            MedicationRecord(
                drug=medication.drug,
                ingredient=ingredient,
                drug_class=drug_class,
                classified=ingredient != "unclassified",
                status=medication.status,
                days_since_started=_days(medication.started_at, facts.as_of),
                days_since_stopped=stopped,
                washout_days=washout,
                in_effect=_in_effect(medication.status, stopped, washout),
                use=_use(medication.status, stopped),
            )
            for ingredient, drug_class, washout in _classes(found)
        )
    return records


def _in_effect(status: str, days_stopped: float | None, washout: float | None) -> bool | None:
    """Taken, or stopped and still inside its washout; fails closed on an unknown stop date."""
    if status == "active" or days_stopped is None:
        return True
    if washout is None:
        return None
    return days_stopped < washout


def _use(status: str, days_stopped: float | None) -> str:
    if status == "active":
        return "taken"
    if days_stopped is None:
        return "stopped, date not recorded"
    # Rounded down, so the message never shows a washout as passed before it has.
    days = math.floor(days_stopped * 10) / 10
    return f"stopped {days:g} day{'' if days == 1 else 's'} ago"


def _session_record(session: SessionFacts, as_of: datetime) -> SessionRecord:
    vitals = session.vitals
    symptoms = session.new_symptoms

    def symptom(name: str) -> bool | None:
        return None if symptoms is None else name in symptoms

    blocks = session.local_anaesthetic_blocks
    latest_block = max((block.at for block in blocks or ()), default=None)
    readiness = session.readiness
    return SessionRecord(
        number=session.number,
        vitals_age_minutes=None
        if vitals is None
        else (as_of - vitals.measured_at).total_seconds() / 60,
        systolic_bp_mmhg=vitals.systolic_bp_mmhg if vitals else None,
        diastolic_bp_mmhg=vitals.diastolic_bp_mmhg if vitals else None,
        diastolic_recheck_mmhg=vitals.diastolic_recheck_mmhg if vitals else None,
        heart_rate_bpm=vitals.heart_rate_bpm if vitals else None,
        spo2_percent=vitals.spo2_percent if vitals else None,
        on_room_air=vitals.on_room_air if vitals else None,
        respiratory_rate_per_min=vitals.respiratory_rate_per_min if vitals else None,
        poss=session.poss,
        rass=session.rass,
        chest_pain=symptom("chest_pain"),
        palpitations=symptom("palpitations"),
        syncope=symptom("syncope"),
        new_neurological_deficit=symptom("new_neurological_deficit"),
        severe_headache=symptom("severe_headache"),
        visual_change=symptom("visual_change"),
        local_anaesthetic_block=None if blocks is None else bool(blocks),
        local_anaesthetic_in_place=(
            None if blocks is None else any(block.ongoing for block in blocks)
        ),
        hours_since_local_anaesthetic_block=_hours(latest_block, as_of),
        monitored_bay=readiness.monitored_bay if readiness else None,
        resuscitation_equipment=readiness.resuscitation_equipment if readiness else None,
        defibrillator=readiness.defibrillator if readiness else None,
        airway_equipment=readiness.airway_equipment if readiness else None,
        benzodiazepine_available=readiness.benzodiazepine_available if readiness else None,
        lipid_emulsion_20_percent_ml=(
            readiness.lipid_emulsion_20_percent_ml if readiness else None
        ),
        dedicated_iv_access=session.dedicated_iv_access,
        hours_since_solid_food=_hours(session.last_solid_food_at, as_of),
        hours_since_clear_fluid=_hours(session.last_clear_fluid_at, as_of),
        consent_documented=session.consent_documented,
    )


def _pregnancy_status(
    documented: Literal["pregnant", "not_pregnant"] | None, latest: PregnancyTest | None
) -> Literal["pregnant", "not_pregnant"] | None:
    """Pregnant if documented so or the latest test is positive (the more restrictive reading
    wins); else the documented status; else the latest test's result; else unknown. How old the
    test may be is a rule (PRE-06), not decided here."""
    if documented == "pregnant" or (latest is not None and latest.result == "positive"):
        return "pregnant"
    if documented is not None:
        return documented
    return None if latest is None else "not_pregnant"


def _patient_record(facts: PatientFacts) -> PatientRecord:
    demographics = facts.demographics
    tests = [test for test in facts.pregnancy_tests or () if test.taken_at <= facts.as_of]
    latest_test = max(tests, key=lambda test: test.taken_at) if tests else None
    return PatientRecord(
        age_years=demographics.age_years,
        sex=demographics.sex,
        weight_kg=demographics.weight_kg,
        height_cm=demographics.height_cm,
        pregnancy_status=_pregnancy_status(demographics.pregnancy_status, latest_test),
        # A pregnancy entails childbearing potential: stated, not imputed.
        childbearing_potential=(
            True
            if demographics.pregnancy_status == "pregnant"
            or (latest_test is not None and latest_test.result == "positive")
            else demographics.childbearing_potential
        ),
        pain_nrs=facts.pain_nrs,
        confounders_reviewed=facts.confounders_reviewed,
        breastfeeding=demographics.breastfeeding,
        pregnancy_test=None if latest_test is None else latest_test.result,
        pregnancy_test_age_hours=(
            None if latest_test is None else _hours(latest_test.taken_at, facts.as_of)
        ),
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

    return LabsRecord.model_validate(
        dict(
            cbc=None if cbc is None else cbc.interpretation,
            esr_mm_per_h=canonical("esr"),
            crp_mg_per_l=canonical("crp"),
            tsh_miu_per_l=canonical("tsh"),
            ck_u_per_l=canonical("ck"),
            esr_flagged_abnormal=flagged("esr"),
            crp_flagged_abnormal=flagged("crp"),
            tsh_flagged_abnormal=flagged("tsh"),
            ck_flagged_abnormal=flagged("ck"),
            **_pre_infusion_labs(latest, facts.as_of),
        )
    )


#: Pre-infusion tests: LabsRecord field prefix and canonical-unit suffix of each test.
_PRE_INFUSION_TESTS = {
    "potassium": "potassium_mmol_per_l",
    "sodium": "sodium_mmol_per_l",
    "magnesium": "magnesium_mmol_per_l",
    "calcium": "calcium_mmol_per_l",
    "alt": "alt_u_per_l",
    "ast": "ast_u_per_l",
    "bilirubin": "bilirubin_umol_per_l",
    "albumin": "albumin_g_per_l",
    "creatinine": "creatinine_umol_per_l",
    "egfr": "egfr_ml_per_min",
}


def _pre_infusion_labs(latest: dict[str, LabResult], as_of: datetime) -> dict[str, object]:
    fields: dict[str, object] = {}
    for test, value_field in _PRE_INFUSION_TESTS.items():
        lab = latest.get(test)
        fields[value_field] = None if lab is None else lab.canonical_value()
        fields[f"{test}_age_days"] = None if lab is None else _days(lab.taken_at, as_of)
        fields[f"{test}_flagged_abnormal"] = (
            None if lab is None else lab.interpretation == "abnormal"
        )
    return fields
