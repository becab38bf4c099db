"""The cost of the audit trail: the added time per decision when each screening is recorded
(SQLite in a file, committed with full synchronous writes; PostgreSQL on loopback), and
audit-write throughput with 1 and 4 concurrent writer processes. Measured, never asserted.

PostgreSQL is started from the machine's binaries in a temporary folder (as the tests do);
without them its rows say so.

    .venv/bin/python benchmarks/bench_audit.py [--decisions 200] [--appends 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from cds_rules.audit import AuditStore, record_assessment  # noqa: E402
from cds_rules.facts import load_patient  # noqa: E402
from cds_rules.protocol import assessor_for  # noqa: E402
from tests.postgres import fresh_database, postgres_server  # noqa: E402

PROTOCOL = ROOT / "rulesets" / "protocol.yaml"
PATIENTS = [ROOT / "fixtures" / "patients" / name for name in ("seed.yaml", "passing.yaml")]

WRITER = """
import sys, time
from cds_rules.audit import AuditStore
store = AuditStore(sys.argv[1])
count = int(sys.argv[2])
start = time.perf_counter()
for i in range(count):
    store.append(kind="screening", input_data={"i": i}, ruleset_id="r/screening",
                 ruleset_version="1.0.0", ruleset_hash="sha256:x", engine="bench",
                 fired=[{"rule_id": "X", "matched": []}], findings=[], missing=[],
                 decision="ELIGIBLE", result={"decision": "ELIGIBLE"})
print(time.perf_counter() - start)
"""


def _fresh_postgres(server: str) -> str:
    return fresh_database(server, "bench")


def per_decision(url: str | None, decisions: int) -> list[float]:
    """Microseconds per screening decision (assess, and record when ``url`` is given)."""
    facts = [load_patient(p) for p in PATIENTS]
    assessor = assessor_for(PROTOCOL, "screening")
    store = AuditStore(url) if url else None
    timings = []
    for index in range(decisions):
        patient = facts[index % len(facts)]
        start = time.perf_counter()
        assessment = assessor.assess(patient)
        if store is not None:
            record_assessment(store, assessment, patient, PROTOCOL, patient_ref=f"p{index}")
        timings.append((time.perf_counter() - start) * 1e6)
    return timings


def throughput(url: str, writers: int, appends: int) -> float:
    """Appends per second with ``writers`` processes each appending ``appends`` records."""
    AuditStore(url)
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(appends)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(writers)
    ]
    for process in processes:
        process.wait()
    elapsed = time.perf_counter() - start
    count, problem = AuditStore(url).verify()
    assert problem is None and count == writers * appends, (count, problem)
    return writers * appends / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--appends", type=int, default=200)
    args = parser.parse_args()
    start = time.perf_counter()
    sum(range(1_000_000))
    print(f"calibration: a 1M-step Python loop takes {(time.perf_counter() - start) * 1e3:.1f} ms")
    folder = Path(tempfile.mkdtemp(prefix="cds-rules-bench-audit-"))
    servers = postgres_server()
    server = next(servers)
    try:
        per_decision(None, 20)  # warm the compiled profile
        base = per_decision(None, args.decisions)
        rows = [("no audit", base)]
        rows.append(
            ("SQLite file", per_decision(f"sqlite:///{folder / 'd.sqlite'}", args.decisions))
        )
        if server:
            rows.append(
                ("PostgreSQL loopback", per_decision(_fresh_postgres(server), args.decisions))
            )
        print(f"\nscreening decisions ({args.decisions}, seed and passing patients), µs:")
        print(f"{'':22}{'median':>10}{'p99':>10}{'added (median)':>16}")
        base_median = statistics.median(base)
        for label, timings in rows:
            ordered = sorted(timings)
            median = statistics.median(ordered)
            p99 = ordered[int(0.99 * (len(ordered) - 1))]
            print(f"{label:22}{median:>10.0f}{p99:>10.0f}{median - base_median:>16.0f}")
        if not server:
            print("PostgreSQL loopback: not measured (PostgreSQL is not installed)")
        print(f"\naudit-write throughput ({args.appends} appends per writer), appends/s:")
        for label, make in (
            ("SQLite file", lambda n: f"sqlite:///{folder / f't{n}-{uuid.uuid4().hex}.sqlite'}"),
            ("PostgreSQL loopback", lambda n: _fresh_postgres(server) if server else None),
        ):
            if make(0) is None:
                print(f"{label:22} not measured (PostgreSQL is not installed)")
                continue
            one = throughput(make(1), 1, args.appends)
            four = throughput(make(4), 4, args.appends)
            print(
                f"{label:22} 1 writer {one:8.0f}   4 writers {four:8.0f}   ratio {four / one:.2f}"
            )
    finally:
        for _ in servers:
            pass


if __name__ == "__main__":
    main()
