"""The router: frt.events.v1 (keyed by device) onto the judge's lanes (keyed by operator), so an
operator's devices, consents and registry meet in one lane, where their facts live.

Faust hands an agent one message at a time, and that machinery alone tops out near 12,000
messages/s on the benchmark machine (bench/results/processor.md), under the processor's goal
before any work is done. The router therefore reads in batches with aiokafka (faust's own
client), in a consumer group of its own inside each worker: a batch becomes one bundle per
operator, sent without waiting for Kafka's acknowledgement, so that the next batch is read and
routed meanwhile.

Every MARK_INTERVAL the router settles: it waits until Kafka has acknowledged every bundle and
dead letter sent so far, then commits their offsets (at-least-once; the judge knows a
redelivered message by its source position) and sends every lane a progress mark per source
partition (bundle.py), which is how a lane knows how far event time may go. A mark so vouches
only for bundles already written, ahead of it in each lane.

The router reads at most one batch per fetch hold (FETCH_WAIT_MS) while traffic is light:
every bundle costs the judge a Kafka record, a trip through faust's stream and an output
flush, whatever its size, and at half the sustained rate a router reading as soon as anything
had arrived made three times as many bundles, which kept the judge's event loop busy and the
bundles queued (BENCHMARKS.md). Under a backlog a batch fills before the hold ends.

Only what routing needs is decoded here (operator_id, occurred_at); the judge validates the
whole event. A message that cannot be routed at all is a dead letter from here.
"""

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from contracts import ContractError, decode_event, topics
from contracts.bundle import Bundle, Mark
from contracts.codec import MAX_MESSAGE_BYTES
from contracts.timestamps import TIMESTAMP_PATTERN, format_timestamp, parse_timestamp
from core.kafka_security import PLAINTEXT, KafkaSecurity
from stream_processors.fetch_wait import FETCH_WAIT_MS
from stream_processors.metrics import ProcessorMetrics
from stream_processors.outputs import Source, dead_letter_value

MARK_INTERVAL = 0.5  # seconds; well under the engine's mark_ttl
# The broker answers a fetch once this much is there, or the hold is over: more than any
# light traffic brings in one hold (about 60 KiB at 2,500 events/s).
BATCH_MIN_BYTES = 256 * 1024
BATCH_RECORDS = 5_000
log = logging.getLogger("frtwatch.router")


class _Head(msgspec.Struct):
    operator_id: str
    occurred_at: Annotated[str, msgspec.Meta(pattern=TIMESTAMP_PATTERN)]


_head = msgspec.json.Decoder(_Head)


@dataclass
class Routed:
    bundles: list[tuple[str, Bundle]] = field(default_factory=list)  # (operator_id, bundle)
    dead: list[tuple[bytes, str, Source]] = field(default_factory=list)  # (raw, reason, source)
    reached: dict[int, datetime] = field(default_factory=dict)  # source partition -> latest event time


def route(records: Iterable[tuple[Source, bytes, int]]) -> Routed:
    """Split a batch of (source, value, Kafka timestamp in ms) into bundles by operator (in
    message order), note what cannot be routed, and how far each partition has got.

    A partition's progress is the latest occurred_at passed on, but never later than the
    record's own Kafka timestamp (when it was sent, or appended): a message claiming a time
    years ahead (hostile, or a clock gone wrong) must not vouch that the rest of a backlog
    has been read."""
    routed = Routed()
    open_bundles: dict[str, Bundle] = {}
    for source, raw, timestamp_ms in records:
        try:
            if len(raw) > MAX_MESSAGE_BYTES:
                raise ValueError("too large")
            head = _head.decode(raw)
            operator_id, occurred_at = head.operator_id, head.occurred_at
        except (msgspec.DecodeError, ValueError, RecursionError):
            try:  # the full decoder names the reason
                event = decode_event(raw)
            except ContractError as error:
                routed.dead.append((raw, f"{error.code}: {error}", source))
                continue
            operator_id, occurred_at = event.operator_id, event.occurred_at
        bundle = open_bundles.setdefault(operator_id, Bundle())
        bundle.add(source, raw)
        if bundle.full:
            routed.bundles.append((operator_id, open_bundles.pop(operator_id)))
        try:
            at = parse_timestamp(occurred_at)
            if timestamp_ms >= 0:
                at = min(at, datetime.fromtimestamp(timestamp_ms / 1000, UTC))
        except ValueError:
            continue  # not a real date: the judge refuses it, and it says nothing of progress
        if source[1] not in routed.reached or at > routed.reached[source[1]]:
            routed.reached[source[1]] = at
    routed.bundles += open_bundles.items()
    return routed


