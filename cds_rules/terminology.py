"""Terminology tables: drugs to classes, and problem-list entries to condition concepts.

Rules never list drugs or diagnoses: they test class membership (``med.drug_class``) and
concepts (``condition.concept``). The tables that map names, synonyms, brand names and codes to
classes and concepts are YAML data (``rulesets/drugs.yaml``, ``rulesets/conditions.yaml``),
validated here with every error placed at its line, and read only at compile time.

Matching is by code first (an RxNorm ingredient code, an ICD-10 or SNOMED CT code), then by
name. Names are compared after :func:`match_key` (case, punctuation, salts, strengths and dose
forms ignored), and a longer text matches when it contains a known name as whole words
("propranolol 40 mg tablets"). Anything the tables do not know is reported as not classified,
never treated as safe.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import RulesetError, RulesetErrors
from .loader import _pydantic_errors, did_you_mean
from .spec import NAME_PATTERN, Evidence, SourceSpec
from .yamlio import Positions, load_yaml_text, read_utf8

__all__ = [
    "RXNORM_SYSTEMS",
    "ConditionTable",
    "DrugTable",
    "Ingredient",
    "Terminology",
    "load_condition_table",
    "load_drug_table",
    "load_terminology",
    "match_key",
]

#: Code systems read as RxNorm (FHIR URI and the short name).
RXNORM_SYSTEMS = frozenset({"http://www.nlm.nih.gov/research/umls/rxnorm", "rxnorm"})
_ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10", "icd-10", "icd10", "icd-10-cm"})
_SNOMED_SYSTEMS = frozenset({"http://snomed.info/sct", "snomed", "snomed-ct", "sct"})

# Words that name a salt, a strength or a dose form, not a drug ("amiodarone hydrochloride
# 200 mg tablets" is amiodarone). Matching vocabulary only; no clinical meaning.
_NOISE_WORDS = frozenset(
    {
        "hydrochloride",
        "hcl",
        "dihydrochloride",
        "hydrobromide",
        "sodium",
        "potassium",
        "calcium",
        "magnesium",
        "maleate",
        "succinate",
        "tartrate",
        "citrate",
        "sulfate",
        "sulphate",
        "mesylate",
        "mesilate",
        "besylate",
        "besilate",
        "fumarate",
        "acetate",
        "phosphate",
        "bromide",
        "chloride",
        "lactate",
        "gluconate",
        "monohydrate",
        "dihydrate",
        "anhydrous",
        "tablet",
        "tablets",
        "tab",
        "tabs",
        "capsule",
        "capsules",
        "cap",
        "caps",
        "injection",
        "inj",
        "infusion",
        "oral",
        "solution",
        "suspension",
        "syrup",
        "elixir",
        "drops",
        "patch",
        "patches",
        "cream",
        "gel",
        "ointment",
        "spray",
        "inhaler",
        "modified",
        "release",
        "mr",
        "sr",
        "xl",
        "er",
        "cr",
        "la",
        "prolonged",
        "extended",
        "immediate",
        "ir",
        "ec",
        "dispersible",
        "chewable",
        "film",
        "coated",
        "vial",
        "ampoule",
        "ampule",
        "iv",
        "im",
        "sc",
        "po",
        "daily",
        "nocte",
        "bd",
        "tds",
        "qds",
        "prn",
        "mg",
        "mcg",
        "ug",
        "µg",
        "g",
        "ml",
        "l",
        "iu",
        "unit",
        "units",
        "mmol",
        "microgram",
        "micrograms",
        "milligram",
        "milligrams",
        "day",
    }
)
_STRENGTH = re.compile(r"^\d+(\.\d+)?(mg|mcg|ug|µg|g|ml|l|iu|units?|%|mmol)?$")


def match_key(text: str) -> tuple[str, ...]:
    """Words of a name as matched: lowercase, accents and punctuation dropped, noise removed."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    words = re.split(r"[^a-z0-9.%]+", folded)
    return tuple(
        word
        for word in (w.strip(".") for w in words)
        if word and word not in _NOISE_WORDS and not _STRENGTH.match(word)
    )


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DrugClassSpec(_Table):
    title: str
    sources: list[str] = Field(min_length=1)
    evidence: Evidence
    note: str | None = None


