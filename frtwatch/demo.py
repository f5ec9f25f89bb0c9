"""`frtwatch demo`: the whole pipeline on this machine for about a minute.

The local stack runs a processor worker and the regulators' API (with the audit sink) as two
more of its services. A city fleet of this run's own (new operator ids, so the consents, seqs
and registries of earlier runs never mix in) sends its traffic with injected violations and
hostile inputs; a live summary shows what the processor finds beside what the fleet's ground
truth says it must find. Verdicts may be revised (contract.md, "Verdict revisions"): the state
compared is the current one, the last record of each violation on frt.violations.v1.
"""

import json
import os
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from audit.access import add_principal, set_jurisdiction
from contracts import topics
from core.kafka_security import PLAINTEXT, KafkaSecurity
from core.settings import Settings
from frtwatch.stack import LocalStack
from producers.fleet import FleetShape
from producers.simulator import Simulation, plan, run, write_keys

JURISDICTION = "demo-city"
REGULATOR = "demo-regulator"


Verdict = tuple[str, str, str]  # (policy pack, rule id, triggering event id)


@dataclass(frozen=True)
class DemoRun:
    sim: Simulation
    operators: list[str]
    truth: frozenset[Verdict]  # the final state the processor must reach: these open, no other
    expected: Counter[str]  # the same by rule_id (every pack)
    # The revisions the fleet's late facts call for, by (revision, rule_id): information, since
    # a verdict decided after the late fact arrived needs none
    revisions: Counter[tuple[str, str]]
    expected_dead_letters: int  # inputs it must refuse or report (a seq gap is both)
    keys_file: Path


def new_run(settings: Settings, rate: float, duration: float, bad_share: float) -> DemoRun:
    """A fleet of its own for this run, its keys enrolled in the demo's key registry, and its ground
    truth worked out before anything is sent (the same seed and start give the same traffic)."""
    tag = datetime.now(UTC).strftime("%m%d%H%M%S")
    sim = Simulation(
        seed=int(tag),
        shape=FleetShape(operators=8, sites=4, devices=4, subjects=300, operator_prefix=f"city-{tag}"),
        rate=rate,
        events=round(rate * duration),
        start=datetime.now(UTC) + timedelta(seconds=2),
        bad_share=bad_share,
    )
    fleet, _ = plan(sim)
    # Every demo fleet's keys are kept: a restarted processor still knows earlier runs' devices.
    keys_file = settings.home / "demo" / "keyring.json"
    write_keys(keys_file, fleet)
    truth = run(sim, lambda message: None, paced=False, ground_truth=settings.home / "demo" / "truth.jsonl")
    return DemoRun(
        sim,
        [op.operator_id for op in fleet],
        frozenset(truth.expected),
        truth.violations,
        truth.revisions,
        sum(truth.dead_letters.values()),
        keys_file,
    )


def start_pipeline(settings: Settings, keys_file: Path, timeout: float = 90.0) -> dict[str, str]:
    """(Re)start the processor with the demo's keys, and the API with the audit sink unless it
    runs; wait until both answer."""
    stack = LocalStack(settings)
    processor, api = stack.processor, stack.api
    command = [sys.executable, "-m", "frtwatch"]
    processor.stop()
    processor.start([*command, "process"], env={**os.environ, "FRTWATCH_KEYS_FILE": str(keys_file)})
    if api.pid() is None:
        api.start([*command, "api", "serve"])
    api_url = f"http://127.0.0.1:{settings.api_port}"
    api.wait_until(lambda: _get(f"{api_url}/openapi.json") is not None, timeout, "answering")
    summary = {"api": f"{api_url} (docs at /docs), audit sink inside it"}
    if settings.processor_metrics_port:
        metrics = f"http://127.0.0.1:{settings.processor_metrics_port}/metrics"
        processor.wait_until(lambda: _get(metrics) is not None, timeout, "serving /metrics")
        summary["processor"] = f"worker, /metrics at {metrics}"
    summary["logs"] = f"{processor.log_path}, {api.log_path}"
    return summary


def grant_regulator(settings: Settings, operators: list[str]) -> str:
    """A regulator whose jurisdiction covers this run's operators; returns its new token."""
    set_jurisdiction(settings.api_access, JURISDICTION, operators)
    return add_principal(settings.api_access, REGULATOR, "regulator", JURISDICTION)


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read()  # type: ignore[no-any-return]
    except OSError:
        return None


