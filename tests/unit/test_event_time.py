"""Event time in the processor: per-source progress, the router's marks, quiet streams, and
redelivered facts. Pure: the engine with a hand-driven clock, and the router's splitting."""

import json
from datetime import datetime, timedelta

from contracts.timestamps import parse_timestamp
from stream_processors.router import route
from stream_processors.rules.engine import Engine
from stream_processors.rules.examples import build_events, load_examples
from stream_processors.rules.pack import load_pack

DOCUMENT = load_examples()
PACK = load_pack("cn-cac-2025")
BASE = parse_timestamp(DOCUMENT["base_time"])
EXAMPLE = {
    "name": "event time",
    "events": [
        {"type": "device.registered", "at": -100},
        {"type": "recognition.performed", "at": 5},  # no consent: FRT-CONSENT-MISSING after the grace
        {"type": "consent.granted", "at": 4},
    ],
}
REGISTRATION, RECOGNITION, CONSENT = build_events(DOCUMENT, EXAMPLE)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def engine(clock: Clock) -> Engine:
    return Engine([PACK], grace=timedelta(seconds=10), clock=clock, sources=("0", "1"))


def rules(violations: list) -> list[str]:  # type: ignore[type-arg]
    return [v.rule_id for v in violations]


def test_nothing_is_decided_until_every_source_has_been_heard_from() -> None:
    clock = Clock(BASE + timedelta(seconds=60))
    judge = engine(clock)
    judge.process(REGISTRATION, "0")
    assert judge.process(RECOGNITION, "0") == []
    later = BASE + timedelta(seconds=30)
    assert judge.mark("0", later, caught_up_at=None) == []  # source 1 is still unknown
    assert rules(judge.mark("1", later, caught_up_at=None)) == ["FRT-CONSENT-MISSING"]


def test_a_caught_up_source_holds_nothing_back_but_one_about_to_be_read_does() -> None:
    clock = Clock(BASE + timedelta(seconds=60))
    judge = engine(clock)
    judge.process(REGISTRATION, "0")
    judge.process(RECOGNITION, "0")
    assert judge.mark("1", None, caught_up_at=clock.at) == []  # source 0 is at 5 s: grace not over
    judge.expect(["1"])  # a bundle with events of source 1 is next: it may hold the consent
    assert judge.mark("0", BASE + timedelta(seconds=30), caught_up_at=None) == []
    assert judge.process(CONSENT, "1") == []  # the consent arrived in time and covers it
    assert judge.mark("1", BASE + timedelta(seconds=30), caught_up_at=None) == []
    assert judge.flush_all() == []


def test_a_silent_reader_stops_vouching_after_the_mark_ttl() -> None:
    clock = Clock(BASE + timedelta(seconds=20))
    judge = engine(clock)
    judge.process(REGISTRATION, "0")
    judge.process(RECOGNITION, "1")
    judge.mark("0", BASE, caught_up_at=clock.at)
    clock.at += judge.mark_ttl + timedelta(seconds=1)
    # Source 1 moves on, but source 0's reader has not reported since: it holds event time.
    assert judge.mark("1", BASE + timedelta(seconds=20), caught_up_at=None) == []
    assert rules(judge.mark("0", BASE + timedelta(seconds=20), caught_up_at=clock.at)) == [
        "FRT-CONSENT-MISSING"
    ]


def test_a_caught_up_claim_read_again_after_a_restart_vouches_for_nothing() -> None:
    """A restarted worker re-reads its lane from the last commit, old marks included: their
    readers were caught up then, not now, so a source still behind must hold event time."""
    clock = Clock(BASE + timedelta(seconds=40))
    judge = engine(clock)
    judge.process(REGISTRATION, "0")
    judge.process(RECOGNITION, "0")
    then = clock.at - judge.mark_ttl - timedelta(seconds=1)
    assert judge.mark("1", BASE, caught_up_at=then) == []  # replayed: source 1 may hold the consent
    assert judge.mark("0", BASE + timedelta(seconds=30), caught_up_at=None) == []
    assert judge.process(CONSENT, "1") == []  # source 1's new reader passes the consent on
    assert judge.mark("1", BASE + timedelta(seconds=30), caught_up_at=clock.at) == []
    assert judge.flush_all() == []


def test_in_the_processor_only_the_routers_marks_move_event_time() -> None:
    """A batch reaches a lane as one bundle per operator: another operator's bundle, judged
    first, covers the same partitions up to a later time, and must not decide events whose
    facts are in a bundle still to come."""
    from contracts import encode_event
    from stream_processors.admission import Gate
    from stream_processors.judge import Judge

    other = build_events(DOCUMENT, {"name": "another operator", "events": [
        {"type": "device.registered", "at": 28, "operator_id": "op-2", "device_id": "cam-2"},
        {"type": "device.registered", "at": 30, "operator_id": "op-2", "device_id": "cam-3"},
    ]})  # fmt: skip
    gate = Gate(clock=lambda: BASE + timedelta(seconds=60))
    judge = Judge([PACK], gate, facts={}, pending={}, published={}, sources=("0", "1"), marks_only=True)
    found = []
    for origin, event in [("0:1", REGISTRATION), ("0:2", RECOGNITION), ("0:3", other[0]), ("1:1", other[1])]:
        found += judge.judge(encode_event(event), origin).violations  # op-2's bundle, at 30 s
    found += judge.judge(encode_event(CONSENT), "1:2").violations  # op-1's bundle: the late consent
    for source in ("0", "1"):  # the marks after the batch
        found += judge.mark(0, source, BASE + timedelta(seconds=30), caught_up_at=None)
    assert "FRT-CONSENT-MISSING" not in rules(found)


