"""Faults during a simulated run, each bounded and on loopback: afterwards the audit log holds
exactly what the pipeline had to write (tests.integration.pipeline.check_audit_log)."""

import os
import signal
import time
from pathlib import Path

from contracts import topics
from frtwatch.stack.kafka import KafkaCluster
from frtwatch.stack.monitoring import Alertmanager
from frtwatch.stack.process import free_ports
from frtwatch.stack.webhook import WebhookReceiver
from tests.integration.pipeline import (
    Worker,
    check_audit_log,
    expected,
    fleet_keys,
    is_open,
    metric,
    published_twice,
    read_topic,
    simulate,
    sink_caught_up,
    wait_for_log,
    wait_for_the_sink,
    wait_for_verdicts,
    wait_until_assigned,
)

SINK = ("audit", "sink", "--batch-rows", "500", "--checkpoint-seconds", "2")


def test_kill_9_of_the_worker_three_times_loses_and_repeats_nothing(
    kafka_alone: KafkaCluster, tmp_path: Path
) -> None:
    fleet_keys(tmp_path, seed=31)
    workers = [Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker-1")]
    sink = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "sink", SINK)
    sim = None
    try:
        wait_until_assigned(workers)
        sim = simulate(kafka_alone, tmp_path, seed=31, events=12000, rate=200)
        for n in (2, 3, 4):  # kill -9 while it judges, and a supervisor's restart at once
            wait_until_assigned(workers[-1:])
            time.sleep(4)
            assert sim.poll() is None, "the run ended before the third kill"
            workers[-1].kill()
            workers.append(Worker(kafka_alone, tmp_path, tmp_path / "keys.json", f"worker-{n}"))
        assert sim.wait(timeout=180) == 0
        found = wait_for_verdicts(kafka_alone, expected(tmp_path)[0], timeout=120)
        assert not published_twice(found), "a record was published twice"
        wait_for_the_sink(kafka_alone, sink)
    finally:
        if sim is not None:
            sim.kill()
        for worker in workers:
            worker.stop()
        sink.stop()
    check_audit_log(kafka_alone, tmp_path)


def test_alertmanager_down_for_60_s_delays_the_pages_and_loses_none(
    kafka_alone: KafkaCluster, tmp_path: Path
) -> None:
    receiver = WebhookReceiver()
    am_port, metrics_port = free_ports(2)
    alertmanager = Alertmanager(tmp_path / "am", am_port, webhook_base=receiver.url)
    alertmanager.start()
    fleet_keys(tmp_path, seed=33)
    env = {
        "FRTWATCH_ALERTMANAGER_URL": alertmanager.url,
        "FRTWATCH_PROCESSOR_METRICS_PORT": str(metrics_port),
    }
    worker = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker", env=env)
    sim = None
    try:
        wait_until_assigned([worker])
        alertmanager.process.stop()  # down before the run, so no page can be in flight inside it
        sim = simulate(kafka_alone, tmp_path, seed=33, events=9000, rate=100)
        time.sleep(60)
        failures = metric(metrics_port, "frtwatch_alerts_push_failures_total")
        assert failures > 0, "nothing was pushed while Alertmanager was down"
        alertmanager.start()
        assert sim.wait(timeout=120) == 0
        found = wait_for_verdicts(kafka_alone, expected(tmp_path)[0], timeout=120)
        # What stands in the end pages; one retracted while the pager was down need not (its
        # alert reaches Alertmanager already resolved).
        last = {v["violation_id"]: v for v in found}
        pages = {i for i, v in last.items() if is_open(v) and v["severity"] in ("critical", "high")}
        deadline = time.monotonic() + 90  # the backoff is at most 30 s, then Alertmanager's grouping
        while not pages <= paged(receiver):
            assert time.monotonic() < deadline, f"{len(pages - paged(receiver))} of {len(pages)} never paged"
            time.sleep(1)
        assert metric(metrics_port, "frtwatch_alerts_dropped_total") == 0
        assert paged(receiver) <= {v["violation_id"] for v in found}  # nothing paged that is no violation
    finally:
        if sim is not None:
            sim.kill()
        worker.stop()
        alertmanager.process.stop()
        receiver.close()


