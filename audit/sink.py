"""The audit sink: accepted events, violations, dead letters and the API's query records from
Kafka into the audit log.

One writer (the Merkle log needs one order): read a batch, drop entries already in the log (by
entry id: redeliveries and the processor's repeats), give the rest the next sequence numbers,
write the rows (their leaves follow in the same insert), and only then commit the Kafka
offsets. A crash anywhere replays from the last commit and the id check makes the replay exact.
While ClickHouse fails, the sink pauses its partitions (so memory holds one batch), retries
with backoff, and counts and logs every failure. Every ``checkpoint_seconds`` the new tree head
is signed and stored, and kept beside the signing key too (``head_file``): the database's
own checkpoints can be rewritten with the rest of it, the sink's record of what it signed
cannot."""

import base64
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from audit import entries
from audit.checkpoint import ORIGIN, Checkpoint, CheckpointError, Signer, open_checkpoint, sign_checkpoint
from audit.entries import Entry
from audit.idfilter import IdFilter
from audit.merkle import EMPTY_ROOT, Frontier, leaf_hash
from audit.metrics import SinkMetrics
from audit.store import Store
from contracts import topics
from contracts.bundle import Bundle
from contracts.files import replace_private
from core.kafka_security import PLAINTEXT, KafkaSecurity

log = logging.getLogger("frtwatch.audit")
TOPICS = (topics.ACCEPTED, topics.VIOLATIONS, topics.DEADLETTER, topics.QUERIES)
READERS = {
    topics.VIOLATIONS: entries.violation,
    topics.DEADLETTER: entries.dead_letter,
    topics.QUERIES: entries.query,
}
MAX_BACKOFF = 30.0
Polled = dict[TopicPartition, list[ConsumerRecord]]
LAG_SECONDS = 5.0


class LogMismatch(RuntimeError):
    """The database no longer holds the log the sink signed (rewritten, truncated, or its
    nodes changed): the sink refuses to go on, so a rewrite is never signed again."""


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


@dataclass
class SinkStats:
    entries: int = 0  # written to the log
    repeats: int = 0  # already in the log: dropped
    unreadable: int = 0  # records that were not ours to read (logged with their position)
    failures: int = 0  # failed writes, each retried
    kafka_errors: int = 0  # failed reads or commits, each retried
    batches: int = 0
    last_batch_seconds: float = 0.0


