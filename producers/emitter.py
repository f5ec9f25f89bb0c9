"""The device SDK: build, validate, sign and send contract events.

    emitter = EventEmitter("127.0.0.1:9092", operator_id="op-1", site_id="hq",
                           device_id="cam-1", key=device_key, seq_file=Path("cam-1.seq"))
    emitter.emit("recognition.performed", subject_ref=ref, purpose="access_control", ...)
    emitter.close()

Every event is validated before it leaves (an invalid one raises ContractError and nothing is
sent). Sending is acks=all with idempotence, batching and compression; the buffer of
unacknowledged bytes is bounded, and emit() blocks while it is full (backpressure), raising
BufferFullError if it stays full for ``max_block_s``.
"""

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from contracts import SCHEMA_VERSION, canonical_json, decode_event, signature, topics
from contracts.timestamps import now_timestamp
from producers.seq import SeqCounter

# (event_id, (partition, offset) or None, exception or None)
DeliveryCallback = Callable[[str, tuple[int, int] | None, BaseException | None], None]


class BufferFullError(RuntimeError):
    """Kafka has not acknowledged enough of what was sent for ``max_block_s``."""


class EventEmitter:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        operator_id: str,
        site_id: str | None = None,
        device_id: str | None = None,
        key: bytes | None = None,
        seq_file: Path | None = None,
        topic: str = topics.EVENTS,
        max_pending_bytes: int = 16 * 1024 * 1024,
        max_block_s: float = 30.0,
        on_delivery: DeliveryCallback | None = None,
        producer: KafkaProducer | None = None,
        **producer_config: Any,
    ) -> None:
        if seq_file is not None and device_id is None:
            raise ValueError("seq numbers a device's events: seq_file needs a device_id")
        self.operator_id, self.site_id, self.device_id = operator_id, site_id, device_id
        self.topic = topic
        self._key = key
        self._seq = SeqCounter(seq_file) if seq_file is not None else None
        self._message_key = topics.event_key(operator_id, device_id)
        self._on_delivery = on_delivery
        self._max_pending = max_pending_bytes
        self._max_block_s = max_block_s
        self._pending = 0
        self._space = threading.Condition()
        self.delivered = 0
        self.failed = 0
        self._own_producer = producer is None
        self._producer = producer or KafkaProducer(bootstrap_servers=bootstrap_servers, **producer_settings(**producer_config))

    def build(self, event_type: str, *, occurred_at: str | None = None, event_id: str | None = None,
              **payload: Any) -> tuple[str, bytes]:
        """The event's id and its validated, signed wire bytes. Raises ContractError."""
        fields: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "event_id": event_id or str(uuid.uuid4()),
            "type": event_type,
            "occurred_at": occurred_at or now_timestamp(),
            "operator_id": self.operator_id,
            "site_id": self.site_id,
            "device_id": self.device_id,
            "seq": None,
            "sig": None,
            **payload,
        }
        decode_event(canonical_json(fields))  # refuse before taking a seq number or sending
        if self._seq is not None:
            fields["seq"] = self._seq.next()
        if self._key is not None:
            fields["sig"] = signature(fields, self._key)
        return fields["event_id"], canonical_json(fields)

    def emit(self, event_type: str, **fields: Any) -> str:
        """Validate, sign and send one event; return its event_id. Blocks while the buffer is full."""
        event_id, wire = self.build(event_type, **fields)
        self.send_raw(event_id, wire)
        return event_id

    def send_raw(self, event_id: str, wire: bytes) -> None:
        """Send bytes built by build(), under the same backpressure and delivery tracking."""
        size = len(wire)
        with self._space:
            if not self._space.wait_for(lambda: self._pending == 0 or self._pending + size <= self._max_pending,
                                        timeout=self._max_block_s):
                raise BufferFullError(f"{self._pending} bytes unacknowledged for {self._max_block_s}s")
            self._pending += size
        future = self._producer.send(self.topic, value=wire, key=self._message_key)
        future.add_callback(self._delivered, event_id, size)
        future.add_errback(self._failed, event_id, size)

    def _release(self, size: int) -> None:
        with self._space:
            self._pending -= size
            self._space.notify_all()

    def _delivered(self, event_id: str, size: int, metadata: Any) -> None:
        self._release(size)
        self.delivered += 1
        if self._on_delivery:
            self._on_delivery(event_id, (metadata.partition, metadata.offset), None)

    def _failed(self, event_id: str, size: int, error: BaseException) -> None:
        self._release(size)
        self.failed += 1
        if self._on_delivery:
            self._on_delivery(event_id, None, error)

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is buffered, then release the producer and the seq file."""
        try:
            self.flush(timeout)
        finally:
            if self._own_producer:
                self._producer.close(timeout=timeout)
            if self._seq is not None:
                self._seq.close()

    def __enter__(self) -> "EventEmitter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def producer_settings(**overrides: Any) -> dict[str, Any]:
    """The SDK's producer settings (shared with the benchmark's raw baseline)."""
    return {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 10,
        "batch_size": 256 * 1024,
        "compression_type": "lz4",
        "max_in_flight_requests_per_connection": 5,
        "client_id": "frtwatch-emitter",
        **overrides,
    }
