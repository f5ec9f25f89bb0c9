"""Reading a lane's skipped records and where the group resumes it: real Kafka."""

import asyncio
import uuid

from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

from core.kafka_security import PLAINTEXT
from frtwatch.stack.kafka import KafkaCluster
from stream_processors.lane_gaps import read_skipped, resume_offsets


def _topic_with_records(kafka: KafkaCluster, lane: int, count: int) -> str:
    topic = f"lanes-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        admin.close()

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
        await producer.start()
        try:
            for n in range(count):
                await producer.send_and_wait(topic, f"record {n}".encode(), partition=lane)
        finally:
            await producer.stop()

    asyncio.run(send())
    return topic


def test_the_skipped_records_of_a_lane_are_read_in_order(kafka: KafkaCluster) -> None:
    topic = _topic_with_records(kafka, lane=1, count=12)
    records = asyncio.run(read_skipped(kafka.bootstrap_servers, PLAINTEXT, topic, 1, range(4, 9)))
    assert records == [(n, f"record {n}".encode()) for n in range(4, 9)]


def test_a_lane_resumes_at_its_committed_offset_or_its_start(kafka: KafkaCluster) -> None:
    topic = _topic_with_records(kafka, lane=2, count=10)
    group = f"group-{uuid.uuid4().hex[:8]}"
    committer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        committer.commit({TopicPartition(topic, 2): OffsetAndMetadata(7, "", -1)})
    finally:
        committer.close()
    offsets = asyncio.run(resume_offsets(kafka.bootstrap_servers, PLAINTEXT, group, topic, {0, 2}))
    assert offsets == {0: 0, 2: 7}