@dataclass
class AuditSink:
    store: Store
    signer: Signer
    bootstrap_servers: str
    security: KafkaSecurity = PLAINTEXT
    batch_rows: int = 20_000
    batch_seconds: float = 1.0
    checkpoint_seconds: float = 10.0
    group_id: str = "frtwatch-audit"
    stats: SinkStats = field(default_factory=SinkStats)
    metrics: SinkMetrics = field(default_factory=lambda: SinkMetrics(CollectorRegistry()))
    frontier: Frontier = field(default_factory=Frontier)
    ids: IdFilter = field(default_factory=IdFilter)
    head_file: Path | None = None  # the last checkpoint it signed, outside the database
    _signed_size: int = -1
    _write_failed: bool = False  # a failed write may have landed in part: resync before retrying

    def recover(self) -> None:
        """Resume the log where its leaves end: unfinished rows go, the tree is rebuilt, and
        checked against what the sink signed and stored before (LogMismatch if it differs);
        nodes not yet stored (a crash, or a log older than migration 0006) are stored."""
        self.store.migrate()
        size = self.store.size()
        self.store.drop_unfinished(size)
        signed = self._last_signed()
        self.frontier, self.ids = Frontier(), IdFilter()
        rebuilt_at_signed = EMPTY_ROOT if signed and signed.size == 0 else None
        ids: list[str] = []
        leaves: list[bytes] = []
        for entry_id, leaf in self.store.leaves(size):
            ids.append(entry_id)
            leaves.append(leaf)
            if len(ids) == 100_000 or (signed and self.frontier.size + len(leaves) == signed.size):
                self.ids.add(ids)
                self.frontier.extend(leaves)
                ids, leaves = [], []
                if signed and self.frontier.size == signed.size:
                    rebuilt_at_signed = self.frontier.root()
        self.ids.add(ids)
        self.frontier.extend(leaves)
        self._check(signed, rebuilt_at_signed)
        self.metrics.log_entries.set(size)
        self._signed_size = signed.size if signed else -1
        log.info("audit log holds %d entries", size)

    def _last_signed(self) -> Checkpoint | None:
        """The larger of the database's last checkpoint and the sink's own record of its last:
        a database rewritten whole, its checkpoints removed too, still meets the latter."""
        latest = self.store.latest_checkpoint()
        kept = self.head_file.read_text() if self.head_file and self.head_file.exists() else None
        signed = []
        for where, note in [("the database", latest[1] if latest else None), (str(self.head_file), kept)]:
            if note is None:
                continue
            try:
                signed.append(open_checkpoint(note, self.signer.vkey()))
            except CheckpointError as error:
                raise self._mismatch(f"its last checkpoint in {where} does not verify: {error}") from None
        return max(signed, key=lambda checkpoint: checkpoint.size, default=None)

    def _check(self, signed: Checkpoint | None, rebuilt_at_signed: bytes | None) -> None:
        """The log must still be what was signed: the last checkpoint's tree a prefix of the
        rebuilt one, every body hashing to its leaf, every stored node the rebuilt one."""
        size = self.frontier.size
        if signed and signed.size > size:
            raise self._mismatch(
                f"it holds {size} entries, fewer than the {signed.size} of its last signed checkpoint "
                f"(root {_b64(signed.root)})"
            )
        if signed and rebuilt_at_signed != signed.root:
            raise self._mismatch(
                f"rebuilt from its leaves, its tree of {signed.size} entries has root "
                f"{_b64(rebuilt_at_signed or b'')}, but its last signed checkpoint of that size has root "
                f"{_b64(signed.root)} (the log now holds {size} entries)"
            )
        rewritten = self.store.bodies_not_matching_leaves()
        if rewritten:
            raise self._mismatch(f"the bodies of entries {rewritten} no longer hash to their leaves")
        rebuilt = {(h, i): node for h, i, node in self.frontier.take_completed()}
        for height, index, node in self.store.all_nodes():
            if rebuilt.pop((height, index), None) != node:
                raise self._mismatch(f"its stored node ({height}, {index}) is not the rebuilt one")
        self.store.add_nodes([(h, i, node) for (h, i), node in sorted(rebuilt.items())])
        self.metrics.log_mismatch.set(0)

    def _mismatch(self, why: str) -> "LogMismatch":
        self.metrics.log_mismatch.set(1)
        return LogMismatch(f"the audit log in the database is not the log this sink signed: {why}; "
                           "refusing to sign over it")  # fmt: skip

    def run(self, stop: Callable[[], bool]) -> None:
        self.recover()
        consumer = KafkaConsumer(
            *TOPICS,
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_rows,
            **self.security.kafka_python(),
        )
        batch: list[Entry] = []
        offsets: dict[TopicPartition, int] = {}
        started = time.monotonic()
        next_checkpoint = time.monotonic() + self.checkpoint_seconds
        next_lag = time.monotonic()
        try:
            while not stop():
                polled = self._poll(consumer, max(1, self.batch_rows - len(batch)), stop)
                for tp, records in polled.items():
                    for record in records:
                        batch += self._entries(record)
                    offsets[tp] = records[-1].offset + 1
                full = len(batch) >= self.batch_rows
                if offsets and (full or time.monotonic() - started >= self.batch_seconds):
                    self._write(consumer, batch, stop)
                    if stop() and batch:
                        return  # stopped while ClickHouse was failing: nothing committed
                    self._commit(consumer, offsets)
                    batch, offsets, started = [], {}, time.monotonic()
                if time.monotonic() >= next_lag:
                    self._measure_lag(consumer)
                    next_lag = time.monotonic() + LAG_SECONDS
                if time.monotonic() >= next_checkpoint:
                    self.checkpoint()
                    next_checkpoint = time.monotonic() + self.checkpoint_seconds
            self.checkpoint()
        finally:
            consumer.close(autocommit=False)

    def _poll(self, consumer: KafkaConsumer, most: int, stop: Callable[[], bool]) -> Polled:
        """A batch of records; while Kafka is unreachable, keep trying (logged and counted)."""
        delay = 0.5
        while not stop():
            try:
                polled: Polled = consumer.poll(timeout_ms=200, max_records=most)
                return polled
            except KafkaError as error:
                self.stats.kafka_errors += 1
                self.metrics.kafka_errors.inc()
                log.warning("audit sink cannot read from Kafka (%s), retrying in %.1f s", error, delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
        return {}

    def _measure_lag(self, consumer: KafkaConsumer) -> None:
        """Messages per topic between the group's position and the end (best effort)."""
        try:
            assigned = list(consumer.assignment())
            ends = consumer.end_offsets(assigned)
            lag: Counter[str] = Counter({topic: 0 for topic in TOPICS})
            for tp in assigned:
                lag[tp.topic] += max(0, ends[tp] - consumer.position(tp))
        except KafkaError as error:
            log.warning("audit sink lag unknown: %s", error)
            return
        for topic, behind in lag.items():
            self.metrics.consumer_lag.labels(topic).set(behind)

    def _commit(self, consumer: KafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """A failed commit loses nothing: the batch is in the log, and its replay is dropped by id."""
        try:
            consumer.commit({tp: OffsetAndMetadata(n, "", -1) for tp, n in offsets.items()})
        except KafkaError as error:
            self.stats.kafka_errors += 1
            self.metrics.kafka_errors.inc()
            log.warning("audit sink could not commit its offsets (%s); the batch will be replayed", error)

    def _entries(self, record: ConsumerRecord) -> list[Entry]:
        source = f"{record.topic}:{record.partition}:{record.offset}"
        if record.topic == topics.ACCEPTED:
            try:
                items = Bundle.decode(record.value).items
            except Exception as error:
                return self._unreadable(source, error)
            found = []
            for (topic, partition, offset), raw in items:  # one bad event costs only itself
                origin = f"{topic}:{partition}:{offset}"
                try:
                    found.append(entries.accepted_event(raw, origin))
                except Exception as error:
                    self._unreadable(f"{source} ({origin})", error)
            return found
        try:
            return [READERS[record.topic](record.value, source)]
        except Exception as error:
            return self._unreadable(source, error)

    def _unreadable(self, where: str, error: Exception) -> list[Entry]:
        """Not a record of ours: say where it is, count it, keep going."""
        self.stats.unreadable += 1
        self.metrics.unreadable.inc()
        log.error("audit sink cannot read %s: %s", where, error)
        return []

    def _write(self, consumer: KafkaConsumer, batch: list[Entry], stop: Callable[[], bool]) -> None:
        began = time.monotonic()
        delay = 0.5
        while True:
            try:
                self._append(batch)
                break
            except Exception as error:
                self._write_failed = True
                self.stats.failures += 1
                self.metrics.failures.inc()
                log.warning("audit write failed (%s), retrying in %.1f s", error, delay)
                consumer.pause(*consumer.assignment())
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline and not stop():
                    # Paused, this returns nothing and keeps the group; partitions assigned by a
                    # rebalance meanwhile are not paused: put back what they return, and pause them.
                    with contextlib.suppress(KafkaError):  # Kafka down too: just wait
                        for tp, records in consumer.poll(timeout_ms=100).items():
                            consumer.seek(tp, records[0].offset)
                            consumer.pause(tp)
                if stop():
                    return
                delay = min(delay * 2, MAX_BACKOFF)
        consumer.resume(*consumer.paused())
        batch.clear()
        self.stats.batches += 1
        self.stats.last_batch_seconds = time.monotonic() - began
        self.metrics.batch_seconds.observe(self.stats.last_batch_seconds)

    def _append(self, batch: list[Entry]) -> None:
        if self._write_failed:
            # The leaves of the failed attempt may have landed even though the call failed (a
            # timeout after the insert): take the log as it really is, then check every id.
            self.recover()
            self._write_failed = False
            known = self.store.known(e.entry_id for e in batch)
        else:
            ids = [e.entry_id for e in batch]
            known = self.store.known(i for i, maybe in zip(ids, self.ids.maybe(ids), strict=True) if maybe)
        size = self.frontier.size
        fresh: list[Entry] = []
        for entry in batch:
            if entry.entry_id in known:
                self.stats.repeats += 1
                self.metrics.repeats.inc()
                continue
            known.add(entry.entry_id)
            fresh.append(entry)
        if not fresh:
            return
        hashes = [leaf_hash(entry.body) for entry in fresh]
        self.store.append(fresh, size, entries.recorded_now(), hashes)
        self.frontier.extend(hashes)
        self.store.add_nodes(self.frontier.take_completed())  # lost in a crash: recover stores them
        self.ids.add([entry.entry_id for entry in fresh])
        self.stats.entries += len(fresh)
        self.metrics.batch_rows.observe(len(fresh))
        self.metrics.log_entries.set(self.frontier.size)
        for kind, count in Counter(entry.kind for entry in fresh).items():
            self.metrics.entries.labels(kind).inc(count)

    def checkpoint(self) -> None:
        """Sign and store the current tree head, if the log grew since the last one."""
        size = self.frontier.size
        if size == self._signed_size:
            return
        note = sign_checkpoint(self.signer, Checkpoint(ORIGIN, size, self.frontier.root()))
        self.store.add_checkpoint(size, self.frontier.root(), note)
        if self.head_file is not None:
            replace_private(self.head_file, note)
        self._signed_size = size
        log.info("audit log: %d entries, checkpoint signed (%s)", size, self.stats)


def signed_head_path(key_file: Path) -> Path:
    """Where the sink keeps its last signed checkpoint: beside its key, which only it holds."""
    return key_file.with_suffix(".head")

