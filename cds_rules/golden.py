"""Golden cases: clinical expectations kept as data files, run and checked for coverage.

A case file names a profile of the protocol (``profile: screening``) or a single ruleset
(``ruleset: eligibility``), a patient fixture, an optional patch, and what the result must show:
the decision, the gate decision, per-drug verdicts, rules that must and must not fire, criteria,
missing data and message fragments (format: ``tests/golden/README.md``). Adding a clinical case
means adding a file. ``cds-rules test`` runs every case; ``--coverage`` also lists every rule of
the shipped rulesets that no case fires, or that no case shows not firing, and fails if any.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .api import evaluator_for
from .dosing import DoseCheck, DosePlan, check_order, load_dosing_table, plan_session
from .errors import CdsRulesError
from .evaluation import Evaluation
from .facts import PatientFacts, parse_patient
from .protocol import Assessment, assessor_for, load_protocol
from .spec import Outcome
from .yamlio import load_yaml_text

__all__ = [
    "CaseFile",
    "CaseTable",
    "CoverageGap",
    "Expected",
    "GoldenCase",
    "Mode",
    "coverage_gaps",
    "discover",
    "evaluate_case",
    "merge",
    "problems_with",
    "shipped_rules",
]

Mode = Literal["durable", "reference", "cross_check"]
CriterionStatus = Literal["established", "not_established", "unknown"]
Result = Evaluation | Assessment


class _CaseModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_Case = TypeVar("_Case", bound=_CaseModel)


class Expected(_CaseModel):
    """What a case requires of the result; every key but ``decision`` is optional."""

    decision: Outcome
    #: Pre-session gate decision (gate profile only).
    gate: Literal["PROCEED", "HOLD", "INELIGIBLE"] | None = None
    #: Rules whose findings must be among those holding or stopping the session (gate only).
    blocking: tuple[str, ...] = ()
    #: Per-drug verdict: drug -> outcome (a profile only).
    drugs: dict[str, Outcome] = Field(default_factory=dict)
    #: Single-drug pathways that must be offered / must not be offered (a profile only).
    pathways: tuple[str, ...] = ()
    not_pathways: tuple[str, ...] = ()
    #: Rules that must fire with certainty.
    fired: tuple[str, ...] = ()
    #: Rules that must not fire (they may still be reported as missing data).
    not_fired: tuple[str, ...] = ()
    #: Criterion fact -> status.
    criteria: dict[str, CriterionStatus] = Field(default_factory=dict)
    #: Rule -> paths it must report as missing (the rule may report more).
    missing: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    #: Paths that no rule may report as missing.
    not_missing: tuple[str, ...] = ()
    #: Rule -> fragment(s) that one of its findings' messages must contain.
    message_contains: dict[str, str | tuple[str, ...]] = Field(default_factory=dict)


class GoldenCase(_CaseModel):
    case: str
    title: str
    source: str
    #: Exactly one of: a profile of ``rulesets/protocol.yaml``, or one ruleset file's stem.
    profile: str | None = None
    ruleset: str | None = None
    #: Patient file, relative to the repository root.
    patient: str
    #: Deep merge onto the patient: mappings merge, lists and scalars (including null) replace.
    patch: dict[str, Any] | None = None
    expected: Expected
    #: A known defect outside the case: the case is expected to fail.
    xfail: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> GoldenCase:
        if (self.profile is None) == (self.ruleset is None):
            raise ValueError("give exactly one of `profile` and `ruleset`")
        if self.ruleset is not None and (
            self.expected.gate or self.expected.drugs or self.expected.pathways
        ):
            raise ValueError("`gate`, `drugs` and `pathways` need a `profile`")
        return self

    @property
    def target(self) -> str:
        return self.profile or self.ruleset or ""


@dataclass(frozen=True)
class CaseFile:
    """A case file, loaded or not; ``error`` says why a file could not be read as a case."""

    path: Path
    name: str
    case: GoldenCase | None
    error: str | None


def _read_case(path: Path, repo: Path, model: type[_Case]) -> tuple[str, _Case | None, str | None]:
    """A case file's name (from the repository root), and its case or why it is not one."""
    name = path.relative_to(repo).as_posix() if path.is_relative_to(repo) else str(path)
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"), name).data
        return name, model.model_validate(data), None
    except CdsRulesError as error:
        return name, None, str(error)
    except ValidationError as error:
        return name, None, _validation_details(error)