class Router:
    """The I/O around ``route``: read a batch, send its bundles, wait for the acks, commit."""

    def __init__(
        self,
        producer: Any,
        bootstrap_servers: str,
        lane_topic: str,
        lanes: int,
        group_id: str,
        metrics: ProcessorMetrics,
        security: KafkaSecurity = PLAINTEXT,
    ):
        self.producer, self.lane_topic, self.lanes, self.metrics = producer, lane_topic, lanes, metrics
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=FETCH_WAIT_MS,  # busy partitions' records must not wait on idle ones'
            fetch_min_bytes=BATCH_MIN_BYTES,
            **security.aiokafka(),
        )
        self._reached: dict[int, datetime] = {}  # as far as settled sends vouch
        # Sent since the last settle: the sends' acknowledgements, the offsets to commit once
        # they are in, and how far each source partition got.
        self._unacked: list[asyncio.Future[Any]] = []
        self._unsettled_offsets: dict[TopicPartition, int] = {}
        self._unsettled_reached: dict[int, datetime] = {}
        self._lock = asyncio.Lock()  # a batch is routed and committed whole before a rebalance
        self._marks_due = 0.0
        self.marked_at = 0.0  # when Kafka last acknowledged marks for every lane (monotonic)

    async def run(self) -> None:
        self.consumer.subscribe([topics.EVENTS], listener=_Handover(self))
        await self.consumer.start()
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=100, max_records=BATCH_RECORDS)
                async with self._lock:
                    if batches:
                        await self._route(batches)
                    if time.monotonic() >= self._marks_due:
                        await self._settle()
                        await self._send_marks(self.consumer.assignment())
                        self._marks_due = time.monotonic() + MARK_INTERVAL
        finally:
            await self.consumer.stop()

    async def _route(self, batches: dict[TopicPartition, list[Any]]) -> None:
        records = [
            (
                (tp.topic, tp.partition, r.offset),
                r.value or b"",
                r.timestamp if r.timestamp is not None else -1,
            )
            for tp, rs in batches.items()
            for r in rs
        ]
        routed = route(records)
        self._unacked += [
            await self.producer.send(self.lane_topic, operator_id.encode(), bundle.encode(), None, None, None)
            for operator_id, bundle in routed.bundles
        ]
        self._unacked += [
            await self.producer.send(topics.DEADLETTER, None, dead_letter_value(*dead), None, None, None)
            for dead in routed.dead
        ]
        for _, reason, _ in routed.dead:
            self.metrics.dead_letter(reason)
        _latest_of(self._unsettled_reached, routed.reached)
        self._unsettled_offsets.update({tp: rs[-1].offset + 1 for tp, rs in batches.items()})

    async def _settle(self) -> None:
        """Wait for every send so far to be acknowledged (a failed one raises, and nothing since
        the last settle is committed); then marks may vouch for them, and their offsets are
        committed."""
        unacked, self._unacked = self._unacked, []
        await asyncio.gather(*unacked)
        _latest_of(self._reached, self._unsettled_reached)
        self._unsettled_reached = {}
        offsets, self._unsettled_offsets = self._unsettled_offsets, {}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as error:  # the partitions moved on (a rebalance): their new reader repeats them
            log.warning("router commit failed, those records will be read again: %s", error)

    async def _send_marks(self, partitions: Iterable[TopicPartition], reading: bool = True) -> None:
        marks: list[Mark] = []
        for tp in partitions:
            end = self.consumer.highwater(tp)
            caught_up_at = 0.0
            if reading and end is not None:
                position = await self.consumer.position(tp)
                caught_up_at = time.time() if position >= end else 0.0
                self.metrics.consumer_lag.labels(str(tp.partition)).set(max(0, end - position))
            reached = self._reached.get(tp.partition)
            marks.append((tp.partition, format_timestamp(reached) if reached else "", caught_up_at))
        if marks:
            value = Bundle(marks=marks).encode()
            await asyncio.gather(
                *[
                    await self.producer.send(self.lane_topic, None, value, lane, None, None)
                    for lane in range(self.lanes)
                ]
            )
            self.marked_at = time.monotonic()

    async def hand_over(self, revoked: set[TopicPartition]) -> None:
        """Partitions are leaving this router: finish the batch in hand, and tell every lane
        that nobody vouches for them until their next reader does."""
        async with self._lock:
            await self._settle()
            await self._send_marks(revoked, reading=False)
            for tp in revoked:
                self._reached.pop(tp.partition, None)


def _latest_of(reached: dict[int, datetime], more: dict[int, datetime]) -> None:
    """Take into ``reached`` each partition's later time of the two."""
    for partition, at in more.items():
        if partition not in reached or at > reached[partition]:
            reached[partition] = at


class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, router: Router) -> None:
        self.router = router

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.router.hand_over(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("router reads %s partitions %s", topics.EVENTS, sorted(tp.partition for tp in assigned))
