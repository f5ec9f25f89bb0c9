"""Send to Kafka with a bounded buffer: kafka-python buffers without limit, so the bytes not yet
acknowledged are counted here and send() blocks while they exceed the bound (backpressure)."""

import threading
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer

# (tag, (partition, offset) or None, exception or None); tag is the caller's, e.g. an event_id
DeliveryCallback = Callable[[str, tuple[int, int] | None, BaseException | None], None]


class BufferFullError(RuntimeError):
    """Kafka has not acknowledged enough of what was sent for ``max_block_s``."""


def producer_settings(**overrides: Any) -> dict[str, Any]:
    """The SDK's producer settings (the benchmark's raw baseline uses the same)."""
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


class BoundedSender:
    def __init__(self, producer: KafkaProducer, topic: str, *, max_pending_bytes: int = 16 * 1024 * 1024,
                 max_block_s: float = 30.0, on_delivery: DeliveryCallback | None = None) -> None:
        self.producer, self.topic = producer, topic
        self._max_pending, self._max_block_s = max_pending_bytes, max_block_s
        self._on_delivery = on_delivery
        self._pending = 0
        self._space = threading.Condition()
        self.delivered = 0
        self.failed = 0

    @property
    def pending_bytes(self) -> int:
        return self._pending

    def send(self, key: bytes, value: bytes, tag: str = "") -> None:
        size = len(value)
        with self._space:
            has_room = self._space.wait_for(lambda: self._pending == 0 or self._pending + size <= self._max_pending,
                                            timeout=self._max_block_s)
            if not has_room:
                raise BufferFullError(f"{self._pending} bytes unacknowledged for {self._max_block_s}s")
            self._pending += size
        future = self.producer.send(self.topic, value=value, key=key)
        future.add_callback(self._delivered, tag, size)
        future.add_errback(self._failed, tag, size)

    def _release(self, size: int) -> None:
        with self._space:
            self._pending -= size
            self._space.notify_all()

    def _delivered(self, tag: str, size: int, metadata: Any) -> None:
        self._release(size)
        self.delivered += 1
        if self._on_delivery:
            self._on_delivery(tag, (metadata.partition, metadata.offset), None)

    def _failed(self, tag: str, size: int, error: BaseException) -> None:
        self._release(size)
        self.failed += 1
        if self._on_delivery:
            self._on_delivery(tag, None, error)

    def flush(self, timeout: float | None = None) -> None:
        self.producer.flush(timeout=timeout)
