"""The audit trail: every decision recorded, verifiable and replayable.

One append-only store behind one interface (:class:`AuditStore`), SQLite by default (a file,
no server) or PostgreSQL by URL, through the same schema and code (SQLAlchemy Core). The store
offers no update or delete.

Each record holds what the engine was told (the input facts as canonical JSON, and their
digest), which rules fired with the facts each matched, the findings, the missing data and the
decision, under which ruleset (id, version, content hash, whose source texts are stored once,
content-addressed, so the decision can be replayed years later) and which engine and package
versions. Records form a hash chain: each record's hash covers its content and the previous
record's hash, so :meth:`AuditStore.verify` finds the first record that was changed, deleted,
inserted or reordered.

A record is committed before the decision is returned (``record`` returns after the commit);
if the store cannot be written, the caller gets an :class:`AuditError`, never an unaudited
decision. Appends are serialised (SQLite: an immediate write transaction; PostgreSQL: a
transaction-scoped advisory lock), so concurrent writers keep one valid chain, and a writer
killed mid-write leaves no partial record (the transaction is not committed).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as _package_version
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from .errors import CdsRulesError

__all__ = [
    "DEFAULT_AUDIT_ENV",
    "GENESIS",
    "AuditError",
    "AuditRecord",
    "AuditStore",
    "ChainProblem",
    "default_audit_url",
    "redact",
]

DEFAULT_AUDIT_ENV = "CDS_RULES_AUDIT_URL"
#: The "previous hash" of the first record.
GENESIS = "sha256:" + "0" * 64
SCHEMA_VERSION = 1

Kind = Literal["screening", "gate", "dose_plan", "dose_check", "course", "monitor"]


class AuditError(CdsRulesError):
    """The audit store could not be read or written; no decision is returned unaudited."""


def default_audit_url() -> str:
    """``$CDS_RULES_AUDIT_URL``, else a SQLite file in the user's data directory
    (``$XDG_DATA_HOME/cds-rules/audit.sqlite``, by default ``~/.local/share/cds-rules/``)."""
    configured = os.environ.get(DEFAULT_AUDIT_ENV)
    if configured:
        return configured
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(base) / 'cds-rules' / 'audit.sqlite'}"


def canonical_json(value: Any) -> str:
    """Sorted keys, no insignificant whitespace, UTF-8 text: the form that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def redact(data: Any, paths: Sequence[str]) -> tuple[Any, tuple[str, ...]]:
    """A copy of ``data`` without the values at ``paths`` (dotted, ``*`` for every list item or
    key: ``demographics.name``, ``medications.*.note``); and the concrete paths removed."""
    result = copy.deepcopy(data)
    removed: list[str] = []

    def walk(node: Any, parts: list[str], where: str) -> None:
        if not parts:
            return
        head, rest = parts[0], parts[1:]
        if isinstance(node, dict):
            keys = list(node) if head == "*" else [head] if head in node else []
            for key in keys:
                here = f"{where}.{key}" if where else str(key)
                if rest:
                    walk(node[key], rest, here)
                else:
                    del node[key]
                    removed.append(here)
        elif isinstance(node, list) and (head == "*" or head.isdigit()):
            indices = range(len(node)) if head == "*" else [int(head)]
            for index in indices:
                if index < len(node) and rest:
                    walk(node[index], rest, f"{where}[{index}]")

    for path in paths:
        walk(result, path.split("."), "")
    return result, tuple(sorted(set(removed)))


# ---------------------------------------------------------------------------------------------
# Schema and migrations

_metadata = MetaData()

