"""cds_rules: clinical decision support for IV lidocaine + ketamine in refractory fibromyalgia.

Pipeline: ``rulesets/*.yaml`` --load--> ``RulesetSpec`` --compile--> ``CompiledRuleset``
--evaluate(facts)--> ``Evaluation``. A profile of ``rulesets/protocol.yaml`` (screening, the
pre-session gate) evaluates several rulesets together: ``compile_profile`` -> ``Assessor``
--assess(facts)--> ``Assessment``.
"""

from .api import check_session, compile_file, default_rulesets_dir, evaluator_for, screen
from .compiler import CompiledRuleset, compile_ruleset
from .errors import (
    CdsRulesError,
    CrossCheckError,
    EngineError,
    InputError,
    InputErrors,
    Location,
    RulesetError,
    RulesetErrors,
)
from .evaluation import Evaluation, Evaluator, Finding
from .facts import PatientFacts, load_patient, parse_patient
from .loader import load_ruleset, load_ruleset_text
from .protocol import Assessment, Assessor, CompiledProfile, assessor_for, compile_profile
from .spec import Outcome

__all__ = [
    "Assessment",
    "Assessor",
    "CdsRulesError",
    "CompiledProfile",
    "CompiledRuleset",
    "CrossCheckError",
    "EngineError",
    "Evaluation",
    "Evaluator",
    "Finding",
    "InputError",
    "InputErrors",
    "Location",
    "Outcome",
    "PatientFacts",
    "RulesetError",
    "RulesetErrors",
    "assessor_for",
    "check_session",
    "compile_file",
    "compile_profile",
    "compile_ruleset",
    "default_rulesets_dir",
    "evaluator_for",
    "load_patient",
    "load_ruleset",
    "load_ruleset_text",
    "parse_patient",
    "screen",
]