def _load_case(path: Path, repo: Path, rulesets: Path, profiles: Iterable[str]) -> CaseFile:
    name, case, error = _read_case(path, repo, GoldenCase)
    if case is None:
        return CaseFile(path, name, None, error)
    problems = []
    if case.case != path.stem:
        problems.append(f"`case: {case.case}` differs from the file name `{path.stem}`")
    if case.target != path.parent.name:
        problems.append(f"`{case.target}` differs from the directory `{path.parent.name}`")
    problems += _check_case(case, repo, rulesets, profiles)
    if problems:
        return CaseFile(path, name, None, "; ".join(problems))
    return CaseFile(path, name, case, None)


class CaseTable(_CaseModel):
    """Several cases in one file, read as a table (``tables/<name>.yaml``): each row is a case,
    for a family of cases best reviewed side by side (dangerous combinations of inputs)."""

    title: str
    description: str | None = None
    cases: tuple[dict[str, Any], ...] = Field(min_length=1)


def _check_case(case: GoldenCase, repo: Path, rulesets: Path, profiles: Iterable[str]) -> list[str]:
    problems = []
    if case.ruleset is not None and not (rulesets / f"{case.ruleset}.yaml").is_file():
        problems.append(f"no ruleset file {case.ruleset}.yaml")
    if case.profile is not None and case.profile not in profiles:
        problems.append(f"no profile `{case.profile}` in protocol.yaml")
    if not (repo / case.patient).is_file():
        problems.append(f"no patient file `{case.patient}`")
    return problems


def _validation_details(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '(top)'}: {item['msg']}"
        for item in error.errors(include_url=False)
    )


def _load_table(path: Path, repo: Path, rulesets: Path, profiles: Iterable[str]) -> list[CaseFile]:
    name = path.relative_to(repo).as_posix() if path.is_relative_to(repo) else str(path)
    try:
        data = load_yaml_text(path.read_text(encoding="utf-8"), name).data
        table = CaseTable.model_validate(data)
    except CdsRulesError as error:
        return [CaseFile(path, name, None, str(error))]
    except ValidationError as error:
        return [CaseFile(path, name, None, _validation_details(error))]
    loaded: list[CaseFile] = []
    seen: set[str] = set()
    for index, row in enumerate(table.cases):
        row_name = f"{name}#{row.get('case', index + 1)}"
        try:
            case = GoldenCase.model_validate(row)
        except ValidationError as error:
            loaded.append(CaseFile(path, row_name, None, _validation_details(error)))
            continue
        problems = _check_case(case, repo, rulesets, profiles)
        if case.case in seen:
            problems.append(f"`case: {case.case}` is repeated in the table")
        seen.add(case.case)
        loaded.append(
            CaseFile(path, row_name, None if problems else case, "; ".join(problems) or None)
        )
    return loaded


def discover(cases_dir: Path, repo: Path, rulesets: Path) -> list[CaseFile]:
    """Every ``<target>/<case>.yaml`` under ``cases_dir``, and every row of every table in
    ``tables/``, loaded and checked."""
    profiles = tuple(load_protocol(rulesets / "protocol.yaml").profiles)
    found = [
        _load_case(path, repo, rulesets, profiles)
        for path in sorted(cases_dir.glob("*/*.yaml"))
        if path.parent.name not in ("snapshots", "tables", "dose", "course", "monitor")
    ]
    for path in sorted((cases_dir / "tables").glob("*.yaml")):
        found.extend(_load_table(path, repo, rulesets, profiles))
    return found


def merge(base: Any, patch: Any) -> Any:
    """``patch`` deep-merged onto ``base`` as a new value (neither argument is changed)."""
    if isinstance(base, Mapping) and isinstance(patch, Mapping):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return patch


def _patched_patient(
    patient: str, patch: dict[str, Any] | None, source: str, repo: Path
) -> PatientFacts:
    """A fixture's data, patched, validated as input from ``source`` (the case file)."""
    data = load_yaml_text((repo / patient).read_text(encoding="utf-8"), patient).data
    if patch is not None:
        data = merge(data, patch)
    return parse_patient(data, source=source)


