"""The judge's outputs (violations, dead letters, accepted events, journal records), gathered
while a bundle is judged and handed to the producer as whole record batches, one per topic
partition, in the order they were added.

A record sent one at a time costs the producer a future, a partitioner call and a trip
through faust's send wrapper, at a violation or a journal record for every other event;
batching them bought the worker 6% (BENCHMARKS.md). Batches submitted here are in the
producer's accumulator like any other, so faust's offset commit, which flushes the producer,
still waits for their acknowledgement.
"""

import random
from collections.abc import Callable
from typing import Any

Record = tuple[bytes | None, bytes | None, int | None]  # key, value, partition (None: by key)


class Outbox:
    def __init__(self, producer: Callable[[], Any]) -> None:
        self._producer = producer  # the aiokafka producer, once there is one
        self._pending: dict[str, list[Record]] = {}
        self._partition_of: dict[tuple[str, bytes], int] = {}  # topics keep their partitions

    def add(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None) -> None:
        """One record, to ``partition`` or else where Kafka's default partitioner puts its key
        (a keyless one anywhere)."""
        self._pending.setdefault(topic, []).append((key, value, partition))

    async def send(self) -> None:
        """Hand every record added so far to the producer (not waiting for the acks)."""
        pending, self._pending = self._pending, {}
        producer = self._producer()
        for topic, records in pending.items():
            await producer.client._wait_on_metadata(topic)  # as producer.send does first
            by_partition: dict[int, list[Record]] = {}
            for record in records:
                key, _, partition = record
                if partition is None:
                    partition = self._partition(producer, topic, key)
                by_partition.setdefault(partition, []).append(record)
            for partition, in_order in by_partition.items():
                await self._send_batches(producer, topic, partition, in_order)

    @staticmethod
    async def _send_batches(producer: Any, topic: str, partition: int, records: list[Record]) -> None:
        batch = producer.create_batch()
        for key, value, _ in records:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                batch.close()
                await producer.send_batch(batch, topic, partition=partition)
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # a batch's first always fits
        batch.close()
        await producer.send_batch(batch, topic, partition=partition)

    def _partition(self, producer: Any, topic: str, key: bytes | None) -> int:
        if key is None:
            return int(random.choice(sorted(producer._metadata.partitions_for_topic(topic))))
        partition = self._partition_of.get((topic, key))
        if partition is None:  # the murmur2 of a key is pure Python: once per key
            partition = int(producer._partition(topic, None, key, None, key, None))
            self._partition_of[(topic, key)] = partition
        return partition
