"""The fleet simulator: deterministic, complete ground truth, every bad-input kind."""

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

from contracts import ContractError, decode_event, verify
from contracts.timestamps import parse_timestamp
from contracts.vocabulary import LocationType, VenueType
from producers import hostile
from producers.fleet import DEFECTS, FleetShape, build_fleet
from producers.ground_truth import GRACE, PACKS
from producers.plan import IN_GRACE_S, IN_GRACE_STORY, PAST_GRACE_S, REVISION_STORIES, Message, TrafficPlan
from producers.simulator import Simulation, run
from stream_processors.admission import Gate

START = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
ALL_RULES = {
    "FRT-CONSENT-MISSING",
    "FRT-PURPOSE-MISMATCH",
    "FRT-MINOR-NO-GUARDIAN",
    "FRT-RAW-RETENTION",
    "FRT-SENSITIVE-INFERENCE",
    "FRT-SOLE-ENTRY-METHOD",
    "FRT-VENUE-COERCION",
    "FRT-PROHIBITED-LOCATION",
    "FRT-SIGNAGE-MISSING",
    "FRT-PUBLIC-PLACE-PURPOSE",
    "FRT-FILING-OVERDUE",
    "FRT-AUTH-CHANNEL",
    "FRT-UNREGISTERED-DEVICE",
}


def simulate(tmp_path: Path, name: str, **options: object) -> tuple[list[bytes], list[dict[str, object]]]:
    sent: list[Message] = []
    truth = tmp_path / f"{name}.jsonl"
    sim = Simulation(**{"seed": 42, "events": 6000, "start": START, "bad_share": 0.01, **options})  # type: ignore[arg-type]
    run(sim, sent.append, paced=False, ground_truth=truth)
    return [m.value for m in sent], [json.loads(line) for line in truth.read_text().splitlines()]


def test_same_seed_same_bytes_and_same_ground_truth(tmp_path: Path) -> None:
    first = simulate(tmp_path, "a")
    second = simulate(tmp_path, "b")
    assert first == second
    other_seed = simulate(tmp_path, "c", seed=43)
    assert other_seed[1] != first[1]


def test_the_ground_truth_does_not_depend_on_the_start_time(tmp_path: Path) -> None:
    def verdicts(truth: list[dict[str, object]]) -> list[dict[str, object]]:
        return [
            {k: v for k, v in entry.items() if k != "value_sha256"} for entry in truth
        ]  # bytes hold times

    _, truth = simulate(tmp_path, "a")
    values, later = simulate(tmp_path, "b", start=START + timedelta(days=3, hours=5))
    assert verdicts(later) == verdicts(truth)
    assert values != simulate(tmp_path, "c")[0]  # the event times did move


def test_ground_truth_covers_every_rule_of_both_packs_and_every_bad_input(tmp_path: Path) -> None:
    _, truth = simulate(tmp_path, "a")
    fired = {(e["policy_pack"], e["rule_id"]) for e in truth if e["expect"] == "violation"}
    expected = {(pack, rule) for pack in PACKS for rule in ALL_RULES} | {
        ("cn-cac-2025", "FRT-REMOTE-STORAGE")
    }
    assert fired == expected
    dead = Counter(e["kind"] for e in truth if e["expect"] == "dead_letter")
    assert set(dead) == set(hostile.KINDS)


def test_bad_input_is_bad_and_good_input_is_good(tmp_path: Path) -> None:
    sent: list[Message] = []
    run(Simulation(seed=5, events=3000, start=START, bad_share=0.05), sent.append, paced=False)
    fleet = build_fleet(5, FleetShape())
    keys = {d.device_id: d.key for op in fleet for d in op.devices} | {op.operator_id: op.key for op in fleet}
    seen_ids: set[str] = set()
    for message in sent:
        if message.dead_letter in (None, "seq_gap"):
            assert message.event is not None
            event = decode_event(message.value)
            assert verify(message.value, keys[event.device_id or event.operator_id])
            assert event.event_id not in seen_ids
            seen_ids.add(event.event_id)
        elif message.dead_letter == "replayed_event_id":
            assert decode_event(message.value).event_id in seen_ids
        elif message.dead_letter in ("bad_signature", "future_timestamp"):
            event = decode_event(message.value)  # well-formed, but must still be refused
            valid_sig = verify(message.value, keys[event.device_id or event.operator_id])
            assert valid_sig == (message.dead_letter == "future_timestamp")
            if message.dead_letter == "future_timestamp":
                assert event.occurred_at[:4] >= "2031"
        else:
            try:
                decode_event(message.value)
            except ContractError:
                continue
            raise AssertionError(f"{message.dead_letter} decoded cleanly: {message.value[:200]!r}")


