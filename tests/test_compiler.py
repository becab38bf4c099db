"""Compiling rulesets: every error the fact model catches, limits, hashing and the engine JSON.

Invalid rulesets are data: ``tests/invalid_rulesets/compile/*.yaml`` load cleanly and each
state the compile errors they must produce (see ``tests/invalid_rulesets/README.md``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_rules.compiler import (
    MAX_LIST_VALUES,
    MAX_PATTERNS_PER_RULE,
    CompiledRuleset,
    compile_ruleset,
)
from cds_rules.errors import CdsRulesError, RulesetErrors
from cds_rules.loader import load_ruleset, load_ruleset_text
from cds_rules.model import DERIVED_PREFIX, POSSIBLE_PREFIX, base_fact_types

ROOT = Path(__file__).resolve().parents[1]
ELIGIBILITY = ROOT / "rulesets" / "eligibility.yaml"
COMPILE_CASES = ROOT / "tests" / "invalid_rulesets" / "compile"


def demo(requires: str = "[patient]", when: str = "patient.weight_kg: {gte: 70}") -> str:
    """A small valid ruleset whose one rule's ``requires`` and ``when`` are given (line 19)."""
    return f"""\
ruleset: demo
version: 1.0.0
title: Demo ruleset
sources:
  S-01: {{title: "Demo source"}}
derived:
  heavy: {{title: "patient weighs at least 70 kg"}}
criteria:
  - fact: heavy
    title: "Heavy"
    if_not_established: INELIGIBLE
rules:
  - id: WT-01
    title: "Weight at least 70 kg"
    sources: [S-01]
    evidence: V
    requires: {requires}
    when:
      {when}
    then:
      assert: {{fact: heavy}}
"""


def compile_text(text: str, file: str = "demo.yaml") -> CompiledRuleset:
    return compile_ruleset(load_ruleset_text(text, file))


def compile_errors(text: str) -> Sequence[CdsRulesError]:
    with pytest.raises(RulesetErrors) as caught:
        compile_text(text)
    return caught.value.errors


# ------------------------------------------------------------------------------------------
# golden cases


def _case_header(path: Path) -> dict[str, Any]:
    """The YAML of a case's leading comment, from its first ``expected:``/``xfail:`` line."""
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = line[2:] if line.startswith("# ") else line[1:]
        if lines or text.startswith(("expected:", "xfail:")):
            lines.append(text)
    header = yaml.safe_load("\n".join(lines)) or {}
    expected = header.get("expected")
    if not expected or not all("code" in item and "line" in item for item in expected):
        raise ValueError(f"{path}: the header needs `expected:` errors with `code` and `line`")
    return dict(header)


def _cases(folder: Path) -> list[Any]:
    params = []
    for path in sorted(folder.glob("*.yaml")):
        header = _case_header(path)
        marks = []
        if "xfail" in header:
            marks.append(pytest.mark.xfail(strict=True, reason=header["xfail"]))
        params.append(pytest.param(path, header["expected"], id=path.stem, marks=marks))
    return params


def assert_errors_match(errors: Sequence[CdsRulesError], expected: list[dict[str, Any]]) -> None:
    """Every expected error is reported, nothing else; each compared on the keys it states."""

    def order(item: dict[str, Any]) -> tuple[int, str, int]:
        return (item.get("line") or 0, item["code"], item.get("column") or 0)

    actual = sorted((error.to_dict() for error in errors), key=order)
    wanted = sorted(expected, key=order)
    assert [(a["code"], a["line"]) for a in actual] == [(w["code"], w["line"]) for w in wanted], (
        "\n".join(str(error) for error in errors)
    )
    assert [{key: a[key] for key in w} for a, w in zip(actual, wanted, strict=True)] == wanted


@pytest.mark.parametrize(("path", "expected"), _cases(COMPILE_CASES))
def test_invalid_ruleset_reports_its_errors(path: Path, expected: list[dict[str, Any]]) -> None:
    loaded = load_ruleset(path)  # compile cases load cleanly: the mistake is the compiler's to find
    with pytest.raises(RulesetErrors) as caught:
        compile_ruleset(loaded)
    assert {error.location.file for error in caught.value.errors} == {str(path)}
    assert_errors_match(caught.value.errors, expected)


def test_demo_compiles() -> None:
    compiled = compile_text(demo())
    assert [rule.id for rule in compiled.rules] == ["WT-01"]
    assert compiled.content_hash.startswith("sha256:")


def test_duplicate_rule_id_names_the_line_of_the_first() -> None:
    rule = demo().split("rules:\n")[1]
    (error,) = compile_errors(demo() + "\n" + rule.replace("{gte: 70}", "{gte: 80}"))
    assert error.code == "duplicate_rule_id"
    assert error.location.line == 23
    assert "line 13" in error.message


# ------------------------------------------------------------------------------------------
# engine limits, refused at compile time


def _requires(count: int) -> str:
    return "{" + ", ".join(f"p{number}: patient" for number in range(count)) + "}"


def test_rule_may_require_up_to_the_pattern_limit() -> None:
    compiled = compile_text(demo(_requires(MAX_PATTERNS_PER_RULE), "p0.weight_kg: {gte: 70}"))
    assert len(compiled.rules[0].patterns) == MAX_PATTERNS_PER_RULE == 16


