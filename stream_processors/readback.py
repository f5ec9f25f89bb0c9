"""After a crash: which violations of the recovered lanes were published but not journalled.

Read frt.violations.v1 from a time on (the lanes' journal stamp, less a margin for clocks) to
its end, and sort the violation ids by the lane their operator is routed to (the router keys
lanes by operator_id with the producer's default partitioner, asked again here).
"""

import asyncio
import logging
import time

import msgspec
from aiokafka.partitioner import DefaultPartitioner

from contracts import topics
from contracts.records import revision_id
from core.kafka_security import KafkaSecurity
from stream_processors.side_reads import side_consumer

MARGIN_MS = 5_000  # the stamp and the violations' timestamps come from clocks that may step
PROGRESS_EVERY = 100_000  # a long read (a journal never stamped: the whole topic) says how far
log = logging.getLogger("frtwatch.readback")


class _Published(msgspec.Struct):
    """What names a published record (read leniently: the contract's validation is not needed)."""

    violation_id: str
    operator_id: str
    status: str = "open"
    revised_by: list[str] | None = None


_decode = msgspec.json.Decoder(_Published).decode


def lane_of(operator_id: str, lanes: int) -> int:
    """The lane the router sends an operator's events to: its producer's own partitioner."""
    every = list(range(lanes))
    lane: int = DefaultPartitioner()(operator_id.encode(), every, every)
    return lane


async def published_since(
    bootstrap_servers: str, security: KafkaSecurity, since_ms: int, mine: set[int], lanes: int
) -> dict[int, list[str]]:
    """Violation ids published at or after ``since_ms`` - MARGIN_MS, for the lanes in ``mine``."""
    if not mine:
        return {}
    began = time.monotonic()
    consumer = side_consumer(bootstrap_servers, security, topics.VIOLATIONS)
    await consumer.start()
    found: dict[int, list[str]] = {}
    read = 0
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        tps = sorted(consumer.assignment())
        ends = await consumer.end_offsets(tps)
        starts = await consumer.offsets_for_times({tp: max(0, since_ms - MARGIN_MS) for tp in tps})
        for tp in tps:
            start = starts.get(tp)
            consumer.seek(tp, start.offset if start is not None else ends[tp])
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            batches = await consumer.getmany(*tps, timeout_ms=1000, max_records=10_000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= ends[tp] or record.value is None:
                        continue
                    read += 1
                    if read % PROGRESS_EVERY == 0:
                        log.info("reading back the violations published since the stamp: %d so far", read)
                    try:
                        violation = _decode(record.value)
                    except msgspec.DecodeError:
                        continue  # not the processor's: it cannot be one of the lanes' violations
                    lane = lane_of(violation.operator_id, lanes)
                    if lane in mine:
                        record_id = revision_id(
                            violation.violation_id, violation.status, violation.revised_by
                        )
                        found.setdefault(lane, []).append(record_id)
    finally:
        await consumer.stop()
    log.info(
        "read back %d violations published since the journal's stamp (%d of these lanes) in %.1f s",
        read,
        sum(len(ids) for ids in found.values()),
        time.monotonic() - began,
    )
    return found
