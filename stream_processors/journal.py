"""The judge's state, persisted to one changelogged table a few records per batch.

Writing a table key per event costs a Kafka message per event and was the processor's main
cost; instead each batch of one partition adds at most one record of what it admitted
(event ids, device seqs), one of the events left waiting for their grace period, and one of
the violations published, plus one record per fact event (registrations, consents, registry
snapshots: few, and kept for good). Old admission and publication records are dropped past a
window; a waiting record is dropped once all its events are decided. The live state is plain
dicts (what the Judge reads); recovery rebuilds them from the records.

A violation is handed to the producer before the record naming it as published: a crash in
between leaves it published but not journalled. So each partition is stamped now and then
with a time before which all it published is journalled; after a crash the next owner reads
the violations published since the stamp and journals them (``journal_published``).

A stamp also names the partition's offset below which every batch is judged and journalled
(the caller judges a partition's batches in order, reading any that faust skipped itself:
stream_processors.lane_gaps), so the next owner knows where its judging must go on from.
"""

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

# (partition, key, value or None to delete) -> None
Write = Callable[[int, str, str | None], None]
PUBLISHED_PER_RECORD = 2_000  # violation ids in one record: well under Kafka's message limit


class RecordingDict(dict[str, Any]):
    """A dict that remembers which keys were set and deleted since the last drain."""

    def __init__(self) -> None:
        super().__init__()
        self.added: dict[str, Any] = {}
        self.removed: set[str] = set()

    # Called for every event judged: dict's own methods, not super()'s lookups.
    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        self.added[key] = value
        if self.removed:
            self.removed.discard(key)

    def __delitem__(self, key: str) -> None:
        dict.__delitem__(self, key)
        self.added.pop(key, None)
        self.removed.add(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            value = dict.pop(self, key)
            self.added.pop(key, None)
            self.removed.add(key)
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def drain(self) -> tuple[dict[str, Any], set[str]]:
        added, removed = self.added, self.removed
        self.added, self.removed = {}, set()
        return added, removed


def _dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


@dataclass
class Journal:
    write: Write
    window_records: int = 2_000  # admission / publication records kept per partition
    seen: RecordingDict = field(default_factory=RecordingDict)
    last_seq: RecordingDict = field(default_factory=RecordingDict)
    facts: RecordingDict = field(default_factory=RecordingDict)
    pending: RecordingDict = field(default_factory=RecordingDict)
    published: RecordingDict = field(default_factory=RecordingDict)
    _waiting: dict[str, tuple[int, str]] = field(default_factory=dict)  # event_id -> its wait record
    _wait_records: dict[str, set[str]] = field(default_factory=dict)  # record key -> undecided ids
    _history: dict[tuple[int, str], deque[tuple[str, list[str]]]] = field(default_factory=dict)
    stamps: dict[int, int] = field(default_factory=dict)  # partition -> its latest stamp (epoch ms)
    judged: dict[int, int] = field(default_factory=dict)  # partition -> the offset it is judged up to

    def commit(self, partition: int, offset: int) -> None:
        """Persist what the batch of ``partition`` starting at ``offset`` changed."""
        self.judged[partition] = max(self.judged.get(partition, 0), offset + 1)
        seen, _ = self.seen.drain()
        seqs, _ = self.last_seq.drain()
        if seen or seqs:
            key = f"adm|{partition}|{offset}"
            self.write(partition, key, _dumps({"seen": list(seen.items()), "seq": list(seqs.items())}))
            self._remember(partition, "adm", key, list(seen))
        facts, _ = self.facts.drain()
        for event_id, raw in facts.items():
            self.write(partition, f"fact|{event_id}", raw)
        waiting, _ = self.pending.drain()
        if waiting:
            key = f"wait|{partition}|{offset}"
            self.write(partition, key, _dumps(list(waiting.items())))
            self._wait_records[key] = set(waiting)
            self._waiting.update({event_id: (partition, key) for event_id in waiting})
        self.commit_published(partition, offset)
        self.forget_decided()

    def commit_published(self, partition: int, offset: int) -> None:
        published, _ = self.published.drain()
        if published:
            key = f"pub|{partition}|{offset}"
            self.write(partition, key, _dumps(list(published)))
            self._remember(partition, "pub", key, list(published))

    def commit_decided(self, violations_by_event: dict[str, list[str]], stamp: int) -> None:
        """After a timer decided waiting events: record the violations it published, each in
        its event's partition, then drop the finished waiting records."""
        self.published.drain()
        by_partition: dict[int, list[str]] = {}
        for event_id, violation_ids in violations_by_event.items():
            partition = self._waiting.get(event_id, (-1, ""))[0]
            by_partition.setdefault(partition, []).extend(violation_ids)
        for partition, ids in by_partition.items():
            if partition >= 0:
                key = f"pub|{partition}|{stamp}"
                self.write(partition, key, _dumps(ids))
                self._remember(partition, "pub", key, ids)
        self.forget_decided()

    def stamp(self, partitions: Iterable[int], now_ms: int) -> None:
        """Every violation these partitions yielded so far is journalled, and every batch below
        their judged offset: by the records written before this one, in the same partition (so
        in Kafka before it)."""
        for partition in partitions:
            judged = self.judged.get(partition)
            self.write(
                partition, f"time|{partition}", f"{now_ms}|{judged}" if judged is not None else str(now_ms)
            )
            self.stamps[partition] = now_ms

    def judge_from(self, offsets: dict[int, int]) -> None:
        """Where partitions never stamped with an offset are judged from (after recovery)."""
        for partition, offset in offsets.items():
            self.judged.setdefault(partition, offset)

    def stamp_due(self, partitions: Iterable[int], now_ms: int, every_ms: int) -> list[int]:
        """The partitions among these whose latest stamp is ``every_ms`` old or more."""
        return [p for p in partitions if now_ms - self.stamps.get(p, 0) >= every_ms]

    def journalled_until(self, partitions: Iterable[int]) -> int:
        """Epoch ms before which every violation of these partitions is journalled: their
        oldest stamp (0 if one was never stamped: anything may be missing)."""
        return min((self.stamps.get(partition, 0) for partition in partitions), default=0)

    def journal_published(self, ids_by_partition: dict[int, list[str]], stamp: int) -> None:
        """Violations found published though not journalled: journal them as published."""
        for partition, ids in ids_by_partition.items():
            for n, start in enumerate(range(0, len(ids), PUBLISHED_PER_RECORD)):
                chunk = ids[start : start + PUBLISHED_PER_RECORD]
                key = f"found|{partition}|{stamp}|{n}"
                self.write(partition, key, _dumps(chunk))
                dict.update(self.published, dict.fromkeys(chunk, "1"))
                self._remember(partition, "pub", key, chunk)

    def forget_decided(self) -> None:
        """Drop the waiting records whose events have all been decided."""
        _, decided = self.pending.drain()
        for event_id in decided:
            partition, key = self._waiting.pop(event_id, (-1, ""))
            undecided = self._wait_records.get(key)
            if undecided is not None:
                undecided.discard(event_id)
                if not undecided:
                    del self._wait_records[key]
                    self.write(partition, key, None)

    def _remember(self, partition: int, kind: str, key: str, ids: list[str]) -> None:
        history = self._history.setdefault((partition, kind), deque())
        history.append((key, ids))
        while len(history) > self.window_records:
            old_key, old_ids = history.popleft()
            target = self.seen if kind == "adm" else self.published
            for event_id in old_ids:
                dict.pop(target, event_id, None)  # silently: the record's deletion says it
            self.write(partition, old_key, None)

    def recover(self, records: dict[str, tuple[int, str]]) -> None:
        """Rebuild the live state from the table's records (key -> (partition, value))."""
        for store in (self.seen, self.last_seq, self.facts, self.pending, self.published):
            dict.clear(store)
            store.drain()
        self._waiting.clear()
        self._wait_records.clear()
        self._history.clear()
        self.stamps.clear()
        self.judged.clear()
        for key, (partition, value) in sorted(records.items(), key=_record_order):
            kind = key.split("|", 1)[0]
            if kind == "adm":
                data = msgspec.json.decode(value)
                dict.update(self.seen, dict(data["seen"]))
                for device, seq in data["seq"]:
                    dict.__setitem__(self.last_seq, device, max(seq, dict.get(self.last_seq, device, -1)))
                self._history.setdefault((partition, "adm"), deque()).append(
                    (key, [i for i, _ in data["seen"]])
                )
            elif kind in ("pub", "found"):
                ids = msgspec.json.decode(value)
                dict.update(self.published, dict.fromkeys(ids, "1"))
                self._history.setdefault((partition, "pub"), deque()).append((key, ids))
            elif kind == "fact":
                dict.__setitem__(self.facts, key.split("|", 1)[1], value)
            elif kind == "wait":
                ids = dict(msgspec.json.decode(value))
                dict.update(self.pending, ids)
                self._wait_records[key] = set(ids)
                self._waiting.update({event_id: (partition, key) for event_id in ids})
            elif kind == "time":  # "epoch ms|judged offset", or "epoch ms" in older journals
                stamp, _, judged = value.partition("|")
                self.stamps[partition] = int(stamp)
                if judged:
                    self.judged[partition] = int(judged)


def _record_order(item: tuple[str, tuple[int, str]]) -> tuple[int, int]:
    """Records of a partition in the order they were written (by their batch's offset)."""
    parts = item[0].split("|")
    return (item[1][0], int(parts[2])) if len(parts) == 3 else (item[1][0], -1)
