"""``cds-rules monitor`` end to end, as the bedside would run it: a session file replayed, events
streamed on standard input (directly and behind ``tail -f``) with each alert printed as its event
arrives, ``--json``, ``--now``, the session store and a restart, and bad input."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from cds_rules.course import CourseSession

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent / "cds-rules"
V09 = ROOT / "fixtures" / "sessions" / "v09.jsonl"
SEED_DAY_1 = ROOT / "fixtures" / "sessions" / "seed-day-1.jsonl"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "monitor", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_a_session_file_prints_its_timeline_of_alerts() -> None:
    result = run(str(V09.relative_to(ROOT)))
    assert result.returncode == 3, result.stderr  # a drug was paused
    lines = result.stdout.splitlines()
    assert lines[0] == "09:00:00 #1 start    | lidocaine CONTINUE | ketamine CONTINUE"
    assert lines[1] == (
        "09:40:00 #14 symptoms | lidocaine PAUSE (HALT-LAST-01) | ketamine CONTINUE"
    )
    assert lines[2].startswith("  ALERT HALT-LAST-01 [lidocaine PAUSE]: metallic_taste")
    assert "    from: #14 symptoms 09:40:00" in lines
    assert "    observe at least 120 min after the session (POST-02)" in lines
    assert (
        "09:48:00 #19 symptoms | lidocaine SLOW <=50% (HALT-LAST-01) [staff: paused] "
        "| ketamine CONTINUE"
    ) in lines
    assert (
        "09:49:00 #20 staff    | lidocaine SLOW <=50% (HALT-LAST-01) [staff: rate 50%] "
        "| ketamine CONTINUE" in lines
    )
    assert "  LIFTED lidocaine may restart at 50% of its rate (HALT-LAST-01)" in lines
    assert "  halts: HALT-LAST-01 x1" in lines
    assert "  observe after the session: at least 120 min (POST-01, POST-02)" in lines


def test_json_gives_one_object_per_event() -> None:
    result = run(str(V09), "--json")
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(objects) == len(V09.read_text().splitlines())
    assert [o["event"]["seq"] for o in objects] == list(range(1, len(objects) + 1))
    alert = objects[13]["alerts"][0]
    assert (alert["rule"], alert["actions"]) == ("HALT-LAST-01", {"lidocaine": "PAUSE"})
    assert alert["triggered_by"] == [
        {"seq": 14, "type": "symptoms", "at": "2026-03-03T09:40:00+00:00"}
    ]
    assert objects[-2]["drugs"]["lidocaine"]["action"] == "SLOW"
    assert objects[-1]["drugs"]["lidocaine"]["action"] == "ENDED"


def test_the_summary_file_is_a_course_session(tmp_path: Path) -> None:
    out = tmp_path / "session.yaml"
    result = run(str(V09), "--summary", str(out))
    assert result.returncode == 3
    [session] = yaml.safe_load(out.read_text())
    parsed = CourseSession.model_validate(session)
    assert (parsed.number, parsed.delivered_percent) == (3, 85)
    assert [h.rule for h in parsed.halts or ()] == ["HALT-LAST-01"]


def test_now_evaluates_overdue_vitals_after_the_last_event() -> None:
    lines = V09.read_text().splitlines()[:13]  # still running at 09:35
    result = run("-", "--now", "2026-03-03T09:51:00+00:00", stdin="\n".join(lines) + "\n")
    assert result.returncode == 3
    out = result.stdout.splitlines()
    assert (
        "09:51:00 #14 now      | lidocaine PAUSE (MON-LID-NIBP-LATE, MON-LID-SPO2-LATE, "
        "MON-LID-HR-LATE, MON-LID-LAST-LATE) | ketamine PAUSE (MON-LID-NIBP-LATE, "
        "MON-LID-SPO2-LATE, MON-LID-HR-LATE)"
    ) in out
    assert (
        "  ALERT MON-LID-NIBP-LATE [lidocaine PAUSE, ketamine PAUSE]: no blood pressure for "
        "16 min: pause both infusions"
    ) in out


def test_a_bad_event_in_a_file_stops_the_replay_naming_line_and_field(tmp_path: Path) -> None:
    lines = V09.read_text().splitlines()
    bad = json.loads(lines[4])
    bad["poss"] = 7
    lines[4] = json.dumps(bad)
    session = tmp_path / "bad.jsonl"
    session.write_text("\n".join(lines) + "\n")
    result = run(str(session))
    assert result.returncode == 2
    # The events before the bad one were answered; no summary of a session cut short.
    assert result.stdout.startswith("09:00:00 #1 start")
    assert "halts:" not in result.stdout
    assert f"{session}:5: invalid_value: invalid value `7`" in result.stderr
    assert "(at $.poss)" in result.stderr
    assert "Traceback" not in result.stderr


def test_from_standard_input_a_bad_event_is_reported_and_skipped() -> None:
    lines = V09.read_text().splitlines()
    early = '{"type": "vitals", "at": "2026-03-03T08:00:00+00:00", "hr": 80}'
    stream = [lines[0], early, *lines[1:]]
    result = run("-", stdin="\n".join(stream) + "\n")
    assert result.returncode == 2
    assert "<stdin>:2: before_start:" in result.stderr
    out = result.stdout.splitlines()
    # The refusal is on the timeline too, and the drugs are held until a vitals event is
    # accepted (the refused one might have said to stop).
    assert out[1] == (
        "09:00:00 REFUSED     | lidocaine PAUSE (INPUT-REFUSED) | ketamine PAUSE (INPUT-REFUSED)"
    )
    assert out[2] == (
        "  REFUSED line 2 (vitals event) refused: before_start at $.at: the drugs are held "
        "until it is sent again"
    )
    assert out[5] == "09:05:00 #2 vitals   | lidocaine CONTINUE | ketamine CONTINUE"
    assert "  halts: HALT-LAST-01 x1" in out


class _Reader:
    """Reads a process's output lines on a thread, so a test can wait for each one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in iter(stdout.readline, ""):
                self.lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()

    def until(self, prefix: str, timeout: float = 30) -> list[str]:
        seen = []
        while True:
            line = self.lines.get(timeout=timeout)
            seen.append(line)
            if line.startswith(prefix):
                return seen


