"""The protocol: which rulesets answer which question, for which drugs, with which tables.

``rulesets/protocol.yaml`` names the drugs of the protocol, the terminology tables, the
single-drug pathways a contraindication can leave open, and the *profiles*: screening (is this
patient a candidate?) and the pre-session gate (may today's session start?). A profile is a list
of ruleset files, each compiled on its own against the terminology, and evaluated together on
one set of records. :class:`Assessment` combines them: the most restrictive finding wins, each
drug gets its own verdict, and the gate turns the result into PROCEED, HOLD or INELIGIBLE.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .compiler import CompiledRuleset, compile_ruleset
from .errors import InputError, InputErrors, Location, RulesetError, RulesetErrors
from .evaluation import CriterionResult, Evaluation, Evaluator, Finding, MissingData, RulesetRef
from .facts import PatientFacts
from .loader import _pydantic_errors, did_you_mean, load_ruleset
from .normalise import to_records
from .spec import NAME_PATTERN, Outcome
from .terminology import Terminology, load_terminology
from .yamlio import load_yaml_text, read_utf8

__all__ = [
    "Assessment",
    "Assessor",
    "CompiledProfile",
    "DrugVerdict",
    "GateDecision",
    "PathwayResult",
    "ReviewedFinding",
    "compile_profile",
    "load_protocol",
]

GateOutcome = Literal["PROCEED", "HOLD", "INELIGIBLE"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DrugSpec(_Spec):
    title: str


class PathwaySpec(_Spec):
    """When one drug is absolutely contraindicated and the other is not, the other alone."""

    id: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$")]
    contraindicated: str
    remaining: str
    outcome: Outcome
    message: str
    evidence: Literal["V", "P", "CJ"]
    note: str | None = None


class ProfileSpec(_Spec):
    title: str
    kind: Literal["screening", "gate", "course", "monitor"]
    rulesets: list[str] = Field(min_length=1)


class TerminologySpec(_Spec):
    drugs: str
    conditions: str


class ProtocolSpec(_Spec):
    protocol: Annotated[str, Field(pattern=NAME_PATTERN)]
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    title: str
    terminology: TerminologySpec
    drugs: dict[Annotated[str, Field(pattern=NAME_PATTERN)], DrugSpec] = Field(min_length=1)
    pathways: list[PathwaySpec] = Field(default_factory=list)
    profiles: dict[Annotated[str, Field(pattern=NAME_PATTERN)], ProfileSpec] = Field(min_length=1)


@dataclass(frozen=True, eq=False)
class CompiledProfile:
    """A profile ready to evaluate: its rulesets compiled against the terminology."""

    name: str
    kind: Literal["screening", "gate", "course", "monitor"]
    title: str
    protocol: RulesetRef
    drugs: dict[str, str]
    pathways: tuple[PathwaySpec, ...]
    terminology: Terminology
    rulesets: tuple[CompiledRuleset, ...]


def _read(path: Path) -> tuple[ProtocolSpec, str]:
    try:
        text = read_utf8(path)
    except OSError as error:
        raise RulesetErrors(
            [
                RulesetError(
                    "unreadable_file", f"cannot read file: {error.strerror}", Location(str(path))
                )
            ]
        ) from None
    document = load_yaml_text(text, str(path))
    try:
        spec = ProtocolSpec.model_validate(document.data)
    except ValidationError as error:
        raise RulesetErrors(
            _pydantic_errors(error, document.positions, data=document.data)
        ) from None
    errors: list[RulesetError] = []
    for index, pathway in enumerate(spec.pathways):
        for key in ("contraindicated", "remaining"):
            drug = getattr(pathway, key)
            if drug not in spec.drugs:
                errors.append(
                    document.positions.error(
                        "unknown_drug",
                        f"unknown drug `{drug}`",
                        ("pathways", index, key),
                        did_you_mean(drug, spec.drugs),
                    )
                )
    if errors:
        raise RulesetErrors(errors)
    return spec, text


def load_protocol(path: Path | str) -> ProtocolSpec:
    """Read and check ``protocol.yaml`` (shape and references, not the rulesets it names)."""
    return _read(Path(path))[0]


def compile_profile(protocol_file: Path | str, profile: str) -> CompiledProfile:
    """Load the protocol, its tables and the profile's rulesets; every error in one raise."""
    path = Path(protocol_file)
    spec, text = _read(path)
    if profile not in spec.profiles:
        raise RulesetErrors(
            [
                RulesetError(
                    "unknown_profile",
                    f"`{path}` has no profile `{profile}`",
                    Location(str(path)),
                    did_you_mean(profile, spec.profiles) or f"profiles: {', '.join(spec.profiles)}",
                )
            ]
        )
    base = path.parent
    terminology = load_terminology(
        base / spec.terminology.drugs, base / spec.terminology.conditions
    )
    vocabulary = terminology.vocabulary()
    drugs = tuple(spec.drugs)
    errors: list[RulesetError] = []
    compiled: list[CompiledRuleset] = []
    seen_ids: dict[str, str] = {}
    for name in spec.profiles[profile].rulesets:
        try:
            ruleset = compile_ruleset(load_ruleset(base / name), vocabulary=vocabulary, drugs=drugs)
        except RulesetErrors as group:
            errors.extend(e for e in group.errors if isinstance(e, RulesetError))
            continue
        except RulesetError as error:
            errors.append(error)
            continue
        for rule in ruleset.rules:
            if rule.id in seen_ids:
                errors.append(
                    RulesetError(
                        "duplicate_rule_id",
                        f"rule `{rule.id}` is also defined in `{seen_ids[rule.id]}`",
                        rule.location,
                        "rule ids are unique across the rulesets of a profile",
                    )
                )
            seen_ids[rule.id] = name
        if spec.profiles[profile].kind != "monitor":
            errors.extend(
                RulesetError(
                    "action_outside_monitor",
                    f"rule `{rule.id}` has an intra-session `intra` action, but profile "
                    f"`{profile}` is a {spec.profiles[profile].kind} profile",
                    rule.location,
                    "intra-session actions belong to the rulesets of a `kind: monitor` profile",
                )
                for rule in ruleset.rules
                if rule.finding is not None and rule.finding.intra is not None
            )
        if spec.profiles[profile].kind != "course":
            errors.extend(
                RulesetError(
                    "action_outside_course",
                    f"rule `{rule.id}` has a next-session `action`, but profile `{profile}` is "
                    f"a {spec.profiles[profile].kind} profile",
                    rule.location,
                    "actions belong to the rulesets of a `kind: course` profile",
                )
                for rule in ruleset.rules
                if rule.finding is not None and rule.finding.action is not None
            )
        compiled.append(ruleset)
    if errors:
        raise RulesetErrors(errors)
    digest = hashlib.sha256()
    for part in (
        text,
        terminology.drugs.text,
        terminology.conditions.text,
        *(ruleset.content_hash for ruleset in compiled),
    ):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    chosen = spec.profiles[profile]
    return CompiledProfile(
        name=profile,
        kind=chosen.kind,
        title=chosen.title,
        protocol=RulesetRef(
            id=spec.protocol, version=spec.version, content_hash="sha256:" + digest.hexdigest()
        ),
        drugs={name: drug.title for name, drug in spec.drugs.items()},
        pathways=tuple(spec.pathways),
        terminology=terminology,
        rulesets=tuple(compiled),
    )


