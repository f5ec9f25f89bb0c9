"""Shared by the benchmarks: the machine they ran on, a Kafka to run against, and results."""

import json
import os
import platform
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from frtwatch.stack.kafka import KafkaCluster, kafka_version

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


def write_results(name: str, results: dict[str, Any], table: str) -> Path:
    """bench/results/NAME.json (figures) and NAME.md (the table), with machine and command."""
    RESULTS.mkdir(exist_ok=True)
    record = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(
            [Path(sys.executable).name, "-m", f"bench.{name.replace('-', '_')}", *sys.argv[1:]]
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
