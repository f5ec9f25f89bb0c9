"""A consumer of this cluster beside faust's own, for what the worker reads itself.

The readback of violations after a crash (stream_processors.readback) and the lane records
faust skipped (stream_processors.lane_gaps) are read outside faust's group: nothing is
committed, and positions are sought explicitly.
"""

from aiokafka import AIOKafkaConsumer

from core.kafka_security import KafkaSecurity


def side_consumer(
    bootstrap_servers: str, security: KafkaSecurity, *topics: str, group_id: str | None = None
) -> AIOKafkaConsumer:
    """Subscribed to ``topics`` without a group, it is given all their partitions; a
    ``group_id`` serves only to ask for that group's committed offsets."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # records gone by retention: read what is left
        **security.aiokafka(),
    )
