"""`frtwatch stack up|status|down` as a user runs it, on free ports in a temporary home."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from contracts import topics
from frtwatch.stack.kafka import KafkaCluster, new_cluster_id
from frtwatch.stack.monitoring import Alertmanager, Prometheus
from frtwatch.stack.process import free_ports


def frtwatch(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "frtwatch", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stack_env(home: Path) -> dict[str, str]:
    kafka, controller, prometheus, alertmanager = free_ports(4)
    return {
        "FRTWATCH_HOME": str(home),
        "FRTWATCH_KAFKA_PORT": str(kafka),
        "FRTWATCH_KAFKA_CONTROLLER_PORT": str(controller),
        "FRTWATCH_PROMETHEUS_PORT": str(prometheus),
        "FRTWATCH_ALERTMANAGER_PORT": str(alertmanager),
        "FRTWATCH_EVENTS_PARTITIONS": "4",
        "COLUMNS": "200",
    }


def test_stack_up_is_healthy_idempotent_and_stops_cleanly(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    try:
        up = frtwatch(env, "stack", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        bootstrap = f"127.0.0.1:{env['FRTWATCH_KAFKA_PORT']}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(topics.ALL))}
        admin.close()
        assert described == {topics.EVENTS: 4, topics.VIOLATIONS: 3, topics.DEADLETTER: 1}
        for port in (env["FRTWATCH_PROMETHEUS_PORT"], env["FRTWATCH_ALERTMANAGER_PORT"]):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as response:
                assert response.status == 200

        pids = sorted(p.read_text() for p in (tmp_path / "run").glob("*.pid"))
        assert len(pids) == 3  # kafka-1, prometheus, alertmanager
        again = frtwatch(env, "stack", "up")
        assert again.returncode == 0, again.stderr
        assert sorted(p.read_text() for p in (tmp_path / "run").glob("*.pid")) == pids  # nothing restarted

        status = frtwatch(env, "stack", "status")
        assert status.stdout.count("running (pid") == 3, status.stdout
        assert "embedded chDB" in status.stdout
        assert (tmp_path / "logs" / "kafka-1.log").stat().st_size > 0
    finally:
        down = frtwatch(env, "stack", "down")
    assert down.returncode == 0
    assert "stopped: prometheus, alertmanager, kafka-1" in down.stdout
    assert list((tmp_path / "run").glob("*.pid")) == []
    # kafka-1, prometheus, alertmanager, and the demo's processor and API (never started here)
    assert frtwatch(env, "stack", "status").stdout.count("stopped") == 5
    assert "nothing was running" in frtwatch(env, "stack", "down").stdout


def test_three_broker_mode_replicates_every_topic(tmp_path: Path) -> None:
    cluster: KafkaCluster = KafkaCluster.on_free_ports(tmp_path, brokers=3)
    try:
        cluster.start(timeout=180)
        cluster.create_topics(6)
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
        for topic in admin.describe_topics(list(topics.ALL)):
            assert all(len(p["replica_nodes"]) == 3 for p in topic["partitions"]), topic["name"]
        # The effective value, once the topic's config has reached the broker that answers.
        deadline = time.monotonic() + 30
        while True:
            resource = ConfigResource(ConfigResourceType.TOPIC, topics.EVENTS)
            described = admin.describe_configs([resource], config_filter="all")["topic"].get(
                topics.EVENTS, {}
            )
            if "min.insync.replicas" in described or time.monotonic() > deadline:
                break
            time.sleep(1)
        admin.close()
        assert described["min.insync.replicas"]["value"] == "2"
    finally:
        stopped = cluster.stop()
    assert stopped == ["kafka-1", "kafka-2", "kafka-3"]


def test_a_failing_service_reports_its_log(tmp_path: Path) -> None:
    """A port already taken: stack up fails within its timeout and shows the service's log."""
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    env = {**stack_env(tmp_path), "FRTWATCH_ALERTMANAGER_PORT": str(blocker.getsockname()[1])}
    try:
        started = time.monotonic()
        result = frtwatch(env, "stack", "up", "--timeout", "20")
        assert result.returncode == 1
        assert time.monotonic() - started < 120
        assert "alertmanager exited while ready" in result.stderr
        assert "address already in use" in result.stderr
    finally:
        blocker.close()
        frtwatch(env, "stack", "down")


def test_monitoring_fixture_serves_the_project_configs(monitoring: tuple[Prometheus, Alertmanager]) -> None:
    prometheus, alertmanager = monitoring
    with urllib.request.urlopen(f"{prometheus.url}/api/v1/rules", timeout=5) as response:
        assert b"FrtwatchScrapeTargetDown" in response.read()
    deadline = time.monotonic() + 30  # Prometheus discovers its Alertmanager shortly after start
    while True:
        with urllib.request.urlopen(f"{prometheus.url}/api/v1/alertmanagers", timeout=5) as response:
            if f"127.0.0.1:{alertmanager.port}".encode() in response.read():
                break
        assert time.monotonic() < deadline, "Prometheus never listed its Alertmanager"
        time.sleep(0.5)


def test_a_cluster_id_that_starts_with_a_dash_formats(tmp_path: Path) -> None:
    """Cluster ids are base64url, so one in 32 starts with "-"; the storage tool must not
    take it for an option."""
    cluster = KafkaCluster.on_free_ports(tmp_path)
    (tmp_path / "data").mkdir(parents=True)
    (tmp_path / "data" / "kafka-cluster-id").write_text("-" + new_cluster_id()[1:])
    try:
        cluster.start(timeout=120)
    finally:
        cluster.stop()