def patient_of(case_file: CaseFile, repo: Path) -> PatientFacts:
    """The case's patient: the fixture's data, patched, validated as from the case file."""
    case = case_file.case
    assert case is not None
    return _patched_patient(case.patient, case.patch, case_file.name, repo)


def evaluate_case(case_file: CaseFile, mode: Mode, repo: Path, rulesets: Path) -> Result:
    """Run one case with one evaluator (``cross_check``: durable checked by the reference)."""
    case = case_file.case
    assert case is not None
    engine: Literal["durable", "reference"] = "reference" if mode == "reference" else "durable"
    cross_check = mode == "cross_check"
    facts = patient_of(case_file, repo)
    if case.profile is not None:
        assessor = assessor_for(
            rulesets / "protocol.yaml", case.profile, engine=engine, cross_check=cross_check
        )
        return assessor.assess(facts)
    evaluator = evaluator_for(
        rulesets / f"{case.ruleset}.yaml", engine=engine, cross_check=cross_check
    )
    return evaluator.evaluate(facts)


def fired_rules(result: Result) -> list[str]:
    if isinstance(result, Assessment):
        return list(result.fired_rules())
    return [rule.rule_id for rule in result.fired]


def describe(result: Result) -> str:
    """The parts of a result a reader needs to see why a case failed."""
    lines = [f"  decision: {result.decision.value} ({result.engine})"]
    if isinstance(result, Assessment):
        if result.gate is not None:
            lines.append(f"  gate: {result.gate.decision}")
        lines.append("  drugs: " + ", ".join(f"{d.drug}={d.outcome.value}" for d in result.drugs))
        if result.pathways:
            lines.append("  pathways: " + ", ".join(p.id for p in result.pathways))
    lines.append("  fired: " + (", ".join(fired_rules(result)) or "none"))
    lines.append("  missing:" + ("" if result.missing else " none"))
    lines += [f"    {m.rule_id}: {', '.join(m.paths) or '(no paths)'}" for m in result.missing]
    lines.append("  criteria: " + ", ".join(f"{c.fact}={c.status}" for c in result.criteria))
    lines.append("  findings:")
    lines += [f"    {f.outcome.value} {f.rule_id}: {f.message}" for f in result.findings]
    return "\n".join(lines)


def problems_with(expected: Expected, result: Result) -> list[str]:
    """Every way ``result`` falls short of ``expected``."""
    problems = []
    if result.decision != expected.decision:
        problems.append(f"decision is {result.decision.value}, expected {expected.decision.value}")
    if isinstance(result, Assessment):
        gate = result.gate
        if expected.gate is not None and (gate is None or gate.decision != expected.gate):
            problems.append(
                f"gate is {gate.decision if gate else 'absent'}, expected {expected.gate}"
            )
        blocking = {f.rule_id for f in gate.blocking} if gate else set()
        problems += [
            f"{rule} does not hold the session"
            for rule in expected.blocking
            if rule not in blocking
        ]
        verdicts = {verdict.drug: verdict.outcome for verdict in result.drugs}
        for drug, outcome in expected.drugs.items():
            actual = verdicts.get(drug)
            if actual != outcome:
                shown = actual.value if actual else "absent"
                problems.append(f"{drug} verdict is {shown}, expected {outcome.value}")
        offered = {pathway.id for pathway in result.pathways}
        problems += [f"pathway {p} is not offered" for p in expected.pathways if p not in offered]
        problems += [f"pathway {p} is offered" for p in expected.not_pathways if p in offered]
    fired = set(fired_rules(result))
    problems += [f"{rule} did not fire" for rule in expected.fired if rule not in fired]
    problems += [f"{rule} fired but must not" for rule in expected.not_fired if rule in fired]
    statuses = {criterion.fact: criterion.status for criterion in result.criteria}
    for fact, status in expected.criteria.items():
        actual_status = statuses.get(fact, "absent")
        if actual_status != status:
            problems.append(f"criterion {fact} is {actual_status}, expected {status}")
    missing: dict[str, list[str]] = {}
    for entry in result.missing:
        missing.setdefault(entry.rule_id, []).extend(entry.paths)
    for rule, paths in expected.missing.items():
        if rule not in missing:
            problems.append(f"{rule} is not reported as missing data (expected {', '.join(paths)})")
            continue
        problems += [
            f"{rule} does not report `{path}` missing (reports {', '.join(missing[rule])})"
            for path in paths
            if path not in missing[rule]
        ]
    for path in expected.not_missing:
        reporters = [rule for rule, paths in missing.items() if path in paths]
        if reporters:
            problems.append(f"`{path}` is reported missing by {', '.join(reporters)}")
    messages = [(finding.rule_id, finding.message) for finding in result.findings]
    return problems + _fragment_problems(expected.message_contains, messages, "finding", "messages")


