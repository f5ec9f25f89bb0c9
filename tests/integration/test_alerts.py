"""Alerts end to end with the real services: simulator -> Kafka -> processor worker, which
pushes critical and high violations to Alertmanager, while Prometheus scrapes the worker and
evaluates the alert rules; Alertmanager's webhooks land in a local receiver."""

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import topics
from frtwatch.stack.kafka import KafkaCluster
from frtwatch.stack.monitoring import Alertmanager, Prometheus
from frtwatch.stack.process import StackError, free_ports
from frtwatch.stack.webhook import WebhookReceiver
from tests.conftest import running_kafka
from tests.integration.pipeline import (
    PARTITIONS,
    Worker,
    expected,
    fleet_keys,
    read_topic,
    simulate,
    wait_for_verdicts,
    wait_until_assigned,
)
from tests.unit.test_dashboards import panel_expressions

SEED = 41
PAGED = ("critical", "high")


def alerts_in(alertmanager: Alertmanager, **matchers: str) -> list[dict[str, Any]]:
    filters = [f'{k}="{v}"' for k, v in matchers.items()]
    answer = httpx.get(f"{alertmanager.url}/api/v2/alerts", params={"filter": filters}, timeout=10)
    answer.raise_for_status()
    return list(answer.json())


@dataclass
class Monitored:
    """The pipeline run once, watched by the real Prometheus and Alertmanager."""

    home: Path
    kafka: KafkaCluster
    receiver: WebhookReceiver
    alertmanager: Alertmanager
    prometheus: Prometheus
    metrics_port: int
    worker: Worker


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    home = tmp_path_factory.mktemp("alerts")
    kafkas = running_kafka(home / "kafka", PARTITIONS)
    kafka = next(kafkas)
    receiver = WebhookReceiver()
    alertmanager_port, prometheus_port, metrics_port, sink_metrics_port = free_ports(4)
    alertmanager = Alertmanager(home / "alertmanager", alertmanager_port, webhook_base=receiver.url)
    prometheus = Prometheus(
        home / "prometheus", prometheus_port, alertmanager_port, metrics_port, sink_metrics_port
    )
    services: list[Worker] = []
    try:
        try:
            alertmanager.start()
            prometheus.start()
        except StackError as error:
            pytest.fail(f"monitoring could not start: {error}", pytrace=False)
        fleet_keys(home, SEED)
        env = {
            "FRTWATCH_ALERTMANAGER_URL": alertmanager.url,
            "FRTWATCH_PROCESSOR_METRICS_PORT": str(metrics_port),
        }
        services.append(Worker(kafka, home, home / "keys.json", "worker", env=env))
        sink_env = {"FRTWATCH_AUDIT_METRICS_PORT": str(sink_metrics_port)}
        services.append(Worker(kafka, home, home / "keys.json", "sink", ("audit", "sink"), sink_env))
        wait_until_assigned(services[:1])
        sim = simulate(kafka, home, seed=SEED, events=3000, rate=300)
        assert sim.wait(timeout=120) == 0
        wait_for_verdicts(kafka, expected(home)[0])
        yield Monitored(home, kafka, receiver, alertmanager, prometheus, metrics_port, services[0])
    finally:
        for service in services:
            service.stop()
        prometheus.process.stop()
        alertmanager.process.stop()
        receiver.close()
        next(kafkas, None)


def test_critical_and_high_violations_page_security_once_each(monitored: Monitored) -> None:
    violations = read_topic(monitored.kafka, topics.VIOLATIONS)
    paged = {v["violation_id"]: v for v in violations if v["severity"] in PAGED}
    assert sum(v["severity"] == "critical" for v in paged.values()) >= 20
    deadline = time.monotonic() + 90
    while True:
        pages = {
            alert["labels"]["violation_id"]
            for note in monitored.receiver.received()
            if note.receiver == "security"
            for alert in note.alerts()
            if alert["labels"].get("alertname") == "FRTViolation"
        }
        if pages >= set(paged) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert pages == set(paged), "every critical and high violation pages security, and nothing else"
    held = alerts_in(monitored.alertmanager, alertname="FRTViolation")
    assert len(held) == len({a["labels"]["violation_id"] for a in held}) == len(paged)  # one per violation
    one = next(a for a in held if a["labels"]["severity"] == "critical")
    violation = paged[one["labels"]["violation_id"]]
    assert one["labels"]["rule_id"] == violation["rule_id"]
    assert one["annotations"]["explanation"] == violation["explanation"]
    assert "/v1/violations?operator_id=" in one["annotations"]["evidence"]

    # The Prometheus path too: it scraped the worker, the critical-violation rule fired, and
    # Alertmanager routed it to security.
    while not [
        a
        for a in alerts_in(monitored.alertmanager, team="security")
        if a["labels"]["alertname"] == "FrtwatchCriticalViolation"
    ]:
        assert time.monotonic() < deadline + 90, "Prometheus's critical-violation alert never arrived"
        time.sleep(2)
    sent = httpx.get(f"http://127.0.0.1:{monitored.metrics_port}/metrics", timeout=10).text
    assert f"frtwatch_alerts_sent_total {float(len(paged))}" in sent
    assert "frtwatch_alerts_dropped_total 0.0" in sent


def test_every_dashboard_panel_has_data_from_the_running_pipeline(monitored: Monitored) -> None:
    def query(expr: str) -> list[Any]:
        answer = httpx.get(f"{monitored.prometheus.url}/api/v1/query", params={"query": expr}, timeout=30)
        assert answer.status_code == 200, (expr, answer.text)
        return list(answer.json()["data"]["result"])

    deadline = time.monotonic() + 60
    while not query('up{job="frtwatch-audit"} == 1') or not query('up{job="frtwatch-processor"} == 1'):
        assert time.monotonic() < deadline, "Prometheus never scraped both frtwatch services"
        time.sleep(2)
    monitored.worker.proc.send_signal(signal.SIGHUP)  # a pack reload, for the reload annotations
    time.sleep(12)  # a few more scrapes, so rates have two points
    empty = [
        (board, title, expr)
        for board, title, expr in panel_expressions()
        if "offset 1d" not in expr  # a day ago: no history in a Prometheus started minutes ago
        and not query(expr)
    ]
    assert not empty, "panels without data:\n" + "\n".join(map(str, empty))