class IngredientSpec(_Table):
    #: RxNorm ingredient code (RxCUI of the IN term type).
    rxnorm: Annotated[str, Field(pattern=r"^\d+$")] | None = None
    synonyms: list[str] = Field(default_factory=list)
    brands: list[str] = Field(default_factory=list)
    classes: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(default_factory=list)
    #: How long after stopping the drug still counts for interactions (about five
    #: elimination half-lives, rounded up to whole days).
    washout_days: Annotated[float, Field(ge=0, le=365)] | None = None
    sources: list[str] = Field(default_factory=list)
    evidence: Evidence | None = None
    note: str | None = None


class DrugTableSpec(_Table):
    table: Annotated[str, Field(pattern=r"^drugs$")]
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    title: str
    sources: dict[str, SourceSpec] = Field(min_length=1)
    classes: dict[Annotated[str, Field(pattern=NAME_PATTERN)], DrugClassSpec] = Field(min_length=1)
    ingredients: dict[Annotated[str, Field(pattern=NAME_PATTERN)], IngredientSpec] = Field(
        min_length=1
    )
    #: Combination products: a brand or name that stands for several ingredients.
    products: dict[str, list[Annotated[str, Field(pattern=NAME_PATTERN)]]] = Field(
        default_factory=dict
    )


class ConceptSpec(_Table):
    title: str
    synonyms: list[str] = Field(default_factory=list)
    icd10: list[str] = Field(default_factory=list)
    snomed: list[Annotated[str, Field(pattern=r"^\d+$")]] = Field(default_factory=list)
    note: str | None = None


class ConditionTableSpec(_Table):
    table: Annotated[str, Field(pattern=r"^conditions$")]
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    title: str
    concepts: dict[Annotated[str, Field(pattern=NAME_PATTERN)], ConceptSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Ingredient:
    name: str
    classes: tuple[str, ...]
    washout_days: float | None


@dataclass(frozen=True)
class _NameIndex:
    """Names (as word tuples) to the ids they stand for."""

    names: Mapping[tuple[str, ...], tuple[str, ...]]
    longest: int

    def lookup(self, text: str) -> tuple[str, ...]:
        """Ids named by ``text``: the whole text, else every known name inside it."""
        words = match_key(text)
        if not words:
            return ()
        exact = self.names.get(words)
        if exact is not None:
            return exact
        found: list[str] = []
        for size in range(min(self.longest, len(words)), 0, -1):
            for start in range(len(words) - size + 1):
                for item in self.names.get(words[start : start + size], ()):
                    if item not in found:
                        found.append(item)
        return tuple(found)


def _index(
    entries: Iterable[tuple[str, str, tuple[str | int, ...]]],
    positions: Positions,
    errors: list[RulesetError],
) -> _NameIndex:
    """Index ``(name, id, where)``; one name standing for two different ids is an error."""
    names: dict[tuple[str, ...], tuple[str, ...]] = {}
    first: dict[tuple[str, ...], str] = {}
    for name, item, where in entries:
        key = match_key(name)
        if not key:
            errors.append(
                positions.error("invalid_value", f"`{name}` has no word left to match on", where)
            )
            continue
        existing = names.get(key, ())
        if existing and item not in existing and first[key] != item:
            errors.append(
                positions.error(
                    "ambiguous_name",
                    f"`{name}` is already a name of `{first[key]}`",
                    where,
                    "a name, synonym or brand may stand for one entry only",
                )
            )
            continue
        first.setdefault(key, item)
        if item not in existing:
            names[key] = (*existing, item)
    return _NameIndex(names, max((len(k) for k in names), default=1))


def _load(path: Path | str, model: type[_Table]) -> tuple[Any, Positions, str]:
    path = Path(path)
    try:
        text = read_utf8(path)
    except OSError as error:
        from .errors import Location

        raise RulesetErrors(
            [
                RulesetError(
                    "unreadable_file", f"cannot read file: {error.strerror}", Location(str(path))
                )
            ]
        ) from None
    document = load_yaml_text(text, str(path))
    try:
        spec = model.model_validate(document.data)
    except ValidationError as error:
        raise RulesetErrors(
            _pydantic_errors(error, document.positions, data=document.data)
        ) from None
    return spec, document.positions, text


@dataclass(frozen=True)
class DrugTable:
    """Drug classes and the ingredients in them, with every name they go by."""

    spec: DrugTableSpec
    file: str
    text: str
    _names: _NameIndex
    _codes: Mapping[str, str]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.spec.classes)

    def ingredient(self, name: str) -> Ingredient:
        entry = self.spec.ingredients[name]
        return Ingredient(name, tuple(entry.classes), entry.washout_days)

    def classify(
        self, name: str, code: str | None = None, system: str | None = None
    ) -> tuple[Ingredient, ...]:
        """The ingredients a medication entry stands for; empty when it is not classified.

        An RxNorm ingredient code and the name are both read: when they name different
        ingredients, both are returned, so the more restrictive reading is never lost.
        """
        found: list[str] = []
        if code is not None and system is not None and system.strip().lower() in RXNORM_SYSTEMS:
            by_code = self._codes.get(code.strip())
            if by_code is not None:
                found.append(by_code)
        for item in self._names.lookup(name):
            if item not in found:
                found.append(item)
        return tuple(self.ingredient(item) for item in found)


