"""Shared by the benchmarks: the machine they ran on, a Kafka to run against, live traffic
and results."""

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from contracts import topics
from frtwatch.stack.kafka import KafkaCluster, kafka_version
from frtwatch.stack.monitoring import Alertmanager, Prometheus
from frtwatch.stack.process import free_ports
from frtwatch.stack.webhook import WebhookReceiver
from producers.plan import Message
from producers.simulator import Simulation, plan

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    memory_kib = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": kafka_version(),
        "kafka-python": version("kafka-python"),
        "msgspec": version("msgspec"),
    }


@contextmanager
def local_kafka(home: Path) -> Iterator[KafkaCluster]:
    """A single-node Kafka on free loopback ports, for one benchmark run."""

    cluster = KafkaCluster.on_free_ports(home)
    try:
        cluster.start(timeout=120)
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Alerting:
    """Alertmanager paging a local webhook receiver, and Prometheus scraping the services."""

    receiver: WebhookReceiver
    alertmanager: Alertmanager
    prometheus: Prometheus

    @classmethod
    def start(cls, home: Path, processor_metrics: int, sink_metrics: int = 0) -> "Alerting":
        receiver = WebhookReceiver()
        am_port, prom_port = free_ports(2)
        alertmanager = Alertmanager(home / "am", am_port, webhook_base=receiver.url)
        prometheus = Prometheus(home / "prom", prom_port, am_port, processor_metrics, sink_metrics)
        alertmanager.start()
        prometheus.start()
        return cls(receiver, alertmanager, prometheus)

    def stop(self) -> None:
        self.prometheus.process.stop()
        self.alertmanager.process.stop()
        self.receiver.close()


@dataclass
class LiveSends:
    """Sends a live simulation's messages to frt.events.v1, noting when each event went out,
    so a latency can be told from the event's send as well as from its occurred_at, and how
    far behind its schedule each send was (a generator behind is not the pipeline's delay)."""

    producer: KafkaProducer
    sent: dict[str, float] = field(default_factory=dict)  # event_id -> when it was sent
    behind: list[float] = field(default_factory=list)  # seconds from each message's due time to its send

    def __call__(self, message: Message, due: float) -> None:
        self.producer.send(topics.EVENTS, value=message.value, key=message.key)
        now = time.time()
        self.behind.append(now - due)
        if message.event is not None:
            self.sent[message.event["event_id"]] = now


def send_on_schedule(sim: Simulation, producer: KafkaProducer) -> LiveSends:
    """Send ``sim``'s messages live, each at its slot's time (start + n / rate: the event's
    occurred_at, unless it is late by design).

    The messages are built and signed before the first is due, with a start far enough ahead
    for that: the devices' work of building and signing runs on the devices, not on the cores
    the measured services share here, where a generator building as it sends fell up to 1.7 s
    behind its schedule at the median and took CPU from the worker it measured."""
    probe = min(sim.events, 1_000)
    began = time.perf_counter()
    for _ in plan(replace(sim, events=probe))[1].messages(probe):
        pass
    per_message = (time.perf_counter() - began) / max(probe, 1)
    start = time.time() + 1.0 + 1.5 * per_message * sim.events
    sim = replace(sim, start=datetime.fromtimestamp(start, UTC))
    messages = list(plan(sim)[1].messages(sim.events))
    sends = LiveSends(producer)
    if time.time() > start:
        print(f"building the messages overran their start by {time.time() - start:.1f} s", flush=True)
    for index, message in enumerate(messages):
        due = start + index / sim.rate
        ahead = due - time.time()
        if ahead > 0.002:
            time.sleep(ahead)
        sends(message, due)
    return sends


def records_since(
    kafka: KafkaCluster, since: dict[TopicPartition, int]
) -> Iterator[tuple[TopicPartition, Any]]:
    """Every record of these partitions from the given offsets up to their ends now."""
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False)
    try:
        partitions = list(since)
        consumer.assign(partitions)
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        end = consumer.end_offsets(partitions)
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for record in records:
                    yield tp, record
    finally:
        consumer.close()


def service_env(home: Path, kafka: KafkaCluster, partitions: int, **settings: str) -> dict[str, str]:
    """The environment of a frtwatch service a benchmark starts: its home, this Kafka, the
    events' partitions, the fleet's keys (home/keys.json), and any other FRTWATCH_* settings."""
    return {
        **os.environ,
        "FRTWATCH_HOME": str(home),
        "FRTWATCH_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "FRTWATCH_EVENTS_PARTITIONS": str(partitions),
        "FRTWATCH_KEYS_FILE": str(home / "keys.json"),
        **settings,
    }


def write_results(name: str, results: dict[str, Any], table: str, module: str | None = None) -> Path:
    """bench/results/NAME.json (figures) and NAME.md (the table), with machine and command (run
    as ``module``, by default bench.NAME)."""
    RESULTS.mkdir(exist_ok=True)
    record = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(
            [Path(sys.executable).name, "-m", module or f"bench.{name.replace('-', '_')}", *sys.argv[1:]]
        ),
        "machine": machine(),
        **results,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# {name}",
        "",
        f"- when: {record['when']}",
        f"- command: `{record['command']}`",
        "- machine: " + ", ".join(f"{k} {v}" for k, v in record["machine"].items()),
        "",
        table,
        "",
    ]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines))
    return path
