"""Loading rulesets: every shape error an author can make, where it is reported, and the schema.

Invalid rulesets are data: ``tests/invalid_rulesets/load/*.yaml`` each state the errors they
must produce (see ``tests/invalid_rulesets/README.md``).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from cds_rules.errors import CdsRulesError, RulesetError, RulesetErrors
from cds_rules.loader import load_ruleset, load_ruleset_text, load_rulesets
from cds_rules.model import base_fact_types
from cds_rules.schema import render_schema, rule_language_schema, write_schema
from cds_rules.spec import (
    OPERATORS,
    AssertSpec,
    CriterionSpec,
    DerivedFactSpec,
    Evidence,
    FindingSpec,
    ReferenceSpec,
    RulesetSpec,
    RuleSpec,
    SourceSpec,
    ThenSpec,
)

from .invalid_cases import assert_errors_match, case_header, cases

ROOT = Path(__file__).resolve().parents[1]
RULESETS = ROOT / "rulesets"
LOAD_CASES = ROOT / "tests" / "invalid_rulesets" / "load"
REGENERATE = (
    'run `cds-rules schema`, or: python -c "from cds_rules.schema import write_schema; '
    "write_schema('rulesets/schema.json')\""
)

DEMO = """\
ruleset: demo
version: 1.0.0
title: Demo ruleset
sources:
  S-01: {title: "Demo source"}
derived:
  heavy: {title: "patient weighs at least 70 kg", properties: {kg: number}}
criteria:
  - fact: heavy
    title: "Heavy"
    if_not_established: INELIGIBLE
rules:
  - id: WT-01
    title: "Weight at least 70 kg"
    sources: [S-01]
    evidence: V
    requires: [patient]
    when:
      all:
        - patient.weight_kg: {gte: 70}
        - patient.sex: {in: [female, male]}
    then:
      assert: {fact: heavy, set: {kg: {field: patient.weight_kg}}}
      finding: {outcome: INFO, message: "weight {patient.weight_kg} kg"}
