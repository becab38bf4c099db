"""Terminology tables: names, brands and codes to drug classes and condition concepts.

What a user notices: a medication written by brand, with its strength and form, or given only
by an RxNorm code, lands in the right class; an unknown one is `unclassified`, never safe; a
table with an ambiguous name or a class that does not exist is refused at its line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_rules.errors import RulesetErrors
from cds_rules.facts import parse_patient
from cds_rules.normalise import to_records
from cds_rules.records import AllergyRecord, ConditionRecord, MedicationRecord
from cds_rules.terminology import (
    load_condition_table,
    load_drug_table,
    load_terminology,
    match_key,
)

RULESETS = Path(__file__).resolve().parent.parent / "rulesets"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.fixture(scope="module")
def terminology():  # type: ignore[no-untyped-def]
    return load_terminology(RULESETS / "drugs.yaml", RULESETS / "conditions.yaml")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Lidocaine", ("lidocaine",)),
        ("Lidocaine Hydrochloride 2% injection", ("lidocaine",)),
        ("propranolol 40 mg tablets", ("propranolol",)),
        ("Levothyroxine sodium 100 mcg", ("levothyroxine",)),
        ("co-codamol 30/500", ("co", "codamol")),
        ("  XYLOCAINE® ", ("xylocaine",)),
        ("Lignocaïne", ("lignocaine",)),
    ],
)
def test_match_key_ignores_case_accents_salts_strengths_and_forms(
    text: str, words: tuple[str, ...]
) -> None:
    assert match_key(text) == words


@pytest.mark.parametrize(
    ("name", "code", "system", "ingredients"),
    [
        ("lidocaine", None, None, ("lidocaine",)),
        ("Lignocaine 1% injection", None, None, ("lidocaine",)),
        ("Xylocard", None, None, ("lidocaine",)),
        ("Marcaine 0.5%", None, None, ("bupivacaine",)),
        ("local anaesthetic cream", None, None, ()),
        ("made-up-drug 10 mg", None, None, ()),
        # An RxNorm ingredient code alone decides, whatever the display says.
        ("unnamed infusion", "6387", RXNORM, ("lidocaine",)),
        ("unnamed infusion", "6387", "rxnorm", ("lidocaine",)),
        # A code of another system is not read as RxNorm.
        ("unnamed infusion", "6387", "http://snomed.info/sct", ()),
        # Code and name disagree: both are kept, so the restrictive reading is never lost.
        ("ketamine", "6387", RXNORM, ("lidocaine", "ketamine")),
    ],
)
def test_medications_are_classified_by_code_then_name(
    terminology, name: str, code: str | None, system: str | None, ingredients: tuple[str, ...]
) -> None:
    found = terminology.drugs.classify(name, code, system)
    assert tuple(i.name for i in found) == ingredients


def test_amide_local_anaesthetics_share_a_class(terminology) -> None:
    for name in ("lidocaine", "bupivacaine", "ropivacaine", "prilocaine", "mepivacaine"):
        (ingredient,) = terminology.drugs.classify(name)
        assert "amide_local_anaesthetic" in ingredient.classes


@pytest.mark.parametrize(
    ("display", "code", "system", "concept"),
    [
        ("Fibromyalgia", None, None, "fibromyalgia"),
        ("hypothyroidism (treated)", None, None, "hypothyroidism"),
        ("something else entirely", None, None, "unclassified"),
        ("code only", "M79.7", "http://hl7.org/fhir/sid/icd-10", "fibromyalgia"),
        ("code only", "E03.9", "icd-10", "hypothyroidism"),
    ],
)
def test_problem_list_entries_map_to_concepts(
    terminology, display: str, code: str | None, system: str | None, concept: str
) -> None:
    assert terminology.conditions.classify(display, code, system) == concept


_AS_OF = "2026-01-20T09:00:00+00:00"


def _records(terminology, **patch):  # type: ignore[no-untyped-def]
    data = {"as_of": _AS_OF, **patch}
    return to_records(parse_patient(data), terminology)


def test_a_stopped_medication_carries_days_since_stopped_and_its_washout(terminology) -> None:
    records = _records(
        terminology,
        current_medications=[
            {"drug": "Xylocaine", "status": "stopped", "stopped_at": "2026-01-18T09:00:00+00:00"},
            {"drug": "mystery tonic"},
        ],
    )
    meds = [r for r in records if isinstance(r, MedicationRecord)]
    assert [(m.drug, m.ingredient, m.drug_class, m.classified) for m in meds] == [
        ("xylocaine", "lidocaine", "amide_local_anaesthetic", True),
        ("mystery tonic", "unclassified", "unclassified", False),
    ]
    assert meds[0].status == "stopped"
    assert meds[0].days_since_stopped == pytest.approx(2.0)
    assert meds[0].washout_days == terminology.drugs.spec.ingredients["lidocaine"].washout_days
    assert meds[1].status == "active" and meds[1].days_since_stopped is None


def test_a_known_drug_in_no_class_is_classified_with_class_none(terminology) -> None:
    records = _records(terminology, current_medications=[{"drug": "duloxetine 60 mg"}])
    (med,) = [r for r in records if isinstance(r, MedicationRecord)]
    assert (med.ingredient, med.drug_class, med.classified) == ("duloxetine", "none", True)


def test_undocumented_lists_are_placeholders_and_empty_lists_give_nothing(terminology) -> None:
    undocumented = _records(terminology)
    documented = _records(terminology, current_medications=[], allergies=[], diagnoses=[])
    for kind in (MedicationRecord, AllergyRecord, ConditionRecord):
        (placeholder,) = [r for r in undocumented if isinstance(r, kind)]
        assert placeholder.placeholder
        assert not [r for r in documented if isinstance(r, kind)]


def test_without_a_terminology_everything_is_unclassified() -> None:
    records = to_records(
        parse_patient(
            {
                "as_of": _AS_OF,
                "current_medications": [{"drug": "lidocaine"}],
                "diagnoses": [{"display": "fibromyalgia"}],
            }
        )
    )
    (med,) = [r for r in records if isinstance(r, MedicationRecord)]
    (condition,) = [r for r in records if isinstance(r, ConditionRecord)]
    assert (med.classified, med.drug_class) == (False, "unclassified")
    assert condition.concept == "unclassified"


# ------------------------------------------------------------------------------------------
# Table errors: refused with their place


_DRUGS_HEADER = """\
table: drugs
version: 1.0.0
title: test table
sources:
  S-21: {title: "RCH guideline", status: V}
