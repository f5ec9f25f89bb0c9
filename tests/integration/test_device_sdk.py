"""The device SDK against the real broker."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from contracts import ContractError, decode_event, topics, verify
from contracts.keyring import Keyring, read_device_key
from frtwatch.stack.kafka import KafkaCluster
from producers.emitter import EventEmitter
from producers.sender import BufferFullError
from stream_processors.admission import Gate
from tests.integration.pipeline import RECOGNITION

KEY = b"cam-7-device-key-0123456789abcdef"


def read(kafka: KafkaCluster, positions: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """The values at the given (partition, offset) of frt.events.v1, by event_id."""
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False)
    found: dict[str, bytes] = {}
    try:
        for event_id, (partition, offset) in positions.items():
            tp = TopicPartition(topics.EVENTS, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            deadline = time.monotonic() + 20
            while event_id not in found and time.monotonic() < deadline:
                for record in consumer.poll(timeout_ms=500).get(tp, []):
                    if record.offset == offset:
                        found[event_id] = record.value
    finally:
        consumer.close()
    return found


def emitter(
    kafka: KafkaCluster, seq_file: Path, delivered: dict[str, tuple[int, int]], **options: object
) -> EventEmitter:
    def on_delivery(event_id: str, position: tuple[int, int] | None, error: BaseException | None) -> None:
        assert error is None, error
        assert position is not None
        delivered[event_id] = position

    return EventEmitter(
        kafka.bootstrap_servers,
        operator_id="op-sdk",
        site_id="site-1",
        device_id="cam-7",
        seq_file=seq_file,
        on_delivery=on_delivery,
        **{"key": KEY, **options},
    )  # type: ignore[arg-type]


def test_signed_events_arrive_verified_and_seq_survives_a_restart(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    delivered: dict[str, tuple[int, int]] = {}
    seq_file = tmp_path / "cam-7.seq"
    with emitter(kafka, seq_file, delivered) as first:
        ids = [first.emit("recognition.performed", **RECOGNITION) for _ in range(3)]
    with emitter(kafka, seq_file, delivered) as second:  # a restarted device
        ids += [second.emit("recognition.performed", **RECOGNITION) for _ in range(2)]
    assert set(delivered) == set(ids)

    values = read(kafka, delivered)
    events = [decode_event(values[event_id]) for event_id in ids]
    assert [event.seq for event in events] == [0, 1, 2, 3, 4]
    assert all(verify(values[event_id], KEY) for event_id in ids)
    assert not verify(values[ids[0]], b"some other key")
    assert {json.loads(values[i])["device_id"] for i in ids} == {"cam-7"}


@pytest.mark.parametrize("scheme", ["hmac-sha256", "ed25519"])
def test_a_device_enrolled_in_the_registry_signs_what_the_gate_admits(
    kafka: KafkaCluster, tmp_path: Path, scheme: str
) -> None:
    """Enrolled by `frtwatch keys enrol`, the device signs with the key file it was given; what
    reaches the broker passes the gate with the registry, and only as its own operator's."""
    registry, key_file = tmp_path / "registry.json", tmp_path / "cam-7.key"
    enrol = [sys.executable, "-m", "frtwatch", "keys", "enrol", "--operator", "op-sdk", "--device", "cam-7"]
    enrol += ["--scheme", scheme, "--key-out", str(key_file), "--registry", str(registry)]
    assert subprocess.run(enrol, capture_output=True, timeout=60).returncode == 0
    delivered: dict[str, tuple[int, int]] = {}
    with emitter(kafka, tmp_path / "seq", delivered, key=read_device_key(key_file)) as device:
        ids = [device.emit("recognition.performed", **RECOGNITION) for _ in range(3)]
    values = read(kafka, delivered)
    gate = Gate(Keyring.load(registry))
    assert all(gate.admit(values[event_id]).event is not None for event_id in ids)
    assert {len(json.loads(values[i])["sig"]) for i in ids} == {128 if scheme == "ed25519" else 64}
    claimed = json.loads(values[ids[0]]) | {"operator_id": "op-other", "event_id": str(uuid.uuid4())}
    (refused,) = Gate(Keyring.load(registry)).admit(json.dumps(claimed).encode()).problems
    assert refused.reason == "key_not_bound"


def test_an_invalid_event_is_refused_before_sending(kafka: KafkaCluster, tmp_path: Path) -> None:
    delivered: dict[str, tuple[int, int]] = {}
    with emitter(kafka, tmp_path / "seq", delivered) as device:
        with pytest.raises(ContractError) as refused:
            device.emit("recognition.performed", **{**RECOGNITION, "purpose": "surveillance"})
        assert str(refused.value) == "purpose: Invalid enum value 'surveillance'"
        with pytest.raises(ContractError, match=re.escape("unknown event type 'face.sold'")):
            device.emit("face.sold", **RECOGNITION)
        device.emit("recognition.performed", **RECOGNITION)
    assert len(delivered) == 1  # only the valid one went out
    (value,) = read(kafka, delivered).values()
    assert decode_event(value).seq == 0  # the refused events took no seq number


def test_a_seq_file_cannot_be_shared_by_two_emitters(kafka: KafkaCluster, tmp_path: Path) -> None:
    with emitter(kafka, tmp_path / "seq", {}), pytest.raises(RuntimeError, match="in use by another emitter"):
        emitter(kafka, tmp_path / "seq", {})


def test_a_stalled_broker_fills_the_bounded_buffer_then_delivery_resumes(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    """The broker is frozen (SIGSTOP): emit() blocks, then refuses, instead of buffering forever."""
    delivered: dict[str, tuple[int, int]] = {}
    device = emitter(kafka, tmp_path / "seq", delivered, max_pending_bytes=4096, max_block_s=1.0)
    device.emit("recognition.performed", **RECOGNITION)
    device.flush(timeout=20)
    pid = kafka.node(0).pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(BufferFullError):
            for _ in range(100):  # ~500 bytes each: the 4 KiB bound is reached within a few
                device.emit("recognition.performed", **RECOGNITION)
        assert device.sender.pending_bytes <= 4096
    finally:
        os.kill(pid, signal.SIGCONT)
    device.close(timeout=60)
    assert device.failed == 0
    assert len(delivered) == device.delivered > 1