def _fragment_problems(
    expected: Mapping[str, str | tuple[str, ...]],
    messages: list[tuple[str, str]],
    noun: str,
    plural: str,
) -> list[str]:
    """Each expected fragment that no message of its rule contains."""
    problems = []
    for rule, fragments in expected.items():
        own = [message for rule_id, message in messages if rule_id == rule]
        for fragment in (fragments,) if isinstance(fragments, str) else fragments:
            if not any(fragment in message for message in own):
                problems.append(
                    f"no {rule} {noun} contains {fragment!r} ({plural}: {own or 'none'})"
                )
    return problems


def shipped_rules(rulesets: Path) -> dict[str, tuple[str, ...]]:
    """Rule ids of every ruleset file the protocol's profiles use, by file stem."""
    protocol = load_protocol(rulesets / "protocol.yaml")
    names = dict.fromkeys(name for p in protocol.profiles.values() for name in p.rulesets)
    result: dict[str, tuple[str, ...]] = {}
    for name in names:
        compiled = evaluator_for(rulesets / name, engine="reference").compiled
        result[Path(name).stem] = tuple(rule.id for rule in compiled.rules)
    return result


@dataclass(frozen=True)
class CoverageGap:
    ruleset: str
    rule: str
    #: ``fired`` (no case fires it) and/or ``not_fired`` (no case shows it not firing).
    missing: tuple[str, ...]

    def __str__(self) -> str:
        sides = " or ".join(self.missing)
        return f"{self.ruleset} {self.rule}: in no golden case's {sides}"


def coverage_gaps(cases: Iterable[GoldenCase], rulesets: Path) -> list[CoverageGap]:
    """Rules of the shipped rulesets that no case fires, or that no case shows not firing.

    A case covers the rules of its ruleset, or of every ruleset in its profile. Cases marked
    ``xfail`` prove nothing and do not count.
    """
    protocol = load_protocol(rulesets / "protocol.yaml")
    fired: dict[str, set[str]] = {}
    not_fired: dict[str, set[str]] = {}
    for case in cases:
        if case.xfail is not None:
            continue
        targets = (
            [Path(name).stem for name in protocol.profiles[case.profile].rulesets]
            if case.profile is not None and case.profile in protocol.profiles
            else [case.ruleset or ""]
        )
        for target in targets:
            fired.setdefault(target, set()).update(case.expected.fired)
            not_fired.setdefault(target, set()).update(case.expected.not_fired)
    # The course and monitor profiles' rulesets are covered by their own cases
    # (``course_golden.py``, ``monitor_golden.py``), which run sessions, not one patient.
    own_cases = ("course", "monitor")
    covered_elsewhere = {
        Path(name).stem
        for p in protocol.profiles.values()
        if p.kind in own_cases
        for name in p.rulesets
    } - {
        Path(name).stem
        for p in protocol.profiles.values()
        if p.kind not in own_cases
        for name in p.rulesets
    }
    gaps = []
    for ruleset, rules in shipped_rules(rulesets).items():
        if ruleset in covered_elsewhere:
            continue
        for rule in rules:
            sides = tuple(
                side
                for side, seen in (("fired", fired), ("not_fired", not_fired))
                if rule not in seen.get(ruleset, set())
            )
            if sides:
                gaps.append(CoverageGap(ruleset, rule, sides))
    return gaps


