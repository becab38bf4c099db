"""The audit trail against a real SQLite file and a real PostgreSQL server (started by the
tests): records and their hash chain, tampering found by ``verify`` with the right record id,
concurrent writers, a writer killed mid-write, replay under the recorded ruleset after the YAML
changed, redaction, and the commands a safety officer uses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from cds_rules.audit import AuditError, AuditStore, record_assessment, replay_record
from cds_rules.facts import load_patient
from cds_rules.protocol import assessor_for

from .postgres import MISSING, fresh_database, postgres_server

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "cds-rules"
SEED = ROOT / "fixtures" / "patients" / "seed.yaml"
PASSING = ROOT / "fixtures" / "patients" / "passing.yaml"
PROTOCOL = ROOT / "rulesets" / "protocol.yaml"


@pytest.fixture(scope="session")
def postgres() -> Iterator[str | None]:
    yield from postgres_server()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path, postgres: str | None) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite'}"
    if postgres is None:
        pytest.skip(MISSING)
    return fresh_database(postgres)


def screen(store: AuditStore, patient: Path = SEED, **options: Any) -> Any:
    facts = load_patient(patient)
    assessment = assessor_for(PROTOCOL, "screening").assess(facts)
    return record_assessment(store, assessment, facts, PROTOCOL, **options)


def chain(url: str, count: int) -> list[Any]:
    store = AuditStore(url)
    return [screen(store, SEED if i % 2 else PASSING, patient_ref=f"p{i}") for i in range(count)]


def raw(url: str, *statements: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()


# -- records and the chain ---------------------------------------------------------------------


def test_each_decision_is_a_record_linked_to_the_one_before(url: str) -> None:
    records = chain(url, 3)
    store = AuditStore(url)
    assert store.verify() == (3, None)
    stored = list(store.records())
    assert [r.seq for r in stored] == [1, 2, 3]
    assert [r.prev_hash for r in stored[1:]] == [r.record_hash for r in stored[:-1]]
    first = stored[0]
    assert first.record_id == records[0].record_id
    assert (first.kind, first.patient_ref, first.decision) == ("screening", "p0", "ELIGIBLE")
    assert first.ruleset_id == "systemic_desensitisation/screening"
    assert first.ruleset_hash.startswith("sha256:") and first.engine.startswith("durable-rules")
    assert "DX2016-01" in [f["rule_id"] for f in first.fired]
    assert stored[1].decision == "CANNOT_EVALUATE"
    assert any(m["rule_id"] == "LAB-01" for m in stored[1].missing)
    # The input is stored as given, with its digest.
    assert stored[1].input == load_patient(SEED).model_dump(mode="json")


@pytest.mark.parametrize(
    ("tamper", "code", "at"),
    [
        (["UPDATE audit_records SET decision = 'INELIGIBLE' WHERE seq = 3"], "changed", 3),
        (["DELETE FROM audit_records WHERE seq = 3"], "deleted", 3),
        (
            [
                "UPDATE audit_records SET seq = 100 WHERE seq = 3",
                "UPDATE audit_records SET seq = 3 WHERE seq = 4",
                "UPDATE audit_records SET seq = 4 WHERE seq = 100",
            ],
            "reordered",
            3,
        ),
    ],
    ids=["edited", "deleted", "swapped"],
)
def test_verify_finds_the_record_that_was_tampered_with(
    url: str, tamper: list[str], code: str, at: int
) -> None:
    records = chain(url, 5)
    raw(url, *tamper)
    count, problem = AuditStore(url).verify()
    assert problem is not None
    assert (problem.code, problem.seq) == (code, at)
    expected = {
        "changed": records[2].record_id,
        "deleted": records[2].record_id,
        "reordered": records[3].record_id,
    }[code]
    assert problem.record_id == expected
    assert count == 2


def test_verify_finds_a_record_inserted_with_a_valid_hash(url: str) -> None:
    """A forger who knows the hashing inserts a well-formed record after record 2 and moves
    the later records one place on: the forged record is named."""
    from cds_rules.audit import audit_records, record_hash

    records = chain(url, 5)
    store = AuditStore(url)
    second = store.get(records[1].record_id)
    assert second is not None
    forged = {**second.to_dict(), "seq": 3, "record_id": "forged-record", "decision": "ELIGIBLE"}
    forged["prev_record_id"], forged["prev_hash"] = second.record_id, second.record_hash
    forged["record_hash"] = record_hash(forged)
    raw(
        url,
        "UPDATE audit_records SET seq = seq + 100 WHERE seq >= 3",
        "UPDATE audit_records SET seq = seq - 99 WHERE seq >= 103",
    )
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(audit_records.insert().values(**forged))
    engine.dispose()
    count, problem = AuditStore(url).verify()
    assert problem is not None
    assert (problem.code, problem.record_id, problem.seq, count) == (
        "inserted",
        "forged-record",
        3,
        2,
    )


def test_the_store_offers_no_update_or_delete() -> None:
    public = {name for name in dir(AuditStore) if not name.startswith("_")}
    assert not {n for n in public if any(w in n for w in ("update", "delete", "remove", "edit"))}


# -- concurrency and crashes -------------------------------------------------------------------

WRITER = """
import sys
from cds_rules.audit import AuditStore
store = AuditStore(sys.argv[1])
for i in range(int(sys.argv[2])):
    store.append(kind="screening", input_data={"i": i}, ruleset_id="r/screening",
                 ruleset_version="1.0.0", ruleset_hash="sha256:x", engine="test",
                 fired=[], findings=[], missing=[], decision="ELIGIBLE", result={},
                 patient_ref=sys.argv[3])