def _live(*options: str) -> tuple[subprocess.Popen[str], _Reader]:
    """``cds-rules monitor -`` reading its standard input as events are written to it."""
    process = subprocess.Popen(
        [str(CLI), "monitor", "-", *options],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    return process, _Reader(process)


def test_streamed_events_are_answered_as_they_arrive() -> None:
    lines = V09.read_text().splitlines()
    process, reader = _live()
    try:
        for index, line in enumerate(lines[:14], start=1):
            process.stdin.write(line + "\n")
            process.stdin.flush()
            # Every event prints the state of each drug before the next event is sent.
            seen = reader.until(f"{line[0:0]}")
            assert f"#{index} " in seen[-1], seen
        # The alert of event 14 came with it, before any later event was written.
        alert = reader.until("  ALERT HALT-LAST-01")
        assert alert[-1].startswith("  ALERT HALT-LAST-01 [lidocaine PAUSE]")
        process.stdin.close()
        summary = reader.until("  halts:")
        assert summary[-1] == "  halts: HALT-LAST-01 x1 (still holding)"
        assert process.wait(timeout=30) == 3
    finally:
        process.kill()


@pytest.mark.skipif(shutil.which("tail") is None, reason="needs tail")
def test_it_works_behind_tail_f(tmp_path: Path) -> None:
    """``tail -f session.jsonl | cds-rules monitor -``: each line appended to the file is
    answered while the file stays open."""
    lines = V09.read_text().splitlines()
    session = tmp_path / "live.jsonl"
    session.write_text(lines[0] + "\n")
    process = subprocess.Popen(
        f"tail -n +1 -f {session} | {CLI} monitor -",
        shell=True,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    reader = _Reader(process)
    try:
        assert reader.until("09:00:00 #1 start")[-1].endswith("ketamine CONTINUE")
        with session.open("a") as handle:
            for line in lines[1:14]:
                handle.write(line + "\n")
        seen = reader.until("  ALERT HALT-LAST-01")
        assert any(s.startswith("09:40:00 #14 symptoms | lidocaine PAUSE") for s in seen)
    finally:
        os.killpg(process.pid, 9)
        process.wait(timeout=30)


def test_a_restarted_monitor_resumes_from_its_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    lines = V09.read_text().splitlines()
    first = run("-", "--store", str(store), stdin="\n".join(lines[:15]) + "\n")
    assert first.returncode == 3
    [stored] = store.glob("V09-day3-*.jsonl")
    assert stored.read_text().count("\n") == 15
    # A new process replays the stored events and goes on with the rest.
    second = run(
        "-",
        "--store",
        str(store),
        "--resume",
        "V09-day3",
        "--json",
        stdin="\n".join(lines[15:]) + "\n",
    )
    assert second.returncode == 3, second.stderr
    resumed = [json.loads(line) for line in second.stdout.splitlines()]
    whole = [json.loads(line) for line in run(str(V09), "--json").stdout.splitlines()]
    assert resumed == whole
    unknown = run("-", "--store", str(store), "--resume", "nope", stdin="")
    assert unknown.returncode == 2
    assert "unknown_session: no stored events for session `nope`" in unknown.stderr


def test_seed_day_1_pauses_for_want_of_a_respiratory_rate_and_flags_the_dizziness() -> None:
    result = run(str(SEED_DAY_1))
    assert result.returncode == 3
    out = result.stdout.splitlines()
    assert (
        "  CANNOT DECIDE [lidocaine PAUSE]: cannot decide HALT-RR-01, HALT-RR-02, "
        "MON-LID-RR-LATE: respiratory rate not recorded; lidocaine paused until it is"
    ) in out
    assert any(
        line.startswith("  ALERT HALT-LAST-01 [after the infusion]: light_headedness")
        for line in out
    )
    assert "  adverse events: light-headedness or dizziness (grade 1, LAST tier 1)" in out


def test_tick_flags_an_overdue_reading_while_the_input_is_quiet() -> None:
    """With --tick, a quiet input still moves the clock: a blood pressure taken six minutes
    ago is flagged overdue without any new event."""
    from datetime import UTC, datetime, timedelta

    started = (datetime.now(UTC) - timedelta(minutes=6)).replace(microsecond=0)
    first = json.loads(V09.read_text().splitlines()[0])
    first["at"] = started.isoformat()
    process, reader = _live("--tick", "0.2")
    try:
        process.stdin.write(json.dumps(first) + "\n")
        process.stdin.flush()
        seen = reader.until("  ALERT MON-LID-NIBP ")
        assert any(" #2 now " in line for line in seen), seen
        assert seen[-1].startswith("  ALERT MON-LID-NIBP [the drugs go on]: blood pressure overdue")
    finally:
        process.kill()
        process.wait(timeout=30)


def test_tick_is_for_live_input_only() -> None:
    result = run(str(V09), "--tick", "1")
    assert result.returncode == 2
    assert "invalid_option: --tick is for `-` (live input)" in result.stderr