def load_drug_table(path: Path | str) -> DrugTable:
    """Read and check ``drugs.yaml``; raise ``RulesetErrors`` with every problem."""
    spec, positions, text = _load(path, DrugTableSpec)
    assert isinstance(spec, DrugTableSpec)
    errors: list[RulesetError] = []
    for class_name, drug_class in spec.classes.items():
        for position, source in enumerate(drug_class.sources):
            if source not in spec.sources:
                errors.append(
                    positions.error(
                        "unknown_source",
                        f"unknown source `{source}`",
                        ("classes", class_name, "sources", position),
                        did_you_mean(source, spec.sources),
                    )
                )
    entries: list[tuple[str, str, tuple[str | int, ...]]] = []
    codes: dict[str, str] = {}
    for name, ingredient in spec.ingredients.items():
        where: tuple[str | int, ...] = ("ingredients", name)
        entries.append((name.replace("_", " "), name, where))
        for position, synonym in enumerate(ingredient.synonyms):
            entries.append((synonym, name, (*where, "synonyms", position)))
        for position, brand in enumerate(ingredient.brands):
            entries.append((brand, name, (*where, "brands", position)))
        for position, class_name in enumerate(ingredient.classes):
            if class_name not in spec.classes:
                errors.append(
                    positions.error(
                        "unknown_class",
                        f"unknown drug class `{class_name}`",
                        (*where, "classes", position),
                        did_you_mean(class_name, spec.classes),
                    )
                )
        if ingredient.classes and ingredient.washout_days is None:
            errors.append(
                positions.error(
                    "missing_field",
                    f"`{name}` is in an interacting class but has no `washout_days`",
                    where,
                    "give the washout (about five half-lives) and its source",
                )
            )
        for position, source in enumerate(ingredient.sources):
            if source not in spec.sources:
                errors.append(
                    positions.error(
                        "unknown_source",
                        f"unknown source `{source}`",
                        (*where, "sources", position),
                        did_you_mean(source, spec.sources),
                    )
                )
        if ingredient.rxnorm is not None:
            if ingredient.rxnorm in codes:
                errors.append(
                    positions.error(
                        "duplicate_code",
                        f"RxNorm code `{ingredient.rxnorm}` is already "
                        f"`{codes[ingredient.rxnorm]}`",
                        (*where, "rxnorm"),
                    )
                )
            else:
                codes[ingredient.rxnorm] = name
    for product, members in spec.products.items():
        for position, member in enumerate(members):
            if member not in spec.ingredients:
                errors.append(
                    positions.error(
                        "unknown_ingredient",
                        f"unknown ingredient `{member}`",
                        ("products", product, position),
                        did_you_mean(member, spec.ingredients),
                    )
                )
            else:
                entries.append((product, member, ("products", product)))
    index = _index(entries, positions, errors)
    if errors:
        raise RulesetErrors(errors)
    return DrugTable(spec, str(path), text, index, codes)