def test_a_quiet_stream_is_decided_by_wall_clock_time() -> None:
    clock = Clock(BASE + timedelta(seconds=5))
    judge = engine(clock)
    judge.process(REGISTRATION, "0")
    judge.process(RECOGNITION, "0")

    def quiet_for(seconds: int) -> list[str]:
        found = []
        for _ in range(seconds):
            clock.at += timedelta(seconds=1)
            found += judge.mark("0", None, caught_up_at=clock.at) + judge.mark(
                "1", None, caught_up_at=clock.at
            )
            found += judge.tick()
        return rules(found)

    assert quiet_for(1) == []  # every reader caught up: quiet from event time 5 s
    assert quiet_for(9) == []  # 9 s of quiet: the grace period is not over
    assert quiet_for(1) == ["FRT-CONSENT-MISSING"]


def test_a_device_clock_running_ahead_does_not_carry_event_time() -> None:
    clock = Clock(BASE + timedelta(seconds=6))
    judge = engine(clock)
    judge.process(REGISTRATION, "0")
    judge.process(RECOGNITION, "0")
    ahead = BASE + timedelta(minutes=4)
    assert judge.mark("0", ahead, caught_up_at=None) + judge.mark("1", ahead, caught_up_at=None) == []


def test_a_redelivered_grant_is_withdrawn_like_the_first() -> None:
    withdrawn_example = {
        "name": "redelivered grant",
        "events": [
            {"type": "device.registered", "at": -100},
            {"type": "consent.granted", "at": -50, "consent_id": "c-1"},
            {"type": "consent.withdrawn", "at": -20, "consent_id": "c-1"},
            {"type": "recognition.performed", "at": 5},
        ],
    }
    registration, grant, withdrawal, recognition = build_events(DOCUMENT, withdrawn_example)
    judge = Engine([PACK], grace=timedelta(seconds=10))
    for event in (registration, grant, grant, withdrawal, grant, recognition):
        judge.process(event)
    assert rules(judge.flush_all()) == ["FRT-CONSENT-MISSING"]


def test_the_router_bundles_by_operator_in_order_and_letters_what_it_cannot_route() -> None:
    def event(operator: str, at: str, n: int) -> bytes:
        return json.dumps({"operator_id": operator, "occurred_at": at, "n": n}).encode()

    sent = int(parse_timestamp("2026-11-21T08:00:05.000Z").timestamp() * 1000)  # Kafka timestamps
    records = [
        (("frt.events.v1", 0, 10), event("op-a", "2026-11-21T08:00:01.000Z", 1), sent),
        (("frt.events.v1", 0, 11), event("op-b", "2026-11-21T08:00:03.000Z", 2), sent),
        (("frt.events.v1", 1, 7), b"\xff not json", sent),
        (("frt.events.v1", 1, 8), event("op-a", "2026-11-21T08:00:02.000Z", 3), sent),
        (("frt.events.v1", 1, 9), event("op-a", "2026-02-30T08:00:00.000Z", 4), sent),  # no such day
        (("frt.events.v1", 2, 3), event("op-b", "2036-11-21T08:00:00.000Z", 5), sent),  # years ahead
    ]
    routed = route(records)
    by_operator = {operator: [source[2] for source, _ in bundle.items] for operator, bundle in routed.bundles}
    assert by_operator == {"op-a": [10, 8, 9], "op-b": [11, 3]}
    assert [(reason.split(":")[0], source) for _, reason, source in routed.dead] == [
        ("invalid_utf8", ("frt.events.v1", 1, 7))
    ]
    assert routed.reached == {
        0: parse_timestamp("2026-11-21T08:00:03.000Z"),
        1: parse_timestamp("2026-11-21T08:00:02.000Z"),
        2: parse_timestamp("2026-11-21T08:00:05.000Z"),  # no further than when it was sent
    }


def test_a_huge_message_is_dead_lettered_in_a_record_kafka_accepts() -> None:
    import base64
    import hashlib

    from stream_processors.outputs import MAX_ORIGINAL_BYTES, dead_letter_value

    raw = b"x" * (3 * 1024 * 1024)
    record = json.loads(dead_letter_value(raw, "too_large: 3 MiB", ("frt.events.v1", 0, 5)))
    assert len(base64.b64decode(record["original"])) == MAX_ORIGINAL_BYTES
    assert hashlib.sha256(raw).hexdigest() in record["reason"] and len(json.dumps(record)) < 1024 * 1024
