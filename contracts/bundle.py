"""Events travel from the router to the judge in bundles: one Kafka message carries the events
of one operator from one batch, each with its source topic, partition and offset. The judge's
per-message costs (faust's stream machinery, a Kafka record) are then paid per bundle rather
than per event.

A bundle may also carry progress marks instead: for each source partition the router reads,
the latest event time it has passed on and when it found itself caught up with the
partition's end (a claim that ages: a mark read again after a restart no longer vouches).
They are sent to every lane after the events they vouch for, so a lane that reads a mark has
read everything the mark covers."""

from dataclasses import dataclass, field

import msgspec

MAX_BUNDLE_BYTES = 512 * 1024  # well under Kafka's default 1 MiB message limit
Source = tuple[str, int, int]
# (source partition, latest occurred_at passed on or "", when the reader found itself caught up,
# in epoch seconds, or 0.0 if it was not)
Mark = tuple[int, str, float]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(
    tuple[list[tuple[tuple[str, int, int], bytes]], list[tuple[int, str, float]]]
)


@dataclass
class Bundle:
    items: list[tuple[Source, bytes]] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    size: int = 0

    def add(self, source: Source, raw: bytes) -> None:
        self.items.append((source, raw))
        self.size += len(raw) + 32

    @property
    def full(self) -> bool:
        return self.size >= MAX_BUNDLE_BYTES - 64 * 1024  # room for one more maximal event

    def encode(self) -> bytes:
        return _encoder.encode((self.items, self.marks))

    @staticmethod
    def decode(value: bytes) -> "Bundle":
        items, marks = _decoder.decode(value)
        return Bundle(items, marks)
