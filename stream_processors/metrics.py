"""The processor's and the alert pusher's metrics (prometheus-client; the audit sink's are in
audit/metrics.py, the /metrics server in core/metrics_server.py).

Names are ``frtwatch_<subsystem>_<name>_<unit>``, counters end in ``_total``, units are base
units (seconds). No label carries a subject, event or device id; operator_id is a label where
operations asks for it per operator (operators are a bounded set). Label values known in
advance are created at zero, so every series exists before its first event and rate() works
from the start. Tests pass their own registry.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from contracts import EVENT_TYPES
from contracts.events import Envelope, RegistrySnapshot
from contracts.records import Violation
from contracts.timestamps import parse_timestamp
from contracts.vocabulary import Severity
from stream_processors.admission import REASONS
from stream_processors.rules.pack import Pack
from stream_processors.watchdog import CAUSES, started_over

SEVERITIES: tuple[str, ...] = Severity.__args__  # type: ignore[attr-defined]
ROUTING_REASONS = ("too_large", "invalid_utf8", "invalid_json", "unsupported_schema", "unknown_type")
# Detection latency: immediate rules in tens of milliseconds, grace-period rules after ~10 s.
UNREVISED = ("beyond_horizon", "beyond_evidence")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300)


class ProcessorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "frtwatch_processor_events_consumed",
            "Input events judged, by event type (refused inputs count as dead letters instead).",
            ["event_type"],
            registry=registry,
        )
        self.violations = Counter(
            "frtwatch_processor_violations",
            "Violations published, by rule, severity, policy pack and operator.",
            ["rule_id", "severity", "policy_pack", "operator_id"],
            registry=registry,
        )
        self.retractions = Counter(
            "frtwatch_processor_retractions",
            "Violations retracted because a late fact disproved them, by rule and policy pack (a"
            " retraction is no violation: frtwatch_processor_violations_total does not count it).",
            ["rule_id", "policy_pack"],
            registry=registry,
        )
        self.late_detections = Counter(
            "frtwatch_processor_late_detections",
            "Violations found late, proved by a late fact, by rule and policy pack (each is also"
            " counted in frtwatch_processor_violations_total).",
            ["rule_id", "policy_pack"],
            registry=registry,
        )
        self.unrevised = Counter(
            "frtwatch_processor_late_facts_unrevised",
            "Facts later than the grace period whose verdicts could not be revised, by reason:"
            " beyond_horizon (later than the revision horizon: verdicts stand) or beyond_evidence"
            " (older than the decided events this worker keeps: a revision may be missing).",
            ["reason"],
            registry=registry,
        )
        self.evidence = Gauge(
            "frtwatch_processor_revision_evidence_events",
            "Decided events kept for verdict revisions.",
            registry=registry,
        )
        self.dead_letters = Counter(
            "frtwatch_processor_dead_letters",
            "Inputs sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.detection_latency = Histogram(
            "frtwatch_processor_detection_latency_seconds",
            "From a violation's occurred_at (device clock) to its publication (violations found"
            " late are left out: their wait was the late fact's).",
            ["severity"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "frtwatch_processor_consumer_lag_messages",
            "Messages of frt.events.v1 not yet read by this worker, by partition it reads.",
            ["partition"],
            registry=registry,
        )
        self.pack_reloads = Counter(
            "frtwatch_processor_pack_reloads",
            "Policy pack reloads, by outcome (failure: the running packs stay).",
            ["outcome"],
            registry=registry,
        )
        self.ruleset = Info(
            "frtwatch_processor_ruleset",
            "The active policy packs and their ruleset hashes.",
            registry=registry,
        )
        self.stored_individuals = Gauge(
            "frtwatch_processor_stored_individuals",
            "Individuals whose faces an operator stores, from its latest registry snapshot.",
            ["operator_id"],
            registry=registry,
        )
        self.filing_threshold = Gauge(
            "frtwatch_processor_filing_threshold_individuals",
            "Stored individuals above which a policy pack requires a filing.",
            ["policy_pack"],
            registry=registry,
        )
        self.starts_over = Counter(
            "frtwatch_processor_starts_over",
            "Times the watchdog started this worker over, by cause (counted across the restarts).",
            ["cause"],
            registry=registry,
        )
        self.lane_records_skipped = Counter(
            "frtwatch_processor_lane_records_skipped",
            "Records of the judge's lanes faust did not hand over (skipped, or from the journal's"
            " stamp to where it resumed a lane), read and judged by the worker itself.",
            registry=registry,
        )
        self._unrevised_seen = dict.fromkeys(UNREVISED, 0)
        for reason in UNREVISED:
            self.unrevised.labels(reason)
        self._events_of = {event_type: self.events.labels(event_type) for event_type in EVENT_TYPES}
        for reason in (*ROUTING_REASONS, *REASONS):
            self.dead_letters.labels(reason)
        self._violations_of: dict[tuple[str, str, str, str], Any] = {}
        self._revisions_of: dict[tuple[str, str, str], Any] = {}  # (status, rule, pack): children
        self._latency_of = {severity: self.detection_latency.labels(severity) for severity in SEVERITIES}
        for outcome in ("success", "failure"):
            self.pack_reloads.labels(outcome)
        carried = started_over()  # this process's earlier runs, before it started over
        for cause in CAUSES:
            self.starts_over.labels(cause).inc(carried.get(cause, 0))

    def packs_active(self, packs: Sequence[Pack]) -> None:
        self.ruleset.info({pack.name: pack.ruleset_hash for pack in packs})
        for pack in packs:
            if "filing_threshold" in pack.params:
                self.filing_threshold.labels(pack.name).set(pack.params["filing_threshold"])
            for rule in pack.rules:  # every rule's revisions exist at zero from the start
                self._revision_counter("retracted", rule.rule_id, pack.name)
                self._revision_counter("late", rule.rule_id, pack.name)

    def _revision_counter(self, kind: str, rule_id: str, policy_pack: str) -> Any:
        counter = self._revisions_of.get((kind, rule_id, policy_pack))
        if counter is None:
            family = self.retractions if kind == "retracted" else self.late_detections
            counter = self._revisions_of[kind, rule_id, policy_pack] = family.labels(rule_id, policy_pack)
        return counter

    def accepted(self, event: Envelope) -> None:
        self._events_of[event.event_type].inc()  # labels() per event is a measurable cost
        if isinstance(event, RegistrySnapshot):
            self.stored_individuals.labels(event.operator_id).set(event.stored_individuals)

    def violation(self, record: Violation) -> None:
        """One record published on frt.violations.v1, counted by its status: a retraction as a
        retraction only; a violation found late as a violation and a late detection."""
        if record.status == "retracted":
            self._revision_counter("retracted", record.rule_id, record.policy_pack).inc()
            return
        labels = (record.rule_id, record.severity, record.policy_pack, record.operator_id)
        counter = self._violations_of.get(labels)
        if counter is None:  # as many as the series themselves: rules x operators
            counter = self._violations_of[labels] = self.violations.labels(*labels)
        counter.inc()
        if record.revised_by is not None:
            self._revision_counter("late", record.rule_id, record.policy_pack).inc()
            return
        latency = (datetime.now(UTC) - parse_timestamp(record.occurred_at)).total_seconds()
        self._latency_of[record.severity].observe(max(latency, 0.0))

    def revision_reach(self, unrevised: dict[str, int], evidence: int) -> None:
        """The judge's running totals of unrevised late facts (they start again at zero when its
        engines are rebuilt), and the evidence it keeps."""
        for reason, total in unrevised.items():
            seen = self._unrevised_seen[reason]
            self.unrevised.labels(reason).inc(total - seen if total >= seen else total)
            self._unrevised_seen[reason] = total
        self.evidence.set(evidence)

    def dead_letter(self, reason: str) -> None:
        """``reason`` as sent: its code before the first colon."""
        self.dead_letters.labels(reason.split(":", 1)[0]).inc()


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "frtwatch_alerts_sent", "Violations pushed to Alertmanager (acknowledged).", registry=registry
        )
        self.failures = Counter(
            "frtwatch_alerts_push_failures",
            "Failed pushes to Alertmanager (each retried).",
            registry=registry,
        )
        self.resolved = Counter(
            "frtwatch_alerts_resolved",
            "Alerts resolved because their violation was retracted (pushed ending now, acknowledged).",
            registry=registry,
        )
        self.dropped = Counter(
            "frtwatch_alerts_dropped", "Alerts dropped because the push queue was full.", registry=registry
        )
        self.queued = Gauge("frtwatch_alerts_queued", "Alerts waiting to be pushed.", registry=registry)

