"""Real Apache Kafka (KRaft, combined broker+controller nodes) from Maven Central jars.

The jars are fetched once with Maven (deploy/kafka/pom.xml pins the version) into a cache
outside the repo. One node for the laptop, three (replication 3, min.insync.replicas 2) for
fault tests. With SASL/SCRAM over TLS (``security``, the admin's), clients authenticate on a
SASL_SSL listener, the brokers replicate over it as their own user, and the controller quorum
accepts only the nodes' certificate (mutual TLS): no port takes an unauthenticated client. The
StandardAuthorizer then allows each role's principal only what its ACLs grant
(frtwatch.stack.kafka_acls), applied by the admin once the brokers are up. Plaintext, the
laptop's default, has no authorizer.
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
from core.kafka_security import PLAINTEXT, KafkaSecurity, Role, scram_jaas
from frtwatch import REPO_ROOT
from frtwatch.stack.kafka_acls import grant_roles, super_users
from frtwatch.stack.kafka_secrets import NODE_NAME, KafkaSecrets, write_private
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


def java_command(libs: Path, main: str, *args: str, jvm_options: tuple[str, ...] = ()) -> list[str]:
    """A Kafka class (broker, storage tool, perf tools) on the cached jars."""
    java = shutil.which("java")
    if java is None:
        raise StackError("Java is needed for Kafka: run scripts/bootstrap.sh")
    return [
        java,
        HEAP,
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        *jvm_options,
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass(frozen=True)
class KafkaCluster:
    """``len(broker_ports)`` combined nodes; node i listens on broker_ports[i] (clients) and
    controller_ports[i] (the KRaft quorum), 127.0.0.1 only."""

    home: Path
    broker_ports: tuple[int, ...]
    controller_ports: tuple[int, ...]
    security: KafkaSecurity = PLAINTEXT  # how the stack's own client (the admin) connects

    @classmethod
    def on_free_ports(
        cls, home: Path, brokers: int = 1, security: KafkaSecurity = PLAINTEXT
    ) -> "KafkaCluster":
        """A cluster on loopback ports free right now (tests and benchmarks)."""
        ports = free_ports(2 * brokers)
        return cls(home, tuple(ports[:brokers]), tuple(ports[brokers:]), security)

    @property
    def secrets(self) -> KafkaSecrets:
        return KafkaSecrets.of_home(self.home, self.security)

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
        settings: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": index + 1,
            "controller.quorum.voters": voters,
            "listeners": f"BROKER://127.0.0.1:{self.broker_ports[index]},"
            f"CONTROLLER://127.0.0.1:{self.controller_ports[index]}",
            "advertised.listeners": f"BROKER://127.0.0.1:{self.broker_ports[index]}",
            "listener.security.protocol.map": "BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "BROKER",
            **(self._secure_properties() if self.security.secure else {}),
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

    def _secure_properties(self) -> dict[str, object]:
        secrets, mechanism = self.secrets, self.security.mechanism
        broker = secrets.broker
        return {
            "listener.security.protocol.map": "BROKER:SASL_SSL,CONTROLLER:SSL",
            "sasl.enabled.mechanisms": mechanism,
            "sasl.mechanism.inter.broker.protocol": mechanism,
            f"listener.name.broker.{mechanism.lower()}.sasl.jaas.config": scram_jaas(
                broker.username, broker.password()
            ),
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": super_users(broker.username, NODE_NAME),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": secrets.server_pem,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": secrets.ca_file,
        }

    def start(self, timeout: float = 90.0) -> None:
        """Start every node not running yet (formatting new storage), then wait until all
        brokers have joined the cluster."""
        libs = ensure_jars()
        cluster_id_file = self.home / "data" / "kafka-cluster-id"
        cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
        if not cluster_id_file.exists():
            cluster_id_file.write_text(new_cluster_id())
        cluster_id = cluster_id_file.read_text().strip()
        if self.security.secure:
            self.secrets.ensure()
        for index, node in enumerate(self.nodes()):
            if node.pid() is not None:
                continue
            config = self.home / "run" / f"{node.name}.properties"
            config.parent.mkdir(parents=True, exist_ok=True)
            write_private(config, self._properties(index))  # it holds the brokers' password
            if not (self._data_dir(index) / "meta.properties").exists():
                self._format(libs, index, config, cluster_id)
            self._check_security_of(index)
            node.start(java_command(libs, "kafka.Kafka", str(config)))
        self.wait_ready(timeout)
        if self.security.secure:
            self.grant_roles()

    def grant_roles(self) -> int:
        """Each role's principal its ACLs, granted by the admin (idempotent)."""
        return grant_roles(self.bootstrap_servers, self.secrets.role(Role.ADMIN))

    def _format(self, libs: Path, index: int, config: Path, cluster_id: str) -> None:
        args = ["format", f"--cluster-id={cluster_id}", "-c", str(config)]
        if self.security.secure:
            args += self.secrets.scram_users()
        # The arguments go in a private file (java @file), so no password is on a command line.
        argfile = config.with_suffix(".format-args")
        write_private(argfile, "\n".join(args) + "\n")
        try:
            fmt = java_command(libs, "kafka.tools.StorageTool", f"@{argfile}")
            result = subprocess.run(fmt, capture_output=True, text=True, timeout=120)
        finally:
            argfile.unlink()
        if result.returncode != 0:
            output = result.stdout + result.stderr
            if self.security.secure:
                for user in self.secrets.users:
                    output = output.replace(user.password(), "<password>")
            raise StackError(f"formatting kafka-{index + 1} storage failed:\n{output}")
        self._security_marker(index).write_text(self.security.protocol)

    def _security_marker(self, index: int) -> Path:
        return self._data_dir(index) / "frtwatch-security"

    def _check_security_of(self, index: int) -> None:
        """Storage formatted without SCRAM users cannot serve SASL/SCRAM (nor the reverse, sensibly)."""
        marker = self._security_marker(index)
        formatted = marker.read_text().strip() if marker.exists() else "PLAINTEXT"
        if formatted != self.security.protocol:
            raise StackError(
                f"Kafka storage {self._data_dir(index)} was made for {formatted}, not "
                f"{self.security.protocol}: use another FRTWATCH_HOME, or `frtwatch stack down` and "
                "remove its data/kafka-* to start Kafka afresh"
            )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes():
            node.wait_until(
                self._all_brokers_up, max(1.0, deadline - time.monotonic()), "serving as a broker"
            )

    def _all_brokers_up(self) -> bool:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers,
            request_timeout_ms=3000,
            client_id="frtwatch-stack",
            **self.security.kafka_python(),
        )
        try:
            return len(admin.describe_cluster()["brokers"]) == self.size
        finally:
            admin.close()

    def create_topics(self, events_partitions: int) -> dict[str, int]:
        return create_contract_topics(
            self.bootstrap_servers, events_partitions, replicas=min(3, self.size), security=self.security
        )

    def stop(self, timeout: float = 60.0) -> list[str]:
        """Stop every node (controlled shutdown); return the names that were running."""
        return stop_all(self.nodes(), timeout)