# ---------------------------------------------------------------------------------------------
# Dose cases: ``dose/<case>.yaml`` plans a session or checks an order against dosing.yaml.

DoseDecision = Literal["ACCEPT", "REJECT", "NEEDS_REVIEW", "CANNOT_EVALUATE"]
DOSE_TABLE = "dosing.yaml"


class PlanInput(_CaseModel):
    session: int
    lidocaine_mg_per_ml: float
    ketamine_mg_per_ml: float


class OrderInput(_CaseModel):
    drug: Literal["lidocaine", "ketamine"]
    mg: float


class DrugDoseExpected(_CaseModel):
    mg_per_kg: float | None = None
    mg: float | None = None
    ml: float | None = None
    capped: bool | None = None


class DoseExpected(_CaseModel):
    #: A plan's outcome (ELIGIBLE when nothing holds it back).
    outcome: Outcome | None = None
    #: An order's decision.
    decision: DoseDecision | None = None
    weight_basis: Literal["actual", "adjusted"] | None = None
    dosing_weight_kg: float | None = None
    lidocaine: DrugDoseExpected | None = None
    #: ``null``: no ketamine in this session.
    ketamine: DrugDoseExpected | None = None
    no_ketamine: bool = False
    max_mg: float | None = None
    #: Rules with a note that decides (not for information), and rules with none.
    fired: tuple[str, ...] = ()
    not_fired: tuple[str, ...] = ()
    message_contains: dict[str, str | tuple[str, ...]] = Field(default_factory=dict)


class DoseCase(_CaseModel):
    case: str
    title: str
    source: str
    patient: str
    patch: dict[str, Any] | None = None
    plan: PlanInput | None = None
    order: OrderInput | None = None
    expected: DoseExpected

    @model_validator(mode="after")
    def _one_input(self) -> DoseCase:
        if (self.plan is None) == (self.order is None):
            raise ValueError("give exactly one of `plan` and `order`")
        if self.plan is not None and self.expected.outcome is None:
            raise ValueError("a plan case needs `expected.outcome`")
        if self.order is not None and self.expected.decision is None:
            raise ValueError("an order case needs `expected.decision`")
        return self


@dataclass(frozen=True)
class DoseCaseFile:
    path: Path
    name: str
    case: DoseCase | None
    error: str | None


def discover_dose_cases(cases_dir: Path, repo: Path) -> list[DoseCaseFile]:
    """Every ``dose/<case>.yaml`` under ``cases_dir``, loaded and checked."""
    found = []
    for path in sorted((cases_dir / "dose").glob("*.yaml")):
        name, case, error = _read_case(path, repo, DoseCase)
        if case is None:
            found.append(DoseCaseFile(path, name, None, error))
            continue
        problems = []
        if case.case != path.stem:
            problems.append(f"`case: {case.case}` differs from the file name `{path.stem}`")
        if not (repo / case.patient).is_file():
            problems.append(f"no patient file `{case.patient}`")
        found.append(
            DoseCaseFile(path, name, None if problems else case, "; ".join(problems) or None)
        )
    return found


DoseResult = DosePlan | DoseCheck


def evaluate_dose_case(case_file: DoseCaseFile, repo: Path, rulesets: Path) -> DoseResult:
    case = case_file.case
    assert case is not None
    facts = _patched_patient(case.patient, case.patch, case_file.name, repo)
    table = load_dosing_table(rulesets / DOSE_TABLE)
    if case.plan is not None:
        return plan_session(
            facts,
            case.plan.session,
            lidocaine_mg_per_ml=case.plan.lidocaine_mg_per_ml,
            ketamine_mg_per_ml=case.plan.ketamine_mg_per_ml,
            table=table,
        )
    assert case.order is not None
    return check_order(facts, case.order.drug, case.order.mg, table=table)


def _decisive_rules(result: DoseResult) -> set[str]:
    return {note.rule for note in result.notes if note.outcome != Outcome.INFO}


