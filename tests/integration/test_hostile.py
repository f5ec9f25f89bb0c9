"""100,000 malformed and hostile messages through a real worker: it never crashes or stalls, and
every one is dead-lettered with its reason and counted in the metrics.

The messages are made by a seeded generator, each broken in one known way (so its reason is
known without asking the processor): huge, nested too deeply, wrong types, invalid UTF-8, not
JSON, unknown types and schemas, unsigned or badly signed, forged sources (a made-up device, a
device claimed by another operator, a revoked key, a key rotated out), replayed event_ids,
timestamps decades off, seq going backwards. A fleet's valid traffic goes first, so replays,
seqs and keys have something real to contradict. Signatures are required: the worker has the
fleet's key registry and no operator may send unsigned.
"""

import base64
import hashlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from contracts import sign, topics
from contracts.codec import SigningKey
from contracts.keyring import HMAC_SHA256, Keyring
from frtwatch.stack.kafka import KafkaCluster
from frtwatch.stack.process import free_ports
from producers.fleet import Operator
from producers.plan import Message
from producers.sender import producer_settings
from producers.simulator import Simulation, enrol_fleet, plan, run
from tests.integration.pipeline import Worker, metric, read_topic, wait_until_assigned

HOSTILE = 100_000
REVOKED, ROTATED = b"r" * 32, b"o" * 32  # the secrets of two extra devices of the fleet's first operator


def fleet_registry(path: Path, fleet: list[Operator]) -> None:
    """The fleet enrolled, and two devices more: one whose key is revoked, one whose key was
    rotated out (its overlap ended a day ago)."""
    keyring = enrol_fleet(Keyring(), fleet)
    operator, now = fleet[0].operator_id, datetime.now(UTC)
    revoked = keyring.enrol(operator, "revoked-cam", HMAC_SHA256, REVOKED, now - timedelta(days=9))
    keyring.revoke(revoked.key_id, now - timedelta(days=1))
    keyring.enrol(operator, "rotated-cam", HMAC_SHA256, ROTATED, now - timedelta(days=9))
    keyring.rotate(operator, "rotated-cam", b"n" * 32, now - timedelta(days=2), timedelta(days=1))
    keyring.save(path)


