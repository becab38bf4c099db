"""The infusion monitor through its Python API: event validation, the per-drug actions, STOP
finality, pause and resume, replay after a restart, and the session summary the course reads.

The threshold and window edges of every halt rule are golden cases (``tests/golden/monitor``);
here are the behaviours that are not one rule's: the state carried from event to event.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_rules.course import CourseSession
from cds_rules.errors import InputErrors
from cds_rules.monitor import Actions, FileStore, MemoryStore, Monitor, replay
from cds_rules.monitor_events import load_monitoring_table
from cds_rules.protocol import compile_profile

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = ROOT / "fixtures" / "sessions"
T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def profile() -> Any:
    return compile_profile(ROOT / "rulesets" / "protocol.yaml", "monitor")


@pytest.fixture(scope="module")
def table() -> Any:
    return load_monitoring_table(ROOT / "rulesets" / "monitoring.yaml")


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def start(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "start",
        "at": at(0),
        "session": "S1",
        "weight_kg": 70,
        "planned": {"lidocaine_mg": 280, "ketamine_mg": 10, "minutes": 60},
        "baseline": {"sbp": 120, "dbp": 75, "hr": 80, "spo2": 98, "rr": 14, "poss": 1},
    }
    event.update(changes)
    return event


def vitals(seconds: float, **values: float) -> dict[str, Any]:
    return {"type": "vitals", "at": at(seconds), **values}


def symptoms(seconds: float, *signs: str | tuple[str, int]) -> dict[str, Any]:
    present = [{"sign": s} if isinstance(s, str) else {"sign": s[0], "grade": s[1]} for s in signs]
    return {"type": "symptoms", "at": at(seconds), "present": present}


def actions_of(a: Actions) -> dict[str, str]:
    return {drug: state.action for drug, state in a.drugs.items()}


def codes(error: InputErrors) -> list[tuple[str, str]]:
    return [(e.code, e.location.path) for e in error.errors]


# -- validation ---------------------------------------------------------------------------------


def test_an_impossible_spo2_is_refused_naming_the_field(profile: Any, table: Any) -> None:
    monitor = Monitor(profile, table)
    monitor.observe(start())
    with pytest.raises(InputErrors) as caught:
        monitor.observe(vitals(60, spo2=140), source="s.jsonl", line=2)
    assert codes(caught.value) == [("invalid_value", "$.spo2")]
    assert str(caught.value.errors[0]).startswith("s.jsonl:2: invalid_value: invalid value `140`")
    # The refused event is neither kept nor evaluated: the session goes on.
    assert len(monitor.events) == 1
    assert actions_of(monitor.observe(vitals(60, spo2=97))) == {
        "lidocaine": "CONTINUE",
        "ketamine": "CONTINUE",
    }


def test_an_event_before_the_session_start_is_refused(profile: Any, table: Any) -> None:
    monitor = Monitor(profile, table)
    monitor.observe(start())
    with pytest.raises(InputErrors) as caught:
        monitor.observe(vitals(-1, hr=80))
    assert codes(caught.value) == [("before_start", "$.at")]


def test_events_out_of_order_are_refused(profile: Any, table: Any) -> None:
    monitor = Monitor(profile, table)
    monitor.observe(start())
    monitor.observe(vitals(120, hr=80))
    with pytest.raises(InputErrors) as caught:
        monitor.observe(vitals(60, hr=81))
    assert codes(caught.value) == [("out_of_order", "$.at")]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([vitals(0, hr=80)], [("not_started", "$.type")]),
        ([start(), start()], [("duplicate_start", "$.type")]),
        (
            [start(baseline={"sbp": 120, "dbp": 75, "hr": 80, "spo2": 98, "poss": 1})],
            [("missing_field", "$.baseline")],
        ),
        (
            [start(baseline={"sbp": 120, "dbp": 75, "hr": 80, "spo2": 98, "rr": 14})],
            [("invalid_value", "$.baseline")],
        ),
        ([start(), symptoms(60, "metalic_taste")], [("unknown_sign", "$.present[0].sign")]),
        ([start(), symptoms(60, "hallucinations")], [("missing_field", "$.present[0]")]),
        (
            [
                start(planned={"lidocaine_mg": 280, "ketamine_mg": 0}),
                {"type": "staff", "at": at(60), "action": "resume", "drug": "ketamine"},
            ],
            [("drug_not_planned", "$.drug")],
        ),
        (
            [start(), {"type": "staff", "at": at(60), "action": "rate", "drug": "lidocaine"}],
            [("invalid_value", "$")],
        ),
        ([start(), {"type": "vitals", "at": at(60)}], [("invalid_value", "$")]),
        ([start(), {"type": "vitls", "at": at(60)}], [("invalid_value", "$.type")]),
        ([start(), {"type": "end", "at": at(60), "delivered_percent": {}}], []),
        (
            [
                start(),
                {"type": "end", "at": at(60), "delivered_percent": {}},
                {"type": "staff", "at": at(61), "action": "resume", "drug": "both"},
            ],
            [("after_end", "$.type")],
        ),
        (
            [
                start(),
                {"type": "end", "at": at(60), "delivered_percent": {}},
                {"type": "discharge", "at": at(61)},
                vitals(62, hr=80),
            ],
            [("after_discharge", "$.type")],
        ),
        ([start(), {"type": "discharge", "at": at(61)}], [("not_ended", "$.type")]),
        (
            [
                start(),
                {
                    "type": "baseline",
                    "at": at(60),
                    "measured_at": at(-600),
                    "qrs_ms": 100,
                    "sbp": 130,
                    "dbp": 80,
                },
            ],
            [("baseline_recorded", "$.sbp"), ("baseline_recorded", "$.dbp")],
        ),
        (
            [
                start(baseline={**start()["baseline"], "qrs_ms": None}),
                {"type": "baseline", "at": at(1800), "measured_at": at(1790), "qrs_ms": 150},
            ],
            [("baseline_after_start", "$.measured_at")],
        ),
    ],
    ids=[
        "before start",
        "two starts",
        "baseline without rr",
        "baseline without sedation",
        "misspelt sign",
        "psychomimetic without grade",
        "staff acts on a drug not given",
        "rate without percent",
        "vitals without values",
        "unknown type",
        "end is fine",
        "staff after end",
        "after discharge",
        "discharge before end",
        "a recorded baseline changed",
        "a baseline measured during the infusion",
    ],
)
def test_invalid_sequences_name_the_field(
    profile: Any, table: Any, events: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    monitor = Monitor(profile, table)
    *before, last = events
    for event in before:
        monitor.observe(event)
    if not expected:
        ended = monitor.observe(last)
        assert actions_of(ended) == {"lidocaine": "ENDED", "ketamine": "ENDED"}
        return
    with pytest.raises(InputErrors) as caught:
        monitor.observe(last)
    assert codes(caught.value) == expected


def test_a_line_that_is_not_json_is_an_error_with_its_line(profile: Any, table: Any) -> None:
    monitor = Monitor(profile, table)
    with pytest.raises(InputErrors) as caught:
        monitor.observe('{"type": "start", ', source="live", line=7)
    error = caught.value.errors[0]
    assert (error.code, error.location.file, error.location.line) == ("invalid_json", "live", 7)


# -- actions over time --------------------------------------------------------------------------


def test_a_stop_is_final_whatever_follows(profile: Any, table: Any) -> None:
    monitor = Monitor(profile, table)
    monitor.observe(start())
    stopped = monitor.observe(vitals(60, rr=7))
    assert actions_of(stopped) == {"lidocaine": "STOP", "ketamine": "STOP"}
    assert [a.rule for a in stopped.alerts] == ["HALT-RR-01", "HALT-RR-02"]
    later = monitor.observe(vitals(120, rr=14))
    assert actions_of(later) == {"lidocaine": "STOP", "ketamine": "STOP"}
    assert later.drugs["lidocaine"].rules == ("HALT-RR-02",)
    resumed = monitor.observe(
        {"type": "staff", "at": at(180), "action": "resume", "drug": "lidocaine"}
    )
    assert actions_of(resumed)["lidocaine"] == "STOP"
    assert resumed.warnings == ("lidocaine resumed by staff while the rules say STOP (HALT-RR-02)",)


def test_a_ketamine_stop_leaves_lidocaine_running(profile: Any, table: Any) -> None:
    monitor = Monitor(profile, table)
    monitor.observe(start())
    result = monitor.observe(symptoms(60, ("hallucinations", 3)))
    assert actions_of(result) == {"lidocaine": "CONTINUE", "ketamine": "STOP"}
    assert {a.rule for a in result.alerts} == {"HALT-PSY-02", "HALT-PSY-03"}


def test_a_pause_lifts_when_its_condition_holds_and_says_what_it_awaits(
    profile: Any, table: Any
) -> None:
    monitor = Monitor(profile, table)
    monitor.observe(start())
    paused = monitor.observe(vitals(60, sbp=165, dbp=85, spo2=98, hr=80))
    assert actions_of(paused) == {"lidocaine": "CONTINUE", "ketamine": "PAUSE"}
    assert paused.drugs["ketamine"].awaiting == (
        "HALT-SBP-01: SBP under 160 mmHg and at most 20% over the baseline, on a recheck",
    )
    # 159 is under 160 but 32.5% over the baseline of 120: still paused.
    still = monitor.observe(vitals(360, sbp=159, dbp=85, spo2=98, hr=80))
    assert actions_of(still)["ketamine"] == "PAUSE"
    assert still.alerts == () and still.lifted == ()
    lifted = monitor.observe(vitals(660, sbp=144, dbp=80, spo2=98, hr=80))  # 20% over: allowed
    assert actions_of(lifted) == {"lidocaine": "CONTINUE", "ketamine": "CONTINUE"}
    assert lifted.lifted == ("ketamine may restart (HALT-SBP-01)",)


def test_a_lidocaine_pause_for_a_tier1_sign_restarts_at_half_rate(profile: Any, table: Any) -> None:
    monitor = Monitor(profile, table)
    monitor.observe(start())
    paused = monitor.observe(symptoms(600, ("metallic_taste", 1)))
    assert actions_of(paused) == {"lidocaine": "PAUSE", "ketamine": "CONTINUE"}
    assert paused.observe_minutes == 120
    monitor.observe(vitals(840, sbp=120, dbp=75, hr=80, spo2=98, rr=14))
    resolved = monitor.observe(symptoms(900))
    assert actions_of(resolved)["lidocaine"] == "SLOW"
    assert resolved.drugs["lidocaine"].rate_percent == 50
    too_fast = monitor.observe(
        {"type": "staff", "at": at(960), "action": "rate", "drug": "lidocaine", "rate_percent": 75}
    )
    assert too_fast.warnings == (
        "lidocaine at 75% by staff while the rules allow at most 50% (HALT-LAST-01)",
    )
    # A tier-1 sign again after the restart stops lidocaine (HALT-LAST-01-RECUR).
    recurred = monitor.observe(symptoms(1200, "tinnitus"))
    assert actions_of(recurred) == {"lidocaine": "STOP", "ketamine": "CONTINUE"}
    assert "HALT-LAST-01-RECUR" in {a.rule for a in recurred.alerts}


def test_missing_baseline_values_pause_until_recorded(profile: Any, table: Any) -> None:
    monitor = Monitor(profile, table)
    first = monitor.observe(
        start(baseline={"sbp": 120, "dbp": 75, "hr": 80, "spo2": 98, "rr": None, "poss": 1})
    )
    assert actions_of(first) == {"lidocaine": "PAUSE", "ketamine": "PAUSE"}
    [alert] = first.alerts
    assert alert.kind == "cannot_decide" and alert.needs == ("respiratory rate",)
    recorded = monitor.observe(vitals(60, rr=14))
    assert actions_of(recorded) == {"lidocaine": "CONTINUE", "ketamine": "CONTINUE"}


def test_a_tier3_alert_gives_the_lipid_doses_for_the_weight(profile: Any, table: Any) -> None:
    for weight, expected in ((85, "bolus 100 mL"), (60, "bolus 90 mL (1.5 mL/kg at 60 kg)")):
        monitor = Monitor(profile, table)
        monitor.observe(start(weight_kg=weight))
        result = monitor.observe(symptoms(60, "seizure"))
        [alert] = [a for a in result.alerts if a.rule == "HALT-LAST-03"]
        assert expected in alert.lipid_rescue[0]
        assert result.observe_minutes == 360 and result.observe_rules == ("POST-03",)
    monitor = Monitor(profile, table)
    monitor.observe(start(weight_kg=None))
    seizure = monitor.observe(symptoms(60, "seizure"))
    [alert] = [a for a in seizure.alerts if a.rule == "HALT-LAST-03"]
    assert alert.lipid_rescue == (
        "weight not recorded: dose lipid emulsion 20% by the ASRA checklist",
    )


def test_a_sign_after_the_infusion_changes_no_drug_but_lengthens_observation(
    profile: Any, table: Any
) -> None:
    _, results = replay(profile, table, (SESSIONS / "seed-day-1.jsonl").read_text().splitlines())
    after = results[2]
    assert actions_of(after) == {"lidocaine": "ENDED", "ketamine": "NOT_GIVEN"}
    [alert] = after.alerts
    assert (alert.rule, alert.after_end, alert.actions) == ("HALT-LAST-01", True, {})
    assert after.observe_rules == ("POST-01", "POST-02")


# -- the summary for the course -------------------------------------------------------------


def test_the_v09_summary_is_a_course_session(profile: Any, table: Any) -> None:
    monitor, results = replay(profile, table, (SESSIONS / "v09.jsonl").read_text().splitlines())
    alerting = [(r.event.seq, [a.rule for a in r.alerts]) for r in results if r.alerts]
    assert alerting == [(14, ["HALT-LAST-01"])]
    summary = monitor.summary()
    session = CourseSession.model_validate(summary.course_session())
    assert session.delivered_percent == 85
    assert session.max_poss == 1
    assert [(h.rule, h.times, h.resolved) for h in session.halts or ()] == [
        ("HALT-LAST-01", 1, True)
    ]
    assert [(a.category, a.grade, a.last_tier, a.when) for a in session.adverse_events or ()] == [
        ("last_sign", 1, 1, "during"),
        ("last_sign", 1, 1, "during"),
    ]
    assert summary.observe_minutes == 120


def test_every_seed_session_replays_and_summarises(profile: Any, table: Any) -> None:
    for day in range(1, 8):
        monitor, results = replay(
            profile, table, (SESSIONS / f"seed-day-{day}.jsonl").read_text().splitlines()
        )
        # The report records no respiratory rate or sedation score: never CONTINUE.
        assert {s.action for s in results[0].drugs.values()} <= {"PAUSE", "NOT_GIVEN"}
        session = CourseSession.model_validate(monitor.summary().course_session())
        assert session.max_poss is None and session.delivered_percent is None
        assert (session.adverse_events != ()) == (day == 1)


# -- replay --------------------------------------------------------------------------------------


def _session(rng_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [start(), *rng_events]


_event = st.one_of(
    st.builds(
        lambda sbp, dbp, hr, spo2, rr: {
            "type": "vitals",
            "sbp": sbp,
            "dbp": min(dbp, sbp - 10),
            "hr": hr,
            "spo2": spo2,
            "rr": rr,
        },
        st.integers(80, 200),
        st.integers(50, 120),
        st.integers(35, 140),
        st.integers(84, 100),
        st.integers(5, 26),
    ),
    st.builds(lambda s: {"type": "sedation", "poss": s}, st.integers(1, 4)),
    st.builds(lambda s: {"type": "sedation", "rass": s}, st.integers(-4, 1)),
    st.builds(
        lambda signs: {"type": "symptoms", "present": signs},
        st.lists(
            st.sampled_from(
                [
                    {"sign": "metallic_taste"},
                    {"sign": "tinnitus", "grade": 1},
                    {"sign": "dissociation", "grade": 1},
                    {"sign": "hallucinations", "grade": 2},
                    {"sign": "nausea"},
                    {"sign": "vomiting"},
                    {"sign": "headache"},
                    {"sign": "muscle_twitching"},
                ]
            ),
            max_size=3,
            unique_by=lambda s: s["sign"],
        ),
    ),
    st.just({"type": "ecg", "finding": "qrs_measured", "qrs_ms": 118}),
    st.just({"type": "now"}),
    st.builds(
        lambda a, d: {"type": "staff", "action": a, "drug": d},
        st.sampled_from(["pause", "resume"]),
        st.sampled_from(["lidocaine", "ketamine", "both"]),
    ),
)
_stream = st.lists(st.tuples(st.integers(0, 400), _event), min_size=1, max_size=25)


def _timed(stream: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    events, clock = [start(baseline={**start()["baseline"], "qrs_ms": 96})], 0
    for gap, event in stream:
        clock += gap
        events.append({**event, "at": at(clock)})
    return events


def _outcome(results: list[Actions]) -> list[str]:
    return [r.to_json() for r in results]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=_stream, cut=st.integers(0, 30))
def test_feeding_events_one_by_one_across_a_restart_gives_the_same_actions(
    profile: Any, table: Any, tmp_path_factory: Any, stream: list[Any], cut: int
) -> None:
    """The events fed one by one into a monitor that is restarted part-way (a new process that
    replays the store) give the same actions, event by event, and the same final state as
    replaying the whole session in one go."""
    events = _timed(stream)
    cut = min(cut, len(events))
    _, whole = replay(profile, table, events, engine="reference")
    store = FileStore(tmp_path_factory.mktemp("store"))
    first = Monitor(profile, table, store=store, engine="reference")
    before = [first.observe(e) for e in events[:cut]]
    if cut:
        second, replayed = Monitor.resume(profile, table, store, "S1", engine="reference")
        assert _outcome(replayed) == _outcome(before)
    else:
        second = Monitor(profile, table, store=store, engine="reference")
    after = [second.observe(e) for e in events[cut:]]
    assert _outcome(before + after) == _outcome(whole)
    assert second.summary() == replay(profile, table, events, engine="reference")[0].summary()
    assert [json.loads(line) for line in store.events("S1")] == [
        json.loads(json.dumps(_canonical(e))) for e in events
    ]


def _canonical(event: dict[str, Any]) -> dict[str, Any]:
    from cds_rules.monitor_events import event_to_json, parse_event

    return json.loads(event_to_json(parse_event(event)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=_stream)
def test_durable_rules_and_the_reference_evaluator_give_the_same_actions(
    profile: Any, table: Any, stream: list[Any]
) -> None:
    events = _timed(stream)
    _, durable = replay(profile, table, events, engine="durable")
    _, reference = replay(profile, table, events, engine="reference")
    strip = lambda results: [  # noqa: E731
        {k: v for k, v in r.to_dict().items() if k != "evaluation"} for r in results
    ]
    assert strip(durable) == strip(reference)


def test_a_restart_with_a_file_store_continues_where_it_left(
    profile: Any, table: Any, tmp_path: Path
) -> None:
    lines = (SESSIONS / "v09.jsonl").read_text().splitlines()
    store = FileStore(tmp_path)
    first = Monitor(profile, table, store=store)
    for line in lines[:15]:
        first.observe(line)
    del first  # the process ends
    second, replayed = Monitor.resume(profile, table, store, "V09-day3")
    assert actions_of(replayed[-1]) == {"lidocaine": "PAUSE", "ketamine": "CONTINUE"}
    rest = [second.observe(line) for line in lines[15:]]
    _, whole = replay(profile, table, lines)
    assert _outcome(replayed + rest) == _outcome(whole)
    assert len(store.events("V09-day3")) == len(lines)


def test_a_stored_session_cannot_be_started_twice(profile: Any, table: Any) -> None:
    store = MemoryStore()
    Monitor(profile, table, store=store).observe(start())
    with pytest.raises(InputErrors) as caught:
        Monitor(profile, table, store=store).observe(start())
    assert codes(caught.value) == [("duplicate_session", "$.session")]


def _as_course_session_2(profile: Any, table: Any, events: list[dict[str, Any]]) -> Any:
    """The monitored session's summary as session 2 of the documented course (68 kg,
    lidocaine 3.75 mg/kg = 255 mg): the decision for the session after it."""
    import yaml

    from cds_rules.course import CourseRunner, parse_course
    from cds_rules.dosing import load_dosing_table

    monitor, _ = replay(profile, table, events)
    session = monitor.summary().course_session()
    course = yaml.safe_load((ROOT / "fixtures" / "courses" / "documented.yaml").read_text())
    course["sessions"][1] = {**session, "lidocaine": {"mg_per_kg": 3.75, "mg": 255}}
    loaded = parse_course(course, "course", None, ROOT / "fixtures" / "courses")
    runner = CourseRunner(
        compile_profile(ROOT / "rulesets" / "protocol.yaml", "course"),
        load_dosing_table(ROOT / "rulesets" / "dosing.yaml"),
    )
    return runner.run(loaded).sessions[-1].next


def test_a_monitored_session_feeds_the_course_decision(profile: Any, table: Any) -> None:
    """Session 2 of the documented course, monitored: a tinnitus that resolves. Its summary,
    as the course's session 2, holds the next dose (ESC-02-LAST, CTCAE-G1, ESC-01-HALT)."""

    def event(minute: int, **fields: Any) -> dict[str, Any]:
        return {"at": at(minute * 60), **fields}

    baseline = {"sbp": 118, "dbp": 74, "hr": 76, "spo2": 98, "rr": 14, "poss": 1}
    events = [
        event(0, type="start", session="doc-2", number=2, day=2, weight_kg=68,
              planned={"lidocaine_mg": 255, "ketamine_mg": 10}, baseline=baseline,
              gate_passed=True, vnrs_before=6),
    ]  # fmt: skip
    for minute in range(5, 61, 5):
        events.append(event(minute, type="vitals", sbp=118, dbp=74, hr=76, spo2=98, rr=14))
        if minute % 10 == 0:
            present = [{"sign": "tinnitus", "grade": 1}] if minute == 20 else []
            events.append(event(minute, type="symptoms", present=present))
        if minute % 15 == 0:
            events.append(event(minute, type="sedation", poss=2))
    events.append(
        event(61, type="end", delivered_percent={"lidocaine": 95, "ketamine": 100}, vnrs_after=5)
    )
    decision = _as_course_session_2(profile, table, events)
    assert decision.action.value == "HOLD_DOSE"
    assert {"ESC-01-HALT", "ESC-02-LAST", "CTCAE-G1"} <= {r.rule_id for r in decision.reasons}