classes:
  beta_blocker: {title: "Beta-blockers", sources: [S-21], evidence: V}
ingredients:
"""


@pytest.mark.parametrize(
    ("body", "code", "line"),
    [
        (
            "  propranolol: {brands: [Inderal], classes: [beta_blocker], washout_days: 1}\n"
            "  metoprolol: {brands: [Inderal], classes: [beta_blocker], washout_days: 1}\n",
            "ambiguous_name",
            10,
        ),
        (
            "  propranolol: {classes: [beta_blockers], washout_days: 1}\n",
            "unknown_class",
            9,
        ),
        ("  propranolol: {classes: [beta_blocker]}\n", "missing_field", 9),
        (
            "  propranolol: {rxnorm: '8787', classes: [beta_blocker], washout_days: 1}\n"
            "  metoprolol: {rxnorm: '8787', classes: [beta_blocker], washout_days: 1}\n",
            "duplicate_code",
            10,
        ),
        (
            "  propranolol: {classes: [beta_blocker], washout_days: 1, sources: [S-99]}\n",
            "unknown_source",
            9,
        ),
        (
            "  propranolol: {classes: [beta_blocker], washout_days: 1, colour: red}\n",
            "unknown_field",
            9,
        ),
    ],
)
def test_a_bad_drug_table_is_refused_at_its_line(
    tmp_path: Path, body: str, code: str, line: int
) -> None:
    path = tmp_path / "drugs.yaml"
    path.write_text(_DRUGS_HEADER + body, encoding="utf-8")
    with pytest.raises(RulesetErrors) as raised:
        load_drug_table(path)
    found = [(e.code, e.location.line) for e in raised.value.errors]
    assert (code, line) in found, found


def test_a_condition_code_may_mean_one_concept_only(tmp_path: Path) -> None:
    path = tmp_path / "conditions.yaml"
    path.write_text(
        "table: conditions\nversion: 1.0.0\ntitle: t\nconcepts:\n"
        "  atrial_fibrillation: {title: AF, icd10: [I48]}\n"
        "  atrial_flutter: {title: flutter, icd10: [I48]}\n",
        encoding="utf-8",
    )
    with pytest.raises(RulesetErrors) as raised:
        load_condition_table(path)
    assert [(e.code, e.location.line) for e in raised.value.errors] == [("duplicate_code", 6)]


def test_the_shipped_tables_load(terminology) -> None:
    assert "amide_local_anaesthetic" in terminology.drugs.classes
    assert "fibromyalgia" in terminology.conditions.concepts