def paged(receiver: WebhookReceiver) -> set[str]:
    """The violation ids security staff were paged about."""
    return {
        alert["labels"].get("violation_id", "")
        for notification in receiver.received()
        if notification.receiver == "security"
        for alert in notification.alerts()
    } - {""}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_the_sink_frozen_for_60_s_catches_up_with_nothing_lost_or_doubled(
    kafka_alone: KafkaCluster, tmp_path: Path
) -> None:
    """SIGSTOP freezes the sink and its embedded ClickHouse alike: the audit log is unavailable
    while the pipeline goes on. Kafka drops the sink from its group meanwhile; once resumed, its
    commit of the batch in hand fails and it must take the log as it is, write nothing twice,
    and catch up with bounded memory."""
    fleet_keys(tmp_path, seed=35)
    worker = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker")
    sink = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "sink", SINK)
    sim = None
    try:
        wait_until_assigned([worker])
        sim = simulate(kafka_alone, tmp_path, seed=35, events=9000, rate=100)
        wait_for_log(sink, "checkpoint signed")  # it has written entries
        before = rss_mib(sink.proc.pid)
        judged = len(read_topic(kafka_alone, topics.VIOLATIONS))
        os.kill(sink.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(60)
            assert len(read_topic(kafka_alone, topics.VIOLATIONS)) > judged, "processing waited for the sink"
        finally:
            os.kill(sink.proc.pid, signal.SIGCONT)
        assert sim.wait(timeout=120) == 0
        wait_for_verdicts(kafka_alone, expected(tmp_path)[0], timeout=120)
        peak = before
        deadline = time.monotonic() + 180
        while not sink_caught_up(kafka_alone):
            assert time.monotonic() < deadline, "the sink never caught up"
            assert sink.proc.poll() is None, "the sink died"
            peak = max(peak, rss_mib(sink.proc.pid))
            time.sleep(0.5)
        time.sleep(3)  # its last checkpoint
        # A minute of backlog is read a batch at a time, not held at once.
        assert peak < before + 256, (before, peak)
    finally:
        if sim is not None:
            sim.kill()
        worker.stop()
        sink.stop()
    check_audit_log(kafka_alone, tmp_path)


def test_a_broker_killed_mid_stream_of_three_loses_nothing(kafka_three: KafkaCluster, tmp_path: Path) -> None:
    """Replication 3, min.insync.replicas 2, acks=all: with one broker of three gone (kill -9)
    the run goes on, and the verdicts and the audit log are exactly those of the ground truth."""
    cluster = kafka_three
    fleet_keys(tmp_path, seed=37)
    three = {"FRTWATCH_KAFKA_BROKERS": "3"}  # faust's own topics replicated too
    worker = Worker(cluster, tmp_path, tmp_path / "keys.json", "worker", env=three)
    sink = Worker(cluster, tmp_path, tmp_path / "keys.json", "sink", SINK, env=three)
    sim = None
    try:
        wait_until_assigned([worker])
        sim = simulate(cluster, tmp_path, seed=37, events=6000, rate=150)
        wait_for_log(sink, "checkpoint signed")
        victim = cluster.node(1)
        pid = victim.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert sim.wait(timeout=240) == 0, "the simulator could not send with a broker down"
        found = wait_for_verdicts(cluster, expected(tmp_path)[0], timeout=240)
        assert not published_twice(found), "a record was published twice"
        wait_for_the_sink(cluster, sink)
    finally:
        if sim is not None:
            sim.kill()
        worker.stop()
        sink.stop()
    check_audit_log(cluster, tmp_path)
