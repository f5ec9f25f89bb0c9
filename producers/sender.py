"""Send to Kafka with a bounded buffer.

kafka-python buffers without limit, so the bytes not yet acknowledged are bounded here: each
send's future is queued; when the queue holds more than ``max_pending_bytes``, send() waits for
the oldest to complete (backpressure) and raises BufferFullError after ``max_block_s``.
Completed futures are retired in order, which counts deliveries and failures without a
callback per message (callbacks cost the hot path; ``on_delivery`` adds them only if asked).
"""

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

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
    def __init__(
        self,
        producer: KafkaProducer,
        topic: str,
        *,
        max_pending_bytes: int = 16 * 1024 * 1024,
        max_block_s: float = 30.0,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        self.producer, self.topic = producer, topic
        self._max_pending, self._max_block_s = max_pending_bytes, max_block_s
        self._on_delivery = on_delivery
        self._inflight: deque[tuple[Any, int]] = deque()  # (future, size), oldest first
        self._pending = 0
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0

    @property
    def pending_bytes(self) -> int:
        return self._pending

    @property
    def unacknowledged(self) -> int:
        """Messages sent and neither delivered nor failed yet."""
        return len(self._inflight)

    def send(self, key: bytes, value: bytes, tag: str = "") -> None:
        with self._lock:
            self._retire_done()
            if self._pending and self._pending + len(value) > self._max_pending:
                self._wait_for_room(len(value))
            future = self.producer.send(self.topic, value=value, key=key)
            if self._on_delivery is not None:
                future.add_callback(self._report, tag).add_errback(self._report_error, tag)
            self._inflight.append((future, len(value)))
            self._pending += len(value)

    def _wait_for_room(self, size: int) -> None:
        while self._pending and self._pending + size > self._max_pending:
            oldest = self._inflight[0][0]
            try:
                oldest.get(timeout=self._max_block_s)
            except KafkaTimeoutError:
                raise BufferFullError(
                    f"{self._pending} bytes unacknowledged for {self._max_block_s}s"
                ) from None
            except Exception:  # a failed delivery also frees its room; it is counted below
                pass
            self._retire_done()

    def _retire_done(self) -> None:
        inflight = self._inflight
        while inflight and inflight[0][0].is_done:
            future, size = inflight.popleft()
            self._pending -= size
            if future.exception is None:
                self.delivered += 1
            else:
                self.failed += 1

    def _report(self, tag: str, metadata: Any) -> None:
        assert self._on_delivery is not None
        self._on_delivery(tag, (metadata.partition, metadata.offset), None)

    def _report_error(self, tag: str, error: BaseException) -> None:
        assert self._on_delivery is not None
        self._on_delivery(tag, None, error)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything sent is acknowledged (or failed), and count it."""
        self.producer.flush(timeout=timeout)
        with self._lock:
            self._retire_done()
