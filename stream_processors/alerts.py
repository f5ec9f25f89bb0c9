"""Critical and high violations pushed straight to Alertmanager (API v2), within seconds,
instead of waiting for a Prometheus scrape and rule evaluation.

Each violation is one alert: its labels carry the violation_id, so a violation pushed again
(a replay after a restart) is the same alert to Alertmanager, never a second page. Alerts wait
in a bounded queue; while Alertmanager is unreachable the pusher retries with backoff, and
what overflows the queue is dropped and counted (frtwatch_alerts_dropped_total).
"""

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from contracts.records import Violation
from contracts.timestamps import format_timestamp, parse_timestamp
from stream_processors.metrics import AlertMetrics

log = logging.getLogger("frtwatch.alerts")
PAGED = ("critical", "high")
BATCH = 200  # alerts per request
ACTIVE_FOR = timedelta(hours=1)  # a violation is an event: its alert resolves by itself
MAX_BACKOFF = 30.0


def alert(violation: Violation, evidence_url: str) -> dict[str, Any]:
    """The Alertmanager v2 alert for one violation."""
    occurred = parse_timestamp(violation.occurred_at)
    evidence = f"{evidence_url}/v1/violations?" + urlencode(
        {
            "operator_id": violation.operator_id,
            "rule_id": violation.rule_id,
            "policy_pack": violation.policy_pack,
            "since": violation.occurred_at,
            "until": format_timestamp(occurred + timedelta(milliseconds=1)),
        }
    )
    labels = {
        "alertname": "FRTViolation",
        "violation_id": violation.violation_id,
        "rule_id": violation.rule_id,
        "severity": violation.severity,
        "policy_pack": violation.policy_pack,
        "operator_id": violation.operator_id,
        "site_id": violation.site_id or "",
        "device_id": violation.device_id or "",
        "team": "security",
    }
    return {
        "labels": {k: v for k, v in labels.items() if v},
        "annotations": {
            "summary": f"{violation.rule_id} ({violation.severity}) at {violation.operator_id}",
            "explanation": violation.explanation,
            "reference": violation.reference,
            "evidence": evidence,
            "occurred_at": violation.occurred_at,
        },
        "startsAt": violation.occurred_at,
        "endsAt": format_timestamp(max(occurred, datetime.now(UTC)) + ACTIVE_FOR),
        "generatorURL": evidence,
    }


class AlertPusher:
    def __init__(self, url: str, evidence_url: str, metrics: AlertMetrics, capacity: int = 10_000) -> None:
        self.url, self.evidence_url, self.metrics = f"{url}/api/v2/alerts", evidence_url, metrics
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(capacity)

    def offer(self, violation: Violation) -> None:
        """Queue the violation's alert if it pages; never blocks the judging."""
        if violation.severity not in PAGED:
            return
        try:
            self.queue.put_nowait(alert(violation, self.evidence_url))
        except asyncio.QueueFull:
            self.metrics.dropped.inc()
        self.metrics.queued.set(self.queue.qsize())

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                batch = [await self.queue.get()]
                while len(batch) < BATCH and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                await self._deliver(client, batch)
                self.metrics.queued.set(self.queue.qsize())

    async def _deliver(self, client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
        delay = 0.5
        while True:
            try:
                response = await client.post(self.url, json=batch)
                response.raise_for_status()
                self.metrics.sent.inc(len(batch))
                return
            except httpx.HTTPError as error:
                self.metrics.failures.inc()
                log.warning("alert push to %s failed (%s), retrying in %.1f s", self.url, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
