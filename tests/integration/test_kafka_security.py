"""Kafka with SASL/SCRAM over TLS, the local stack's secure option, against the real broker:
frtwatch's whole pipeline works through it with each service as its role's principal, each
principal is refused outside its rights with nothing written, a client without valid
credentials gets nothing, and no password reaches a log or a command line."""

import contextlib
import dataclasses
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    NewTopic,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.errors import ClusterAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError

from contracts import decode_event, topics
from core.kafka_security import SASL_SSL, KafkaSecurity, Role, password_file_name
from core.settings import Settings, kafka_environment
from frtwatch import REPO_ROOT
from frtwatch.stack.kafka import KafkaCluster, ensure_jars, java_command
from frtwatch.stack.kafka_acls import GRANTS, acls
from frtwatch.stack.kafka_secrets import KafkaSecrets
from frtwatch.stack.process import ManagedProcess, StackError, free_ports
from producers.emitter import EventEmitter
from tests.conftest import running_kafka
from tests.integration.pipeline import (
    PARTITIONS,
    RECOGNITION,
    Worker,
    check,
    check_audit_log,
    consumer_of,
    expected,
    fleet_keys,
    simulate,
    wait_for_the_sink,
    wait_for_verdicts,
    wait_until_assigned,
)

REFUSAL_TIMEOUT_MS = 6000
ANY_ACL = (  # an ACLFilter's operation, permission and resource: any
    ACLOperation.ANY,
    ACLPermissionType.ANY,
    ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
)


@pytest.fixture(scope="module")
def kafka_secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """The local stack's Kafka as `FRTWATCH_KAFKA_SECURITY=sasl_ssl` makes it (same paths)."""
    home = tmp_path_factory.mktemp("kafka-secure")
    yield from running_kafka(home, PARTITIONS, security=admin_of(home))


def admin_of(home: Path) -> KafkaSecurity:
    """The stack's own client: the admin, as `frtwatch stack up` connects."""
    return Settings.from_env(home=home, kafka_protocol=SASL_SSL).kafka_security_for(Role.ADMIN)


def passwords(kafka: KafkaCluster) -> list[str]:
    found = [user.password() for user in kafka.secrets.users]
    assert all(len(password) >= 24 for password in found) and len(set(found)) == len(found)
    return found


def holding_only(kafka: KafkaCluster, role: Role, tmp_path: Path) -> KafkaCluster:
    """The cluster as a service sees it that holds only its role's password file (in a keys
    directory of its own): it can connect as that role's principal and no other."""
    keys = tmp_path / f"kafka-keys-{role}"
    keys.mkdir(mode=0o700)
    own = kafka.secrets.role(role)
    assert own.password_file is not None
    password_file = keys / own.password_file.name
    password_file.write_text(own.password())
    return dataclasses.replace(kafka, security=dataclasses.replace(own, password_file=password_file))


