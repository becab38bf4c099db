"""Convenience entry points: screen a patient, check a session, compile, find the defaults."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from .compiler import CompiledRuleset, compile_ruleset
from .evaluation import Evaluator
from .facts import PatientFacts, load_patient
from .loader import load_ruleset
from .protocol import Assessment, assessor_for

__all__ = [
    "DEFAULT_PROTOCOL",
    "DEFAULT_RULESET",
    "check_session",
    "compile_file",
    "default_rulesets_dir",
    "evaluator_for",
    "screen",
]

#: The eligibility ruleset, relative to the rulesets directory.
DEFAULT_RULESET = "eligibility.yaml"
#: The protocol (drugs, tables, profiles), relative to the rulesets directory.
DEFAULT_PROTOCOL = "protocol.yaml"


def default_rulesets_dir() -> Path:
    """The rulesets directory: ``$CDS_RULES_RULESETS`` or ``rulesets/`` beside the package."""
    configured = os.environ.get("CDS_RULES_RULESETS")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "rulesets"


def compile_file(path: Path | str) -> CompiledRuleset:
    """Load and compile one ruleset file (raises ``RulesetErrors`` with every problem)."""
    return compile_ruleset(load_ruleset(path))


@lru_cache(maxsize=16)
def _cached_evaluator(path: str, mtime_ns: int, engine: str, cross_check: bool) -> Evaluator:
    del mtime_ns  # part of the cache key: an edited file is compiled again
    return Evaluator(
        compile_file(path),
        engine=engine,  # type: ignore[arg-type]
        cross_check=cross_check,
    )


def evaluator_for(
    ruleset: Path | str | None = None,
    *,
    engine: Literal["durable", "reference"] = "durable",
    cross_check: bool = False,
) -> Evaluator:
    """A reusable evaluator for a ruleset file (compiled once per file version)."""
    path = Path(ruleset) if ruleset else default_rulesets_dir() / DEFAULT_RULESET
    resolved = path.resolve()
    return _cached_evaluator(str(resolved), resolved.stat().st_mtime_ns, engine, cross_check)


def screen(
    patient: PatientFacts | Path | str,
    *,
    protocol: Path | str | None = None,
    engine: Literal["durable", "reference"] = "durable",
    cross_check: bool = False,
) -> Assessment:
    """Screen one patient (a ``PatientFacts`` or a YAML/JSON path) with the screening profile."""
    facts = patient if isinstance(patient, PatientFacts) else load_patient(patient)
    path = Path(protocol) if protocol else default_rulesets_dir() / DEFAULT_PROTOCOL
    return assessor_for(path, "screening", engine=engine, cross_check=cross_check).assess(facts)


def check_session(
    patient: PatientFacts | Path | str,
    *,
    protocol: Path | str | None = None,
    engine: Literal["durable", "reference"] = "durable",
    cross_check: bool = False,
) -> Assessment:
    """The pre-session gate for a patient whose facts include today's ``session`` block."""
    facts = patient if isinstance(patient, PatientFacts) else load_patient(patient)
    path = Path(protocol) if protocol else default_rulesets_dir() / DEFAULT_PROTOCOL
    return assessor_for(path, "gate", engine=engine, cross_check=cross_check).assess(facts)
