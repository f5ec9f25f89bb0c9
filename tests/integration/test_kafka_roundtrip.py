"""Every example event through the real broker with kafka-python, read back decoded and equal."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from contracts import EVENT_TYPES, decode_event, topics
from contracts.artifacts import example_events
from frtwatch.roundtrip import produce_examples, read_back
from frtwatch.stack.kafka import KafkaCluster
from tests.conftest import EVENTS_PARTITIONS


def test_the_contract_topics_exist(kafka: KafkaCluster) -> None:
    counts = kafka.create_topics(EVENTS_PARTITIONS)  # idempotent: nothing new to create
    assert counts == {
        topics.EVENTS: EVENTS_PARTITIONS,
        topics.VIOLATIONS: 3,
        topics.DEADLETTER: 1,
        topics.LANES: EVENTS_PARTITIONS,
        topics.ACCEPTED: EVENTS_PARTITIONS,
        topics.QUERIES: 1,
    }


def test_every_example_event_round_trips_through_kafka(kafka: KafkaCluster) -> None:
    examples = example_events()
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all", enable_idempotence=True)
    sent = {}
    for raw in examples.values():
        event = decode_event(raw)
        metadata = producer.send(
            topics.EVENTS, value=raw, key=topics.event_key(event.operator_id, event.device_id)
        )
        sent[event.event_id] = (event, metadata.get(timeout=30))
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False)
    partitions = [TopicPartition(topics.EVENTS, p) for p in range(EVENTS_PARTITIONS)]
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek_to_beginning(tp)
    received = {}
    deadline = time.monotonic() + 30
    while len(received) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                event = decode_event(record.value)
                if event.event_id in sent:
                    received[event.event_id] = (event, record)
    consumer.close()

    assert set(received) == set(sent)
    assert sorted(event.event_type for event, _ in received.values()) == sorted(EVENT_TYPES)
    for event_id, (event, record) in received.items():
        sent_event, metadata = sent[event_id]
        assert event == sent_event
        assert (record.partition, record.offset) == (metadata.partition, metadata.offset)
        assert record.key == topics.event_key(event.operator_id, event.device_id)


def test_the_demo_reads_back_exactly_what_it_produced(kafka: KafkaCluster) -> None:
    trips = read_back(kafka.bootstrap_servers, produce_examples(kafka.bootstrap_servers))
    assert len(trips) == len(EVENT_TYPES)
    assert all(trip.received == trip.sent for trip in trips)
