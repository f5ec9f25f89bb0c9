"""Every record of a lane is judged, whatever faust hands the agent.

Around a rebalance faust has been seen to skip records of a lane: in one run of the rebalance
test in six, the two records written to a lane while it moved were judged by neither worker,
and the group's offset went past them (faust counts a jump in offsets as a gap it need not
wait for; upstream faust-streaming issues 216, 221 and 606 are of this family). A consent
lost so gives a violation that should not be, a recognition lost a violation missed.

The lanes are this app's own topic, never compacted and written without transactions, so
their offsets run without holes: a record past the next offset expected means records were
skipped, and the judge reads those itself, in order, before it judges this one. After a
recovery a lane goes on from the offset its journal stamp names (every record below it judged
and journalled, stream_processors.journal), or if never stamped from the group's committed
offset, where faust resumes it: so records faust skipped and counted as committed before a
lane moved are judged by its next owner.
"""

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import TopicPartition

from core.kafka_security import KafkaSecurity
from stream_processors.side_reads import side_consumer

READ_TIMEOUT_S = 60.0  # skipped records are on this cluster's own topic: minutes means broken
log = logging.getLogger("frtwatch.lanes")


def judged_already(judged: Mapping[int, int], lane: int, offset: int) -> bool:
    """Whether this record of ``lane`` was judged already, given the offset each lane is
    judged up to: a redelivery, judged again for nothing, whose progress marks would tell of
    the past as if it were now."""
    return offset < judged.get(lane, 0)


def skipped(judged: Mapping[int, int], lane: int, offset: int) -> range:
    """The offsets of ``lane`` that should have come before ``offset`` and did not (empty if
    none); a lane not recovered expects none."""
    expected = judged.get(lane)
    if expected is None or offset <= expected:
        return range(0)
    return range(expected, offset)


async def resume_offsets(
    bootstrap_servers: str, security: KafkaSecurity, group_id: str, topic: str, lanes: set[int]
) -> dict[int, int]:
    """Where the group resumes each lane: its committed offset, or the log's start if none."""
    if not lanes:
        return {}
    consumer = side_consumer(bootstrap_servers, security, group_id=group_id)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, lane) for lane in sorted(lanes)]
        starts = await consumer.beginning_offsets(tps)
        offsets = {}
        for tp in tps:
            committed = await consumer.committed(tp)
            offsets[tp.partition] = committed if committed is not None else starts[tp]
        return offsets
    finally:
        await consumer.stop()


async def read_skipped(
    bootstrap_servers: str, security: KafkaSecurity, topic: str, lane: int, skipped: range
) -> list[tuple[int, bytes]]:
    """The records of ``lane`` at the ``skipped`` offsets, as (offset, value), in order."""
    consumer = side_consumer(bootstrap_servers, security)
    await consumer.start()
    try:
        tp = TopicPartition(topic, lane)
        consumer.assign([tp])
        consumer.seek(tp, skipped.start)
        records: list[tuple[int, bytes]] = []
        async with asyncio.timeout(READ_TIMEOUT_S):
            while await consumer.position(tp) < skipped.stop:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                records += [(r.offset, r.value or b"") for r in batch.get(tp, []) if r.offset in skipped]
        if len(records) < len(skipped):
            log.error(
                "lane %d: %d of the %d skipped records are gone from %s (retention)",
                lane,
                len(skipped) - len(records),
                len(skipped),
                topic,
            )
        return records
    finally:
        await consumer.stop()