audit_meta = Table(
    "audit_meta",
    _metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

audit_records = Table(
    "audit_records",
    _metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("record_id", String(64), nullable=False, unique=True),
    Column("recorded_at", String(40), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("patient_ref", String(200)),
    Column("encounter_ref", String(200)),
    Column("input_json", Text, nullable=False),
    Column("input_digest", String(80), nullable=False),
    Column("ruleset_id", String(200), nullable=False),
    Column("ruleset_version", String(40), nullable=False),
    Column("ruleset_hash", String(80), nullable=False),
    Column("engine", String(100), nullable=False),
    Column("package_version", String(40), nullable=False),
    Column("fired_json", Text, nullable=False),
    Column("findings_json", Text, nullable=False),
    Column("missing_json", Text, nullable=False),
    Column("decision", String(40), nullable=False),
    Column("redacted_json", Text, nullable=False),
    Column("result_json", Text, nullable=False),
    Column("prev_record_id", String(64)),
    Column("prev_hash", String(80), nullable=False),
    Column("record_hash", String(80), nullable=False),
)

audit_rulesets = Table(
    "audit_rulesets",
    _metadata,
    Column("content_hash", String(80), primary_key=True),
    Column("ruleset_id", String(200), nullable=False),
    Column("version", String(40), nullable=False),
    Column("profile", String(100), nullable=False),
    Column("files_json", Text, nullable=False),
)


def _migration_1(connection: Connection) -> None:
    _metadata.create_all(connection, tables=[audit_records, audit_rulesets])


#: Ordered migrations: version -> function. A store is brought to the newest on opening.
MIGRATIONS = {1: _migration_1}

#: The fields of a record the hash covers, in this order (with ``prev_hash``).
HASHED = (
    "seq",
    "record_id",
    "recorded_at",
    "kind",
    "patient_ref",
    "encounter_ref",
    "input_json",
    "input_digest",
    "ruleset_id",
    "ruleset_version",
    "ruleset_hash",
    "engine",
    "package_version",
    "fired_json",
    "findings_json",
    "missing_json",
    "decision",
    "redacted_json",
    "result_json",
    "prev_record_id",
    "prev_hash",
)


def record_hash(row: dict[str, Any]) -> str:
    return digest(canonical_json({name: row[name] for name in HASHED}))


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class AuditRecord:
    """One recorded decision, as stored."""

    seq: int
    record_id: str
    recorded_at: str
    kind: str
    patient_ref: str | None
    encounter_ref: str | None
    input_json: str
    input_digest: str
    ruleset_id: str
    ruleset_version: str
    ruleset_hash: str
    engine: str
    package_version: str
    fired_json: str
    findings_json: str
    missing_json: str
    decision: str
    redacted_json: str
    result_json: str
    prev_record_id: str | None
    prev_hash: str
    record_hash: str

    @property
    def fired(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = json.loads(self.fired_json)
        return value

    @property
    def findings(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = json.loads(self.findings_json)
        return value

    @property
    def missing(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = json.loads(self.missing_json)
        return value

    @property
    def redacted(self) -> list[str]:
        value: list[str] = json.loads(self.redacted_json)
        return value

    @property
    def input(self) -> Any:
        return json.loads(self.input_json)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (*HASHED, "record_hash")}


@dataclass(frozen=True)
class ChainProblem:
    """The first place where the chain does not hold."""

    code: Literal["changed", "deleted", "inserted", "reordered"]
    record_id: str
    seq: int
    message: str


# ---------------------------------------------------------------------------------------------
# The store


class AuditStore:
    """An append-only audit store at a SQLAlchemy URL (``sqlite:///path`` or
    ``postgresql+psycopg://...``). Opening it creates or migrates its schema."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_audit_url()
        self._stored = set()
        try:
            if self.url.startswith("sqlite:///"):
                path = Path(self.url.removeprefix("sqlite:///"))
                if str(path) not in ("", ":memory:"):
                    path.parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(self.url, future=True)
            if self.engine.dialect.name == "sqlite":
                _sqlite_write_transactions(self.engine)
            self._migrate()
        except (SQLAlchemyError, OSError) as error:
            raise AuditError(
                "audit_unavailable",
                f"cannot open the audit store {self.location}: {_reason(error)}",
            ) from None

    @property
    def dialect(self) -> str:
        return str(self.engine.dialect.name)

    @property
    def location(self) -> str:
        """The store's URL without credentials."""
        return self.url.split("@")[-1] if "@" in self.url else self.url

    def _migrate(self) -> None:
        with self.engine.begin() as connection:
            self._lock(connection)
            _metadata.create_all(connection, tables=[audit_meta])
            row = connection.execute(
                select(audit_meta.c.value).where(audit_meta.c.key == "schema_version")
            ).first()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise AuditError(
                    "audit_schema_newer",
                    f"the audit store {self.location} has schema version {current}; this "
                    f"version of cds-rules knows up to {SCHEMA_VERSION}",
                )
            for version in sorted(v for v in MIGRATIONS if v > current):
                MIGRATIONS[version](connection)
                if current == 0 and version == min(MIGRATIONS):
                    connection.execute(
                        insert(audit_meta).values(key="schema_version", value=str(version))
                    )
                else:
                    connection.execute(
                        audit_meta.update()
                        .where(audit_meta.c.key == "schema_version")
                        .values(value=str(version))
                    )
                current = version

    def _lock(self, connection: Connection) -> None:
        """Serialise writers: SQLite's write transaction is already exclusive (BEGIN IMMEDIATE);
        PostgreSQL takes a transaction-scoped advisory lock."""
        if self.dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(7216349021)"))

    # -- writing ------------------------------------------------------------------------------

    _stored: set[str]

    def store_ruleset(
        self,
        content_hash: str,
        ruleset_id: str,
        version: str,
        profile: str,
        protocol_file: str,
        files: dict[str, str],
    ) -> None:
        """Keep a compiled ruleset's source texts once, by content hash (for replay)."""
        if content_hash in self._stored:
            return
        try:
            with self.engine.begin() as connection:
                self._lock(connection)
                known = connection.execute(
                    select(audit_rulesets.c.content_hash).where(
                        audit_rulesets.c.content_hash == content_hash
                    )
                ).first()
                if known is None:
                    connection.execute(
                        insert(audit_rulesets).values(
                            content_hash=content_hash,
                            ruleset_id=ruleset_id,
                            version=version,
                            profile=profile,
                            files_json=canonical_json({"protocol": protocol_file, "files": files}),
                        )
                    )
        except SQLAlchemyError as error:
            raise AuditError(
                "audit_write_failed", f"cannot write to the audit store: {_reason(error)}"
            ) from None
        self._stored.add(content_hash)

    def append(
        self,
        *,
        kind: str,
        input_data: Any,
        ruleset_id: str,
        ruleset_version: str,
        ruleset_hash: str,
        engine: str,
        fired: Sequence[dict[str, Any]],
        findings: Sequence[dict[str, Any]],
        missing: Sequence[dict[str, Any]],
        decision: str,
        result: Any,
        patient_ref: str | None = None,
        encounter_ref: str | None = None,
        redact_paths: Sequence[str] = (),
    ) -> AuditRecord:
        """Append one decision to the chain; returns the record once it is committed."""
        stored_input, redacted = redact(input_data, redact_paths)
        input_json = canonical_json(stored_input)
        row: dict[str, Any] = {
            "record_id": str(uuid.uuid4()),
            "recorded_at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "kind": kind,
            "patient_ref": patient_ref,
            "encounter_ref": encounter_ref,
            "input_json": input_json,
            "input_digest": digest(input_json),
            "ruleset_id": ruleset_id,
            "ruleset_version": ruleset_version,
            "ruleset_hash": ruleset_hash,
            "engine": engine,
            "package_version": _package_version("cds-rules"),
            "fired_json": canonical_json(list(fired)),
            "findings_json": canonical_json(list(findings)),
            "missing_json": canonical_json(list(missing)),
            "decision": decision,
            "redacted_json": canonical_json(list(redacted)),
            "result_json": canonical_json(result),
        }
        try:
            with self.engine.begin() as connection:
                self._lock(connection)
                last = connection.execute(
                    select(
                        audit_records.c.seq, audit_records.c.record_hash, audit_records.c.record_id
                    )
                    .order_by(audit_records.c.seq.desc())
                    .limit(1)
                ).first()
                row["seq"] = (last[0] + 1) if last else 1
                row["prev_hash"] = last[1] if last else GENESIS
                row["prev_record_id"] = last[2] if last else None
                row["record_hash"] = record_hash(row)
                connection.execute(insert(audit_records).values(**row))
        except SQLAlchemyError as error:
            raise AuditError(
                "audit_write_failed",
                f"cannot write to the audit store {self.location}: {_reason(error)}; the "
                "decision is not returned unaudited",
            ) from None
        return AuditRecord(**row)

    # -- reading ------------------------------------------------------------------------------

    def records(
        self,
        *,
        patient_ref: str | None = None,
        rule_id: str | None = None,
        decision: str | None = None,
        kind: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> Iterator[AuditRecord]:
        """Records in chain order, filtered (times as ISO 8601, compared with recorded_at)."""
        query = select(audit_records).order_by(audit_records.c.seq)
        if patient_ref is not None:
            query = query.where(audit_records.c.patient_ref == patient_ref)
        if decision is not None:
            query = query.where(audit_records.c.decision == decision)
        if kind is not None:
            query = query.where(audit_records.c.kind == kind)
        if since is not None:
            query = query.where(audit_records.c.recorded_at >= _utc(since))
        if until is not None:
            query = query.where(audit_records.c.recorded_at <= _utc(until))
        if rule_id is not None:
            query = query.where(audit_records.c.fired_json.contains(f'"rule_id":"{rule_id}"'))
        try:
            with self.engine.connect() as connection:
                for row in connection.execute(query):
                    yield AuditRecord(**row._asdict())
        except SQLAlchemyError as error:
            raise AuditError(
                "audit_read_failed", f"cannot read the audit store: {_reason(error)}"
            ) from None

    def get(self, record_id: str) -> AuditRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(audit_records).where(audit_records.c.record_id == record_id)
            ).first()
        return AuditRecord(**row._asdict()) if row else None

    def ruleset_files(self, content_hash: str) -> tuple[str, str, dict[str, str]] | None:
        """The profile name, the protocol file's name and the source texts of a stored
        ruleset."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(audit_rulesets.c.profile, audit_rulesets.c.files_json).where(
                    audit_rulesets.c.content_hash == content_hash
                )
            ).first()
        if row is None:
            return None
        stored: dict[str, Any] = json.loads(row[1])
        return str(row[0]), str(stored["protocol"]), dict(stored["files"])

    def verify(self) -> tuple[int, ChainProblem | None]:
        """Walk the chain; the number of records that hold, and the first problem (if any).

        * changed: a record no longer matches its own hash;
        * deleted: a number is missing; the record after it names the one deleted;
        * inserted: a record whose predecessor is not the record before it, or that pushed
          the records after it one place on;
        * reordered: a record that matches its hash only at another place in the chain.
        """
        rows = list(self.records())
        hashes = {r.record_hash for r in rows}

        def hashed_at(record: AuditRecord, seq: int) -> bool:
            return record_hash({**record.to_dict(), "seq": seq}) == record.record_hash

        previous_hash = GENESIS
        expected_seq = 1
        for index, record in enumerate(rows):
            where = f"record {record.seq} ({record.record_id})"
            if record.seq > expected_seq:
                lost = record.prev_record_id or "unknown"
                return index, ChainProblem(
                    "deleted",
                    lost,
                    expected_seq,
                    f"record {expected_seq} ({lost}) is missing before {where}: deleted",
                )
            if not hashed_at(record, record.seq):
                before = rows[index - 2].record_hash if index >= 2 else GENESIS
                if index >= 1 and hashed_at(record, record.seq - 1) and record.prev_hash == before:
                    intruder = rows[index - 1]
                    return index - 1, ChainProblem(
                        "inserted",
                        intruder.record_id,
                        intruder.seq,
                        f"record {intruder.seq} ({intruder.record_id}) was inserted: the "
                        f"records after it were moved one place on",
                    )
                moved = any(
                    hashed_at(record, other)
                    for other in range(1, len(rows) + 2)
                    if other != record.seq
                )
                code: Literal["changed", "reordered"] = "reordered" if moved else "changed"
                return index, ChainProblem(
                    code,
                    record.record_id,
                    record.seq,
                    f"{where} does not match its hash: "
                    + ("it belongs at another place in the chain (reordered)" if moved
                       else "its content was changed"),
                )  # fmt: skip
            if record.prev_hash != previous_hash:
                code2: Literal["inserted", "reordered"] = (
                    "reordered" if record.prev_hash in hashes else "inserted"
                )
                return index, ChainProblem(
                    code2,
                    record.record_id,
                    record.seq,
                    f"{where} does not follow the record before it: {code2}",
                )
            previous_hash = record.record_hash
            expected_seq = record.seq + 1
        return len(rows), None


def _sqlite_write_transactions(engine: Engine) -> None:
    """pysqlite starts transactions lazily; take the write lock at BEGIN (IMMEDIATE) so two
    writers never read the same chain head, and wait for a busy database instead of failing."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout = 30000")
        dbapi_connection.execute("PRAGMA journal_mode = WAL")
        dbapi_connection.execute("PRAGMA synchronous = FULL")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _utc(value: str) -> str:
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _reason(error: BaseException) -> str:
    text_ = str(getattr(error, "orig", None) or error).strip().splitlines()
    return text_[0] if text_ else type(error).__name__


# ---------------------------------------------------------------------------------------------
# Recording and replaying assessments (screening, gate)


Sources = Callable[[], tuple[str, dict[str, str]]]


def table_source(path: Path) -> tuple[str, dict[str, str]]:
    """A table file's content hash and its text by name."""
    content = path.read_text(encoding="utf-8")
    return digest(content), {path.name: content}


def combined_hash(profile_hash: str, table_hash: str) -> str:
    """One content hash for a profile evaluated with a table (course: dosing; monitor:
    monitoring)."""
    return digest(profile_hash + table_hash)


def combined_source(
    protocol_file: Path, profile: str, table_file: Path, profile_hash: str
) -> tuple[str, Sources]:
    """The combined hash of a profile and a table, and their source files (read when the
    store does not have them yet): the protocol's name and the texts by name."""
    table_hash, table_files = table_source(table_file)

    def files() -> tuple[str, dict[str, str]]:
        return protocol_file.name, {**profile_files(protocol_file, profile), **table_files}

    return combined_hash(profile_hash, table_hash), files


def record_decision(
    store: AuditStore,
    *,
    kind: str,
    input_data: Any,
    ruleset: tuple[str, str, str],
    sources: Sources | None,
    engine: str,
    fired: Sequence[dict[str, Any]],
    findings: Sequence[dict[str, Any]],
    missing: Sequence[dict[str, Any]],
    decision: str,
    result: Any,
    patient_ref: str | None = None,
    encounter_ref: str | None = None,
    redact_paths: Sequence[str] = (),
) -> AuditRecord:
    """Store the ruleset's sources (once, by content hash) and append the decision; the
    record is committed on return. ``ruleset`` is (id, version, content hash)."""
    ruleset_id, version, content_hash = ruleset
    if sources is not None and content_hash not in store._stored:
        main_file, files = sources()
        store.store_ruleset(content_hash, ruleset_id, version, kind, main_file, files)
    return store.append(
        kind=kind,
        input_data=input_data,
        ruleset_id=ruleset_id,
        ruleset_version=version,
        ruleset_hash=content_hash,
        engine=engine,
        fired=fired,
        findings=findings,
        missing=missing,
        decision=decision,
        result=result,
        patient_ref=patient_ref,
        encounter_ref=encounter_ref,
        redact_paths=redact_paths,
    )


def profile_files(protocol_file: Path | str, profile: str) -> dict[str, str]:
    """The source texts a profile is compiled from, by name relative to the protocol's folder:
    the protocol, its terminology tables and the profile's rulesets."""
    from .protocol import load_protocol

    path = Path(protocol_file)
    spec = load_protocol(path)
    names = [
        path.name,
        spec.terminology.drugs,
        spec.terminology.conditions,
        *spec.profiles[profile].rulesets,
    ]
    return {name: (path.parent / name).read_text(encoding="utf-8") for name in names}


def record_assessment(
    store: AuditStore,
    assessment: Any,
    facts: Any,
    protocol_file: Path | str,
    *,
    patient_ref: str | None = None,
    encounter_ref: str | None = None,
    redact_paths: Sequence[str] = (),
) -> AuditRecord:
    """Store the profile's sources (once) and append the assessment; committed on return."""
    protocol = assessment.protocol
    result = assessment.to_dict()
    return record_decision(
        store,
        kind=assessment.kind,
        input_data=facts.model_dump(mode="json"),
        ruleset=(f"{protocol.id}/{assessment.profile}", protocol.version, protocol.content_hash),
        sources=lambda: (
            Path(protocol_file).name,
            profile_files(protocol_file, assessment.profile),
        ),
        engine=assessment.engine,
        fired=[fired for evaluation in result["evaluations"] for fired in evaluation["fired"]],
        findings=result["findings"],
        missing=result["missing"],
        decision=result["gate"]["decision"] if result.get("gate") else result["decision"],
        result=result,
        patient_ref=patient_ref,
        encounter_ref=encounter_ref,
        redact_paths=redact_paths,
    )


@dataclass(frozen=True)
class Replay:
    """A stored decision evaluated again."""

    record: AuditRecord
    ruleset: str
    decision: str
    fired: tuple[str, ...]
    same_decision: bool
    same_firings: bool
    differences: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def same(self) -> bool:
        return self.same_decision and self.same_firings


def _firing_keys(fired: Sequence[dict[str, Any]]) -> list[str]:
    return [
        canonical_json(
            {"rule": f["rule_id"], "matched": [m["values"] for m in f.get("matched", ())]}
        )
        for f in fired
    ]


def _table_hash(folder: Path, name: str) -> str:
    return table_source(folder / name)[0]


def _evaluate_again(
    store: AuditStore,
    record: AuditRecord,
    folder: Path,
    protocol_name: str,
    engine: Literal["durable", "reference"],
) -> tuple[str, list[dict[str, Any]], str]:
    """The decision and firings of a record's input evaluated with the sources in ``folder``,
    and the content hash those sources give (to compare with the recorded one)."""
    from .facts import parse_patient
    from .protocol import Assessor, compile_profile

    kind = record.kind
    data = record.input
    where = f"audit record {record.record_id}"
    if kind == "screening" and "/" not in record.ruleset_id:  # one ruleset file on its own
        from .api import compile_file
        from .evaluation import Evaluator

        compiled = compile_file(folder / protocol_name)
        single = Evaluator(compiled, engine=engine).evaluate(parse_patient(data, where)).to_dict()
        return single["decision"], list(single["fired"]), compiled.content_hash
    if kind in ("screening", "gate"):
        profile = compile_profile(folder / protocol_name, record.ruleset_id.split("/", 1)[1])
        result = Assessor(profile, engine=engine).assess(parse_patient(data, where)).to_dict()
        decision = result["gate"]["decision"] if result.get("gate") else result["decision"]
        fired = [f for evaluation in result["evaluations"] for f in evaluation["fired"]]
        return decision, fired, profile.protocol.content_hash
    if kind in ("dose_plan", "dose_check"):
        from .dosing import check_order, load_dosing_table, plan_session

        table = load_dosing_table(folder / "dosing.yaml")
        patient = parse_patient(data["patient"], where)
        if kind == "dose_plan":
            plan = plan_session(
                patient,
                data["session"],
                lidocaine_mg_per_ml=data["lidocaine_mg_per_ml"],
                ketamine_mg_per_ml=data["ketamine_mg_per_ml"],
                table=table,
            )
            decision, notes = plan.outcome.value, plan.to_dict().get("notes", [])
        else:
            check = check_order(patient, data["drug"], data["ordered_mg"], table=table)
            decision, notes = check.decision, check.to_dict().get("notes", [])
        fired = [
            {"rule_id": n.get("rule"), "title": n.get("message", ""), "matched": []} for n in notes
        ]
        return decision, fired, _table_hash(folder, "dosing.yaml")
    if kind == "course":
        from .course import CourseRunner, parse_course
        from .dosing import load_dosing_table

        profile = compile_profile(folder / protocol_name, "course")
        runner = CourseRunner(profile, load_dosing_table(folder / "dosing.yaml"), engine=engine)
        course = {**data["course"], "patient": data["patient"]}
        report = runner.run(parse_course(course, where, None, folder))
        fired = [
            {**f, "session": session.number}
            for session in report.sessions
            for f in session.evaluation.to_dict()["fired"]
        ]
        combined = combined_hash(profile.protocol.content_hash, _table_hash(folder, "dosing.yaml"))
        return report.status.value, fired, combined
    if kind == "monitor":
        from .monitor import Monitor
        from .monitor_events import load_monitoring_table

        profile = compile_profile(folder / protocol_name, "monitor")
        monitor = Monitor(profile, load_monitoring_table(folder / "monitoring.yaml"), engine=engine)
        history = sorted(
            (
                r.input
                for r in store.records(kind="monitor")
                if r.input.get("session") == data["session"] and r.input["seq"] <= data["seq"]
            ),
            key=lambda item: item["seq"],
        )
        if [item["seq"] for item in history] != list(range(1, data["seq"] + 1)):
            raise AuditError(
                "not_replayable",
                f"the session's events before event {data['seq']} are not all in the store",
            )
        actions = None
        for item in history:
            actions = monitor.observe(item["event"], store=False)
        assert actions is not None
        decision = ";".join(f"{d}={s.action}" for d, s in actions.drugs.items())
        evaluation = actions.evaluation.to_dict() if actions.evaluation else {"fired": []}
        table_hash = _table_hash(folder, "monitoring.yaml")
        combined = combined_hash(profile.protocol.content_hash, table_hash)
        return decision, list(evaluation["fired"]), combined
    raise AuditError("not_replayable", f"records of kind `{kind}` cannot be replayed")


def replay_record(
    store: AuditStore,
    record_id: str,
    *,
    with_current: Path | str | None = None,
    engine: Literal["durable", "reference"] = "durable",
) -> Replay:
    """Evaluate a stored input again under its stored ruleset (or, ``with_current``, under the
    protocol file given and the tables beside it) and compare the decision and the firings."""
    import tempfile

    record = store.get(record_id)
    if record is None:
        raise AuditError("unknown_record", f"no audit record `{record_id}`")
    notes: list[str] = []
    if record.redacted:
        notes.append(
            "the input was stored with these paths redacted, so it cannot be replayed exactly: "
            + ", ".join(record.redacted)
        )
    if with_current is not None:
        current = Path(with_current)
        decision, fired, content_hash = _evaluate_again(
            store, record, current.parent, current.name, engine
        )
        ruleset = f"current {record.ruleset_id} ({content_hash})"
    else:
        stored = store.ruleset_files(record.ruleset_hash)
        if stored is None:
            raise AuditError(
                "ruleset_not_stored", f"the ruleset {record.ruleset_hash} is not in the store"
            )
        _, protocol_name, files = stored
        with tempfile.TemporaryDirectory() as folder:
            for name, content in files.items():
                (Path(folder) / name).write_text(content, encoding="utf-8")
            decision, fired, content_hash = _evaluate_again(
                store, record, Path(folder), protocol_name, engine
            )
        if content_hash != record.ruleset_hash:
            raise AuditError(
                "ruleset_mismatch",
                f"the stored sources give {content_hash}, not the recorded {record.ruleset_hash}",
            )
        ruleset = f"recorded {record.ruleset_id} {record.ruleset_version} ({record.ruleset_hash})"
    then, now = _firing_keys(record.fired), _firing_keys(fired)
    differences: list[str] = []
    if decision != record.decision:
        differences.append(f"decision: recorded {record.decision}, now {decision}")
    before = [f["rule_id"] for f in record.fired]
    after = [f["rule_id"] for f in fired]
    for rule in sorted(set(before) - set(after)):
        differences.append(f"{rule} fired then, not now")
    for rule in sorted(set(after) - set(before)):
        differences.append(f"{rule} fires now, not then")
    if then != now and set(before) == set(after):
        differences.append("the same rules fired, with different facts or in another order")
    return Replay(
        record=record,
        ruleset=ruleset,
        decision=decision,
        fired=tuple(after),
        same_decision=decision == record.decision,
        same_firings=then == now,
        differences=tuple(differences),
        notes=tuple(notes),
    )