"""


# ------------------------------------------------------------------------------------------
# golden cases


def _errors_of(error: RulesetError) -> Sequence[CdsRulesError]:
    return error.errors if isinstance(error, RulesetErrors) else [error]


@pytest.mark.parametrize(("path", "expected"), cases(LOAD_CASES))
def test_invalid_ruleset_reports_its_errors(path: Path, expected: list[dict[str, Any]]) -> None:
    with pytest.raises(RulesetError) as caught:
        load_ruleset(path)
    errors = _errors_of(caught.value)
    assert {error.location.file for error in errors} == {str(path)}
    assert_errors_match(errors, expected)


def test_every_golden_case_states_a_known_stage() -> None:
    folders = {path.parent.name for path in (ROOT / "tests" / "invalid_rulesets").glob("*/*.yaml")}
    assert folders == {"load", "compile"}
    assert len(list(LOAD_CASES.glob("*.yaml"))) >= 10


# ------------------------------------------------------------------------------------------
# how an error reads


def test_error_reads_file_line_column_code_message() -> None:
    path = LOAD_CASES / "unknown_operator.yaml"
    with pytest.raises(RulesetErrors) as caught:
        load_ruleset(path)
    (error,) = caught.value.errors
    assert str(error) == (
        f"{path}:20:27: unknown_operator: unknown operator `gtee` "
        "(at $.rules[0].when['patient.weight_kg'].gtee); hint: did you mean `gte`?"
    )
    assert str(caught.value) == str(error)


def test_yaml_syntax_error_reads_file_line_column() -> None:
    path = LOAD_CASES / "yaml_syntax_indentation.yaml"
    with pytest.raises(RulesetError) as caught:
        load_ruleset(path)
    assert str(caught.value).startswith(
        f"{path}:16:4: yaml_syntax: expected <block end>, but found '<block mapping start>'"
    )


def test_error_without_file_reads_line_column() -> None:
    with pytest.raises(RulesetErrors) as caught:
        load_ruleset_text(DEMO.replace("evidence: V", "evidence: X"))
    (error,) = caught.value.errors
    assert str(error).startswith("16:15: invalid_value: invalid value `X`")
    assert error.to_dict() == {
        "code": "invalid_value",
        "message": "invalid value `X`: input should be 'V', 'P' or 'CJ'",
        "file": None,
        "line": 16,
        "column": 15,
        "path": "$.rules[0].evidence",
        "hint": None,
    }


DUPLICATES = [
    # (id, replace, with, line, column, message)
    (
        "source id",
        '  S-01: {title: "Demo source"}\n',
        '  S-01: {title: "Demo source"}\n  S-01: {title: "Another source"}\n',
        6,
        3,
        "duplicate key `S-01` (first defined on line 5)",
    ),
    (
        "operator in a flow mapping",
        "{gte: 70}",
        "{gte: 70, gte: 80}",
        20,
        40,
        "duplicate key `gte` (first defined on line 20)",
    ),
    (
        "top-level key",
        "version: 1.0.0\n",
        "version: 1.0.0\nversion: 1.1.0\n",
        3,
        1,
        "duplicate key `version` (first defined on line 2)",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "line", "column", "message"),
    [pytest.param(*row[1:], id=row[0]) for row in DUPLICATES],
)
def test_duplicate_keys_are_refused(
    old: str, new: str, line: int, column: int, message: str
) -> None:
    assert DEMO.count(old) == 1
    with pytest.raises(RulesetErrors) as caught:
        load_ruleset_text(DEMO.replace(old, new), "demo.yaml")
    (error,) = caught.value.errors
    assert (error.code, error.location.line, error.location.column, error.message) == (
        "duplicate_key",
        line,
        column,
        message,
    )


def test_valid_demo_loads() -> None:
    loaded = load_ruleset_text(DEMO, "demo.yaml")
    assert loaded.spec.rules[0].requires == {"patient": "patient"}
    assert loaded.positions.location(("rules", 0, "evidence")).line == 16


# ------------------------------------------------------------------------------------------
# many files in one run


def test_load_rulesets_reports_the_errors_of_every_file(tmp_path: Path) -> None:
    paths = [
        LOAD_CASES / "duplicate_key.yaml",
        LOAD_CASES / "yaml_syntax_indentation.yaml",
        RULESETS / "eligibility.yaml",
        LOAD_CASES / "unknown_rule_field.yaml",
        tmp_path / "missing.yaml",
    ]
    loaded, errors = load_rulesets(paths)
    assert [item.spec.ruleset for item in loaded] == ["eligibility"]
    assert [(error.location.file, error.code, error.location.line) for error in errors] == [
        (str(paths[0]), "duplicate_key", 19),
        (str(paths[1]), "yaml_syntax", 16),
        (str(paths[3]), "missing_field", 20),
        (str(paths[3]), "unknown_field", 23),
        (str(paths[4]), "unreadable_file", None),
    ]
    assert errors[-1].message.startswith("cannot read file: ")


def test_load_rulesets_reports_every_error_of_one_file() -> None:
    text = (
        DEMO.replace("evidence: V", "evidance: V")
        .replace("{gte: 70}", "{gtee: 70}")
        .replace("title: Demo ruleset", "titel: Demo ruleset")
    )
    with pytest.raises(RulesetErrors) as caught:
        load_ruleset_text(text, "demo.yaml")
    assert sorted((e.code, e.location.line) for e in caught.value.errors) == [
        ("missing_field", 1),  # `title`, reported where the document starts
        ("missing_field", 13),  # `evidence`, reported where the rule starts
        ("unknown_field", 3),
        ("unknown_field", 16),
        ("unknown_operator", 20),
    ]


# ------------------------------------------------------------------------------------------
# the JSON Schema for editors


def _validator() -> Draft202012Validator:
    return Draft202012Validator(rule_language_schema())


def test_schema_file_is_up_to_date() -> None:
    committed = (RULESETS / "schema.json").read_text(encoding="utf-8")
    assert committed == render_schema(), f"rulesets/schema.json is out of date: {REGENERATE}"


def test_write_schema_writes_sorted_pretty_json(tmp_path: Path) -> None:
    target = write_schema(tmp_path / "schema.json")
    text = target.read_text(encoding="utf-8")
    assert text == render_schema()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text.startswith('{\n  "$defs": {\n')
    assert json.loads(text) == rule_language_schema()


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = rule_language_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("urn:")
    assert schema["title"] == "cds_rules ruleset"


def _first_key(path: Path) -> str:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and data, path
    return str(next(iter(data)))


def _ruleset_files() -> list[Path]:
    """The shipped ruleset files: not the protocol (``protocol:``) nor its tables (``table:``)."""
    return [
        path
        for path in sorted(RULESETS.glob("*.yaml"))
        if _first_key(path) not in {"protocol", "table"}
    ]


def test_the_rulesets_directory_holds_rulesets_a_protocol_and_its_tables() -> None:
    """Every ruleset a profile names is a ruleset file the schema tests below check."""
    kinds = {path.name: _first_key(path) for path in RULESETS.glob("*.yaml")}
    assert set(kinds.values()) <= {"ruleset", "protocol", "table"}, kinds
    protocol = yaml.safe_load((RULESETS / "protocol.yaml").read_text(encoding="utf-8"))
    named = {name for profile in protocol["profiles"].values() for name in profile["rulesets"]}
    assert named <= {path.name for path in _ruleset_files()}
    assert {"eligibility.yaml", "contraindications.yaml", "gate.yaml"} <= named
    # The terminology tables the protocol names, the dosing table `dose` reads and the
    # monitoring table `monitor` reads.
    tables = {*protocol["terminology"].values(), "dosing.yaml", "monitoring.yaml"}
    assert {name for name, kind in kinds.items() if kind == "table"} == tables


def test_rulesets_point_editors_at_the_schema() -> None:
    for path in _ruleset_files():
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=./schema.json", path


@pytest.mark.parametrize("path", _ruleset_files(), ids=lambda p: p.name)
def test_shipped_rulesets_validate_against_the_schema(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = [f"{e.json_path}: {e.message}" for e in _validator().iter_errors(data)]
    assert problems == []


def test_valid_demo_validates_against_the_schema() -> None:
    assert list(_validator().iter_errors(yaml.safe_load(DEMO))) == []


def test_drugs_subject_and_module_role_validate_against_the_schema() -> None:
    """A per-drug rule, a finding with a subject and a module ruleset are valid as typed."""
    data = copy.deepcopy(yaml.safe_load(DEMO))
    data["rules"][0]["drugs"] = ["lidocaine", "ketamine"]
    data["rules"][0]["then"]["finding"]["subject"] = "patient.sex"
    assert [e.message for e in _validator().iter_errors(data)] == []
    data["role"] = "decision"
    assert [e.message for e in _validator().iter_errors(data)] == []
    module = copy.deepcopy(data)
    module["role"] = "module"
    del module["criteria"], module["derived"], module["rules"][0]["then"]["assert"]
    assert [e.message for e in _validator().iter_errors(module)] == []


def _set(*parts: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node: Any = data
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value

    return change


def _rename(*parts: str | int, to: str) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node: Any = data
        for part in parts[:-1]:
            node = node[part]
        node[to] = node.pop(parts[-1])

    return change


def _delete(*parts: str | int) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node: Any = data
        for part in parts[:-1]:
            node = node[part]
        del node[parts[-1]]

    return change


_LEAF = ("rules", 0, "when", "all", 0)
_TEST = (*_LEAF, "patient.weight_kg")

SCHEMA_REJECTS = [
    # (id, change, JSON path of the error, keyword)
    ("unknown top-level key", _set("descripton", value="x"), "$", "additionalProperties"),
    ("version not semantic", _set("version", value="1.0"), "$.version", "pattern"),
    ("empty sources", _set("sources", value={}), "$.sources", "minProperties"),
    (
        "source status",
        _set("sources", "S-01", "status", value="X"),
        "$.sources['S-01'].status",
        "enum",
    ),
    (
        "derived property kind",
        _set("derived", "heavy", "properties", "kg", value="integer"),
        "$.derived.heavy.properties.kg",
        "enum",
    ),
    (
        "criterion outcome",
        _set("criteria", 0, "if_not_established", value="ELIGBLE"),
        "$.criteria[0].if_not_established",
        "enum",
    ),
    ("rule id format", _set("rules", 0, "id", value="wt-01"), "$.rules[0].id", "pattern"),
    ("evidence value", _set("rules", 0, "evidence", value="X"), "$.rules[0].evidence", "enum"),
    ("missing evidence", _delete("rules", 0, "evidence"), "$.rules[0]", "required"),
    (
        "unknown rule field",
        _rename("rules", 0, "evidence", to="evidance"),
        "$.rules[0]",
        "additionalProperties",
    ),
    (
        "requires is text",
        _set("rules", 0, "requires", value="patient"),
        "$.rules[0].requires",
        "oneOf",
    ),
    (
        "requires 17 facts",
        _set("rules", 0, "requires", value={f"p{i}": "patient" for i in range(17)}),
        "$.rules[0].requires",
        "oneOf",
    ),
    (
        "condition with two keys",
        _set(
            "rules",
            0,
            "when",
            value={"patient.weight_kg": {"gte": 70}, "patient.sex": {"eq": "female"}},
        ),
        "$.rules[0].when",
        "maxProperties",
    ),
    ("empty all", _set("rules", 0, "when", value={"all": []}), "$.rules[0].when.all", "minItems"),
    (
        "field without alias",
        _rename(*_LEAF, "patient.weight_kg", to="weight_kg"),
        "$.rules[0].when.all[0]",
        "additionalProperties",
    ),
    (
        "unknown operator",
        _rename(*_TEST, "gte", to="gtee"),
        "$.rules[0].when.all[0]['patient.weight_kg']",
        "additionalProperties",
    ),
    (
        "two operators",
        _set(*_TEST, "lte", value=120),
        "$.rules[0].when.all[0]['patient.weight_kg']",
        "maxProperties",
    ),
    (
        "number written as text",
        _set(*_TEST, "gte", value="70"),
        "$.rules[0].when.all[0]['patient.weight_kg'].gte",
        "anyOf",
    ),
    (
        "misspelled reference key",
        _set(*_TEST, "gte", value={"feld": "patient.age_years"}),
        "$.rules[0].when.all[0]['patient.weight_kg'].gte",
        "anyOf",
    ),
    (
        "recorded false",
        _set(*_TEST, value={"recorded": False}),
        "$.rules[0].when.all[0]['patient.weight_kg'].recorded",
        "const",
    ),
    (
        "in with 65 values",
        _set(*_TEST, value={"in": list(range(65))}),
        "$.rules[0].when.all[0]['patient.weight_kg'].in",
        "maxItems",
    ),
    (
        "in with no values",
        _set(*_TEST, value={"in": []}),
        "$.rules[0].when.all[0]['patient.weight_kg'].in",
        "minItems",
    ),
    ("then does nothing", _set("rules", 0, "then", value={}), "$.rules[0].then", "minProperties"),
    (
        "finding declares ELIGIBLE",
        _set("rules", 0, "then", "finding", "outcome", value="ELIGIBLE"),
        "$.rules[0].then.finding.outcome",
        "enum",
    ),
    (
        "on_missing ELIGIBLE",
        _set("rules", 0, "on_missing", value="ELIGIBLE"),
        "$.rules[0].on_missing",
        "enum",
    ),
    ("unknown role", _set("role", value="modul"), "$.role", "enum"),
    (
        "drug not a snake_case name",
        _set("rules", 0, "drugs", value=["Lidocaine"]),
        "$.rules[0].drugs[0]",
        "pattern",
    ),
    (
        "subject without an alias",
        _set("rules", 0, "then", "finding", "subject", value="sex"),
        "$.rules[0].then.finding.subject",
        "pattern",
    ),
]


@pytest.mark.parametrize(
    ("change", "path", "keyword"), [pytest.param(*row[1:], id=row[0]) for row in SCHEMA_REJECTS]
)
def test_schema_rejects_invalid_documents(
    change: Callable[[dict[str, Any]], None], path: str, keyword: str
) -> None:
    data = copy.deepcopy(yaml.safe_load(DEMO))
    change(data)
    errors = list(_validator().iter_errors(data))
    assert (path, keyword) in [(e.json_path, e.validator) for e in errors], [
        f"{e.json_path}: {e.validator}: {e.message}" for e in errors
    ]


_SHAPE_CASES = [
    pytest.param(path, id=path.stem)
    for path in sorted(LOAD_CASES.glob("*.yaml"))
    if not {item["code"] for item in case_header(path)["expected"]}
    & {"yaml_syntax", "duplicate_key"}
]


@pytest.mark.parametrize("path", _SHAPE_CASES)
def test_schema_flags_what_the_loader_rejects(path: Path) -> None:
    """An author sees in the editor every shape error the loader would report."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert not _validator().is_valid(data)


