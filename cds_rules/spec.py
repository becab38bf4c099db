"""The rule language: what a ruleset YAML file may say, as validated pydantic models.

A ruleset has an id, a version, a title, a registry of sources, the derived facts its rules may
assert, the positive criteria that must all be established for ELIGIBLE, and rules. A rule
names the facts it requires (patterns), a condition tree over their fields, and what it does:
assert a derived fact (forward chaining) and/or emit a finding with an outcome.

Conditions are written as nested ``all``/``any`` lists of one-key mappings::

    when:
      all:
        - acr.widespread_pain_index: {gte: 7}
        - any:
            - trial.stop_reason: {eq: intolerance}
            - trial.dose_mg_per_day: {gte: 60}
        - labs.esr_mm_per_h: {gt: {field: patient.age_years, times: 0.5, plus: 5}}

The models here check shape only; ``compiler.py`` checks every path and type against the
fact records and the declared derived facts.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "COMPARISON_OPERATORS",
    "OPERATORS",
    "ActionSpec",
    "AllSpec",
    "AnySpec",
    "AssertSpec",
    "ConditionSpec",
    "CourseAction",
    "CriterionSpec",
    "DerivedFactSpec",
    "Evidence",
    "FindingSpec",
    "IntraAction",
    "IntraSpec",
    "LeafSpec",
    "Outcome",
    "ReferenceSpec",
    "RuleSpec",
    "RulesetSpec",
    "SourceSpec",
    "ThenSpec",
]

RULE_ID_PATTERN = r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


class Outcome(str, Enum):
    """Screening outcomes. ``severity`` orders them: the most restrictive finding wins."""

    INFO = "INFO"
    ELIGIBLE = "ELIGIBLE"
    NEEDS_REVIEW = "NEEDS_REVIEW"
    #: Pre-session gate only: today's session does not start (vitals, sedation, readiness).
    HOLD = "HOLD"
    CANNOT_EVALUATE = "CANNOT_EVALUATE"
    INELIGIBLE = "INELIGIBLE"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {
    Outcome.INFO: 0,
    Outcome.ELIGIBLE: 1,
    Outcome.NEEDS_REVIEW: 2,
    Outcome.HOLD: 3,
    Outcome.CANNOT_EVALUATE: 4,
    Outcome.INELIGIBLE: 5,
}


class Evidence(str, Enum):
    """Evidence grade of a rule: verified, partly verified, or clinical judgement."""

    V = "V"
    P = "P"
    CJ = "CJ"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Spec):
    """One entry of the source registry (the reference's ``S-xx`` ids)."""

    title: str
    url: str | None = None
    status: Evidence | None = None


class DerivedFactSpec(_Spec):
    """A fact that rules may assert, with the types of its properties."""

    title: str
    properties: dict[
        Annotated[str, Field(pattern=NAME_PATTERN)], Literal["text", "number", "boolean"]
    ] = Field(default_factory=dict)


class CriterionSpec(_Spec):
    """A positive criterion: ELIGIBLE needs the derived fact ``fact`` to be established."""

    fact: Annotated[str, Field(pattern=NAME_PATTERN)]
    title: str
    if_not_established: Outcome
    if_unknown: Outcome = Outcome.CANNOT_EVALUATE


class ReferenceSpec(_Spec):
    """A right-hand side taken from another fact: ``field * times + plus``."""

    field: str
    times: float = 1.0
    plus: float = 0.0


Scalar = str | int | float | bool
ValueSpec = Scalar | list[Scalar] | ReferenceSpec

COMPARISON_OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte")
OPERATORS = (*COMPARISON_OPERATORS, "in", "not_in", "recorded")


class LeafSpec(_Spec):
    """One test of one field: ``{path: {operator: value}}``, parsed into its parts."""

    path: str
    operator: Literal["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "recorded"]
    value: Any


class AllSpec(_Spec):
    all: list[ConditionSpec] = Field(min_length=1)


class AnySpec(_Spec):
    any: list[ConditionSpec] = Field(min_length=1)


ConditionSpec = AllSpec | AnySpec | LeafSpec


class AssertSpec(_Spec):
    """Assert a derived fact; ``set`` gives its properties (literals or ``{field: ...}``)."""

    fact: Annotated[str, Field(pattern=NAME_PATTERN)]
    set: dict[str, Scalar | ReferenceSpec] = Field(default_factory=dict)


class CourseAction(str, Enum):
    """What a course finding does to the next session. ``rank`` orders them: the most
    restrictive wins. ESCALATE is never a finding: it needs the course's positive criterion
    and nothing restrictive (see ``course.py``)."""

    ESCALATE = "ESCALATE"
    HOLD_DOSE = "HOLD_DOSE"
    DEESCALATE = "DEESCALATE"
    #: The course ran its planned sessions (SES-MAX): no further session.
    COURSE_COMPLETE = "COURSE_COMPLETE"
    DISCONTINUE_COURSE = "DISCONTINUE_COURSE"

    @property
    def rank(self) -> int:
        return _ACTION_RANK[self]


_ACTION_RANK = {
    CourseAction.ESCALATE: 0,
    CourseAction.HOLD_DOSE: 1,
    CourseAction.DEESCALATE: 2,
    CourseAction.COURSE_COMPLETE: 3,
    CourseAction.DISCONTINUE_COURSE: 4,
}


class ActionSpec(_Spec):
    """The next-session action of a course finding; DEESCALATE says by how much."""

    next: Literal["HOLD_DOSE", "DEESCALATE", "COURSE_COMPLETE", "DISCONTINUE_COURSE"]
    #: DEESCALATE only: the change to the last dose given (negative), per drug.
    lidocaine_mg_per_kg: float | None = Field(default=None, lt=0)
    ketamine_mg: float | None = Field(default=None, lt=0)

    @property
    def action(self) -> CourseAction:
        return CourseAction(self.next)


class IntraAction(str, Enum):
    """What a drug does now, during the infusion. ``rank`` orders them: the most restrictive
    wins, and STOP is final for the session."""

    CONTINUE = "CONTINUE"
    SLOW = "SLOW"
    PAUSE = "PAUSE"
    STOP = "STOP"

    @property
    def rank(self) -> int:
        return _INTRA_RANK[self]


_INTRA_RANK = {
    IntraAction.CONTINUE: 0,
    IntraAction.SLOW: 1,
    IntraAction.PAUSE: 2,
    IntraAction.STOP: 3,
}


class IntraSpec(_Spec):
    """The intra-session action of a halt finding (monitor rulesets only).

    The rule's condition is written so that it holds for as long as the drug must stay paused:
    a PAUSE lifts at the first evaluation where the rule no longer holds, and ``resume`` says
    in words what that awaits. ``resume_rate_percent``: the drug restarts at this percent of
    its rate (SLOW) for the rest of the session. A STOP is final for the session.
    """

    action: Literal["CONTINUE", "SLOW", "PAUSE", "STOP"]
    #: PAUSE only: what lifts the pause, for the bedside team.
    resume: str | None = Field(default=None, min_length=1)
    resume_rate_percent: float | None = Field(default=None, gt=0, lt=100)
    #: SLOW only: the highest rate allowed, as a percent of the planned rate.
    rate_percent: float | None = Field(default=None, gt=0, lt=100)
    #: What to do, in order (from the reference).
    instructions: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    #: Minutes of observation required after the session once this rule has fired (POST-*).
    observe_minutes: float | None = Field(default=None, gt=0)
    observe_rule: str | None = Field(default=None, pattern=RULE_ID_PATTERN)
    #: False: the rule only keeps a drug paused that another rule's alert already paused (it
    #: shows in the drug's rules and what it awaits, but raises no alert of its own, and is
    #: not a halt of the session summary).
    alert: bool = True
    #: Show the lipid emulsion 20% doses for the session's weight (monitoring.yaml).
    lipid_rescue: bool = False
    #: What the finding means for the course (reported in the session summary).
    course: Literal["HOLD_DOSE", "DEESCALATE", "DISCONTINUE_COURSE"] | None = None

    @property
    def intra(self) -> IntraAction:
        return IntraAction(self.action)


class FindingSpec(_Spec):
    """A finding for the clinician. ``{alias.field}`` in the message is filled from the facts."""

    outcome: Outcome
    message: str = Field(min_length=1)
    #: What the finding is about, as ``alias.field`` (e.g. ``med.drug``): a clinician's
    #: review of the finding is recorded for this rule and this value, not for the rule alone.
    subject: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    #: Course rulesets only: what the finding does to the next session.
    action: ActionSpec | None = None
    #: Monitor rulesets only: what each drug named by the rule does now.
    intra: IntraSpec | None = None


class ThenSpec(_Spec):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    assert_: AssertSpec | None = Field(default=None, alias="assert")
    finding: FindingSpec | None = None


class RuleSpec(_Spec):
    """One rule with a stable id from the clinical reference."""

    id: Annotated[str, Field(pattern=RULE_ID_PATTERN)]
    title: str = Field(min_length=1)
    sources: list[str] = Field(min_length=1)
    evidence: Evidence
    #: Patterns: ``alias: fact_type``; a list ``[acr, patient]`` means alias = type.
    requires: dict[Annotated[str, Field(pattern=NAME_PATTERN)], str] = Field(min_length=1)
    when: ConditionSpec
    then: ThenSpec
    on_missing: Outcome | None = None
    #: The drugs a finding of this rule is about (``lidocaine``, ``ketamine``); empty means the
    #: whole protocol. Per-drug verdicts are built from these.
    drugs: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(default_factory=list)
    note: str | None = None

    @field_validator("requires", mode="before")
    @classmethod
    def _list_means_alias_is_type(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {str(item): item for item in value}
        return value


class RulesetSpec(_Spec):
    """A whole ruleset file."""

    ruleset: Annotated[str, Field(pattern=NAME_PATTERN)]
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    title: str
    description: str | None = None
    #: ``decision``: its criteria decide ELIGIBLE. ``module``: it only contributes findings to a
    #: profile (contraindications, interactions); alone, finding nothing decides nothing.
    role: Literal["decision", "module"] = "decision"
    sources: dict[str, SourceSpec] = Field(min_length=1)
    derived: dict[Annotated[str, Field(pattern=NAME_PATTERN)], DerivedFactSpec] = Field(
        default_factory=dict
    )
    criteria: list[CriterionSpec] = Field(default_factory=list)
    rules: list[RuleSpec] = Field(min_length=1)


AllSpec.model_rebuild()
AnySpec.model_rebuild()