class Hostile:
    """Broken variants of the fleet's own accepted events: (bytes, expected reason code)."""

    def __init__(self, fleet: list[Operator], accepted: list[dict[str, Any]], seed: int) -> None:
        self.rng = random.Random(seed)
        self.keys = {d.device_id: d.key for op in fleet for d in op.devices} | {
            op.operator_id: op.key for op in fleet
        }
        self.accepted = accepted
        self.signed_device_events = [e for e in accepted if e["device_id"] and e["seq"] is not None]
        self.operator_of = {d.device_id: op.operator_id for op in fleet for d in op.devices}
        self.operators = [op.operator_id for op in fleet]
        self.kinds: list[tuple[Callable[[], tuple[bytes, str]], int]] = [
            (self.huge, 1),
            (self.nested, 8),
            (self.wrong_type, 12),
            (self.invalid_utf8, 12),
            (self.not_json, 8),
            (self.unknown_type, 6),
            (self.other_schema, 6),
            (self.unsigned, 8),
            (self.bad_signature, 12),
            (self.made_up_device, 6),
            (self.another_operators_device, 6),
            (self.revoked_key, 3),
            (self.rotated_out_key, 3),
            (self.replayed_event_id, 10),
            (self.decades_off, 10),
            (self.seq_backwards, 7),
        ]

    def messages(self, count: int) -> list[tuple[bytes, str]]:
        makers = [maker for maker, weight in self.kinds for _ in range(weight)]
        return [self.rng.choice(makers)() for _ in range(count)]

    def _fresh(self, pool: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A copy of an accepted event with a new event_id, unsigned."""
        event = dict(self.rng.choice(pool or self.accepted))
        event["event_id"] = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        event.pop("sig", None)
        event["sig"] = None
        return event

    def _signed(self, event: dict[str, Any], key: SigningKey | None = None) -> bytes:
        key = key or self.keys[event["device_id"] or event["operator_id"]]
        return json.dumps(sign({k: v for k, v in event.items() if k != "sig"}, key)).encode()

    def huge(self) -> tuple[bytes, str]:
        event = self._fresh()
        # Over 64 KiB; one in twenty over 512 KiB, which its dead letter cuts (sha256 in the reason).
        size = (
            self.rng.randint(600_000, 900_000)
            if self.rng.random() < 0.05
            else self.rng.randint(66_000, 80_000)
        )
        event["padding"] = "x" * size
        return json.dumps(event).encode(), "too_large"

    def nested(self) -> tuple[bytes, str]:
        depth = self.rng.randint(1_100, 2_500)  # msgspec gives up near 1,000 levels
        head = b'{"n":%d,"a":' % self.rng.getrandbits(64)
        return head + b'{"a":' * depth + b"1" + b"}" * (depth + 1), "invalid_json"

    def wrong_type(self) -> tuple[bytes, str]:
        event = self._fresh()
        name = self.rng.choice(["seq", "occurred_at", "device_id", "site_id", "schema"])
        event[name] = self.rng.choice([[1, 2], {"x": 1}, 3.5, True]) if name != "seq" else "seven"
        return json.dumps(event).encode(), "invalid_event"

    def invalid_utf8(self) -> tuple[bytes, str]:
        raw = self._signed(self._fresh())
        cut = raw.index(b'"event_id": "') + 14
        return raw[:cut] + bytes([self.rng.choice([0xC3, 0xE2, 0xFF, 0xFE])]) + raw[cut:], "invalid_utf8"

    def not_json(self) -> tuple[bytes, str]:
        raw = self._signed(self._fresh())
        return raw[: self.rng.randrange(len(raw) // 2, len(raw) - 1)], "invalid_json"  # cut short

    def unknown_type(self) -> tuple[bytes, str]:
        event = self._fresh()
        event["type"] = self.rng.choice(["face.sold", "recognition.deleted", "", "RECOGNITION"])
        return json.dumps(event).encode(), "unknown_type"

    def other_schema(self) -> tuple[bytes, str]:
        event = self._fresh()
        event["schema"] = self.rng.choice(["frt.v2", "frt.v0", "v1"])
        return json.dumps(event).encode(), "unsupported_schema"

    def unsigned(self) -> tuple[bytes, str]:
        return json.dumps(self._fresh()).encode(), "missing_signature"

    def bad_signature(self) -> tuple[bytes, str]:
        event = json.loads(self._signed(self._fresh()))
        event["sig"] = format(int(event["sig"], 16) ^ (1 << self.rng.randrange(256)), "064x")
        return json.dumps(event).encode(), "bad_signature"

    def made_up_device(self) -> tuple[bytes, str]:
        """A fleet operator's event from a device it never enrolled, unsigned or self-signed."""
        event = self._fresh(self.signed_device_events)
        event["device_id"] = f"made-up-{self.rng.getrandbits(32):08x}"
        if self.rng.random() < 0.5:
            return json.dumps(event).encode(), "unknown_source"
        return self._signed(event, self.rng.randbytes(32)), "unknown_source"

    def another_operators_device(self) -> tuple[bytes, str]:
        """Operator A's event from operator B's device, signed with that device's key."""
        event = self._fresh(self.signed_device_events)
        event["operator_id"] = self.rng.choice([o for o in self.operators if o != event["operator_id"]])
        return self._signed(event, self.keys[event["device_id"]]), "key_not_bound"

    def revoked_key(self) -> tuple[bytes, str]:
        event = self._fresh(self.signed_device_events)
        event.update(operator_id=self.operators[0], device_id="revoked-cam", seq=None)
        return self._signed(event, REVOKED), "revoked_key"

    def rotated_out_key(self) -> tuple[bytes, str]:
        event = self._fresh(self.signed_device_events)  # now: past the old key's overlap
        event.update(operator_id=self.operators[0], device_id="rotated-cam", seq=None)
        return self._signed(event, ROTATED), "expired_key"

    def replayed_event_id(self) -> tuple[bytes, str]:
        original = self.rng.choice(self.accepted)
        event = self._fresh([original])
        event["event_id"] = original["event_id"]
        event["padding"] = self.rng.getrandbits(64)  # other bytes, the same id
        return self._signed(event), "duplicate_event_id"

    def decades_off(self) -> tuple[bytes, str]:
        event = self._fresh()
        year = self.rng.choice([1970, 1996, 2001, 2051, 2066, 2099])
        event["occurred_at"] = f"{year}{event['occurred_at'][4:]}"
        return self._signed(event), "stale_timestamp" if year < 2026 else "future_timestamp"

    def seq_backwards(self) -> tuple[bytes, str]:
        event = self._fresh(self.signed_device_events)
        event["seq"] = self.rng.randint(0, event["seq"])  # at or below one already accepted
        return self._signed(event), "seq_backwards"


def dead_letters(kafka: KafkaCluster) -> int:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        partitions = [
            TopicPartition(topics.DEADLETTER, p)
            for p in consumer.partitions_for_topic(topics.DEADLETTER) or ()
        ]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def test_a_hundred_thousand_hostile_messages_are_all_dead_lettered_and_counted(
    kafka_alone: KafkaCluster, tmp_path: Path
) -> None:
    sim = Simulation(seed=43, events=1500, start=None)
    fleet = plan(sim)[0]
    fleet_registry(tmp_path / "keys.json", fleet)
    legit: list[Message] = []
    run(sim, legit.append, paced=False)
    accepted = [m.event for m in legit if m.event is not None and m.dead_letter is None]
    hostile = Hostile(fleet, accepted, seed=44).messages(HOSTILE)
    wanted = {hashlib.sha256(raw).hexdigest(): reason for raw, reason in hostile}
    assert len(wanted) == HOSTILE, "every hostile message is unique"

    (metrics_port,) = free_ports(1)
    worker = Worker(
        kafka_alone, tmp_path, tmp_path / "keys.json", "worker",
        env={"FRTWATCH_PROCESSOR_METRICS_PORT": str(metrics_port)},
    )  # fmt: skip
    try:
        wait_until_assigned([worker])
        producer = KafkaProducer(
            bootstrap_servers=kafka_alone.bootstrap_servers, **producer_settings(max_request_size=2**20)
        )
        for message in legit:
            producer.send(topics.EVENTS, value=message.value, key=message.key)
        producer.flush()
        time.sleep(5)  # the fleet's traffic judged first: its ids, seqs and registrations known
        for n, (raw, _) in enumerate(hostile):
            producer.send(topics.EVENTS, value=raw, key=str(n % 97).encode())
        producer.flush()
        producer.close()

        deadline = time.monotonic() + 300  # not stalled: all of it within five minutes
        while dead_letters(kafka_alone) < HOSTILE:
            assert worker.proc.poll() is None, "the worker died"
            assert time.monotonic() < deadline, f"{dead_letters(kafka_alone)} of {HOSTILE} dead-lettered"
            time.sleep(2)
        time.sleep(3)  # anything more, a letter twice, shows up too
        assert worker.proc.poll() is None, "the worker died"
        letters = read_topic(kafka_alone, topics.DEADLETTER)
        counted = {
            reason: metric(metrics_port, "frtwatch_processor_dead_letters_total", reason=reason)
            for reason in set(wanted.values())
        }
    finally:
        worker.stop()

    found: dict[str, str] = {}
    for letter in letters:
        original = base64.b64decode(letter["original"])
        digest = hashlib.sha256(original).hexdigest()
        if digest not in wanted:  # a huge one, cut: the reason names the whole one's sha256
            digest = next((h for h in wanted if h in letter["reason"]), digest)
        found[digest] = letter["reason"].split(":", 1)[0]
    missing = set(wanted) - set(found)
    assert not missing, Counter(wanted[h] for h in missing)
    wrong = Counter((wanted[h], found[h]) for h in wanted if found[h] != wanted[h])
    assert not wrong, wrong
    assert len(letters) == HOSTILE, "a dead letter for anything else, or twice"
    assert counted == Counter(wanted.values()), counted