def create_contract_topics(
    bootstrap_servers: str,
    events_partitions: int,
    replicas: int | None = None,
    security: KafkaSecurity = PLAINTEXT,
    names: tuple[str, ...] | None = None,
) -> dict[str, int]:
    """Create the contract topics that are missing (idempotent), and frtwatch's own: the
    processor's lanes (a consumer subscribed before its topic exists may never read it), the
    accepted events and the query records; return name -> partitions. With 3 replicas,
    min.insync.replicas is 2 so acks=all survives one broker down. ``replicas`` defaults to the
    cluster's size, at most 3. ``names``: only these (those a role may see; the admin's: all)."""
    from kafka.errors import NodeNotReadyError, UnknownBrokerIdError

    partitions = {
        topics.EVENTS: events_partitions,
        topics.VIOLATIONS: 3,
        topics.DEADLETTER: 1,
        topics.LANES: events_partitions,
        topics.ACCEPTED: events_partitions,
        topics.QUERIES: 1,
    }
    if names is not None:
        partitions = {name: count for name, count in partitions.items() if name in names}
    # Just after a cluster starts, the broker that answers first may not list the broker it names
    # as controller yet (seen with three brokers on a busy machine): ask again, briefly.
    for attempt in range(10):
        try:
            return _create_topics(bootstrap_servers, partitions, replicas, security)
        except (UnknownBrokerIdError, NodeNotReadyError):
            if attempt == 9:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _create_topics(
    bootstrap_servers: str,
    partitions: dict[str, int],
    replicas: int | None,
    security: KafkaSecurity,
) -> dict[str, int]:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="frtwatch-stack", **security.kafka_python()
    )
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