@pytest.mark.parametrize(
    ("definition", "model", "named"),
    [
        ("source", SourceSpec, {"title", "url", "status"}),
        ("derivedFact", DerivedFactSpec, {"title", "properties"}),
        ("criterion", CriterionSpec, {"fact", "title", "if_not_established", "if_unknown"}),
        ("reference", ReferenceSpec, {"field", "times", "plus"}),
        ("assert", AssertSpec, {"fact", "set"}),
        ("finding", FindingSpec, {"outcome", "message", "subject"}),
        ("then", ThenSpec, {"assert", "finding"}),
        ("rule", RuleSpec, {"id", "requires", "when", "then", "on_missing", "drugs", "note"}),
        (None, RulesetSpec, {"ruleset", "version", "role", "sources", "criteria", "rules"}),
    ],
)
def test_schema_has_the_fields_of_the_rule_language(
    definition: str | None, model: type[Any], named: set[str]
) -> None:
    schema = rule_language_schema()
    part = schema if definition is None else schema["$defs"][definition]
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    assert named <= set(fields), "the rule language lost a field an author writes"
    assert set(part["properties"]) == set(fields)
    assert set(part.get("required", [])) == {
        name for name, info in fields.items() if info.is_required()
    }
    assert part["additionalProperties"] is False


