"""The decided events a late fact could still change, kept for verdict revisions.

Held compactly, because a horizon of a day at 5,000 events/s would be 432 million events: in
chunks of encoded events compressed together (lz4: a chunk of a fleet's JSON to about 40%, five
times as fast as zlib's fastest level, which took 13 µs an event), and an index from each key
(a subject, a device, an operator's registry) to record numbers and event times. Bounded
twice: by the horizon in event time, and by ``limit`` records; whole chunks leave, oldest
first. Records pushed out by the limit before the horizon lower the reach of revisions, not
their correctness: ``floor`` is the event time below which the evidence may be incomplete, so
a fact older than it can be counted.
"""

import bisect
from array import array
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import lz4.block
import msgspec

from contracts import decode_event
from contracts.events import Envelope

Key = tuple[str, ...]
# A violation still open on a kept event, enough to make its record again exactly: the case's
# place in the engine, when it was detected (epoch ms), the registration it was judged with.
Opened = tuple[int, int, str | None]

CHUNK = 256  # records compressed together
UNPACKED = 8  # chunks kept decompressed: a key's records lie in a few
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_encode = msgspec.json.Encoder().encode


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, truncated (as the contract's timestamps are written)."""
    return (moment - _EPOCH) // _MS


def _event_ms(at: datetime) -> int:
    # Event times carry whole milliseconds (the contract's format), which round() recovers
    # exactly from the float, at a third of the cost of epoch_ms: this runs for every event.
    return round(at.timestamp() * 1000)


def from_epoch_ms(ms: int) -> datetime:
    return _EPOCH + ms * _MS


class _Chunk:
    __slots__ = ("blob", "ends", "latest")

    def __init__(self, events: list[bytes], latest: int) -> None:
        ends = array("l")
        total = 0
        for raw in events:
            total += len(raw)
            ends.append(total)
        self.blob: bytes = lz4.block.compress(b"".join(events), store_size=True)
        self.ends, self.latest = ends, latest  # latest: its newest event time (epoch ms)

    def unpack(self) -> bytes:
        data: bytes = lz4.block.decompress(self.blob)
        return data

    def event(self, data: bytes, position: int) -> bytes:
        """Record ``position`` of the chunk's ``data`` (unpacked): only the records asked for
        are copied out, not the chunk's 256."""
        return data[self.ends[position - 1] if position else 0 : self.ends[position]]


class Evidence:
    def __init__(self, horizon: timedelta, limit: int) -> None:
        self.horizon, self.limit = horizon, max(limit, CHUNK)
        self.floor: datetime | None = None
        self._chunks: deque[_Chunk] = deque()
        self._first = 0  # record number of the oldest kept record
        self._open_events: list[bytes] = []  # the chunk being filled, not yet compressed
        self._open_latest = 0
        # key -> (record numbers, their event times): a late fact picks its records from these alone
        self._by_key: dict[Key, tuple[array, array]] = {}  # type: ignore[type-arg]
        self.opened: dict[int, tuple[Opened, ...]] = {}  # record number -> its open violations
        self._unpacked: dict[int, bytes] = {}  # the chunks read last, decompressed

    def __len__(self) -> int:
        return len(self._chunks) * CHUNK + len(self._open_events)

    @property
    def _next(self) -> int:
        return self._first + len(self)

    def keep(
        self,
        event: Envelope,
        at: datetime,
        keys: tuple[Key, ...],
        opened: tuple[Opened, ...],
        watermark: datetime | None,
    ) -> None:
        number = self._next
        moment = _event_ms(at)
        self._open_events.append(_encode(event))
        self._open_latest = max(self._open_latest, moment)
        for key in keys:
            index = self._by_key.get(key)
            if index is None:
                index = self._by_key[key] = (array("q"), array("q"))
            index[0].append(number)
            index[1].append(moment)
        if opened:
            self.opened[number] = opened
        if len(self._open_events) == CHUNK:
            self._chunks.append(_Chunk(self._open_events, self._open_latest))
            self._open_events, self._open_latest = [], 0
            self.expire(watermark)

    def expire(self, watermark: datetime | None) -> None:
        """Drop whole chunks past the horizon or over the limit, oldest first (``keep`` does,
        each time it closes a chunk)."""
        oldest = None if watermark is None else epoch_ms(watermark - self.horizon)
        while self._chunks and (
            len(self) > self.limit or (oldest is not None and self._chunks[0].latest < oldest)
        ):
            chunk = self._chunks.popleft()
            if oldest is None or chunk.latest >= oldest:  # pushed out by the limit
                latest = from_epoch_ms(chunk.latest)
                self.floor = latest if self.floor is None else max(self.floor, latest)
            for number in range(self._first, self._first + CHUNK):
                self.opened.pop(number, None)
            self._first += CHUNK
            self._unpacked.pop(self._first - CHUNK, None)
            if self._first % (64 * CHUNK) == 0:
                self._prune()

    def since(self, key: Key, at: datetime) -> Iterator[tuple[int, Envelope]]:
        """The kept events of ``key`` at or after event time ``at`` (to the millisecond, which
        may include a few just before it): (record number, event)."""
        index = self._by_key.get(key)
        if index is None:
            return
        numbers, times = index
        floor, first = epoch_ms(at), self._first
        chosen = [(n, t) for n, t in zip(numbers, times, strict=True) if t >= floor and n >= first]
        for number, _ in chosen:
            yield number, decode_event(self._raw(number))

    def _raw(self, number: int) -> bytes:
        index = number - self._first
        chunk, position = divmod(index, CHUNK)
        if chunk >= len(self._chunks):
            return self._open_events[position]
        first = self._first + chunk * CHUNK
        data = self._unpacked.get(first)
        if data is None:
            data = self._unpacked[first] = self._chunks[chunk].unpack()
            if len(self._unpacked) > UNPACKED:
                del self._unpacked[next(iter(self._unpacked))]
        return self._chunks[chunk].event(data, position)

    def _prune(self) -> None:
        """Forget index entries of records gone, and keys left with none."""
        first = self._first
        for key in list(self._by_key):
            numbers, times = self._by_key[key]
            if numbers[0] < first:
                if numbers[-1] >= first:  # numbers grow along the array: the rest is a suffix
                    start = bisect.bisect_left(numbers, first)
                    self._by_key[key] = (numbers[start:], times[start:])
                else:
                    del self._by_key[key]