def test_a_low_spo2_with_no_reading_since_counts_as_sustained(profile: Any, table: Any) -> None:
    """The latest reading stands until a newer one: SpO2 90% and nothing newer for 30 s."""
    monitor = Monitor(profile, table)
    monitor.observe(start())
    assert actions_of(monitor.observe(vitals(60, spo2=90)))["lidocaine"] == "CONTINUE"
    assert actions_of(monitor.observe({"type": "now", "at": at(89)}))["lidocaine"] == "CONTINUE"
    stopped = monitor.observe({"type": "now", "at": at(90)})
    assert actions_of(stopped) == {"lidocaine": "STOP", "ketamine": "STOP"}
    assert [a.rule for a in stopped.alerts] == ["HALT-SPO2-02"]


def test_a_refused_event_holds_the_drugs_until_one_of_its_type_is_accepted(
    profile: Any, table: Any
) -> None:
    monitor = Monitor(profile, table)
    monitor.observe(start())
    bad = json.dumps({"type": "vitals", "at": at(60), "spo2": 85, "hr": 300.5})
    with pytest.raises(InputErrors) as caught:
        monitor.observe(bad, line=2)
    held = monitor.refuse(bad, caught.value)
    assert held is not None
    assert actions_of(held) == {"lidocaine": "PAUSE", "ketamine": "PAUSE"}
    assert held.refused == "line 2 (vitals event) refused: invalid_value at $.hr"
    # Another kind of event does not release the drugs; a valid vitals event does.
    still = monitor.observe({"type": "sedation", "at": at(70), "poss": 1})
    assert still.drugs["lidocaine"].rules == ("INPUT-REFUSED",)
    released = monitor.observe(vitals(80, spo2=97, hr=80))
    assert actions_of(released) == {"lidocaine": "CONTINUE", "ketamine": "CONTINUE"}


