"""Real Apache Kafka (KRaft, combined broker+controller nodes) from Maven Central jars.

The jars are fetched once with Maven (deploy/kafka/pom.xml pins the version) into a cache
outside the repo. One node for the laptop, three (replication 3, min.insync.replicas 2) for
fault tests.
"""

import base64
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from contracts import topics
from frtwatch import REPO_ROOT
from frtwatch.stack.process import ManagedProcess, StackError, free_ports, stop_all

POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "deploy" / "kafka" / "log4j2.properties"
HEAP = "-Xmx512m"


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:
        raise StackError(f"no <kafka.version> in {POM}")
    return match.group(1)


def jars_dir() -> Path:
    return Path.home() / ".cache" / "frtwatch" / f"kafka-{kafka_version()}" / "libs"


def ensure_jars() -> Path:
    """Fetch the pinned Kafka jars with Maven unless they are cached already."""
    libs = jars_dir()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is needed to fetch the Kafka jars: run scripts/bootstrap.sh")
    partial = libs.with_name("libs.partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(
            f"fetching Kafka jars failed ({' '.join(cmd)}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    marker.touch()
    return libs


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass(frozen=True)
class KafkaCluster:
    """``len(broker_ports)`` combined nodes; node i listens on broker_ports[i] (clients) and
    controller_ports[i] (the KRaft quorum), 127.0.0.1 only."""

    home: Path
    broker_ports: tuple[int, ...]
    controller_ports: tuple[int, ...]

    @classmethod
    def on_free_ports(cls, home: Path, brokers: int = 1) -> "KafkaCluster":
        """A cluster on loopback ports free right now (tests and benchmarks)."""
        ports = free_ports(2 * brokers)
        return cls(home=home, broker_ports=tuple(ports[:brokers]), controller_ports=tuple(ports[brokers:]))

    @property
    def size(self) -> int:
        return len(self.broker_ports)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.broker_ports)

    def node(self, index: int) -> ManagedProcess:
        return ManagedProcess(f"kafka-{index + 1}", self.home)

    def nodes(self) -> list[ManagedProcess]:
        return [self.node(i) for i in range(self.size)]

    def _data_dir(self, index: int) -> Path:
        return self.home / "data" / f"kafka-{index + 1}"

    def _properties(self, index: int) -> str:
        voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(self.controller_ports))
        replicas = min(3, self.size)
        min_isr = 2 if self.size >= 3 else 1
        settings = {
            "process.roles": "broker,controller",
            "node.id": index + 1,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.broker_ports[index]},"
            f"CONTROLLER://127.0.0.1:{self.controller_ports[index]}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.broker_ports[index]}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": self._data_dir(index),
            "auto.create.topics.enable": "false",
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": 0,
            "num.partitions": 1,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _java(self, libs: Path, main: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise StackError("Java is needed for Kafka: run scripts/bootstrap.sh")
        return [
            java,
            HEAP,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def start(self, timeout: float = 90.0) -> None:
        """Start every node not running yet (formatting new storage), then wait until all
        brokers have joined the cluster."""
        libs = ensure_jars()
        cluster_id_file = self.home / "data" / "kafka-cluster-id"
        cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
        if not cluster_id_file.exists():
            cluster_id_file.write_text(new_cluster_id())
        cluster_id = cluster_id_file.read_text().strip()
        for index, node in enumerate(self.nodes()):
            if node.pid() is not None:
                continue
            config = self.home / "run" / f"{node.name}.properties"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(self._properties(index))
            if not (self._data_dir(index) / "meta.properties").exists():
                fmt = self._java(
                    libs, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config)
                )
                result = subprocess.run(fmt, capture_output=True, text=True, timeout=120)
                if result.returncode != 0:
                    raise StackError(
                        f"formatting {node.name} storage failed:\n{result.stdout}{result.stderr}"
                    )
            node.start(self._java(libs, "kafka.Kafka", str(config)))
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes():
            node.wait_until(
                self._all_brokers_up, max(1.0, deadline - time.monotonic()), "serving as a broker"
            )

    def _all_brokers_up(self) -> bool:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, request_timeout_ms=3000, client_id="frtwatch-stack"
        )
        try:
            return len(admin.describe_cluster()["brokers"]) == self.size
        finally:
            admin.close()

    def create_topics(self, events_partitions: int) -> dict[str, int]:
        return create_contract_topics(self.bootstrap_servers, events_partitions, replicas=min(3, self.size))

    def stop(self, timeout: float = 60.0) -> list[str]:
        """Stop every node (controlled shutdown); return the names that were running."""
        return stop_all(self.nodes(), timeout)


def create_contract_topics(
    bootstrap_servers: str, events_partitions: int, replicas: int | None = None
) -> dict[str, int]:
    """Create the contract topics that are missing (idempotent), and frtwatch's own: the
    processor's lanes (a consumer subscribed before its topic exists may never read it), the
    accepted events and the query records; return name -> partitions. With 3 replicas,
    min.insync.replicas is 2 so acks=all survives one broker down. ``replicas`` defaults to the
    cluster's size, at most 3."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    partitions = {
        topics.EVENTS: events_partitions,
        topics.VIOLATIONS: 3,
        topics.DEADLETTER: 1,
        topics.LANES: events_partitions,
        topics.ACCEPTED: events_partitions,
        topics.QUERIES: 1,
    }
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="frtwatch-stack")
    try:
        if replicas is None:
            replicas = min(3, len(admin.describe_cluster()["brokers"]))
        config = {"min.insync.replicas": "2" if replicas >= 3 else "1"}
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, count, replicas, topic_configs=config)
            for name, count in partitions.items()
            if name not in existing
        ]
        if missing:
            admin.create_topics(missing)
        described = admin.describe_topics(list(partitions))
    finally:
        admin.close()
    return {topic["name"]: len(topic["partitions"]) for topic in described}