"""


def test_concurrent_writers_keep_one_chain(url: str) -> None:
    AuditStore(url)  # schema first
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, "15", f"writer{n}"]) for n in range(4)
    ]
    assert [w.wait(timeout=300) for w in writers] == [0, 0, 0, 0]
    store = AuditStore(url)
    assert store.verify() == (60, None)
    records = list(store.records())
    assert [r.seq for r in records] == list(range(1, 61))
    assert {r.patient_ref for r in records} == {f"writer{n}" for n in range(4)}


def test_a_writer_killed_mid_write_leaves_a_chain_that_verifies(url: str) -> None:
    AuditStore(url)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, url, "100000", "killed"])
    store = AuditStore(url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(1 for _ in store.records()) < 20:
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    count, problem = store.verify()
    assert problem is None and count >= 20
    # The next writer carries on from the last committed record.
    after = store.append(
        kind="screening", input_data={}, ruleset_id="r/screening", ruleset_version="1.0.0",
        ruleset_hash="sha256:x", engine="test", fired=[], findings=[], missing=[],
        decision="ELIGIBLE", result={},
    )  # fmt: skip
    assert after.seq == count + 1
    assert store.verify() == (count + 1, None)


# -- replay ------------------------------------------------------------------------------------


def test_replay_uses_the_recorded_ruleset_after_the_yaml_changed(url: str, tmp_path: Path) -> None:
    rulesets = tmp_path / "rulesets"
    shutil.copytree(ROOT / "rulesets", rulesets)
    protocol = rulesets / "protocol.yaml"
    facts = load_patient(SEED)
    assessment = assessor_for(protocol, "screening").assess(facts)
    store = AuditStore(url)
    record = record_assessment(store, assessment, facts, protocol)
    assert "LAB-02-CRP" in [f["rule_id"] for f in record.fired]
    # Today's rules: the CRP limit raised above the seed's 17.5 mg/L.
    eligibility = rulesets / "eligibility.yaml"
    before = eligibility.read_text(encoding="utf-8")
    after = before.replace("labs.crp_mg_per_l: {gt: 5}", "labs.crp_mg_per_l: {gt: 20}")
    assert after != before
    eligibility.write_text(after, encoding="utf-8")
    replayed = replay_record(store, record.record_id)
    assert replayed.same and replayed.decision == record.decision
    assert replayed.ruleset.startswith("recorded systemic_desensitisation/screening 1.0.0")
    today = replay_record(store, record.record_id, with_current=protocol)
    assert not today.same_firings
    assert "LAB-02-CRP fired then, not now" in today.differences


def test_redacted_paths_are_not_stored_and_replay_says_so(url: str) -> None:
    store = AuditStore(url)
    record = screen(store, redact_paths=["patient_ref", "current_medications.*.code"])
    count = len(load_patient(SEED).model_dump(mode="json")["current_medications"])
    assert record.redacted == [f"current_medications[{i}].code" for i in range(count)] + [
        "patient_ref"
    ]
    assert "patient_ref" not in record.input
    assert all("code" not in m for m in record.input["current_medications"])
    replayed = replay_record(store, record.record_id)
    assert replayed.notes == (
        "the input was stored with these paths redacted, so it cannot be replayed exactly: "
        + ", ".join(record.redacted),
    )


def test_a_store_that_cannot_be_written_gives_an_error_not_a_decision(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(AuditError) as caught:
        AuditStore(f"sqlite:///{blocker / 'audit.sqlite'}")
    assert caught.value.code == "audit_unavailable"
    result = subprocess.run(
        [str(CLI), "screen", str(SEED), "--audit-db", f"sqlite:///{blocker / 'audit.sqlite'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 10
    assert result.stdout == ""
    assert "audit_unavailable: cannot open the audit store" in result.stderr


# -- the commands ------------------------------------------------------------------------------


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CDS_RULES_AUDIT_URL": url},
    )


def test_the_audit_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    assert cli("screen", str(SEED), "--patient-ref", "seed-1", url=url).returncode == 4
    assert cli("screen", str(PASSING), "--patient-ref", "p-2", url=url).returncode == 0
    assert cli("screen", str(PASSING), "--no-audit", url=url).returncode == 0
    listed = cli("audit", "list", url=url).stdout.splitlines()
    assert len(listed) == 2
    assert " seed-1 CANNOT_EVALUATE systemic_desensitisation/screening 1.0.0" in listed[0]
    only = cli("audit", "list", "--decision", "ELIGIBLE", url=url).stdout.splitlines()
    assert len(only) == 1 and " p-2 ELIGIBLE " in only[0]
    assert len(cli("audit", "list", "--rule", "LAB-02-CRP", url=url).stdout.splitlines()) == 1
    record_id = listed[0].split()[1]
    shown = cli("audit", "show", record_id, url=url).stdout.splitlines()
    assert "decision: CANNOT_EVALUATE" in shown
    assert any(line.startswith("  LAB-02-CRP ") for line in shown)
    assert "    labs: crp_mg_per_l=17.5" in shown
    assert any(line.startswith("  LAB-01 ") for line in shown)  # why not: missing
    replay = cli("audit", "replay", record_id, url=url)
    assert replay.returncode == 0
    assert "same: CANNOT_EVALUATE" in replay.stdout
    exported = cli("audit", "export", url=url).stdout.splitlines()
    assert len(exported) == 2
    assert cli("audit", "verify", url=url).stdout.startswith("ok: 2 records, the chain holds")
    raw(url, "UPDATE audit_records SET patient_ref = 'someone else' WHERE seq = 1")
    broken = cli("audit", "verify", url=url)
    assert broken.returncode == 11
    assert broken.stdout.startswith(f"chain broken at record {record_id} (#1): changed:")


def test_every_command_records_its_decisions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    v09 = ROOT / "fixtures" / "sessions" / "v09.jsonl"
    dose = ("dose", str(PASSING), "--session", "2", "--lidocaine-mg-per-ml", "20",
            "--ketamine-mg-per-ml", "10")  # fmt: skip
    check = ("check-dose", str(PASSING), "--drug", "ketamine", "--mg", "20")
    assert cli(*dose, url=url).returncode == 0
    assert cli(*check, url=url).returncode == 9
    assert (
        cli("course", str(ROOT / "fixtures" / "courses" / "documented.yaml"), url=url).returncode
        == 0
    )
    assert cli("monitor", str(v09), url=url).returncode == 3
    for command in (dose, check):
        assert cli(*command, "--no-audit", url=url).returncode in (0, 9)
    store = AuditStore(url)
    records = list(store.records())
    events = len(v09.read_text().splitlines())
    assert [r.kind for r in records] == ["dose_plan", "dose_check", "course"] + ["monitor"] * events
    assert records[1].decision == "REJECT"
    assert records[3 + 13].decision == "lidocaine=PAUSE;ketamine=CONTINUE"
    assert {p["sign"] for p in records[3 + 13].input["event"]["present"]} == {
        "perioral_numbness",
        "metallic_taste",
    }
    assert "HALT-LAST-01" in [f["rule_id"] for f in records[3 + 13].fired]
    assert store.verify() == (3 + events, None)
    # The sources of each ruleset are stored once, by content hash.
    assert {r.ruleset_hash for r in records[3:]} == {records[3].ruleset_hash}
    # Every kind replays under its recorded sources to the same decision and firings.
    for record in (*records[:3], records[3 + 13], records[-1]):
        replayed = replay_record(store, record.record_id)
        assert replayed.same, (record.kind, replayed.differences)
        assert replayed.decision == record.decision
    replayed = cli("audit", "replay", records[3 + 13].record_id, url=url)
    assert "same: lidocaine=PAUSE;ketamine=CONTINUE, 2 rules fired as recorded" in replayed.stdout


def test_a_resumed_monitor_does_not_record_the_replayed_events_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    lines = (ROOT / "fixtures" / "sessions" / "v09.jsonl").read_text().splitlines()
    sessions = str(tmp_path / "sessions")
    first = subprocess.run(
        [str(CLI), "monitor", "-", "--store", sessions], input="\n".join(lines[:10]) + "\n",
        capture_output=True, text=True, timeout=120, env={**os.environ, "CDS_RULES_AUDIT_URL": url},
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = subprocess.run(
        [str(CLI), "monitor", "-", "--store", sessions, "--resume", "V09-day3"],
        input="\n".join(lines[10:]) + "\n", capture_output=True, text=True, timeout=120,
        env={**os.environ, "CDS_RULES_AUDIT_URL": url},
    )  # fmt: skip
    assert second.returncode == 3, second.stderr
    records = list(AuditStore(url).records())
    assert [r.input["seq"] for r in records] == list(range(1, len(lines) + 1))


def test_a_single_ruleset_screening_is_recorded_and_replays(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    result = cli("screen", str(SEED), "--ruleset", "rulesets/eligibility.yaml", url=url)
    assert result.returncode == 3
    [record] = AuditStore(url).records()
    assert (record.kind, record.ruleset_id, record.decision) == (
        "screening",
        "eligibility",
        "NEEDS_REVIEW",
    )
    replayed = replay_record(AuditStore(url), record.record_id)
    assert replayed.same and replayed.decision == "NEEDS_REVIEW"
