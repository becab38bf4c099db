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

from cds_rules.compiler import (
    MAX_LIST_VALUES,
    MAX_PATTERNS_PER_RULE,
    CompiledRuleset,
    compile_ruleset,
)
from cds_rules.errors import CdsRulesError, RulesetErrors
from cds_rules.loader import load_ruleset, load_ruleset_text
from cds_rules.model import DERIVED_PREFIX, POSSIBLE_PREFIX, base_fact_types

from .invalid_cases import assert_errors_match, cases

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


@pytest.mark.parametrize(("path", "expected"), cases(COMPILE_CASES))
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
    assert [(e.location.line, e.location.path, e.message, e.hint) for e in too_many] == [
        (
            19,
            f"$.rules[0].when['patient.weight_kg'].{operator}",
            f"`{operator}` lists 65 values (limit 64)",
            "use a derived fact or a class table instead",
        )
    ]


# ------------------------------------------------------------------------------------------
# the shipped ruleset and its content hash


def test_eligibility_compiles() -> None:
    compiled = compile_ruleset(load_ruleset(ELIGIBILITY))
    assert compiled.id == "eligibility"
    assert compiled.version == "1.0.0"
    assert [criterion.fact for criterion in compiled.criteria] == [
        "acr_2016_met",
        "refractory",
        "lab_workup_complete",
    ]
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
        pytest.param(
            compile_text(
                demo("[heavy, patient]", "patient.age_years: {gte: 18}").replace(
                    "assert: {fact: heavy}", "finding: {outcome: NEEDS_REVIEW, message: x}"
                )
                + demo().split("rules:\n")[1].replace("WT-01", "WT-02")
            ),
            id="derived",
        ),
    ]


@pytest.mark.parametrize("compiled", _compiled_rulesets())
def test_every_engine_pattern_tests_the_fact_type(compiled: CompiledRuleset) -> None:
    """A pattern without a type test would match the engine's own state fact and loop."""
    derived = {name for name, fact_type in compiled.fact_types.items() if fact_type.derived}
    tags = (
        {*base_fact_types(), "$sentinel"}
        | {DERIVED_PREFIX + name for name in derived}
        | {POSSIBLE_PREFIX + name for name in derived}
    )
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
    assert variants == {
        (rule.index, variant) for rule in compiled.rules for variant in ("certain", "possible")
    }
    assert set(compiled.engine_definition) == {"sentinel", *compiled.engine_rules}


# ------------------------------------------------------------------------------------------
# engine limits refused at compile time, not met at run time


def _many_rules(count: int) -> str:
    rules = "".join(
        f"""
  - id: WT-{number:03d}
    title: "Weight threshold {number}"
    sources: [S-01]
    evidence: CJ
    requires: [patient]
    when: {{patient.weight_kg: {{gte: {40 + number / 10}}}}}
    then: {{assert: {{fact: heavy}}}}"""
        for number in range(count)
    )
    return demo().split("rules:\n")[0] + "rules:" + rules + "\n"


def test_too_many_distinct_tests_on_one_fact_type_is_refused() -> None:
    """The engine hangs past ~512 distinct tests under one node; the compiler stops at 400."""
    compile_text(_many_rules(150))
    (error,) = compile_errors(_many_rules(420))
    assert error.code == "too_many_tests"
    assert "`patient`" in error.message


def test_a_fact_type_with_too_many_properties_is_refused() -> None:
    properties = ", ".join(f"p{number}: number" for number in range(130))
    text = demo().replace(
        'heavy: {title: "patient weighs at least 70 kg"}',
        f'heavy: {{title: "heavy", properties: {{{properties}}}}}',
    )
    codes = {error.code for error in compile_errors(text)}
    assert "too_many_properties" in codes


def test_conditions_that_split_into_too_many_alternatives_are_refused() -> None:
    """An `any` across two facts splits the rule; six of them would make 64 engine rules."""
    branches = "\n".join(
        f"        - any: [{{patient.weight_kg: {{gte: {n}}}}}, {{labs.crp_mg_per_l: {{gte: {n}}}}}]"
        for n in range(1, 7)
    )
    text = demo(requires="[patient, labs]", when="all:\n" + branches)
    (error,) = compile_errors(text)
    assert error.code == "too_many_alternatives"
    assert error.location.line == 19


def test_a_constant_the_engine_cannot_parse_is_refused() -> None:
    """The engine's JSON parser rejects exponents; `1.0e-07` is refused with its line."""
    (error,) = compile_errors(demo(when="patient.weight_kg: {gte: 1.0e-07}"))
    assert (error.code, error.location.line, error.location.column) == ("invalid_value", 19, 32)