def test_seq_numbers_only_grow_per_device_and_gaps_are_labelled(tmp_path: Path) -> None:
    sent: list[Message] = []
    run(Simulation(seed=9, events=4000, start=START, bad_share=0.03), sent.append, paced=False)
    last: dict[str, int] = {}
    gaps = 0
    for message in sent:
        if message.event is None or message.event["seq"] is None:
            continue
        device, seq = message.event["device_id"], message.event["seq"]
        if device in last:
            assert seq > last[device]
            gaps += seq > last[device] + 1
            assert (seq > last[device] + 1) == (message.dead_letter == "seq_gap")
        last[device] = seq
    assert gaps > 0


def test_a_second_run_on_the_same_fleet_goes_on_from_its_first_seq() -> None:
    """A run after another on the same fleet starting above its seqs is judged; starting at 0
    again, the processor's gate refuses most of it as seq going backwards."""
    first: list[Message] = []
    run(Simulation(seed=9, events=3000, start=START), first.append, paced=False)

    def refused_share(first_seq: int) -> float:
        """The share of the second run's device events (those with a seq) refused as going back."""
        second: list[Message] = []
        later = Simulation(
            seed=10, fleet_seed=9, events=1000, start=START + timedelta(hours=1), first_seq=first_seq
        )
        run(later, second.append, paced=False)
        gate = Gate(max_age=timedelta(days=10**4))
        for n, message in enumerate(first):
            gate.admit(message.value, f"0:{n}")
        refused = Counter(
            problem.reason for n, m in enumerate(second) for problem in gate.admit(m.value, f"1:{n}").problems
        )
        with_seq = sum(1 for m in second if m.event is not None and m.event["seq"] is not None)
        return refused["seq_backwards"] / with_seq

    assert refused_share(10**9) == 0
    assert refused_share(0) > 0.9


def test_every_device_defect_and_fleet_option_is_used() -> None:
    fleet = build_fleet(3, FleetShape(operators=4, sites=4, devices=4, subjects=50))
    devices = [d for op in fleet for d in op.devices]
    assert len(devices) == 64 and sum(len(op.subjects) for op in fleet) == 200
    assert {d.defect for d in devices if d.defect} == set(DEFECTS)
    assert any(not d.registered for d in devices)
    assert any(s.minor for op in fleet for s in op.subjects)
    assert {d.registration["venue_type"] for d in devices} == set(get_args(VenueType))


def test_a_larger_fleet_has_every_location_type() -> None:
    fleet = build_fleet(3, FleetShape(operators=4, sites=4, devices=10, misconfigured_share=0.4))
    assert {d.registration["location_type"] for op in fleet for d in op.devices} == set(
        get_args(LocationType)
    )


LateFact = tuple[str, dict[str, Any], dict[str, Any], float, float, dict[str, Any] | None]


def late_facts(rate: float) -> list[LateFact]:
    """(story, late fact, the recognition it concerns, how far past the recognition's event
    time the fact's slot is and the traffic sent before it reached, in seconds, the grant of a
    withdrawal) for every late fact the consent stories send."""
    fleet = build_fleet(1, FleetShape())
    traffic = TrafficPlan(fleet, seed=1, rate=rate, start=START, mix={"consent": 1, "revision": 1})
    recognitions: dict[str, dict[str, Any]] = {}
    grants: dict[str, dict[str, Any]] = {}
    reached = START
    found = []
    for slot, message in enumerate(traffic.messages(1000 + round(20 * rate))):  # history, then 20 s
        event = message.event
        assert event is not None
        if message.story is not None:
            recognition = recognitions[event["consent_id"]]
            occurred = parse_timestamp(recognition["occurred_at"])
            found.append(
                (
                    message.story,
                    event,
                    recognition,
                    (traffic.slot_time(slot) - occurred).total_seconds(),
                    (reached - occurred).total_seconds(),
                    grants.get(event["consent_id"]),
                )
            )
        if event["type"] == "recognition.performed" and event["consent_id"]:
            recognitions[event["consent_id"]] = event
        elif event["type"] == "consent.granted":
            grants[event["consent_id"]] = event
        reached = max(reached, parse_timestamp(event["occurred_at"]))
    return found


def test_late_facts_are_late_in_event_time_whatever_the_rate() -> None:
    """A late fact is sent after traffic whose occurred_at is inside the grace past the
    recognition it concerns (the consent three seconds late), or more than five seconds past
    the grace (the revision stories), at any rate; it occurred before that recognition."""
    grace = GRACE.total_seconds()
    for rate in (20, 300, 1000):
        facts = late_facts(rate)
        assert Counter(story for story, *_ in facts).keys() == {IN_GRACE_STORY, *REVISION_STORIES}, rate
        for story, fact, recognition, slot_lateness, lateness, grant in facts:
            assert fact["occurred_at"] < recognition["occurred_at"]
            # Its slot is at least the story's lateness after the recognition's; the traffic
            # sent before it about as late (other late facts may fill the slots just before).
            delay = IN_GRACE_S if story == IN_GRACE_STORY else PAST_GRACE_S
            assert delay <= slot_lateness < delay + 1, (rate, story, slot_lateness)
            assert delay - 0.5 <= lateness <= slot_lateness, (rate, story, lateness)
            if story == IN_GRACE_STORY:
                assert fact["type"] == "consent.granted" and lateness <= grace
            else:
                assert lateness > grace + 5
            if story == "consent_past_grace":
                assert fact["type"] == "consent.granted" and fact["purposes"] == [recognition["purpose"]]
            if story == "withdrawal_past_grace":  # of a consent granted before the recognition
                assert fact["type"] == "consent.withdrawn" and grant is not None
                assert grant["occurred_at"] < fact["occurred_at"]


