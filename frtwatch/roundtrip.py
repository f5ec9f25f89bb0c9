"""Every example event through Kafka and back, decoded and compared with what was sent: the
quickest check that a broker speaks the contract (`frtwatch stack check`, and a test)."""

import time
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from contracts import Event, decode_event, topics
from contracts.artifacts import example_events
from core.kafka_security import PLAINTEXT, KafkaSecurity


@dataclass(frozen=True)
class RoundTrip:
    sent: Event
    partition: int
    offset: int
    received: Event | None


def produce_examples(
    bootstrap_servers: str, security: KafkaSecurity = PLAINTEXT
) -> list[tuple[Event, int, int]]:
    """Send every example event to frt.events.v1; return (event, partition, offset) each."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        client_id="frtwatch-demo",
        **security.kafka_python(),
    )
    try:
        pending = []
        for raw in example_events().values():
            event = decode_event(raw)
            key = topics.event_key(event.operator_id, event.device_id)
            pending.append((event, producer.send(topics.EVENTS, value=raw, key=key)))
        producer.flush(timeout=30)
        sent = []
        for event, future in pending:
            metadata = future.get(timeout=30)
            sent.append((event, metadata.partition, metadata.offset))
        return sent
    finally:
        producer.close(timeout=10)


def read_back(
    bootstrap_servers: str,
    sent: list[tuple[Event, int, int]],
    timeout: float = 30.0,
    security: KafkaSecurity = PLAINTEXT,
) -> list[RoundTrip]:
    """Read exactly the offsets that were written and decode them."""
    wanted = {(partition, offset): event for event, partition, offset in sent}
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        client_id="frtwatch-demo-reader",
        **security.kafka_python(),
    )
    received: dict[tuple[int, int], Event] = {}
    try:
        partitions = {partition for partition, _ in wanted}
        assignment = [TopicPartition(topics.EVENTS, p) for p in partitions]
        consumer.assign(assignment)
        for tp in assignment:
            consumer.seek(tp, min(offset for partition, offset in wanted if partition == tp.partition))
        deadline = time.monotonic() + timeout
        while len(received) < len(wanted) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    if (tp.partition, record.offset) in wanted:
                        received[(tp.partition, record.offset)] = decode_event(record.value)
    finally:
        consumer.close()
    return [
        RoundTrip(event, partition, offset, received.get((partition, offset)))
        for (partition, offset), event in wanted.items()
    ]