def describe_dose(result: DoseResult) -> str:
    if isinstance(result, DosePlan):
        lines = [f"  outcome: {result.outcome.value}"]
        for dose in (result.lidocaine, result.ketamine):
            if dose is not None:
                lines.append(
                    f"  {dose.drug}: {dose.mg_per_kg} mg/kg x {dose.weight_kg} kg = {dose.mg} mg, "
                    f"{dose.ml} mL" + (" (capped)" if dose.capped else "")
                )
    else:
        lines = [f"  decision: {result.decision}, maximum {result.max_mg} mg"]
    lines += [f"  {note.outcome.value} {note.rule}: {note.message}" for note in result.notes]
    return "\n".join(lines)


def _number_problems(label: str, actual: Decimal | None, expected: float | None) -> list[str]:
    if expected is None:
        return []
    if actual is None or actual != Decimal(str(expected)):
        return [f"{label} is {actual}, expected {expected}"]
    return []


def dose_problems(expected: DoseExpected, result: DoseResult) -> list[str]:
    """Every way a dose result falls short of what the case expects."""
    problems: list[str] = []
    if isinstance(result, DosePlan):
        if expected.outcome is not None and result.outcome != expected.outcome:
            problems.append(f"outcome is {result.outcome.value}, expected {expected.outcome.value}")
        weight = result.weight
        if expected.weight_basis is not None and weight.basis != expected.weight_basis:
            problems.append(f"weight basis is {weight.basis}, expected {expected.weight_basis}")
        problems += _number_problems("dosing weight", weight.dosing_kg, expected.dosing_weight_kg)
        for drug, wanted in (("lidocaine", expected.lidocaine), ("ketamine", expected.ketamine)):
            dose = result.lidocaine if drug == "lidocaine" else result.ketamine
            if wanted is None:
                continue
            if dose is None:
                problems.append(f"no {drug} dose, expected one")
                continue
            problems += _number_problems(f"{drug} mg/kg", dose.mg_per_kg, wanted.mg_per_kg)
            problems += _number_problems(f"{drug} mg", dose.mg, wanted.mg)
            problems += _number_problems(f"{drug} mL", dose.ml, wanted.ml)
            if wanted.capped is not None and dose.capped != wanted.capped:
                problems.append(f"{drug} capped is {dose.capped}, expected {wanted.capped}")
        if expected.no_ketamine and result.ketamine is not None:
            problems.append(f"ketamine {result.ketamine.mg} mg, expected none")
    else:
        if expected.decision is not None and result.decision != expected.decision:
            problems.append(f"decision is {result.decision}, expected {expected.decision}")
        problems += _number_problems("maximum", result.max_mg, expected.max_mg)
    decisive = _decisive_rules(result)
    problems += [f"{rule} has no deciding note" for rule in expected.fired if rule not in decisive]
    problems += [f"{rule} has a deciding note" for rule in expected.not_fired if rule in decisive]
    notes = [(note.rule, note.message) for note in result.notes]
    return problems + _fragment_problems(expected.message_contains, notes, "note", "notes")


def dose_rules(rulesets: Path) -> tuple[str, ...]:
    """The rule ids the dosing table decides with."""
    table = load_dosing_table(rulesets / DOSE_TABLE)
    return (
        table.weight.rule,
        table.lidocaine.rule,
        table.ketamine.rule,
        table.ketamine.cap_rule,
        table.course.rule,
    )


class _FiredAndNot(Protocol):
    @property
    def fired(self) -> tuple[str, ...]: ...
    @property
    def not_fired(self) -> tuple[str, ...]: ...


def rule_gaps(
    ruleset: str, rules: Iterable[str], expected: Iterable[_FiredAndNot]
) -> list[CoverageGap]:
    """Each rule that no expectation lists as fired, or none as not fired."""
    fired: set[str] = set()
    not_fired: set[str] = set()
    for item in expected:
        fired.update(item.fired)
        not_fired.update(item.not_fired)
    gaps = []
    for rule in rules:
        sides = tuple(
            side for side, seen in (("fired", fired), ("not_fired", not_fired)) if rule not in seen
        )
        if sides:
            gaps.append(CoverageGap(ruleset=ruleset, rule=rule, missing=sides))
    return gaps


def dose_coverage_gaps(cases: Iterable[DoseCase], rulesets: Path) -> list[CoverageGap]:
    return rule_gaps("dosing", dose_rules(rulesets), (case.expected for case in cases))