def test_rule_with_too_many_patterns_is_refused() -> None:
    errors = compile_errors(demo(_requires(17), "p0.weight_kg: {gte: 70}"))
    too_many = [error for error in errors if error.code == "too_many_patterns"]
    assert [(e.location.line, e.location.column, e.location.path, e.message) for e in too_many] == [
        (17, 15, "$.rules[0].requires", "rule requires 17 facts (limit 16)"),
    ]


def _values(count: int) -> str:
    return "[" + ", ".join(str(number) for number in range(count)) + "]"


@pytest.mark.parametrize("operator", ["in", "not_in"])
def test_value_list_up_to_the_limit_compiles(operator: str) -> None:
    compiled = compile_text(demo(when=f"patient.weight_kg: {{{operator}: {_values(64)}}}"))
    assert len(compiled.rules[0].leaves[0].value) == MAX_LIST_VALUES == 64


@pytest.mark.parametrize("operator", ["in", "not_in"])
def test_value_list_over_the_limit_is_refused(operator: str) -> None:
    errors = compile_errors(demo(when=f"patient.weight_kg: {{{operator}: {_values(65)}}}"))
    too_many = [error for error in errors if error.code == "too_many_values"]
    assert [(e.location.line, e.location.path, e.message, e.hint) for e in too_many] == [(
        19, f"$.rules[0].when['patient.weight_kg'].{operator}",
        f"`{operator}` lists 65 values (limit 64)", "use a derived fact or a class table instead",
    )]


# ------------------------------------------------------------------------------------------
# the shipped ruleset and its content hash


def test_eligibility_compiles() -> None:
    compiled = compile_ruleset(load_ruleset(ELIGIBILITY))
    assert compiled.id == "eligibility"
    assert compiled.version == "1.0.0"
    assert [criterion.fact for criterion in compiled.criteria] == [
        "acr_2016_met", "refractory", "lab_workup_complete"]
    assert len(compiled.rules) == len(load_ruleset(ELIGIBILITY).spec.rules)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", compiled.content_hash)


def test_label_shows_twelve_hex_digits_of_the_hash() -> None:
    compiled = compile_ruleset(load_ruleset(ELIGIBILITY))
    assert compiled.label == f"eligibility 1.0.0 ({compiled.content_hash[7:19]})"


def test_content_hash_is_stable() -> None:
    text = ELIGIBILITY.read_text(encoding="utf-8")
    first = compile_ruleset(load_ruleset(ELIGIBILITY)).content_hash
    assert compile_ruleset(load_ruleset(ELIGIBILITY)).content_hash == first
    assert compile_text(text, "elsewhere/copy.yaml").content_hash == first
    # comments and layout are not content
    assert compile_text("# reviewed\n" + text.replace("\n\n", "\n")).content_hash == first


def test_content_hash_changes_with_one_threshold() -> None:
    text = ELIGIBILITY.read_text(encoding="utf-8")
    threshold = "- trial.dose_mg_per_day: {gte: 300}"
    assert text.count(threshold) == 1
    first = compile_text(text).content_hash
    changed = compile_text(text.replace(threshold, "- trial.dose_mg_per_day: {gte: 450}"))
    assert changed.content_hash != first


# ------------------------------------------------------------------------------------------
# the engine's JSON ruleset


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


def _compiled_rulesets() -> list[Any]:
    return [
        pytest.param(compile_ruleset(load_ruleset(ELIGIBILITY)), id="eligibility"),
        pytest.param(compile_text(demo("[heavy, patient]", "patient.age_years: {gte: 18}")
                                  .replace("assert: {fact: heavy}",
                                           "finding: {outcome: NEEDS_REVIEW, message: x}")
                                  + demo().split("rules:\n")[1].replace("WT-01", "WT-02")),
                     id="derived"),
    ]


@pytest.mark.parametrize("compiled", _compiled_rulesets())
def test_every_engine_pattern_tests_the_fact_type(compiled: CompiledRuleset) -> None:
    """A pattern without a type test would match the engine's own state fact and loop."""
    derived = {name for name, fact_type in compiled.fact_types.items() if fact_type.derived}
    tags = ({*base_fact_types(), "$sentinel"} | {DERIVED_PREFIX + name for name in derived}
            | {POSSIBLE_PREFIX + name for name in derived})
    for name, rule in compiled.engine_definition.items():
        assert list(rule) == ["all"], name
        for pattern in rule["all"]:
            ((_alias, expression),) = pattern.items()
            first = expression["$and"][0] if "$and" in expression else expression
            assert list(first) == ["t"], (name, expression)
            assert first["t"] in tags, (name, first)


@pytest.mark.parametrize("compiled", _compiled_rulesets())
def test_no_engine_rule_uses_not(compiled: CompiledRuleset) -> None:
    for name, rule in compiled.engine_definition.items():
        assert not name.endswith("$not")
        assert "$not" not in set(_keys(rule)), name
        for pattern in rule["all"]:
            assert not any(alias.endswith("$not") for alias in pattern), (name, pattern)


def test_every_rule_has_a_certain_and_a_possible_engine_rule() -> None:
    compiled = compile_ruleset(load_ruleset(ELIGIBILITY))
    variants = {(rule.rule_index, rule.variant) for rule in compiled.engine_rules.values()}
    assert variants == {(rule.index, variant) for rule in compiled.rules
                        for variant in ("certain", "possible")}
    assert set(compiled.engine_definition) == {"sentinel", *compiled.engine_rules}