def events_judged(settings: Settings) -> float | None:
    """The processor's count of judged events, from its /metrics page."""
    if not settings.processor_metrics_port:
        return None
    page = _get(f"http://127.0.0.1:{settings.processor_metrics_port}/metrics")
    if page is None:
        return None
    return sum(
        sample.value
        for family in text_string_to_metric_families(page.decode())
        if family.name == "frtwatch_processor_events_consumed"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def is_open(record: dict[str, Any]) -> bool:
    """A violation record without a status is open (contract.md)."""
    return bool(record.get("status", "open") == "open")


def current_state(records: list[dict[str, Any]]) -> set[Verdict]:
    """The open violations among ``records`` (in the order published) by the last record of
    each violation_id."""
    last = {record["violation_id"]: record for record in records}
    return {(v["policy_pack"], v["rule_id"], v["event_ids"][0]) for v in last.values() if is_open(v)}


@dataclass
class Outputs:
    """What the processor publishes during the run: this run's violation records, and dead
    letters. All records of a violation share a key (its operator), so they are read in the
    order they were published."""

    bootstrap_servers: str
    operators: set[str]
    security: KafkaSecurity = PLAINTEXT
    current: dict[str, dict[str, Any]] = field(default_factory=dict)  # violation_id -> last record
    retractions: Counter[str] = field(default_factory=Counter)  # retraction records, by rule_id
    late_detections: Counter[str] = field(default_factory=Counter)  # open records of late facts
    dead_letters: Counter[str] = field(default_factory=Counter)  # by reason code

    def __post_init__(self) -> None:
        self._consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, enable_auto_commit=False, **self.security.kafka_python()
        )
        wanted = [
            TopicPartition(topic, partition)
            for topic in (topics.VIOLATIONS, topics.DEADLETTER)
            for partition in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]
        self._consumer.assign(wanted)
        self._consumer.seek_to_end()  # from now on: this run's
        for tp in wanted:
            self._consumer.position(tp)

    def read(self) -> None:
        for tp, records in self._consumer.poll(timeout_ms=200).items():
            for record in records:
                value = json.loads(record.value)
                if tp.topic == topics.DEADLETTER:
                    self.dead_letters[value["reason"].split(":", 1)[0]] += 1
                elif value["operator_id"] in self.operators:
                    self._violation(value)

    def _violation(self, record: dict[str, Any]) -> None:
        if not is_open(record):
            self.retractions[record["rule_id"]] += 1
        elif record.get("revised_by"):
            self.late_detections[record["rule_id"]] += 1
        self.current[record["violation_id"]] = record

    def state(self) -> set[Verdict]:
        """The open violations now, by the last record of each."""
        return current_state(list(self.current.values()))

    def found(self) -> Counter[str]:
        """The open violations now, by rule_id."""
        return Counter(v["rule_id"] for v in self.current.values() if is_open(v))

    def by_severity(self) -> Counter[str]:
        return Counter(v["severity"] for v in self.current.values() if is_open(v))

    def severities(self) -> dict[str, str]:
        return {v["rule_id"]: v["severity"] for v in self.current.values()}

    def close(self) -> None:
        self._consumer.close()


class Sending(threading.Thread):
    """The fleet's traffic to Kafka in the background, at its rate."""

    def __init__(self, sim: Simulation, bootstrap_servers: str, security: KafkaSecurity = PLAINTEXT) -> None:
        super().__init__(name="demo-fleet", daemon=True)
        self.sim, self.bootstrap_servers, self.security = sim, bootstrap_servers, security
        self.sent = 0
        self.failures = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from producers.simulator import to_kafka

        try:
            report = to_kafka(
                self.sim,
                self.bootstrap_servers,
                topics.EVENTS,
                progress=self._progress,
                security=self.security,
            )
            self.sent, self.failures = report.sent, report.delivery_failures
        except BaseException as error:  # shown by the demo, not lost in a thread
            self.error = error

    def _progress(self, done: int) -> None:
        self.sent = done


class Throughput:
    """A growing count and its rate over the last few seconds."""

    def __init__(self) -> None:
        self._readings: list[tuple[float, float]] = []

    def add(self, count: float | None) -> tuple[float, float | None] | None:
        if count is None:
            return None
        now = time.monotonic()
        self._readings = [r for r in self._readings if now - r[0] <= 5.0] + [(now, count)]
        (t0, c0), (t1, c1) = self._readings[0], self._readings[-1]
        return count, (c1 - c0) / (t1 - t0) if t1 > t0 else None
