"""Alerts end to end with the real services: simulator -> Kafka -> processor worker, which
pushes critical and high violations to Alertmanager, while Prometheus scrapes the worker and
evaluates the alert rules; Alertmanager's webhooks land in a local receiver. Security staff get
one notification per violation paged, and a retraction resolves its violation's alert with the
reason (contract.md, "Verdict revisions")."""

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client import CollectorRegistry

from contracts import topics
from contracts.records import Violation
from contracts.timestamps import format_timestamp
from frtwatch.stack.kafka import KafkaCluster
from frtwatch.stack.monitoring import Alertmanager, Prometheus
from frtwatch.stack.process import StackError, free_ports
from frtwatch.stack.webhook import Notification, WebhookReceiver
from stream_processors.alerts import AlertPusher
from stream_processors.metrics import AlertMetrics
from tests.conftest import running_kafka
from tests.integration.pipeline import (
    PARTITIONS,
    Worker,
    check_audit_log,
    expected,
    fleet_keys,
    read_topic,
    simulate,
    wait_for_the_sink,
    wait_for_verdicts,
    wait_until_assigned,
)
from tests.unit.test_dashboards import panel_expressions

SEED = 41
PAGED = ("critical", "high")
# A retraction's resolution goes out at its group's next tick (group_interval, a minute).
RESOLUTION_WAIT = 90.0


def alerts_in(alertmanager: Alertmanager, **matchers: str) -> list[dict[str, Any]]:
    filters = [f'{k}="{v}"' for k, v in matchers.items()]
    answer = httpx.get(f"{alertmanager.url}/api/v2/alerts", params={"filter": filters}, timeout=10)
    answer.raise_for_status()
    return list(answer.json())


def failed_notifications(alertmanager: Alertmanager) -> int:
    """Webhook notifications Alertmanager counts as failed (each sent again later): the local
    receiver's short listen queue refuses some of a burst of groups notifying at once."""
    metrics = httpx.get(f"{alertmanager.url}/metrics", timeout=10).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith('alertmanager_notifications_failed_total{integration="webhook"}')
    )


def security_entries(receiver: WebhookReceiver, status: str) -> list[tuple[Notification, dict[str, Any]]]:
    """(notification, alert) for every FRTViolation entry with ``status`` sent to security."""
    return [
        (note, alert)
        for note in receiver.received()
        if note.receiver == "security"
        for alert in note.alerts()
        if alert["labels"].get("alertname") == "FRTViolation" and alert["status"] == status
    ]


