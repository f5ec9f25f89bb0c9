"""The stream processor against the real broker: the simulator's traffic through real workers,
compared with the ground truth. Each test gets its own Kafka so topics hold only its data."""

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from contracts import topics
from contracts.timestamps import format_timestamp
from frtwatch.stack.kafka import KafkaCluster
from stream_processors.bundle import Bundle
from stream_processors.fetch_wait import FETCH_WAIT_MS
from stream_processors.outputs import dead_letter_value
from stream_processors.router import route
from tests.integration.pipeline import (
    PARTITIONS,
    Worker,
    check,
    commit_at_the_end,
    expected,
    fleet_keys,
    read_records,
    simulate,
    wait_for_log,
    wait_for_verdicts,
    wait_until_assigned,
)


def test_one_worker_finds_exactly_the_ground_truth(kafka_alone: KafkaCluster, tmp_path: Path) -> None:
    fleet_keys(tmp_path, seed=21)
    worker = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker-1")
    sim = None
    try:
        wait_until_assigned([worker])
        # faust's 1.5 s fetch hold is shortened in its real aiokafka consumer (fetch_wait.py)
        wait_for_log(worker, f"lane fetches held at most {FETCH_WAIT_MS} ms")
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


def test_lane_records_counted_as_committed_but_never_judged_are_judged_by_the_next_owner(
    kafka_alone: KafkaCluster, tmp_path: Path
) -> None:
    """What faust has been seen doing around a rebalance, made to happen: records in a lane
    whose group offset is past them, judged by no worker. They are put there as the router
    would (its own routing of the simulator's events), with both groups' offsets moved to the
    ends while no worker runs; the next worker must judge them all, from its journal's stamp."""
    fleet_keys(tmp_path, seed=24)
    first = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker-1")
    second = None
    try:
        wait_until_assigned([first])
        time.sleep(2)  # the lanes are stamped, with the offset they are judged up to
        first.stop()
        sim = simulate(kafka_alone, tmp_path, seed=24, events=1500, rate=1000)
        assert sim.wait(timeout=120) == 0
        asyncio.run(route_unjudged(kafka_alone))
        second = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker-2")
        want, _ = expected(tmp_path)
        check(kafka_alone, tmp_path, wait_for_verdicts(kafka_alone, want))
        assert "from the journal's stamp on, read by the worker" in second.log.read_text()
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()


async def route_unjudged(kafka: KafkaCluster) -> None:
    """Route every event of frt.events.v1 onto the lanes as the router does (bundles, then the
    marks that vouch for them), and commit the router's and the judge's groups at the ends of
    their topics: routed, never judged."""
    records = [
        ((r.topic, r.partition, r.offset), r.value, r.timestamp) for r in read_records(kafka, topics.EVENTS)
    ]
    routed = route(records)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)
    await producer.start()
    try:
        for operator_id, bundle in routed.bundles:
            await producer.send_and_wait(topics.LANES, bundle.encode(), key=operator_id.encode())
        marks = Bundle(marks=[(p, format_timestamp(at), 0.0) for p, at in routed.reached.items()])
        for lane in range(PARTITIONS):  # how far event time has got, after the events it covers
            await producer.send_and_wait(topics.LANES, marks.encode(), partition=lane)
        for dead in routed.dead:
            await producer.send_and_wait(topics.DEADLETTER, dead_letter_value(*dead))
    finally:
        await producer.stop()
    assert routed.bundles
    commit_at_the_end(kafka, "frtwatch-router", topics.EVENTS)
    commit_at_the_end(kafka, "frtwatch-processor", topics.LANES)
