"""The stream processor against the real broker: the simulator's traffic through real workers,
compared with the ground truth. Each test gets its own Kafka so topics hold only its data."""

import time
from pathlib import Path

from frtwatch.stack.kafka import KafkaCluster
from tests.integration.pipeline import (
    Worker,
    check,
    expected,
    fleet_keys,
    simulate,
    wait_for_verdicts,
    wait_until_assigned,
)


def test_one_worker_finds_exactly_the_ground_truth(kafka_alone: KafkaCluster, tmp_path: Path) -> None:
    fleet_keys(tmp_path, seed=21)
    worker = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker-1")
    sim = None
    try:
        wait_until_assigned([worker])
        sim = simulate(kafka_alone, tmp_path, seed=21, events=4000, rate=250)
        assert sim.wait(timeout=120) == 0
        want, _ = expected(tmp_path)
        check(kafka_alone, tmp_path, wait_for_verdicts(kafka_alone, want))
    finally:
        if sim is not None:
            sim.kill()
        worker.stop()


def test_two_workers_split_the_partitions_and_find_the_same(
    kafka_alone: KafkaCluster, tmp_path: Path
) -> None:
    fleet_keys(tmp_path, seed=22)
    workers = [Worker(kafka_alone, tmp_path, tmp_path / "keys.json", f"worker-{n}") for n in (1, 2)]
    sim = None
    try:
        wait_until_assigned(workers)
        sim = simulate(kafka_alone, tmp_path, seed=22, events=3000, rate=300)
        assert sim.wait(timeout=120) == 0
        want, _ = expected(tmp_path)
        check(kafka_alone, tmp_path, wait_for_verdicts(kafka_alone, want))
        assert all(w.proc.poll() is None for w in workers), "a worker died"
    finally:
        if sim is not None:
            sim.kill()
        for worker in workers:
            worker.stop()


def test_a_worker_restarted_mid_stream_finds_exactly_the_ground_truth(
    kafka_alone: KafkaCluster, tmp_path: Path
) -> None:
    fleet_keys(tmp_path, seed=21)
    first = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker-1")
    second = None
    sim = None
    try:
        wait_until_assigned([first])
        sim = simulate(kafka_alone, tmp_path, seed=21, events=4000, rate=250)
        time.sleep(7)
        first.stop()  # mid-stream: events keep arriving while no worker runs
        assert sim.poll() is None, "the simulation ended before the restart"
        second = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker-2")
        assert sim.wait(timeout=120) == 0
        want, _ = expected(tmp_path)
        check(kafka_alone, tmp_path, wait_for_verdicts(kafka_alone, want))
    finally:
        if sim is not None:
            sim.kill()
        for worker in (first, second):
            if worker is not None:
                worker.stop()


def test_a_worker_joining_mid_stream_changes_no_verdict(kafka_alone: KafkaCluster, tmp_path: Path) -> None:
    fleet_keys(tmp_path, seed=23)
    workers = [Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker-1")]
    sim = None
    try:
        wait_until_assigned(workers)
        sim = simulate(kafka_alone, tmp_path, seed=23, events=4000, rate=250)
        time.sleep(5)
        workers.append(Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker-2"))  # a rebalance
        assert sim.wait(timeout=120) == 0
        want, _ = expected(tmp_path)
        check(kafka_alone, tmp_path, wait_for_verdicts(kafka_alone, want))
        assert all(w.proc.poll() is None for w in workers), "a worker died"
    finally:
        if sim is not None:
            sim.kill()
        for worker in workers:
            worker.stop()