# --------------------------------------------------------------------------------------------
# Results

_STRICT = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True, kw_only=True)
class DrugVerdict:
    """One drug: contraindicated absolutely (INELIGIBLE), relatively (NEEDS_REVIEW), not
    decidable (CANNOT_EVALUATE), held today (HOLD), or nothing found against it (ELIGIBLE)."""

    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    drug: str
    title: str
    outcome: Outcome
    reasons: tuple[Finding, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PathwayResult:
    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    id: str
    pathway: str
    outcome: Outcome
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewedFinding:
    """A NEEDS_REVIEW finding a clinician signed off before this session."""

    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    rule_id: str
    subject: str | None
    reviewer: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class GateDecision:
    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    decision: GateOutcome
    session: int
    #: The findings that hold the session or stop the course; empty when it may proceed.
    blocking: tuple[Finding, ...]
    reviewed: tuple[ReviewedFinding, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    """The combined result of a profile: decision, per-drug verdicts, and every detail."""

    __pydantic_config__: ClassVar[ConfigDict] = _STRICT
    profile: str
    kind: Literal["screening", "gate", "course", "monitor"]
    protocol: RulesetRef
    as_of: datetime
    engine: str
    cross_checked: bool
    decision: Outcome
    gate: GateDecision | None
    drugs: tuple[DrugVerdict, ...]
    pathways: tuple[PathwayResult, ...]
    findings: tuple[Finding, ...]
    missing: tuple[MissingData, ...]
    criteria: tuple[CriterionResult, ...]
    evaluations: tuple[Evaluation, ...]

    def fired_rules(self) -> tuple[str, ...]:
        """Ids of every rule that fired, in order, across the profile's rulesets."""
        return tuple(rule.rule_id for e in self.evaluations for rule in e.fired)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = _ADAPTER.dump_python(self, mode="json")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Assessment:
        return _ADAPTER.validate_json(text)


_ADAPTER: TypeAdapter[Assessment] = TypeAdapter(Assessment)


def _worst(outcomes: Sequence[Outcome], default: Outcome) -> Outcome:
    decisive = [o for o in outcomes if o != Outcome.INFO]
    return max(decisive, key=lambda o: o.severity) if decisive else default


class Assessor:
    """Evaluates patients against one compiled profile. Create once; reuse."""

    def __init__(
        self,
        profile: CompiledProfile,
        *,
        engine: Literal["durable", "reference"] = "durable",
        cross_check: bool = False,
    ) -> None:
        self.profile = profile
        self.evaluators = tuple(
            Evaluator(
                ruleset, engine=engine, cross_check=cross_check, terminology=profile.terminology
            )
            for ruleset in profile.rulesets
        )

    def assess(self, facts: PatientFacts) -> Assessment:
        profile = self.profile
        if profile.kind == "gate" and facts.session is None:
            raise InputErrors(
                [
                    InputError(
                        "missing_field",
                        "the pre-session gate needs a `session` block (today's vitals, "
                        "sedation, symptoms and readiness)",
                        Location(path="$.session"),
                    )
                ]
            )
        records = to_records(facts, profile.terminology)
        evaluations = tuple(e.evaluate_records(records, facts.as_of) for e in self.evaluators)
        findings = sorted(
            (f for e in evaluations for f in e.findings),
            key=lambda f: -f.outcome.severity,
        )
        missing = tuple(m for e in evaluations for m in e.missing)
        criteria = tuple(c for e in evaluations for c in e.criteria)
        decision = _worst([e.decision for e in evaluations], Outcome.ELIGIBLE)
        if decision == Outcome.ELIGIBLE and not all(c.status == "established" for c in criteria):
            decision = Outcome.CANNOT_EVALUATE  # unreachable by construction; never fail open
        verdicts = tuple(
            DrugVerdict(
                drug=drug,
                title=title,
                outcome=_worst([f.outcome for f in findings if drug in f.drugs], Outcome.ELIGIBLE),
                reasons=tuple(f for f in findings if drug in f.drugs and f.outcome != Outcome.INFO),
            )
            for drug, title in profile.drugs.items()
        )
        by_drug = {v.drug: v.outcome for v in verdicts}
        protocol_wide = _worst([f.outcome for f in findings if not f.drugs], Outcome.ELIGIBLE)
        pathways = tuple(
            PathwayResult(
                id=p.id,
                pathway=f"{p.remaining}_only",
                outcome=max(p.outcome, protocol_wide, by_drug[p.remaining], key=_severity),
                message=p.message,
            )
            for p in profile.pathways
            if by_drug[p.contraindicated] == Outcome.INELIGIBLE
            and by_drug[p.remaining] != Outcome.INELIGIBLE
            and protocol_wide != Outcome.INELIGIBLE
        )
        gate = _gate(facts, decision, tuple(findings)) if profile.kind == "gate" else None
        first = self.evaluators[0]
        return Assessment(
            profile=profile.name,
            kind=profile.kind,
            protocol=profile.protocol,
            as_of=facts.as_of,
            engine=first.engine_name,
            cross_checked=first.cross_check,
            decision=decision,
            gate=gate,
            drugs=verdicts,
            pathways=pathways,
            findings=tuple(findings),
            missing=missing,
            criteria=criteria,
            evaluations=evaluations,
        )


def _severity(outcome: Outcome) -> int:
    return outcome.severity


def _gate(facts: PatientFacts, decision: Outcome, findings: tuple[Finding, ...]) -> GateDecision:
    """PROCEED only when nothing stops, holds or awaits review; reviews are matched exactly
    (rule and subject) and lift only a rule's finding, never missing data."""
    session = facts.session
    assert session is not None
    reviews = {(r.rule, r.subject): r for r in session.reviews}
    blocking: list[Finding] = []
    reviewed: list[ReviewedFinding] = []
    for finding in findings:
        if finding.outcome == Outcome.INFO:
            continue
        # Only a rule's own finding on known facts can be signed off: data that are missing
        # today hold the session until they are recorded, whatever a reviewer says.
        if finding.outcome == Outcome.NEEDS_REVIEW and finding.kind == "rule":
            review = reviews.get((finding.rule_id, finding.subject))
            if review is not None:
                reviewed.append(
                    ReviewedFinding(
                        rule_id=finding.rule_id,
                        subject=finding.subject,
                        reviewer=review.reviewer,
                        at=review.at,
                    )
                )
                continue
        blocking.append(finding)
    outcome: GateOutcome
    if decision == Outcome.INELIGIBLE:
        outcome = "INELIGIBLE"
    elif blocking:
        outcome = "HOLD"
    else:
        outcome = "PROCEED"
    return GateDecision(
        decision=outcome,
        session=session.number,
        blocking=tuple(blocking),
        reviewed=tuple(reviewed),
    )


@lru_cache(maxsize=16)
def _cached_assessor(
    path: str, profile: str, stamp: tuple[int, ...], engine: str, cross_check: bool
) -> Assessor:
    del stamp  # part of the cache key: an edited file is compiled again
    return Assessor(
        compile_profile(path, profile),
        engine=engine,  # type: ignore[arg-type]
        cross_check=cross_check,
    )


def assessor_for(
    protocol_file: Path | str,
    profile: str,
    *,
    engine: Literal["durable", "reference"] = "durable",
    cross_check: bool = False,
) -> Assessor:
    """A reusable assessor (compiled once per version of every file it reads)."""
    path = Path(protocol_file).resolve()
    stamp = tuple(sorted(p.stat().st_mtime_ns for p in path.parent.glob("*.y*ml") if p.is_file()))
    return _cached_assessor(str(path), profile, stamp, engine, cross_check)