def test_the_plan_and_its_ground_truth_do_not_depend_on_the_wall_clock(tmp_path: Path) -> None:
    """A sender that stalls and then catches up sends the same bytes, with the same truth."""
    sim = Simulation(seed=7, events=1500, rate=3000, start=START, bad_share=0.01)
    steady: list[Message] = []
    run(sim, steady.append, paced=False, ground_truth=tmp_path / "steady.jsonl")
    stalled: list[Message] = []

    def stall(message: Message) -> None:
        if len(stalled) in (200, 900):
            time.sleep(0.4)  # behind by 1,200 slots, then a burst
        stalled.append(message)

    run(sim, stall, paced=True, ground_truth=tmp_path / "stalled.jsonl")
    assert [m.value for m in stalled] == [m.value for m in steady]
    assert (tmp_path / "stalled.jsonl").read_bytes() == (tmp_path / "steady.jsonl").read_bytes()


def test_the_ground_truth_lists_the_revisions_late_facts_call_for(tmp_path: Path) -> None:
    """Both kinds, each about an event sent before the late fact named, which is one of the
    revision stories' facts; the final state has the late detections and not the retracted."""
    sent: list[Message] = []
    truth_file = tmp_path / "truth.jsonl"
    run(Simulation(seed=42, events=6000, start=START), sent.append, paced=False, ground_truth=truth_file)
    truth = [json.loads(line) for line in truth_file.read_text().splitlines()]
    final = {(e["policy_pack"], e["rule_id"], e["event_id"]) for e in truth if e["expect"] == "violation"}
    listed = [e for e in truth if e["expect"] == "revision_story"]
    assert truth[0]["revision_stories"] == len(listed)
    assert Counter(e["revision"] for e in listed).keys() == {"retraction", "late_detection"}
    assert {e["story"] for e in listed} <= set(REVISION_STORIES)
    position = {m.event["event_id"]: n for n, m in enumerate(sent) if m.event is not None}
    stories = {m.event["event_id"]: m.story for m in sent if m.event is not None and m.story}
    for entry in listed:
        assert (entry["policy_pack"], entry["rule_id"], entry["event_id"]) in final or (
            entry["revision"] == "retraction"
        )
        if entry["revision"] == "retraction":
            assert (entry["policy_pack"], entry["rule_id"], entry["event_id"]) not in final
        for late in entry["late_event_ids"]:
            assert stories[late] in REVISION_STORIES
            assert position[late] > position[entry["event_id"]]
    rules = {e["rule_id"] for e in listed if e["story"] == "consent_past_grace"}
    assert "FRT-CONSENT-MISSING" in rules


def test_the_keys_file_is_a_registry_the_fleet_passes_with_either_scheme(tmp_path: Path) -> None:
    """`--keys-file` enrols every device and back office, bound to its operator; each scheme's
    traffic is admitted by the gate with it, and its labelled bad signatures are refused. A
    second fleet is added to the same registry, the first one's keys kept."""
    from contracts.keyring import ED25519, HMAC_SHA256, Keyring
    from producers.simulator import plan, write_keys

    for scheme in (HMAC_SHA256, ED25519):
        path = tmp_path / f"{scheme}.json"
        sim = Simulation(seed=9, events=1500, start=START, bad_share=0.05, shape=FleetShape(scheme=scheme))
        fleet = plan(sim)[0]
        write_keys(path, fleet)
        keyring = Keyring.load(path)
        assert {(e.operator_id, e.device_id, e.scheme) for e in keyring.entries} == {
            (op.operator_id, source, scheme)
            for op in fleet
            for source in [None, *(d.device_id for d in op.devices)]
        }
        gate = Gate(keyring, max_age=timedelta(days=10**4), clock=lambda: START + timedelta(days=1))
        sent: list[Message] = []
        run(sim, sent.append, paced=False)
        for n, message in enumerate(sent):
            admission = gate.admit(message.value, f"0:{n}")
            if message.dead_letter in (None, "seq_gap"):
                assert admission.event is not None, admission.problems
            elif message.dead_letter == "bad_signature":
                assert [p.reason for p in admission.problems] == ["bad_signature"]
        other = plan(Simulation(seed=10, shape=FleetShape(operator_prefix="more", scheme=scheme)))[0]
        write_keys(path, other)
        assert len(Keyring.load(path).entries) == 2 * len(keyring.entries)