def last_records(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each paged violation's current record (its last on frt.violations.v1)."""
    return {r["violation_id"]: r for r in records if r["severity"] in PAGED}


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
    sink: Worker
    retracted_here: set[str] = field(default_factory=set)  # violations this module's tests retracted


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
        # 25 s of traffic: long enough for the fleet's late facts past the grace to be sent
        # (producers/plan.py, PAST_GRACE_S), so the pipeline retracts and detects late.
        sim = simulate(kafka, home, seed=SEED, events=7500, rate=300)
        assert sim.wait(timeout=120) == 0
        wait_for_verdicts(kafka, expected(home)[0])
        yield Monitored(home, kafka, receiver, alertmanager, prometheus, metrics_port, *services)
    finally:
        for service in services:
            service.stop()
        prometheus.process.stop()
        alertmanager.process.stop()
        receiver.close()
        next(kafkas, None)


def test_critical_and_high_violations_page_security_once_each(monitored: Monitored) -> None:
    violations = read_topic(monitored.kafka, topics.VIOLATIONS)
    paged = last_records(violations)
    retracted = {vid for vid, v in paged.items() if v.get("status") == "retracted"}
    standing = set(paged) - retracted
    assert sum(v["severity"] == "critical" for v in paged.values()) >= 20
    deadline = time.monotonic() + 90
    while True:
        pages = {
            alert["labels"]["violation_id"] for _, alert in security_entries(monitored.receiver, "firing")
        }
        if pages >= set(paged) or time.monotonic() > deadline:
            break
        time.sleep(1)
    # A notification that failed is sent again at its group's next tick (a minute): a violation
    # retracted meanwhile is no longer firing, and rightly never pages; a notification that
    # reached the receiver but was answered too late is sent again (at least once).
    failed = failed_notifications(monitored.alertmanager)
    assert standing <= pages <= set(paged), "every critical and high violation pages security, nothing else"
    assert len(set(paged) - pages) <= failed, f"violations never paged: {sorted(set(paged) - pages)}"
    # One firing entry per violation paged: no notification repeats another violation.
    entries = Counter(a["labels"]["violation_id"] for _, a in security_entries(monitored.receiver, "firing"))
    repeated = {vid: n for vid, n in entries.items() if n != 1}
    assert sum(repeated.values()) - len(repeated) <= failed, f"paged more than once: {repeated}"
    for note, _ in security_entries(monitored.receiver, "firing"):
        assert len(note.alerts()) == 1, "a notification per violation"
    held = alerts_in(monitored.alertmanager, alertname="FRTViolation")
    held_ids = {a["labels"]["violation_id"] for a in held}
    assert len(held) == len(held_ids) == len(paged) - len(retracted)  # one per violation standing
    assert held_ids == set(paged) - retracted
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
    records = [r for r in violations if r["severity"] in PAGED]
    opened = sum(r.get("status", "open") == "open" for r in records)
    assert f"frtwatch_alerts_sent_total {float(opened)}" in sent
    assert f"frtwatch_alerts_resolved_total {float(len(records) - opened)}" in sent
    assert "frtwatch_alerts_dropped_total 0.0" in sent


def test_the_pipelines_revisions_page_and_resolve_with_the_reason(monitored: Monitored) -> None:
    """The fleet's late facts past the grace: each retraction of a violation paged resolves its
    page once, with the retraction's explanation; each violation found late pages saying so."""
    paged = last_records(read_topic(monitored.kafka, topics.VIOLATIONS))
    retracted = {vid: v for vid, v in paged.items() if v.get("status") == "retracted"}
    found_late = {
        vid: v for vid, v in paged.items() if v.get("status", "open") == "open" and v.get("revised_by")
    }
    assert retracted, "no retraction of a paged violation: the fleet's late consents did not revise"
    deadline = time.monotonic() + RESOLUTION_WAIT
    while True:
        resolved = [a for _, a in security_entries(monitored.receiver, "resolved")]
        ids = Counter(a["labels"]["violation_id"] for a in resolved if a["labels"]["violation_id"] in paged)
        paged_then = {a["labels"]["violation_id"] for _, a in security_entries(monitored.receiver, "firing")}
        if set(ids) - monitored.retracted_here >= set(retracted) & paged_then or time.monotonic() > deadline:
            break
        time.sleep(2)
    # A retraction resolves the page security got (one retracted before its page could be
    # delivered never paged: see the test above).
    pages = {a["labels"]["violation_id"]: a for _, a in security_entries(monitored.receiver, "firing")}
    want, failed = set(retracted) & set(pages), failed_notifications(monitored.alertmanager)
    assert len(set(retracted) - want) <= failed
    assert set(ids) - monitored.retracted_here == want, "a resolution per retraction, nothing else"
    assert sum(ids.values()) - len(ids) <= failed, f"resolved more than once: {ids}"
    for alert in resolved:
        retraction = retracted.get(alert["labels"]["violation_id"])
        if retraction is not None:
            assert alert["annotations"]["status"] == "retracted"
            assert alert["annotations"]["explanation"] == retraction["explanation"]
            assert ", ".join(retraction["revised_by"]) in alert["annotations"]["retracted"]
    for vid, violation in found_late.items():
        assert ", ".join(violation["revised_by"]) in pages[vid]["annotations"]["found_late"]
        assert pages[vid]["annotations"]["summary"].startswith("Found late: ")


def test_a_retraction_resolves_its_alert_in_alertmanager_and_says_why(monitored: Monitored) -> None:
    """A retraction of a violation that paged, pushed by the processor's pusher to the real
    Alertmanager: its alert is resolved there, and security gets the reason."""
    paged = last_records(read_topic(monitored.kafka, topics.VIOLATIONS))
    standing = [
        v
        for vid, v in sorted(paged.items())
        if v.get("status", "open") == "open" and not v.get("revised_by") and v["severity"] == "critical"
    ]
    original = msgspec.convert(standing[0], Violation)
    vid = original.violation_id
    assert [a["labels"]["violation_id"] for a in alerts_in(monitored.alertmanager, violation_id=vid)] == [vid]
    retraction = msgspec.structs.replace(
        original,
        status="retracted",
        revised_at=format_timestamp(datetime.now(UTC)),
        revised_by=["ev-late-consent-1"],
        explanation="Retracted: a consent given before the recognition arrived late (ev-late-consent-1).",
    )
    registry = CollectorRegistry()
    metrics = AlertMetrics(registry)

    def pushed_as(name: str) -> float:
        return registry.get_sample_value(f"frtwatch_alerts_{name}_total") or 0.0

    async def push() -> None:
        pusher = AlertPusher(monitored.alertmanager.url, "http://127.0.0.1:8088", metrics)
        pusher.offer(retraction)
        running = asyncio.create_task(pusher.run())
        while not pushed_as("resolved"):
            await asyncio.sleep(0.1)
        running.cancel()

    def resolutions() -> list[tuple[Notification, dict[str, Any]]]:
        entries = security_entries(monitored.receiver, "resolved")
        return [(note, alert) for note, alert in entries if alert["labels"]["violation_id"] == vid]

    monitored.retracted_here.add(vid)
    pushed = time.time()
    asyncio.run(asyncio.wait_for(push(), 30))
    assert pushed_as("sent") == 0.0  # a resolution, not a page

    # Resolved in Alertmanager at once: it no longer lists the alert as active.
    assert alerts_in(monitored.alertmanager, violation_id=vid) == []
    # Security is told at the group's next tick, once, with the reason and the late facts.
    deadline = time.monotonic() + RESOLUTION_WAIT
    while not resolutions():
        assert time.monotonic() < deadline, "the retraction's resolution never reached security"
        time.sleep(1)
    time.sleep(2)
    assert len(resolutions()) == 1
    note, resolved = resolutions()[0]
    assert note.received >= pushed
    firing = [
        a for _, a in security_entries(monitored.receiver, "firing") if a["labels"]["violation_id"] == vid
    ]
    assert len(firing) == 1 and resolved["labels"] == firing[0]["labels"]  # the same alert, paged once
    notes = resolved["annotations"]
    assert notes["status"] == "retracted"
    assert notes["summary"].startswith("Retracted: ")
    assert notes["explanation"] == retraction.explanation
    assert notes["retracted"].endswith("by the late facts ev-late-consent-1: " + retraction.explanation)
    assert notes["revised_by"] == "ev-late-consent-1"


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


def test_the_audit_log_holds_every_record_of_the_revised_verdicts_and_verifies(monitored: Monitored) -> None:
    """Last in this module: it stops the sink (the test reads its chDB folder). The pipeline's
    late facts past the grace revised verdicts; the log holds every record once, its final state
    is the ground truth, and an export of every violation record verifies offline."""
    records = read_topic(monitored.kafka, topics.VIOLATIONS)
    revisions = [r for r in records if r.get("revised_by")]
    assert any(r.get("status") == "retracted" for r in revisions), "the run retracted nothing"
    wait_for_the_sink(monitored.kafka, monitored.sink)
    monitored.sink.stop()
    check_audit_log(monitored.kafka, monitored.home)