def test_the_pipeline_over_sasl_ssl_finds_the_ground_truth_and_logs_no_password(
    kafka_secure: KafkaCluster, tmp_path: Path
) -> None:
    fleet_keys(tmp_path, seed=31)
    keys = tmp_path / "keys.json"

    # Each service holds only its role's password, so it connects as that principal or not at all.
    # The most talkative log level the worker has: whatever it logs, the passwords must not be in it.
    processor, audit, devices = (
        holding_only(kafka_secure, r, tmp_path) for r in (Role.PROCESSOR, Role.AUDIT, Role.DEVICE)
    )
    worker = Worker(processor, tmp_path, keys, "worker", command=("process", "--loglevel", "debug"))
    sink = Worker(audit, tmp_path, keys, "sink", command=("audit", "sink"))
    sim = None
    try:
        wait_until_assigned([worker])
        sim = simulate(devices, tmp_path, seed=31, events=3000, rate=300)
        assert sim.wait(timeout=120) == 0
        want, _ = expected(tmp_path)
        check(kafka_secure, tmp_path, wait_for_verdicts(kafka_secure, want))
        wait_for_the_sink(kafka_secure, sink, timeout=120)
        assert not _command_lines_holding(passwords(kafka_secure)), "a password is on a command line"
    finally:
        if sim is not None:
            sim.kill()
        worker.stop()
        sink.stop()
    check_audit_log(kafka_secure, tmp_path)

    # `frtwatch stack check` (produce and read back every example event) as a user would run it.
    env = kafka_environment(kafka_secure.bootstrap_servers, kafka_secure.security)
    roundtrip = subprocess.run(
        [sys.executable, "-m", "frtwatch", "stack", "check"],
        env={**os.environ, "FRTWATCH_HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert roundtrip.returncode == 0, roundtrip.stdout + roundtrip.stderr
    assert "events round-tripped" in roundtrip.stdout

    logs = [worker.log, sink.log, *(kafka_secure.home / "logs").glob("*.log")]
    assert worker.log.stat().st_size > 100_000, "the debug log is not the verbose one it should be"
    for path in logs:
        text = path.read_text(errors="replace")
        for password in passwords(kafka_secure):
            assert password not in text, f"a Kafka password is in {path.name}"
    assert all(password not in roundtrip.stdout + roundtrip.stderr for password in passwords(kafka_secure))


def test_a_device_principal_the_admin_adds_sends_with_the_sdk_to_the_events_topic_only(
    kafka_secure: KafkaCluster, tmp_path: Path
) -> None:
    """As the README adds a device: a SCRAM user of its own with the device role's rights. (After
    the pipeline test, which reads the events topic whole.)"""
    admin = kafka_secure.security
    camera = KafkaSecurity(SASL_SSL, "cam-7", tmp_path / password_file_name("cam-7"), admin.ca_file)
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "frtwatch",
            "stack",
            "kafka-user",
            "cam-7",
            "--password-file",
            str(camera.password_file),
        ],
        env={
            **os.environ,
            "FRTWATCH_HOME": str(tmp_path),
            **kafka_environment(kafka_secure.bootstrap_servers, admin),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    assert camera.password() not in added.stdout + added.stderr
    delivered: list[tuple[int, int]] = []  # (partition, offset)
    with EventEmitter(
        kafka_secure.bootstrap_servers,
        operator_id="op-secure",
        device_id="cam-7",
        on_delivery=lambda event_id, position, error: delivered.append(position) if error is None else None,
        **camera.kafka_python(),
    ) as device:
        event_id = device.emit("recognition.performed", **RECOGNITION)
    assert len(delivered) == 1
    consumer = consumer_of(kafka_secure, enable_auto_commit=False)
    try:
        partition = TopicPartition(topics.EVENTS, delivered[0][0])
        consumer.assign([partition])
        consumer.seek(partition, delivered[0][1])
        records = consumer.poll(timeout_ms=10_000).get(partition, [])
        assert decode_event(records[0].value).event_id == event_id
    finally:
        consumer.close()
    assert_refused_to_write(kafka_secure, camera, topics.VIOLATIONS)


def end_offsets(kafka: KafkaCluster, topic: str) -> dict[TopicPartition, int]:
    consumer = consumer_of(kafka, enable_auto_commit=False)  # as the admin
    try:
        return consumer.end_offsets([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
    finally:
        consumer.close()


def assert_refused_to_write(
    kafka: KafkaCluster, who: KafkaSecurity, topic: str, refusal: str = "TopicAuthorizationFailed"
) -> None:
    """``who`` producing to ``topic`` is refused (TopicAuthorizationFailed), and nothing arrives."""
    before = end_offsets(kafka, topic)
    producer = KafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, max_block_ms=REFUSAL_TIMEOUT_MS, **who.kafka_python()
    )
    try:
        with pytest.raises(KafkaError, match=refusal):
            producer.send(topic, key=b"forged", value=b"{}").get(timeout=REFUSAL_TIMEOUT_MS / 1000)
    finally:
        producer.close(timeout=1)
    assert end_offsets(kafka, topic) == before, f"{who.username} wrote to {topic}"


# What each principal must not write: a device, the records the sink logs as if the gate had
# passed them; the API, verdicts; the processor, query records; the sink, anything.
FORBIDDEN_WRITES = {
    Role.DEVICE: (topics.ACCEPTED, topics.VIOLATIONS, topics.QUERIES, topics.DEADLETTER, topics.LANES),
    Role.API: (topics.VIOLATIONS, topics.ACCEPTED, topics.EVENTS),
    Role.PROCESSOR: (topics.QUERIES,),
    Role.AUDIT: (topics.ACCEPTED, topics.VIOLATIONS, topics.QUERIES),
}


@pytest.mark.parametrize(
    ("role", "topic"), [(role, topic) for role, forbidden in FORBIDDEN_WRITES.items() for topic in forbidden]
)
def test_a_principal_writing_outside_its_rights_is_refused_and_nothing_is_written(
    kafka_secure: KafkaCluster, role: Role, topic: str
) -> None:
    # A principal that may write nowhere (the sink) is refused a producer id before any topic.
    may_write = any(grant.operation == "WRITE" for grant in GRANTS[role])
    refusal = "TopicAuthorizationFailed" if may_write else "ClusterAuthorizationFailed"
    assert_refused_to_write(kafka_secure, kafka_secure.secrets.role(role), topic, refusal)


# What each principal must not read: a device or the API, the verdicts and the queries.
FORBIDDEN_READS = {
    Role.DEVICE: (topics.VIOLATIONS, topics.QUERIES, topics.EVENTS),
    Role.API: (topics.VIOLATIONS, topics.QUERIES),
    Role.PROCESSOR: (topics.QUERIES,),
}


@pytest.mark.parametrize(
    ("role", "topic"), [(role, topic) for role, forbidden in FORBIDDEN_READS.items() for topic in forbidden]
)
def test_a_principal_reading_outside_its_rights_is_refused(
    kafka_secure: KafkaCluster, role: Role, topic: str
) -> None:
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_secure.bootstrap_servers,
        enable_auto_commit=False,
        **kafka_secure.secrets.role(role).kafka_python(),
    )
    partition = TopicPartition(topic, 0)
    producer = KafkaProducer(
        bootstrap_servers=kafka_secure.bootstrap_servers, **kafka_secure.security.kafka_python()
    )
    try:
        producer.send(topic, b"{}", partition=0).get(
            timeout=30
        )  # something to read (after the pipeline test: it reads these topics whole)
    finally:
        producer.close()
    try:
        consumer.assign([partition])
        consumer.seek(partition, 0)
        # A topic it may not even describe is refused at its offsets; one it may write, at the fetch.
        with pytest.raises(TopicAuthorizationFailedError):
            consumer.end_offsets([partition])
            consumer.poll(timeout_ms=REFUSAL_TIMEOUT_MS)
    finally:
        consumer.close()


@pytest.mark.parametrize("role", [role for role in Role if role != Role.ADMIN])
def test_only_the_admin_creates_topics_or_alters_acls(kafka_secure: KafkaCluster, role: Role) -> None:
    servers = kafka_secure.bootstrap_servers
    client = KafkaAdminClient(bootstrap_servers=servers, **kafka_secure.secrets.role(role).kafka_python())
    # The right to do anything at all, which a principal able to alter ACLs could take.
    everything = acls(role.principal, [*GRANTS[Role.PROCESSOR], *GRANTS[Role.AUDIT]])
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            client.create_topics([NewTopic(f"made-by-{role}", 1, 1)])
        assert client.create_acls(everything)["failed"] == [ClusterAuthorizationFailedError] * len(everything)
    finally:
        client.close()
    admin = KafkaAdminClient(bootstrap_servers=servers, **kafka_secure.security.kafka_python())
    try:
        assert f"made-by-{role}" not in admin.list_topics()
        mine, _ = admin.describe_acls(ACLFilter(f"User:{role.principal}", None, *ANY_ACL))
        assert set(mine) == set(acls(role.principal, GRANTS[role]))  # as granted, nothing more
        admin.create_topics([NewTopic(f"made-by-the-admin-for-{role}", 1, 1)])  # the admin can
    finally:
        admin.close()


def _command_lines_holding(secrets: list[str]) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(secret in argv for secret in secrets):
            pids.append(int(cmdline.parent.name))
    return pids


def _refused_options(kafka: KafkaCluster, case: str) -> dict[str, Any]:
    valid = kafka.security.kafka_python()
    trusting = ssl.create_default_context(cafile=str(kafka.security.ca_file))
    return {
        "plaintext": {},
        "tls without sasl": {"security_protocol": "SSL", "ssl_context": trusting},
        "wrong password": valid | {"sasl_plain_password": "not-the-password"},
        "unknown user": valid | {"sasl_plain_username": "intruder"},
        "untrusted certificate": valid | {"ssl_context": ssl.create_default_context()},
    }[case]


# Why the broker refused, as its log records it (the client may only see the socket close).
REFUSAL_REASONS = {
    "plaintext": "SSL handshake failed",
    "tls without sasl": "during SASL handshake",
    "wrong password": "invalid credentials with SASL mechanism SCRAM-SHA-512",
    "unknown user": "invalid credentials with SASL mechanism SCRAM-SHA-512",
    "untrusted certificate": "SSL handshake failed",  # the client gave up on the broker
}


@pytest.mark.parametrize("case", list(REFUSAL_REASONS))
def test_a_client_without_valid_credentials_gets_nothing(
    kafka_secure: KafkaCluster, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    broker_log = kafka_secure.node(0).log_path
    logged_before = broker_log.stat().st_size
    topic = f"refusal-{case.replace(' ', '-')}"
    admin = KafkaAdminClient(
        bootstrap_servers=kafka_secure.bootstrap_servers, **kafka_secure.security.kafka_python()
    )
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    options = _refused_options(kafka_secure, case)
    caplog.set_level(logging.WARNING, logger="kafka")
    with pytest.raises(KafkaError):
        KafkaAdminClient(
            bootstrap_servers=kafka_secure.bootstrap_servers,
            bootstrap_timeout_ms=REFUSAL_TIMEOUT_MS,
            **options,
        ).list_topics()
    with pytest.raises(KafkaError):
        producer = KafkaProducer(
            bootstrap_servers=kafka_secure.bootstrap_servers,
            bootstrap_timeout_ms=REFUSAL_TIMEOUT_MS,
            max_block_ms=REFUSAL_TIMEOUT_MS,
            **options,
        )
        try:
            producer.send(topic, b"written without valid credentials").get(timeout=REFUSAL_TIMEOUT_MS / 1000)
        finally:
            producer.close(timeout=1)
    if case == "untrusted certificate":
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    deadline = time.monotonic() + 10
    while REFUSAL_REASONS[case].encode() not in broker_log.read_bytes()[logged_before:]:
        assert time.monotonic() < deadline, f"the broker never logged {REFUSAL_REASONS[case]!r}"
        time.sleep(0.2)
    # Nothing it tried to write arrived.
    consumer = consumer_of(kafka_secure, enable_auto_commit=False)
    try:
        partition = TopicPartition(topic, 0)
        assert consumer.end_offsets([partition])[partition] == 0
    finally:
        consumer.close()


@pytest.fixture
def kafka_secure_three(tmp_path: Path) -> Iterator[KafkaCluster]:
    yield from running_kafka(tmp_path / "kafka", PARTITIONS, brokers=3, security=admin_of(tmp_path))


ISR_WAIT_S = 60


def test_three_brokers_replicate_as_their_own_scram_user(kafka_secure_three: KafkaCluster) -> None:
    """Replication 3 over SASL_SSL: every replica in sync, acks=all answered, no refusal logged."""
    servers, security = kafka_secure_three.bootstrap_servers, kafka_secure_three.security.kafka_python()
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", **security)
    try:
        producer.send(topics.EVENTS, b"replicated").get(timeout=30)
    finally:
        producer.close()
    # The brokers have just started: a follower still catching up joins the ISR once it has
    # fetched (as its own SCRAM user), so in sync within a bound, not at the first look.
    admin = KafkaAdminClient(bootstrap_servers=servers, **security)
    try:
        deadline = time.monotonic() + ISR_WAIT_S
        while True:
            partitions = admin.describe_topics([topics.EVENTS])[0]["partitions"]
            out_of_sync = [p for p in partitions if sorted(p["isr_nodes"]) != sorted(p["replica_nodes"])]
            if not out_of_sync or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        admin.close()
    assert len(partitions) == PARTITIONS
    assert all(len(partition["replica_nodes"]) == 3 for partition in partitions)
    assert not out_of_sync, f"replicas still out of sync after {ISR_WAIT_S} s: {out_of_sync}"
    for node in kafka_secure_three.nodes():
        assert b"Failed authentication" not in node.log_path.read_bytes(), node.name


def test_a_home_formatted_plaintext_will_not_start_with_sasl(tmp_path: Path) -> None:
    plain = KafkaCluster.on_free_ports(tmp_path)
    try:
        plain.start(timeout=120)
    finally:
        plain.stop()
    secure = KafkaCluster(tmp_path, plain.broker_ports, plain.controller_ports, admin_of(tmp_path))
    with pytest.raises(StackError, match=r"was made for PLAINTEXT, not SASL_SSL: use another FRTWATCH_HOME"):
        secure.start(timeout=30)
    assert secure.node(0).pid() is None


def test_the_controller_quorum_takes_only_the_nodes_certificate(kafka_secure: KafkaCluster) -> None:
    """The KRaft controller port asks for a client certificate signed by the stack's CA."""
    context = ssl.create_default_context(cafile=str(kafka_secure.security.ca_file))
    port = kafka_secure.controller_ports[0]
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    # TLS 1.3 reports a missing client certificate on the first read, not in the handshake.
    refused = pytest.raises(ssl.SSLError, match=r"BAD_CERTIFICATE|CERTIFICATE_REQUIRED")
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls, refused:
        tls.sendall(b"\x00\x00\x00\x00")
        tls.recv(1)


def test_the_compose_brokers_config_serves_frtwatch_and_refuses_strangers(tmp_path: Path) -> None:
    """docker-compose.sasl-ssl.yml cannot run here (no Docker engine). Its broker runs instead on
    the same jars with the same server.properties, JAAS file and SCRAM users from `frtwatch stack
    kafka-secrets`, the container's paths and ports mapped to this machine's."""
    secrets_dir = tmp_path / "kafka-secrets"
    made = subprocess.run(
        [sys.executable, "-m", "frtwatch", "stack", "kafka-secrets", str(secrets_dir), "--host", "kafka"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    ports = dict(zip(("29092", "9092", "9093"), map(str, free_ports(3)), strict=True))
    config = (REPO_ROOT / "deploy" / "kafka" / "sasl-ssl" / "server.properties").read_text()
    config = re.sub(
        r"(?:kafka|127\.0\.0\.1)?:(29092|9092|9093)\b", lambda m: f"127.0.0.1:{ports[m[1]]}", config
    )
    config = config.replace("/etc/kafka/secrets", str(secrets_dir)).replace(
        "/var/lib/kafka/data", str(tmp_path / "data")
    )
    properties = tmp_path / "server.properties"
    properties.write_text(config)

    libs = ensure_jars()
    cluster_id = (secrets_dir / "kafka-cluster-id").read_text().strip()
    scram_users = f"@{secrets_dir / 'kafka-scram-users.args'}"  # as start.sh passes them
    fmt = java_command(
        libs,
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={cluster_id}",
        "-c",
        str(properties),
        scram_users,
    )
    formatted = subprocess.run(fmt, capture_output=True, text=True, timeout=120)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    jaas = f"-Djava.security.auth.login.config={secrets_dir / 'kafka-broker-jaas.conf'}"  # KAFKA_OPTS
    broker = ManagedProcess("compose-kafka", tmp_path)
    broker.start(java_command(libs, "kafka.Kafka", str(properties), jvm_options=(jaas,)))
    try:
        compose_secrets = KafkaSecrets.in_directory(secrets_dir)
        external = f"127.0.0.1:{ports['9092']}"

        def serving() -> bool:
            with contextlib.suppress(KafkaError):
                admin = KafkaAdminClient(
                    bootstrap_servers=external, **compose_secrets.role(Role.ADMIN).kafka_python()
                )
                admin.close()
                return True
            return False

        broker.wait_until(serving, 90, "serving SASL_SSL clients")

        # frtwatch-topics, with the admin's folder of the volume as its keys.
        def client_env(role: Role) -> dict[str, str]:
            folder = secrets_dir / "clients" / role
            return {
                "FRTWATCH_KAFKA_BOOTSTRAP": external,
                "FRTWATCH_KAFKA_SECURITY": "sasl_ssl",
                "FRTWATCH_KAFKA_KEYS_DIR": str(folder),
                "FRTWATCH_KAFKA_CA_FILE": str(folder / "kafka-ca.pem"),
            }

        topics_made = subprocess.run(
            [sys.executable, "-m", "frtwatch", "stack", "topics", "--partitions", str(PARTITIONS)],
            env={**os.environ, "FRTWATCH_HOME": str(tmp_path), **client_env(Role.ADMIN)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert topics_made.returncode == 0, topics_made.stdout + topics_made.stderr
        assert "ACLs granted to the roles' principals" in topics_made.stdout
        # A device, with its folder of the volume, may write the events and nothing else.
        compose_kafka = KafkaCluster(
            tmp_path, (int(ports["9092"]),), (int(ports["9093"]),), compose_secrets.role(Role.ADMIN)
        )
        device = KafkaSecrets.in_directory(secrets_dir / "clients" / "device").role(Role.DEVICE)
        producer = KafkaProducer(bootstrap_servers=external, **device.kafka_python())
        try:
            producer.send(topics.EVENTS, b"{}").get(timeout=30)
        finally:
            producer.close()
        assert_refused_to_write(compose_kafka, device, topics.ACCEPTED)
        # The compose health check: Kafka's own tool on the internal listener, with the client file.
        health = java_command(
            libs,
            "org.apache.kafka.tools.BrokerApiVersionsCommand",
            "--bootstrap-server",
            f"127.0.0.1:{ports['29092']}",
            "--command-config",
            str(secrets_dir / "kafka-admin.properties"),
        )
        checked = subprocess.run(health, capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        with pytest.raises(KafkaError):
            KafkaAdminClient(
                bootstrap_servers=external, bootstrap_timeout_ms=REFUSAL_TIMEOUT_MS
            ).list_topics()
        log = broker.log_path.read_text()
        for password in (user.password() for user in compose_secrets.users):
            assert password not in log + checked.stdout + checked.stderr
    finally:
        broker.stop()