def test_schema_patterns_and_enums_are_the_loaders() -> None:
    schema = rule_language_schema()
    spec = RulesetSpec.model_json_schema()
    defs = schema["$defs"]
    assert schema["properties"]["version"]["pattern"] == spec["properties"]["version"]["pattern"]
    assert (
        defs["rule"]["properties"]["id"]["pattern"]
        == (spec["$defs"]["RuleSpec"]["properties"]["id"]["pattern"])
    )
    assert defs["name"]["pattern"] == spec["properties"]["ruleset"]["pattern"]
    assert defs["evidence"]["enum"] == [grade.value for grade in Evidence]
    assert tuple(defs["test"]["properties"]) == OPERATORS
    assert list(defs["condition"]["properties"]) == ["all", "any"]


def test_field_path_examples_are_every_base_fact_field() -> None:
    defs = rule_language_schema()["$defs"]
    field_path = defs["fieldPath"]
    expected = {
        f"{fact}.{field}"
        for fact, fact_type in base_fact_types().items()
        for field in fact_type.fields
    }
    assert set(field_path["examples"]) == expected
    assert {"patient.weight_kg", "acr.widespread_pain_index", "labs.crp_mg_per_l"} <= expected
    assert all(re.search(field_path["pattern"], path) for path in field_path["examples"])
    assert list(defs["condition"]["patternProperties"]) == [field_path["pattern"]]
    assert defs["condition"]["propertyNames"]["examples"] == ["all", "any", *field_path["examples"]]


def test_schema_explains_its_main_parts() -> None:
    schema = rule_language_schema()
    defs = schema["$defs"]
    assert schema["description"]
    for name in (
        "rule",
        "requires",
        "condition",
        "test",
        "reference",
        "then",
        "assert",
        "finding",
        "criterion",
        "derivedFact",
        "fieldPath",
        "evidence",
    ):
        assert defs[name]["description"], name
    assert all(test["description"] for test in defs["test"]["properties"].values())
