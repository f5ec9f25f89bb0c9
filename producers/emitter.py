"""The device SDK: build, validate, sign and send contract events.

    with EventEmitter("127.0.0.1:9092", operator_id="op-1", site_id="hq", device_id="cam-1",
                      key=device_key, seq_file=Path("state/cam-1.seq")) as emitter:
        emitter.emit("recognition.performed", subject_ref=ref, purpose="access_control", ...)

``key`` is the device's own: bytes for HMAC-SHA256, an Ed25519PrivateKey for Ed25519 (as its
key is registered: `frtwatch keys enrol`). Every event is validated before it leaves: an
invalid one raises ContractError and nothing is sent. Sending is acks=all with idempotence,
batching and lz4 compression; retries are the client's (until delivery_timeout_ms). The bytes
not yet acknowledged are bounded, and emit() blocks while the bound is reached
(backpressure), raising BufferFullError after ``max_block_s``. ``on_delivery(event_id,
(partition, offset) | None, error | None)`` reports
each outcome; close() flushes.
"""

from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from contracts import topics
from contracts.codec import SigningKey
from producers.builder import EventBuilder
from producers.sender import BoundedSender, DeliveryCallback, producer_settings
from producers.seq import SeqCounter


class EventEmitter:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        operator_id: str,
        site_id: str | None = None,
        device_id: str | None = None,
        key: SigningKey | None = None,
        seq_file: Path | None = None,
        topic: str = topics.EVENTS,
        max_pending_bytes: int = 16 * 1024 * 1024,
        max_block_s: float = 30.0,
        on_delivery: DeliveryCallback | None = None,
        **producer_config: Any,
    ) -> None:
        if seq_file is not None and device_id is None:
            raise ValueError("seq numbers a device's events: seq_file needs a device_id")
        self._seq = SeqCounter(seq_file) if seq_file is not None else None
        self.builder = EventBuilder(
            operator_id=operator_id,
            site_id=site_id,
            device_id=device_id,
            key=key,
            seq=self._seq.next if self._seq else None,
        )
        self._message_key = topics.event_key(operator_id, device_id)
        producer = KafkaProducer(bootstrap_servers=bootstrap_servers, **producer_settings(**producer_config))
        self.sender = BoundedSender(
            producer,
            topic,
            max_pending_bytes=max_pending_bytes,
            max_block_s=max_block_s,
            on_delivery=on_delivery,
        )

    def emit(self, event_type: str, **fields: Any) -> str:
        """Validate, sign and send one event; return its event_id. Blocks while the buffer is full."""
        event, wire = self.builder.build(event_type, **fields)
        self.sender.send(self._message_key, wire, event["event_id"])
        return str(event["event_id"])

    @property
    def delivered(self) -> int:
        return self.sender.delivered

    @property
    def failed(self) -> int:
        return self.sender.failed

    def flush(self, timeout: float | None = None) -> None:
        self.sender.flush(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is buffered, then release the producer and the seq file."""
        try:
            self.flush(timeout)
        finally:
            self.sender.producer.close(timeout=timeout)
            if self._seq is not None:
                self._seq.close()

    def __enter__(self) -> "EventEmitter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
