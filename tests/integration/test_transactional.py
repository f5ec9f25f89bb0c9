"""stream_processors/transactional.py against a real broker: a counting transform with keyed
state, its worker process killed with SIGKILL mid-run and started again, and two workers
sharing the partitions; downstream, read_committed, every output is there exactly once and the
state in the changelog equals the count.

The worker is this module run as a program (``python -m tests.integration.test_transactional
BOOTSTRAP``)."""

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from frtwatch.stack.kafka import KafkaCluster
from stream_processors.transactional import Output, Record, Result, TransactionalLoop
from tests.conftest import running_kafka

SOURCE, SINK, CHANGELOG, GROUP = "tx.in", "tx.out", "tx.counts", "tx.counter"
PARTITIONS = 3
RECORDS = 2400
RATE = 40  # input records a second: the input lasts a minute, killed and restarted workers meanwhile
KEYS = 30
ROOT = Path(__file__).resolve().parents[2]


class Counting:
    """Counts records per key; each output names its input (partition:offset) and the key's
    count after it, so a lost or doubled state shows downstream as well as in the changelog."""

    def __init__(self) -> None:
        self.counts: dict[int, dict[bytes, int]] = {}

    def restore(self, partition: int, state: dict[bytes, bytes]) -> None:
        self.counts[partition] = {key: int(value) for key, value in state.items()}

    def revoke(self, partition: int) -> None:
        del self.counts[partition]

    def process(self, partition: int, records: Sequence[Record]) -> Result:
        counts, result = self.counts[partition], Result()
        for record in records:
            assert record.key is not None
            counts[record.key] = counts.get(record.key, 0) + 1
            value = f"{partition}:{record.offset}:{counts[record.key]}".encode()
            result.outputs.append(Output(SINK, record.key, value, partition))
            result.state[record.key] = str(counts[record.key]).encode()
        return result


def work(bootstrap: str) -> None:
    async def run() -> None:
        loop = TransactionalLoop(
            bootstrap, GROUP, SOURCE, CHANGELOG, Counting(), commit_interval_ms=50, max_records=20
        )
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, loop.stop)
        await loop.run()

    asyncio.run(run())


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[KafkaCluster]:
    for cluster in running_kafka(tmp_path / "kafka", 1):
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
        admin.create_topics(
            [
                NewTopic(SOURCE, PARTITIONS, 1),
                NewTopic(SINK, PARTITIONS, 1),
                NewTopic(CHANGELOG, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"}),
            ]
        )
        admin.close()
        yield cluster


def keys() -> Counter[bytes]:
    return Counter(f"k{n % KEYS}".encode() for n in range(RECORDS))


def produce_input(bootstrap: str) -> threading.Thread:
    """Send the input at RATE a second, in a thread."""

    def send() -> None:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        began = time.monotonic()
        for n in range(RECORDS):
            time.sleep(max(0.0, began + n / RATE - time.monotonic()))
            producer.send(SOURCE, b"x", key=f"k{n % KEYS}".encode())
        producer.flush()
        producer.close()

    sending = threading.Thread(target=send, daemon=True)
    sending.start()
    return sending


def read_committed(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    ends = consumer.end_offsets(tps)
    records: list[tuple[bytes, bytes]] = []
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for batch in consumer.poll(timeout_ms=1000).values():
            records.extend((r.key, r.value) for r in batch)
    consumer.close()
    return records


def produced(bootstrap: str) -> int:
    """Records written to the output so far, committed or not."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    tps = [TopicPartition(SINK, p) for p in range(PARTITIONS)]
    ends = consumer.end_offsets(tps)
    consumer.close()
    return sum(ends.values())


def start_worker(bootstrap: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.test_transactional", bootstrap],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def progress_from(bootstrap: str, target: int) -> Callable[[], bool]:
    return lambda: produced(bootstrap) >= target


def outputs_done(bootstrap: str) -> bool:
    return len(read_committed(bootstrap, SINK)) >= RECORDS


def assert_exactly_once(bootstrap: str, sent: Counter[bytes]) -> None:
    outputs = read_committed(bootstrap, SINK)
    inputs = Counter(value.rsplit(b":", 1)[0] for _, value in outputs)
    doubled = {source: n for source, n in inputs.items() if n > 1}
    assert not doubled, f"{len(doubled)} inputs with more than one output, e.g. {list(doubled.items())[:5]}"
    assert len(inputs) == RECORDS
    counts: dict[bytes, list[int]] = defaultdict(list)
    for key, value in outputs:
        counts[key].append(int(value.rsplit(b":", 1)[1]))
    for key, seen in counts.items():
        assert seen == list(range(1, sent[key] + 1)), f"{key!r}: counts {seen[:20]}..."
    state = dict(read_committed(bootstrap, CHANGELOG))
    assert {key: int(value) for key, value in state.items()} == dict(sent)


def stop(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_killed_three_times_mid_run_every_output_once_and_the_state_is_the_count(kafka: KafkaCluster) -> None:
    bootstrap = kafka.bootstrap_servers
    sending = produce_input(bootstrap)
    rng = random.Random()
    for kill in range(3):
        worker = start_worker(bootstrap)
        try:
            wait_until(progress_from(bootstrap, produced(bootstrap) + 20), 90, f"progress, kill {kill + 1}")
            time.sleep(rng.uniform(0, 1.5))  # a random point: inside or between transactions
            assert not outputs_done(bootstrap), f"the run ended before kill {kill + 1}: slow the worker"
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    worker = start_worker(bootstrap)
    try:
        wait_until(lambda: outputs_done(bootstrap), 180, "all outputs, read_committed")
    finally:
        stop(worker)
    sending.join()
    assert_exactly_once(bootstrap, keys())


def test_two_workers_share_the_partitions_through_rebalances(kafka: KafkaCluster) -> None:
    bootstrap = kafka.bootstrap_servers
    sending = produce_input(bootstrap)
    first = start_worker(bootstrap)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: produced(bootstrap) > 300, 90, "the first worker's progress")
        second = start_worker(bootstrap)  # a rebalance: partitions move to it, state with them
        wait_until(lambda: produced(bootstrap) > 1200, 90, "both workers' progress")
        stop(first)  # another rebalance: the second takes all
        wait_until(lambda: outputs_done(bootstrap), 180, "all outputs, read_committed")
    finally:
        stop(first)
        if second is not None:
            stop(second)
    sending.join()
    assert_exactly_once(bootstrap, keys())


if __name__ == "__main__":
    work(sys.argv[1])
