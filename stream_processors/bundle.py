"""Events travel from the router to the judge in bundles: one Kafka message carries the events
of one operator from one batch, each with its source topic, partition and offset. The judge's
per-message costs (faust's stream machinery, a Kafka record) are then paid per bundle rather
than per event."""

from dataclasses import dataclass, field

import msgspec

MAX_BUNDLE_BYTES = 512 * 1024  # well under Kafka's default 1 MiB message limit
Source = tuple[str, int, int]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[tuple[tuple[str, int, int], bytes]])


@dataclass
class Bundle:
    items: list[tuple[Source, bytes]] = field(default_factory=list)
    size: int = 0

    def add(self, source: Source, raw: bytes) -> None:
        self.items.append((source, raw))
        self.size += len(raw) + 32

    @property
    def full(self) -> bool:
        return self.size >= MAX_BUNDLE_BYTES - 64 * 1024  # room for one more maximal event

    def encode(self) -> bytes:
        return _encoder.encode(self.items)

    @staticmethod
    def decode(value: bytes) -> list[tuple[Source, bytes]]:
        return _decoder.decode(value)
