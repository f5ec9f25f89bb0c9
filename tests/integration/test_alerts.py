"""Alerts end to end with the real services: simulator -> Kafka -> processor worker, which
pushes critical and high violations to Alertmanager, while Prometheus scrapes the worker and
evaluates the alert rules; Alertmanager's webhooks land in a local receiver."""

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import topics
from frtwatch.stack.kafka import KafkaCluster
from frtwatch.stack.monitoring import Alertmanager, Prometheus
from frtwatch.stack.process import StackError, free_ports
from frtwatch.stack.webhook import WebhookReceiver
from tests.integration.pipeline import (
    Worker,
    expected,
    fleet_keys,
    read_topic,
    simulate,
    wait_for_verdicts,
    wait_until_assigned,
)

SEED = 41
PAGED = ("critical", "high")


def alerts_in(alertmanager: Alertmanager, **matchers: str) -> list[dict[str, Any]]:
    filters = [f'{k}="{v}"' for k, v in matchers.items()]
    answer = httpx.get(f"{alertmanager.url}/api/v2/alerts", params={"filter": filters}, timeout=10)
    answer.raise_for_status()
    return list(answer.json())


def test_critical_and_high_violations_page_security_once_each(
    kafka_alone: KafkaCluster, tmp_path: Path
) -> None:
    receiver = WebhookReceiver()
    alertmanager_port, prometheus_port, metrics_port = free_ports(3)
    alertmanager = Alertmanager(tmp_path / "alertmanager", alertmanager_port, webhook_base=receiver.url)
    prometheus = Prometheus(tmp_path / "prometheus", prometheus_port, alertmanager_port, metrics_port, 0)
    worker = None
    try:
        try:
            alertmanager.start()
            prometheus.start()
        except StackError as error:
            pytest.fail(f"monitoring could not start: {error}", pytrace=False)
        fleet_keys(tmp_path, SEED)
        env = {
            "FRTWATCH_ALERTMANAGER_URL": alertmanager.url,
            "FRTWATCH_PROCESSOR_METRICS_PORT": str(metrics_port),
        }
        worker = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker", env=env)
        wait_until_assigned([worker])
        sim = simulate(kafka_alone, tmp_path, seed=SEED, events=3000, rate=300)
        assert sim.wait(timeout=120) == 0
        wait_for_verdicts(kafka_alone, expected(tmp_path)[0])
        violations = read_topic(kafka_alone, topics.VIOLATIONS)
        paged = {v["violation_id"]: v for v in violations if v["severity"] in PAGED}
        assert sum(v["severity"] == "critical" for v in paged.values()) >= 20

        deadline = time.monotonic() + 90
        while True:
            pages = {
                alert["labels"]["violation_id"]
                for note in receiver.received()
                if note.receiver == "security"
                for alert in note.alerts()
                if alert["labels"].get("alertname") == "FRTViolation"
            }
            if pages >= set(paged) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert pages == set(paged), "every critical and high violation pages security, and nothing else"
        held = alerts_in(alertmanager, alertname="FRTViolation")
        assert (
            len(held) == len({a["labels"]["violation_id"] for a in held}) == len(paged)
        )  # one per violation
        one = next(a for a in held if a["labels"]["severity"] == "critical")
        violation = paged[one["labels"]["violation_id"]]
        assert one["labels"]["rule_id"] == violation["rule_id"]
        assert one["annotations"]["explanation"] == violation["explanation"]
        assert "/v1/violations?operator_id=" in one["annotations"]["evidence"]

        # The Prometheus path too: it scraped the worker, the critical-violation rule fired, and
        # Alertmanager routed it to security.
        while not [
            a for a in alerts_in(alertmanager, team="security") if a["labels"]["alertname"] != "FRTViolation"
        ]:
            assert time.monotonic() < deadline + 90, "Prometheus's critical-violation alert never arrived"
            time.sleep(2)
        sent = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert f"frtwatch_alerts_sent_total {float(len(paged))}" in sent
        assert "frtwatch_alerts_dropped_total 0.0" in sent
    finally:
        if worker is not None:
            worker.stop()
        prometheus.process.stop()
        alertmanager.process.stop()
        receiver.close()