@dataclass(frozen=True)
class ConditionTable:
    """Condition concepts and the names and codes of problem-list entries that mean them."""

    spec: ConditionTableSpec
    file: str
    text: str
    _names: _NameIndex
    _codes: Mapping[tuple[str, str], str]

    @property
    def concepts(self) -> tuple[str, ...]:
        return tuple(self.spec.concepts)

    def classify(self, display: str, code: str | None = None, system: str | None = None) -> str:
        """The concept a problem-list entry means, or ``unclassified``.

        A code wins over the display text; a display naming several concepts is unclassified
        (a reviewer reads it), never guessed.
        """
        if code is not None and system is not None:
            family = system.strip().lower()
            kind = (
                "icd10"
                if family in _ICD10_SYSTEMS
                else "snomed"
                if family in _SNOMED_SYSTEMS
                else ""
            )
            normalised = code.strip().upper()
            for candidate in (normalised, normalised.split(".")[0]):
                concept = self._codes.get((kind, candidate))
                if concept is not None:
                    return concept
        found = self._names.lookup(display)
        return found[0] if len(found) == 1 else "unclassified"


def load_condition_table(path: Path | str) -> ConditionTable:
    """Read and check ``conditions.yaml``; raise ``RulesetErrors`` with every problem."""
    spec, positions, text = _load(path, ConditionTableSpec)
    assert isinstance(spec, ConditionTableSpec)
    errors: list[RulesetError] = []
    entries: list[tuple[str, str, tuple[str | int, ...]]] = []
    codes: dict[tuple[str, str], str] = {}
    for name, concept in spec.concepts.items():
        where: tuple[str | int, ...] = ("concepts", name)
        if name == "unclassified":
            errors.append(positions.error("reserved_name", "`unclassified` is reserved", where))
        entries.append((name.replace("_", " "), name, where))
        for position, synonym in enumerate(concept.synonyms):
            entries.append((synonym, name, (*where, "synonyms", position)))
        for kind, values in (("icd10", concept.icd10), ("snomed", concept.snomed)):
            for position, value in enumerate(values):
                key = (kind, value.strip().upper())
                if key in codes and codes[key] != name:
                    errors.append(
                        positions.error(
                            "duplicate_code",
                            f"code `{value}` is already `{codes[key]}`",
                            (*where, kind, position),
                        )
                    )
                codes[key] = name
    index = _index(entries, positions, errors)
    if errors:
        raise RulesetErrors(errors)
    return ConditionTable(spec, str(path), text, index, codes)


@dataclass(frozen=True)
class Terminology:
    """The tables normalisation reads: drugs and conditions."""

    drugs: DrugTable
    conditions: ConditionTable

    def vocabulary(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """The closed value sets rules are compiled against (see ``compile_ruleset``)."""
        classes = (*self.drugs.classes, "none", "unclassified")
        ingredients = (*self.drugs.spec.ingredients, "unclassified")
        return {
            ("medication", "drug_class"): classes,
            ("medication", "ingredient"): ingredients,
            ("allergy", "drug_class"): classes,
            ("allergy", "ingredient"): ingredients,
            ("condition", "concept"): (*self.conditions.concepts, "unclassified"),
        }


def load_terminology(drugs: Path | str, conditions: Path | str) -> Terminology:
    """Both tables; every error of both files in one ``RulesetErrors``."""
    errors: list[RulesetError] = []
    drug_table: DrugTable | None = None
    condition_table: ConditionTable | None = None
    try:
        drug_table = load_drug_table(drugs)
    except RulesetErrors as group:
        errors.extend(e for e in group.errors if isinstance(e, RulesetError))
    except RulesetError as error:
        errors.append(error)
    try:
        condition_table = load_condition_table(conditions)
    except RulesetErrors as group:
        errors.extend(e for e in group.errors if isinstance(e, RulesetError))
    except RulesetError as error:
        errors.append(error)
    if errors or drug_table is None or condition_table is None:
        raise RulesetErrors(errors)
    return Terminology(drug_table, condition_table)
