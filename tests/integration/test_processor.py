"""The stream processor against the real broker: the simulator's traffic through real workers,
compared with the ground truth. Each test gets its own Kafka so topics hold only its data."""

import asyncio
import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer
from kafka import KafkaProducer

from contracts import topics
from contracts.bundle import Bundle
from contracts.codec import SigningKey
from contracts.keyring import HMAC_SHA256, Keyring
from contracts.timestamps import format_timestamp
from frtwatch.stack.kafka import KafkaCluster
from producers.builder import EventBuilder
from producers.sender import producer_settings
from producers.simulator import Simulation, plan
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
    read_topic,
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


def test_a_running_worker_follows_the_key_registry(kafka_alone: KafkaCluster, tmp_path: Path) -> None:
    """A key revoked and a device enrolled while the worker runs: the events after the change
    are judged by the registry as it now is, without a restart."""
    fleet_keys(tmp_path, seed=25)
    registry = tmp_path / "keys.json"
    operator = plan(Simulation(seed=25))[0][0]
    device = operator.devices[0]

    def builder(device_id: str, key: SigningKey) -> EventBuilder:
        return EventBuilder(
            operator_id=operator.operator_id, site_id=device.site_id, device_id=device_id, key=key
        )

    def send(source: EventBuilder) -> str:
        event, wire = source.build("media.deleted", media_id="m-1")
        producer.send(topics.EVENTS, value=wire, key=topics.event_key(operator.operator_id, source.device_id))
        producer.flush()
        return str(event["event_id"])

    worker = Worker(kafka_alone, tmp_path, registry, "worker-1")
    producer = KafkaProducer(bootstrap_servers=kafka_alone.bootstrap_servers, **producer_settings())
    try:
        wait_until_assigned([worker])
        before = send(builder(device.device_id, device.signing_key))
        wait_until_accepted(kafka_alone, before)  # revoked at once: judged after, it would be refused
        keyring, now = Keyring.load(registry), datetime.now(UTC)
        keyring.revoke(keyring.keys_of(operator.operator_id, device.device_id)[0][0].key_id, now)
        keyring.enrol(operator.operator_id, "cam-enrolled-now", HMAC_SHA256, b"n" * 32, now)
        keyring.save(registry)
        time.sleep(3)  # the worker reads a changed registry again within a second
        revoked = send(builder(device.device_id, device.signing_key))
        enrolled = send(builder("cam-enrolled-now", b"n" * 32))
        unknown = send(builder("cam-never-enrolled", b"u" * 32))
        wait_until_accepted(kafka_alone, enrolled)
        deadline = time.monotonic() + 60
        while not {revoked, unknown} <= set(refusals(kafka_alone)) and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(3)  # anything else refused shows up too
        letters = refusals(kafka_alone)
    finally:
        producer.close()
        worker.stop()
    assert letters == {revoked: "revoked_key", unknown: "unknown_source"}


def refusals(kafka: KafkaCluster) -> dict[str, str]:
    """The reason code of every dead letter, by its event's id."""
    return {
        json.loads(base64.b64decode(letter["original"]))["event_id"]: letter["reason"].split(":")[0]
        for letter in read_topic(kafka, topics.DEADLETTER)
    }


def wait_until_accepted(kafka: KafkaCluster, event_id: str, timeout: float = 60) -> None:
    """Until the judge has accepted the event (it is in a bundle of frtwatch-events-accepted)."""
    deadline = time.monotonic() + timeout
    while True:
        accepted = {
            json.loads(raw)["event_id"]
            for record in read_records(kafka, topics.ACCEPTED)
            for _, raw in Bundle.decode(record.value).items
        }
        if event_id in accepted:
            return
        assert time.monotonic() < deadline, f"{event_id} was not accepted"
        time.sleep(1)
