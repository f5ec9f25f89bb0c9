"""`frtwatch simulate`: a fleet's traffic to Kafka (or a file) at a steady rate, with the
ground truth of what the processor must find: the final state of its verdicts, and as
information the revisions the plan's late facts call for."""

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from kafka import KafkaProducer

from contracts.keyring import Keyring
from core.kafka_security import PLAINTEXT, KafkaSecurity
from producers.fleet import FleetShape, Operator, build_fleet
from producers.ground_truth import PACKS, GroundTruth, Revision
from producers.plan import Message, TrafficPlan
from producers.sender import BoundedSender, producer_settings

Progress = Callable[[int], None]  # called with the number of messages sent so far


@dataclass(frozen=True)
class Simulation:
    seed: int = 1
    fleet_seed: int | None = None  # the fleet's own seed, when it should differ from the traffic's
    shape: FleetShape = field(default_factory=FleetShape)
    rate: float = 200.0
    events: int = 2_000
    start: datetime | None = None  # event time of message 0; default: now
    mix: dict[str, float] | None = None
    bad_share: float = 0.0
    # Every device's first seq. Traffic for a fleet that has sent before (same fleet_seed)
    # starts above the earlier run's seqs, or the processor refuses it as seq_backwards.
    first_seq: int = 0


@dataclass
class Report:
    sent: int = 0
    elapsed_s: float = 0.0
    dead_letters: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)  # by rule_id, all packs
    delivery_failures: int = 0
    # With a ground truth: the final state it expects, (policy pack, rule id, event id) ...
    expected: set[tuple[str, str, str]] = field(default_factory=set)
    # ... and the revisions late facts call for, by (revision, rule_id), every pack (information)
    revisions: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def plan(sim: Simulation) -> tuple[list[Operator], TrafficPlan]:
    fleet = build_fleet(sim.seed if sim.fleet_seed is None else sim.fleet_seed, sim.shape)
    start = sim.start or datetime.now(UTC)
    return fleet, TrafficPlan(
        fleet,
        seed=sim.seed,
        rate=sim.rate,
        start=start,
        mix=sim.mix,
        bad_share=sim.bad_share,
        first_seq=sim.first_seq,
    )


def run(
    sim: Simulation,
    send: Callable[[Message], None],
    *,
    paced: bool,
    ground_truth: Path | None = None,
    progress: Progress | None = None,
) -> Report:
    """Generate and ``send`` every message, at ``sim.rate`` if ``paced``; write the ground
    truth if asked. The messages are generated as they are sent (memory stays flat)."""
    _, traffic = plan(sim)
    truth = GroundTruth() if ground_truth else None
    dead: list[dict[str, Any]] = []
    report = Report()
    began = time.perf_counter()
    for index, message in enumerate(traffic.messages(sim.events)):
        if paced:
            ahead = began + index / sim.rate - time.perf_counter()
            if ahead > 0.002:
                time.sleep(ahead)
        send(message)
        if truth is not None:
            if message.event is not None:
                truth.feed(message.event, message.story)
            if message.dead_letter is not None:
                dead.append(_dead_letter_entry(message))
        if message.dead_letter:
            report.dead_letters[message.dead_letter] += 1
        if progress is not None and index % 256 == 0:
            progress(index)
    report.sent = sim.events
    report.elapsed_s = time.perf_counter() - began
    if progress is not None:
        progress(sim.events)
    if truth is not None and ground_truth is not None:
        violations = truth.finish()
        revisions = truth.revisions_expected()
        report.violations.update(rule_id for _, rule_id, _ in violations)
        report.expected = set(violations)
        report.revisions.update((revision, rule_id) for revision, _, rule_id, *_ in revisions)
        _write_ground_truth(ground_truth, sim, violations, revisions, dead)
    return report


def to_file(
    sim: Simulation, path: Path, *, ground_truth: Path | None = None, progress: Progress | None = None
) -> Report:
    """Write the messages to ``path``, one per line, as fast as they are made (for offline use,
    e.g. `frtwatch rules eval`)."""
    with path.open("wb") as sink:

        def write(message: Message) -> None:
            sink.write(message.value + b"\n")

        return run(sim, write, paced=False, ground_truth=ground_truth, progress=progress)


def to_kafka(
    sim: Simulation,
    bootstrap_servers: str,
    topic: str,
    *,
    ground_truth: Path | None = None,
    progress: Progress | None = None,
    security: KafkaSecurity = PLAINTEXT,
) -> Report:
    """Send the messages to Kafka at ``sim.rate``, then wait until every one is acknowledged."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        **producer_settings(client_id="frtwatch-simulator", **security.kafka_python()),
    )
    sender = BoundedSender(producer, topic)
    try:
        report = run(
            sim,
            lambda m: sender.send(m.key, m.value),
            paced=True,
            ground_truth=ground_truth,
            progress=progress,
        )
        sender.flush(timeout=60)
    finally:
        producer.close(timeout=30)
    report.delivery_failures = sender.failed + sender.unacknowledged
    return report


def _dead_letter_entry(message: Message) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "expect": "dead_letter",
        "kind": message.dead_letter,
        "value_sha256": hashlib.sha256(message.value).hexdigest(),
    }
    if message.event is not None:
        entry["event_id"] = message.event["event_id"]
    return entry


def _write_ground_truth(
    path: Path,
    sim: Simulation,
    violations: list[tuple[str, str, str]],
    revisions: list[Revision],
    dead: list[dict[str, Any]],
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        _line(
            out,
            {
                "expect": "run",
                "seed": sim.seed,
                "events": sim.events,
                "packs": list(PACKS),
                "violations": len(violations),
                "revision_stories": len(revisions),
                "dead_letters": len(dead),
            },
        )
        for pack, rule_id, event_id in violations:
            _line(out, {"expect": "violation", "policy_pack": pack, "rule_id": rule_id, "event_id": event_id})
        for revision, pack, rule_id, event_id, event_type, late, story in revisions:
            _line(
                out,
                {
                    "expect": "revision_story",
                    "revision": revision,
                    "policy_pack": pack,
                    "rule_id": rule_id,
                    "event_id": event_id,
                    "event_type": event_type,
                    "late_event_ids": list(late),
                    "story": story,
                },
            )
        for entry in dead:
            _line(out, entry)


def _line(out: IO[str], entry: dict[str, Any]) -> None:
    out.write(json.dumps(entry, sort_keys=True) + "\n")


def enrol_fleet(keyring: Keyring, fleet: list[Operator], at: datetime | None = None) -> Keyring:
    """Every device and back office of the fleet enrolled (those not enrolled yet)."""
    at = at or datetime.now(UTC)
    for op in fleet:
        sources = [(None, op.scheme, op.key)] + [(d.device_id, d.scheme, d.key) for d in op.devices]
        for device_id, scheme, secret in sources:
            if not keyring.keys_of(op.operator_id, device_id):
                keyring.enrol(op.operator_id, device_id, scheme, secret, at)
    return keyring


def write_keys(path: Path, fleet: list[Operator]) -> None:
    """The fleet's sources enrolled in the key registry at ``path`` (created if need be; its
    other keys kept), for a processor that requires signatures."""
    keyring = Keyring.load(path) if path.exists() else Keyring()
    known = len(keyring.entries)
    if len(enrol_fleet(keyring, fleet).entries) > known or not path.exists():
        keyring.save(path)
