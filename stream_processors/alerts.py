"""Critical and high violations pushed straight to Alertmanager (API v2), within seconds,
instead of waiting for a Prometheus scrape and rule evaluation; and the pager follows the
verdicts (contract.md, "Verdict revisions").

Each violation is one alert: its labels carry the violation_id, so a violation pushed again
(a replay after a restart) is the same alert to Alertmanager, never a second page. Alertmanager
gives each such alert a group of its own (deploy/alertmanager/alertmanager.yml), so security
staff get one notification per violation paged, sent at once.

- A violation found late (``revised_by`` names the late facts that proved it) pages like any
  other; its annotations say it was found late, when, and by which facts.
- A retraction is pushed as the same alert (the same labels) ending now: Alertmanager resolves
  it and sends one resolution, at the next tick of its group (``group_interval``), whose
  annotations say it was retracted, why (the retraction's explanation) and by which late facts.

The natural end of an alert (``ACTIVE_FOR``; the worker passes its configured horizon,
FRTWATCH_REVISION_HOURS, and an hour): an alert lives as long as its verdict may still be
revised, the revision horizon (24 hours of event time by default) and an hour more for a
processor running behind. Why so long, and why that end is notified:
- Only an alert Alertmanager still holds as firing can be resolved by a retraction with a
  notification: once an alert has ended, its group's notification log says nothing is firing,
  and a resolved alert pushed then is sent to nobody (tried on Alertmanager 0.25). An alert that
  ended an hour after it paged would leave every later retraction unseen by security staff.
- Alertmanager has no silent end: a receiver either gets every resolution (``send_resolved``)
  or none, and the retractions' resolutions are the point. So the natural end is notified too,
  and it is placed where it says something true: the verdict can no longer be revised, it stands.
  The firing notification says so beforehand (annotation ``resolves_at``).
So over its life each violation paged gets exactly one firing notification and one resolution:
at its retraction, with the reason, or at the close of its horizon, as final. Within any window
shorter than the horizon (a benchmark, an incident) the resolutions are the retractions.
What that costs (Alertmanager 0.25 on 2 cores): each page is one notification, about 1.4 ms of
Alertmanager's CPU (bench.alerts at 1,000 events/s); Alertmanager holds every alert paged within
the last horizon, each in a group of its own, about 25 KB and 0.1 ms of CPU per tick of its
group (5,000 alerts held). A page a minute holds ~1,500 alerts (~40 MB, a negligible CPU
share); a sustained page a second would hold ~90,000 (~2.3 GB): a storm no pager serves.

Alerts wait in a bounded queue; while Alertmanager is unreachable the pusher retries with
backoff, and what overflows the queue is dropped and counted (frtwatch_alerts_dropped_total).
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
REVISION_HORIZON = timedelta(hours=24)  # the contract's default (contract.md, "Verdict revisions")
ACTIVE_FOR = REVISION_HORIZON + timedelta(hours=1)  # the horizon, and an hour for a processor behind
MAX_BACKOFF = 30.0


def alert(
    violation: Violation,
    evidence_url: str,
    now: datetime | None = None,
    active_for: timedelta = ACTIVE_FOR,
) -> dict[str, Any]:
    """The Alertmanager v2 alert for one violation record: firing for an open violation,
    ending ``now`` for a retraction (the labels are the same, so it is the same alert)."""
    now = now or datetime.now(UTC)
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
    what = f"{violation.rule_id} ({violation.severity}) at {violation.operator_id}"
    annotations = {
        "summary": what,
        "status": violation.status,
        "explanation": violation.explanation,
        "reference": violation.reference,
        "evidence": evidence,
        "occurred_at": violation.occurred_at,
    }
    late_facts = ", ".join(violation.revised_by or [])
    revised_at = violation.revised_at or format_timestamp(now)
    if violation.status == "retracted":
        ends = now
        annotations |= {
            "summary": f"Retracted: {what}",
            "retracted": f"Retracted at {revised_at}, by the late facts {late_facts}: "
            + violation.explanation,
            "revised_at": revised_at,
            "revised_by": late_facts,
        }
    else:
        ends = max(occurred, now) + active_for
        annotations["resolves_at"] = (
            f"{format_timestamp(ends)}: by then no late fact can revise this verdict, and a "
            "resolution then means it stands; a resolution before then is a retraction, with its reason"
        )
        if violation.revised_by:
            annotations |= {
                "summary": f"Found late: {what}",
                "found_late": f"Found late, at {revised_at}: proved by the late facts {late_facts}",
                "revised_at": revised_at,
                "revised_by": late_facts,
            }
    return {
        "labels": {k: v for k, v in labels.items() if v},
        "annotations": annotations,
        "startsAt": violation.occurred_at,
        "endsAt": format_timestamp(ends),
        "generatorURL": evidence,
    }


def resolves(pushed: dict[str, Any]) -> bool:
    """Whether a pushed alert is a retraction's resolution."""
    return bool(pushed["annotations"].get("status") == "retracted")


class AlertPusher:
    def __init__(
        self,
        url: str,
        evidence_url: str,
        metrics: AlertMetrics,
        capacity: int = 10_000,
        active_for: timedelta = ACTIVE_FOR,
    ) -> None:
        self.url, self.evidence_url, self.metrics = f"{url}/api/v2/alerts", evidence_url, metrics
        self.active_for = active_for  # the revision horizon, and a margin: see the module's docstring
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(capacity)

    def offer(self, violation: Violation) -> None:
        """Queue the alert of a violation record that pages (a retraction resolves the alert of
        its violation); never blocks the judging."""
        if violation.severity not in PAGED:
            return
        try:
            self.queue.put_nowait(alert(violation, self.evidence_url, active_for=self.active_for))
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
                resolutions = sum(map(resolves, batch))
                self.metrics.sent.inc(len(batch) - resolutions)
                self.metrics.resolved.inc(resolutions)
                return
            except httpx.HTTPError as error:
                self.metrics.failures.inc()
                log.warning("alert push to %s failed (%s), retrying in %.1f s", self.url, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
