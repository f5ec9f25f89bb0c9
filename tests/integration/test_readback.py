"""Reading back what a crashed worker published: real Kafka, the processor's own topics."""

import asyncio
import json
import time
import uuid

from aiokafka import AIOKafkaProducer

from contracts import topics
from contracts.records import revision_id
from core.kafka_security import PLAINTEXT
from frtwatch.stack.kafka import KafkaCluster
from stream_processors.readback import MARGIN_MS, lane_of, published_since
from tests.integration.pipeline import PARTITIONS

OPERATORS = [f"op-{n:03d}" for n in range(40)]


async def _send(kafka: KafkaCluster, topic: str, records: list[tuple[str, bytes, int | None]]) -> list[int]:
    """Send (key, value, timestamp ms) records; return each one's partition."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key.encode(), timestamp_ms=at) for key, value, at in records
        ]
        return [(await future).partition for future in futures]
    finally:
        await producer.stop()


def test_an_operators_lane_is_where_the_router_sends_it(kafka_alone: KafkaCluster) -> None:
    """The router keys lanes by operator_id with the producer's default partitioner."""
    sent = asyncio.run(_send(kafka_alone, topics.LANES, [(op, b"{}", None) for op in OPERATORS]))
    assert sent == [lane_of(op, PARTITIONS) for op in OPERATORS]
    assert len(set(sent)) > 1


def test_the_violations_of_these_lanes_published_since_a_time_are_found(kafka_alone: KafkaCluster) -> None:
    now = int(time.time() * 1000)
    stamp = now - 60_000
    before = stamp - MARGIN_MS - 30_000
    records: list[tuple[str, bytes, int | None]] = []
    operator_of, want = {}, set()
    for n, op in enumerate(OPERATORS * 5):  # first what was journalled before the stamp, then after
        violation_id = uuid.uuid4().hex
        operator_of[violation_id] = op
        at = before + n if n < len(OPERATORS) * 2 else stamp + n
        value = json.dumps({"violation_id": violation_id, "operator_id": op, "rule_id": "FRT-X"}).encode()
        records.append((op, value, at))
        if at >= stamp and lane_of(op, PARTITIONS) in {0, 1}:
            want.add(violation_id)
    # A retraction is a record of its own, named by its revision id.
    retracted = sorted(want)[0]
    retraction = {"violation_id": retracted, "operator_id": operator_of[retracted], "status": "retracted"}
    retraction["revised_by"] = ["ev-late-1"]
    records.append((operator_of[retracted], json.dumps(retraction).encode(), now))
    want.add(revision_id(retracted, "retracted", ["ev-late-1"]))
    records.append(("op-000", b"not json", now))  # not the processor's: skipped, not fatal
    asyncio.run(_send(kafka_alone, topics.VIOLATIONS, records))

    found = asyncio.run(published_since(kafka_alone.bootstrap_servers, PLAINTEXT, stamp, {0, 1}, PARTITIONS))
    assert want, "the test sends violations of lanes 0 and 1"
    assert {v for ids in found.values() for v in ids} == want
    lanes = {lane: {v.split(":")[0] for v in ids} for lane, ids in found.items()}
    assert all(lane_of(operator_of[v], PARTITIONS) == lane for lane, ids in lanes.items() for v in ids)
