"""A JSON Schema (draft 2020-12) of the ruleset YAML language, for editors.

Editors validate and complete ruleset files against it (the VS Code YAML extension reads the
``# yaml-language-server: $schema=./schema.json`` line at the top of a ruleset). It describes
the same shape the loader accepts, including the compact recursive condition syntax, plus the
few compiler limits that are visible without the fact model (list and pattern counts, no
ELIGIBLE finding). Whether a field path exists or a value has the right type for its field is
still the compiler's job: the schema only suggests the base fact types' paths as examples.

``rulesets/schema.json`` is generated from :func:`rule_language_schema` by :func:`write_schema`
(``cds-rules schema``); a test checks the committed file is up to date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .compiler import MAX_LIST_VALUES, MAX_PATTERNS_PER_RULE
from .model import base_fact_types
from .spec import NAME_PATTERN, RULE_ID_PATTERN, Evidence, Outcome

__all__ = ["SCHEMA_ID", "render_schema", "rule_language_schema", "write_schema"]

SCHEMA_ID = "urn:cds-rules:ruleset-language"
#: An ``alias.field`` path: an alias from ``requires`` and a field of that fact.
FIELD_PATH_PATTERN = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"
VERSION_PATTERN = r"^\d+\.\d+\.\d+$"

_ORDERING_OPERATORS = {
    "lt": "less than",
    "lte": "less than or equal to",
    "gt": "greater than",
    "gte": "greater than or equal to",
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/$defs/{name}"}


def _field_paths() -> list[str]:
    """``fact.field`` for every field of every base fact type (aliases default to type names)."""
    return [
        f"{fact_name}.{field_name}"
        for fact_name, fact_type in sorted(base_fact_types().items())
        for field_name in fact_type.fields
    ]


def _outcome(description: str, *, allow_eligible: bool = True) -> dict[str, Any]:
    values = [o.value for o in Outcome if allow_eligible or o is not Outcome.ELIGIBLE]
    return {"description": description, "enum": values, "type": "string"}


def _definitions() -> dict[str, Any]:
    paths = _field_paths()
    scalar_or_reference = {"anyOf": [_ref("scalar"), _ref("reference")]}
    number_or_reference = {"anyOf": [{"type": "number"}, _ref("reference")]}
    value_list = {
        "type": "array",
        "items": _ref("scalar"),
        "minItems": 1,
        "maxItems": MAX_LIST_VALUES,
    }
    operators: dict[str, Any] = {
        "eq": {"description": "equal to a value or another fact's field", **scalar_or_reference},
        "ne": {
            "description": "not equal to a value or another fact's field",
            **scalar_or_reference,
        },
        **{
            op: {
                "description": f"{meaning} a number or another fact's number (numbers and "
                "scores only)",
                **number_or_reference,
            }
            for op, meaning in _ORDERING_OPERATORS.items()
        },
        "in": {"description": f"one of a list of values (at most {MAX_LIST_VALUES})", **value_list},
        "not_in": {
            "description": f"none of a list of values (at most {MAX_LIST_VALUES})",
            **value_list,
        },
        "recorded": {"description": "the field has a value (known), whatever it is", "const": True},
    }
    return {
        "name": {
            "description": "a lowercase snake_case name",
            "pattern": NAME_PATTERN,
            "type": "string",
        },
        "scalar": {"type": ["string", "number", "boolean"]},
        "fieldPath": {
            "description": "`alias.field`: an alias from the rule's `requires` and one of its "
            "fields; with `requires: [patient]` the alias is the fact type's name",
            "examples": paths,
            "pattern": FIELD_PATH_PATTERN,
            "type": "string",
        },
        "source": {
            "additionalProperties": False,
            "description": "one entry of the source registry",
            "properties": {
                "status": {"description": "verification status of the source", **_ref("evidence")},
                "title": {"description": "citation", "type": "string"},
                "url": {"description": "DOI or URL", "type": "string"},
            },
            "required": ["title"],
            "type": "object",
        },
        "derivedFact": {
            "additionalProperties": False,
            "description": "a fact that rules may assert, with the types of its properties",
            "properties": {
                "properties": {
                    "additionalProperties": False,
                    "description": "property name -> type",
                    "patternProperties": {
                        NAME_PATTERN: {"enum": ["text", "number", "boolean"], "type": "string"}
                    },
                    "type": "object",
                },
                "title": {"type": "string"},
            },
            "required": ["title"],
            "type": "object",
        },
        "criterion": {
            "additionalProperties": False,
            "description": "a positive criterion: ELIGIBLE needs the derived fact `fact` to be "
            "established",
            "properties": {
                "fact": {"description": "a derived fact declared under `derived`", **_ref("name")},
                "if_not_established": _outcome("the outcome when the fact is not established"),
                "if_unknown": _outcome(
                    "the outcome when missing data leaves the fact undecided "
                    "(default CANNOT_EVALUATE)"
                ),
                "title": {"type": "string"},
            },
            "required": ["fact", "title", "if_not_established"],
            "type": "object",
        },
        "evidence": {
            "description": "V verified, P partly verified, CJ clinical judgement",
            "enum": [e.value for e in Evidence],
            "type": "string",
        },
        "reference": {
            "additionalProperties": False,
            "description": "a value taken from another matched fact: `field * times + plus`; "
            "the referenced alias must come earlier in `requires`",
            "properties": {
                "field": _ref("fieldPath"),
                "plus": {"default": 0, "type": "number"},
                "times": {"default": 1, "type": "number"},
            },
            "required": ["field"],
            "type": "object",
        },
        "test": {
            "additionalProperties": False,
            "description": "one operator and its value, like `{gte: 7}`",
            "maxProperties": 1,
            "minProperties": 1,
            "properties": operators,
            "type": "object",
        },
        "conditions": {
            "items": _ref("condition"),
            "minItems": 1,
            "type": "array",
        },
        "condition": {
            "additionalProperties": False,
            "description": "`all: [...]`, `any: [...]` or one test `alias.field: {operator: "
            "value}`",
            "maxProperties": 1,
            "minProperties": 1,
            "patternProperties": {FIELD_PATH_PATTERN: _ref("test")},
            "properties": {
                "all": {"description": "every condition holds", **_ref("conditions")},
                "any": {"description": "at least one condition holds", **_ref("conditions")},
            },
            "propertyNames": {"examples": ["all", "any", *paths]},
            "type": "object",
        },
        "assert": {
            "additionalProperties": False,
            "description": "assert a derived fact (forward chaining)",
            "properties": {
                "fact": {"description": "a derived fact declared under `derived`", **_ref("name")},
                "set": {
                    "additionalProperties": False,
                    "description": "every property of the derived fact: a value or "
                    "`{field: alias.field}`",
                    "patternProperties": {
                        NAME_PATTERN: {"anyOf": [_ref("scalar"), _ref("reference")]}
                    },
                    "type": "object",
                },
            },
            "required": ["fact"],
            "type": "object",
        },
        "finding": {
            "additionalProperties": False,
            "description": "a finding for the clinician",
            "properties": {
                "message": {
                    "description": "`{alias.field}` placeholders are filled from the matched facts",
                    "minLength": 1,
                    "type": "string",
                },
                "outcome": _outcome(
                    "ELIGIBLE comes only from criteria, never from a finding",
                    allow_eligible=False,
                ),
                "subject": {
                    "description": "what the finding is about, as `alias.field` (e.g. "
                    "`med.drug`): a clinician's review is recorded for this rule and this value",
                    "pattern": FIELD_PATH_PATTERN,
                    "type": "string",
                },
                "action": _ref("action"),
                "intra": _ref("intra"),
            },
            "required": ["outcome", "message"],
            "type": "object",
        },
        "action": {
            "additionalProperties": False,
            "description": "course rulesets only: what the finding does to the next session "
            "(the most restrictive action wins); DEESCALATE gives the cut for each drug",
            "properties": {
                "next": {
                    "enum": ["HOLD_DOSE", "DEESCALATE", "COURSE_COMPLETE", "DISCONTINUE_COURSE"],
                    "type": "string",
                },
                "lidocaine_mg_per_kg": {
                    "description": "DEESCALATE: change of the lidocaine dose, mg/kg (negative)",
                    "exclusiveMaximum": 0,
                    "type": "number",
                },
                "ketamine_mg": {
                    "description": "DEESCALATE: change of the ketamine dose, mg (negative)",
                    "exclusiveMaximum": 0,
                    "type": "number",
                },
            },
            "required": ["next"],
            "type": "object",
        },
        "intra": {
            "additionalProperties": False,
            "description": "monitor rulesets only: what each drug the rule names does now "
            "(the most restrictive action wins; a STOP is final for the session). Write a "
            "PAUSE rule so that it holds for as long as the drug must stay paused",
            "properties": {
                "action": {"enum": ["CONTINUE", "SLOW", "PAUSE", "STOP"], "type": "string"},
                "resume": {
                    "description": "PAUSE only: what lifts the pause, in words",
                    "minLength": 1,
                    "type": "string",
                },
                "resume_rate_percent": {
                    "description": "PAUSE only: the drug restarts at this percent of its rate",
                    "exclusiveMaximum": 100,
                    "exclusiveMinimum": 0,
                    "type": "number",
                },
                "rate_percent": {
                    "description": "SLOW only: the highest rate allowed, percent of the planned",
                    "exclusiveMaximum": 100,
                    "exclusiveMinimum": 0,
                    "type": "number",
                },
                "instructions": {
                    "description": "what to do, in order (from the reference)",
                    "items": {"minLength": 1, "type": "string"},
                    "minItems": 1,
                    "type": "array",
                },
                "observe_minutes": {
                    "description": "observation required after the session once the rule fired",
                    "exclusiveMinimum": 0,
                    "type": "number",
                },
                "observe_rule": {
                    "description": "the rule id of that observation time (e.g. POST-02)",
                    "pattern": RULE_ID_PATTERN,
                    "type": "string",
                },
                "alert": {
                    "description": "false: the rule only keeps a pause another rule's alert "
                    "began; it raises no alert of its own",
                    "type": "boolean",
                },
                "lipid_rescue": {
                    "description": "show the lipid emulsion 20% doses for the session's weight",
                    "type": "boolean",
                },
                "course": {
                    "description": "what the finding means for the next session",
                    "enum": ["HOLD_DOSE", "DEESCALATE", "DISCONTINUE_COURSE"],
                    "type": "string",
                },
            },
            "required": ["action", "instructions"],
            "type": "object",
        },
        "then": {
            "additionalProperties": False,
            "description": "what the rule does: assert a derived fact and/or emit a finding",
            "minProperties": 1,
            "properties": {"assert": _ref("assert"), "finding": _ref("finding")},
            "type": "object",
        },
        "requires": {
            "description": "the facts the rule matches: a list of fact types (alias = type) or "
            f"a mapping alias -> fact type; at most {MAX_PATTERNS_PER_RULE}. A field may only "
            "reference aliases listed before its own",
            "oneOf": [
                {
                    "items": {"examples": sorted(base_fact_types()), **_ref("name")},
                    "maxItems": MAX_PATTERNS_PER_RULE,
                    "minItems": 1,
                    "type": "array",
                },
                {
                    "additionalProperties": False,
                    "maxProperties": MAX_PATTERNS_PER_RULE,
                    "minProperties": 1,
                    "patternProperties": {
                        NAME_PATTERN: {"examples": sorted(base_fact_types()), **_ref("name")}
                    },
                    "type": "object",
                },
            ],
        },
        "rule": {
            "additionalProperties": False,
            "description": "one rule with a stable id from the clinical reference",
            "properties": {
                "drugs": {
                    "description": "the drugs a finding of this rule is about (`lidocaine`, "
                    "`ketamine`); empty or absent means the whole protocol",
                    "items": _ref("name"),
                    "type": "array",
                    "uniqueItems": True,
                },
                "evidence": _ref("evidence"),
                "id": {
                    "description": "stable id from the clinical reference, like "
                    "`REF-02-DULOXETINE`",
                    "pattern": RULE_ID_PATTERN,
                    "type": "string",
                },
                "note": {"description": "where the numbers come from", "type": "string"},
                "on_missing": _outcome(
                    "the outcome when missing data leaves the rule undecided (default "
                    "CANNOT_EVALUATE for non-INFO findings)",
                    allow_eligible=False,
                ),
                "requires": _ref("requires"),
                "sources": {
                    "description": "ids from the ruleset's `sources`",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "type": "array",
                },
                "then": _ref("then"),
                "title": {"minLength": 1, "type": "string"},
                "when": {
                    "description": "the condition over the required facts' fields",
                    **_ref("condition"),
                },
            },
            "required": ["id", "title", "sources", "evidence", "requires", "when", "then"],
            "type": "object",
        },
    }


def rule_language_schema() -> dict[str, Any]:
    """The JSON Schema of a ruleset file; a new dict on every call."""
    return {
        "$defs": _definitions(),
        "$id": SCHEMA_ID,
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "additionalProperties": False,
        "description": "A cds_rules ruleset: sources, derived facts, the criteria ELIGIBLE "
        "needs, and rules over patient facts. Field paths and value types are checked by "
        "`cds-rules` when the ruleset is compiled.",
        "properties": {
            "criteria": {
                "description": "positive criteria: ELIGIBLE needs every one established",
                "items": _ref("criterion"),
                "type": "array",
            },
            "derived": {
                "additionalProperties": False,
                "description": "facts that rules may assert, by name",
                "patternProperties": {NAME_PATTERN: _ref("derivedFact")},
                "type": "object",
            },
            "description": {"type": "string"},
            "role": {
                "default": "decision",
                "description": "`decision`: its criteria decide ELIGIBLE; `module`: no criteria, "
                "it only contributes findings to a profile (contraindications, interactions)",
                "enum": ["decision", "module"],
            },
            "rules": {"items": _ref("rule"), "minItems": 1, "type": "array"},
            "ruleset": {"description": "the ruleset's id", **_ref("name")},
            "sources": {
                "additionalProperties": _ref("source"),
                "description": "source registry: id (like `S-01`) -> citation",
                "minProperties": 1,
                "type": "object",
            },
            "title": {"type": "string"},
            "version": {
                "description": "semantic version `major.minor.patch`",
                "pattern": VERSION_PATTERN,
                "type": "string",
            },
        },
        "required": ["ruleset", "version", "title", "sources", "rules"],
        "title": "cds_rules ruleset",
        "type": "object",
    }


def render_schema() -> str:
    """The schema as written to ``rulesets/schema.json``: indented, sorted keys, final newline."""
    return json.dumps(rule_language_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schema(path: Path | str) -> Path:
    """Write the schema to ``path`` (see :func:`render_schema`) and return the path."""
    target = Path(path)
    target.write_text(render_schema(), encoding="utf-8")
    return target
