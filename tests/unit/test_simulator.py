"""The fleet simulator: deterministic, complete ground truth, every bad-input kind."""

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

from contracts import ContractError, decode_event, verify
from contracts.vocabulary import LocationType, VenueType
from producers import hostile
from producers.fleet import DEFECTS, FleetShape, build_fleet
from producers.ground_truth import PACKS
from producers.plan import Message, TrafficPlan
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


def test_late_consent_is_sent_after_the_recognition_it_covers() -> None:
    fleet = build_fleet(1, FleetShape())
    traffic = TrafficPlan(fleet, seed=1, rate=100, start=START, mix={"consent": 1})
    events = [m.event for m in traffic.messages(3000) if m.event]
    position = {e["event_id"]: i for i, e in enumerate(events)}
    late = [
        (e, r)
        for e in events
        if e["type"] == "consent.granted"
        for r in events
        if r["type"] == "recognition.performed"
        and r.get("consent_id") == e["consent_id"]
        and position[r["event_id"]] < position[e["event_id"]]
    ]
    assert late, "no late consent in the plan"
    for consent, recognition in late:
        assert consent["occurred_at"] < recognition["occurred_at"]
