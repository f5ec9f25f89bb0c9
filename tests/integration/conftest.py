from collections.abc import Iterator
from pathlib import Path

import pytest

from frtwatch.stack.kafka import KafkaCluster
from tests.conftest import running_kafka
from tests.integration.pipeline import PARTITIONS


@pytest.fixture
def kafka_alone(tmp_path: Path) -> Iterator[KafkaCluster]:
    """A Kafka of this test's own, so its topics hold only this test's data."""
    yield from running_kafka(tmp_path / "kafka", PARTITIONS)


@pytest.fixture
def kafka_three(tmp_path: Path) -> Iterator[KafkaCluster]:
    """Three brokers of this test's own: replication 3, min.insync.replicas 2."""
    yield from running_kafka(tmp_path / "kafka", PARTITIONS, brokers=3)