def test_discharge_before_the_observation_required_is_warned(profile: Any, table: Any) -> None:
    monitor = Monitor(profile, table)
    monitor.observe(start())
    monitor.observe(symptoms(300, "seizure"))
    monitor.observe({"type": "end", "at": at(600), "delivered_percent": {}})
    left = monitor.observe({"type": "discharge", "at": at(660)})
    assert left.warnings == (
        "discharged 359 min before the observation required ends: at least 360 min after the "
        "end of the infusion (POST-03), until 15:10",
        "discharged with seizure present at the latest check (POST-04: symptom-free)",
    )


def test_sessions_whose_ids_differ_are_stored_apart(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.append("bed 1", "{}")
    assert store.events("bed_1") == []
    assert store.events("bed 1") == ["{}"]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"type": "ecg", "finding": "qrs_measured", "qrs_ms": 124}, "ESC-04-ECG"),
        ({"type": "vitals", "hr": 38}, "ESC-04-LAST-HALT"),
    ],
    ids=["QRS widened 29%", "HR 38"],
)
def test_a_stop_that_ends_the_course_ends_it(
    profile: Any, table: Any, event: dict[str, Any], expected: str
) -> None:
    """The summary of a session stopped by a QRS widening or an HR under 40 (LAST tier 3)
    discontinues the course: it does not come back as an unknown halt that only holds."""
    baseline = {"sbp": 118, "dbp": 74, "hr": 76, "spo2": 98, "rr": 14, "poss": 1, "qrs_ms": 96}
    events = [
        start(number=2, day=2, weight_kg=68, baseline=baseline, gate_passed=True,
              planned={"lidocaine_mg": 255, "ketamine_mg": 10}, vnrs_before=6),
        symptoms(60),
        {**event, "at": at(120)},
        {"type": "end", "at": at(180), "delivered_percent": {"lidocaine": 20, "ketamine": 20},
         "vnrs_after": 6},
    ]  # fmt: skip
    decision = _as_course_session_2(profile, table, events)
    assert decision.action.value == "DISCONTINUE_COURSE"
    assert expected in {r.rule_id for r in decision.reasons}
    assert "HALT-UNRECOGNISED" not in {r.rule_id for r in decision.reasons}
