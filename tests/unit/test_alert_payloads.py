"""What the processor tells Alertmanager and Prometheus about a verdict and its revisions:
the alert pushed for a violation, a retraction and a late detection, and the counters by
status. Pure: the real Alertmanager is in tests/integration/test_alerts.py."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from contracts.records import Violation
from contracts.timestamps import format_timestamp, parse_timestamp
from stream_processors.alerts import ACTIVE_FOR, REVISION_HORIZON, AlertPusher, alert, resolves
from stream_processors.metrics import AlertMetrics, ProcessorMetrics
from stream_processors.rules.pack import available_packs, load_packs

API = "http://127.0.0.1:8088"
NOW = datetime(2026, 12, 7, 9, 0, 30, tzinfo=UTC)
ORIGINAL = Violation(
    violation_id="01J00000000000000000000000",
    rule_id="FRT-CONSENT-MISSING",
    policy_pack="cn-cac-2025",
    severity="critical",
    reference="Art. 5",
    operator_id="op-mall-1",
    site_id="site-1",
    device_id="cam-7",
    subject_ref="s" * 64,
    event_ids=["ev-recognition"],
    occurred_at="2026-12-07T09:00:00.000Z",
    detected_at="2026-12-07T09:00:10.100Z",
    explanation="Face recognised at site-1 without the subject's consent for access_control.",
    ruleset_hash="abc123",
)
RETRACTION = msgspec.structs.replace(
    ORIGINAL,
    status="retracted",
    revised_at="2026-12-07T09:00:25.000Z",
    revised_by=["ev-consent-late"],
    explanation="Retracted: a consent for access_control given at 08:59:58 arrived late (ev-consent-late).",
)
LATE = msgspec.structs.replace(
    ORIGINAL,
    violation_id="01J00000000000000000000001",
    rule_id="FRT-MINOR-NO-GUARDIAN",
    revised_at="2026-12-07T09:00:25.000Z",
    revised_by=["ev-withdrawal-late", "ev-age-late"],
    explanation="A minor recognised after the guardian's consent was withdrawn (delivered late).",
)


def test_an_open_violation_fires_for_its_revision_horizon() -> None:
    pushed = alert(ORIGINAL, API, now=NOW)
    assert pushed["labels"] == {
        "alertname": "FRTViolation",
        "violation_id": ORIGINAL.violation_id,
        "rule_id": "FRT-CONSENT-MISSING",
        "severity": "critical",
        "policy_pack": "cn-cac-2025",
        "operator_id": "op-mall-1",
        "site_id": "site-1",
        "device_id": "cam-7",
        "team": "security",
    }
    assert pushed["startsAt"] == ORIGINAL.occurred_at
    assert parse_timestamp(pushed["endsAt"]) == NOW + ACTIVE_FOR
    assert ACTIVE_FOR > REVISION_HORIZON  # a retraction always finds its alert still firing
    notes = pushed["annotations"]
    assert notes["status"] == "open"
    assert notes["summary"] == "FRT-CONSENT-MISSING (critical) at op-mall-1"
    assert notes["explanation"] == ORIGINAL.explanation
    assert notes["resolves_at"].startswith(pushed["endsAt"])
    assert "/v1/violations?operator_id=op-mall-1" in notes["evidence"]
    assert not {"retracted", "found_late", "revised_by", "revised_at"} & set(notes)
    assert not resolves(pushed)


def test_a_retraction_resolves_the_same_alert_now_and_says_why_and_by_what() -> None:
    pushed, original = alert(RETRACTION, API, now=NOW), alert(ORIGINAL, API, now=NOW - timedelta(seconds=20))
    assert pushed["labels"] == original["labels"]  # the same alert to Alertmanager
    assert pushed["startsAt"] == original["startsAt"]
    assert parse_timestamp(pushed["endsAt"]) == NOW  # ended: resolved
    notes = pushed["annotations"]
    assert notes["status"] == "retracted"
    assert notes["summary"] == "Retracted: FRT-CONSENT-MISSING (critical) at op-mall-1"
    assert notes["explanation"] == RETRACTION.explanation  # why it no longer stands
    assert notes["retracted"] == (
        "Retracted at 2026-12-07T09:00:25.000Z, by the late facts ev-consent-late: " + RETRACTION.explanation
    )
    assert notes["revised_by"] == "ev-consent-late"
    assert notes["revised_at"] == RETRACTION.revised_at
    assert notes["evidence"] == original["annotations"]["evidence"]
    assert "resolves_at" not in notes and "found_late" not in notes
    assert resolves(pushed)


def test_a_late_detection_pages_like_any_violation_and_says_it_was_found_late() -> None:
    pushed = alert(LATE, API, now=NOW)
    assert pushed["labels"]["violation_id"] == LATE.violation_id
    assert parse_timestamp(pushed["endsAt"]) == NOW + ACTIVE_FOR  # firing
    notes = pushed["annotations"]
    assert notes["status"] == "open"
    assert notes["summary"] == "Found late: FRT-MINOR-NO-GUARDIAN (critical) at op-mall-1"
    assert notes["found_late"] == (
        "Found late, at 2026-12-07T09:00:25.000Z: proved by the late facts ev-withdrawal-late, ev-age-late"
    )
    assert notes["revised_by"] == "ev-withdrawal-late, ev-age-late"
    assert notes["explanation"] == LATE.explanation
    assert "retracted" not in notes
    assert not resolves(pushed)


def test_an_alert_that_occurred_in_the_future_of_the_processor_lives_from_its_occurrence() -> None:
    ahead = msgspec.structs.replace(ORIGINAL, occurred_at=format_timestamp(NOW + timedelta(seconds=5)))
    assert parse_timestamp(alert(ahead, API, now=NOW)["endsAt"]) == NOW + timedelta(seconds=5) + ACTIVE_FOR


def test_the_pusher_queues_what_pages_retractions_included() -> None:
    async def offered() -> list[dict[str, Any]]:
        pusher = AlertPusher("http://127.0.0.1:1", API, AlertMetrics(CollectorRegistry()))
        medium = msgspec.structs.replace(RETRACTION, severity="medium")
        for record in (ORIGINAL, RETRACTION, LATE, medium):
            pusher.offer(record)
        return [pusher.queue.get_nowait() for _ in range(pusher.queue.qsize())]

    queued = asyncio.run(offered())
    assert [(a["labels"]["violation_id"], resolves(a)) for a in queued] == [
        (ORIGINAL.violation_id, False),
        (RETRACTION.violation_id, True),
        (LATE.violation_id, False),
    ]


def test_violations_are_counted_by_status() -> None:
    registry = CollectorRegistry()
    metrics = ProcessorMetrics(registry)
    packs = load_packs(available_packs())
    metrics.packs_active(packs)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    # Every rule of every active pack has its revision series at zero before the first.
    for pack in packs:
        for rule in pack.rules:
            for name in ("frtwatch_processor_retractions_total", "frtwatch_processor_late_detections_total"):
                assert value(name, rule_id=rule.rule_id, policy_pack=pack.name) == 0.0, (name, rule.rule_id)

    for record in (ORIGINAL, RETRACTION, LATE):
        metrics.violation(record)
    violations = {
        "rule_id": "FRT-CONSENT-MISSING",
        "severity": "critical",
        "policy_pack": "cn-cac-2025",
        "operator_id": "op-mall-1",
    }
    assert value("frtwatch_processor_violations_total", **violations) == 1.0  # the retraction is not one
    late = {**violations, "rule_id": "FRT-MINOR-NO-GUARDIAN"}
    assert value("frtwatch_processor_violations_total", **late) == 1.0  # a late detection is one
    consent = {"rule_id": "FRT-CONSENT-MISSING", "policy_pack": "cn-cac-2025"}
    minor = {"rule_id": "FRT-MINOR-NO-GUARDIAN", "policy_pack": "cn-cac-2025"}
    assert value("frtwatch_processor_retractions_total", **consent) == 1.0
    assert value("frtwatch_processor_retractions_total", **minor) == 0.0
    assert value("frtwatch_processor_late_detections_total", **minor) == 1.0
    assert value("frtwatch_processor_late_detections_total", **consent) == 0.0
    # Detection latency is the pipeline's: the original only (a late detection waited for its fact).
    assert value("frtwatch_processor_detection_latency_seconds_count", severity="critical") == 1.0
