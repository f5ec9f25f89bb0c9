"""docker-compose.yml cannot run here (no Docker engine): check its shape, its ports, that
every file it mounts exists, and that the frtwatch services run real commands."""

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from core.kafka_security import Role, password_file_name
from frtwatch import REPO_ROOT
from frtwatch.stack.compose import write_compose_secrets
from frtwatch.stack.kafka_acls import super_users
from frtwatch.stack.kafka_secrets import BROKER_USER, NODE_NAME

COMPOSE: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_the_stack_services_are_there_on_their_ports() -> None:
    expected = {"kafka": 9092, "clickhouse": 8123, "prometheus": 9090, "alertmanager": 9093, "grafana": 3000}
    for name, port in expected.items():
        assert f"127.0.0.1:{port}:{port}" in SERVICES[name]["ports"], name
    assert "apache/kafka:" in SERVICES["kafka"]["image"]
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft


def test_host_ports_bind_loopback_only() -> None:
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond loopback"


def test_every_mounted_file_exists_in_the_repo() -> None:
    mounts = [
        (name, volume.split(":")[0])
        for name, service in SERVICES.items()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    assert len(mounts) >= 5
    for name, source in mounts:
        assert (REPO_ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"


def test_built_services_have_a_dockerfile_and_run_real_frtwatch_commands() -> None:
    built = {name: service for name, service in SERVICES.items() if "build" in service}
    assert built
    assert (REPO_ROOT / "Dockerfile").exists()
    for name, service in built.items():
        command = service["command"]
        argv = command if isinstance(command, list) else shlex.split(command)
        assert argv[0] == "frtwatch", name
        # The command exists with these options: its --help parses them and succeeds.
        result = subprocess.run(
            [sys.executable, "-m", "frtwatch", *argv[1:], "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, f"{name}: {' '.join(argv)}\n{result.stderr}"


def test_grafana_is_provisioned_with_prometheus() -> None:
    datasources = yaml.safe_load(
        Path(REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert datasources[0]["type"] == "prometheus"
    assert datasources[0]["url"] == "http://prometheus:9090"


SASL: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.sasl-ssl.yml").read_text())


def test_the_sasl_ssl_override_secures_every_kafka_client_of_the_stack() -> None:
    """docker-compose.sasl-ssl.yml: every service of the base file that talks to Kafka connects
    with SASL/SCRAM over TLS, with the secrets volume mounted; the broker's health check too."""
    services = SASL["services"]
    kafka_clients = {
        name
        for name, service in SERVICES.items()
        if "FRTWATCH_KAFKA_BOOTSTRAP" in service.get("environment", {})
    }
    assert kafka_clients == {name for name in services if name.startswith("frtwatch-")}
    for name in kafka_clients:
        environment = services[name]["environment"]
        assert environment["FRTWATCH_KAFKA_SECURITY"] == "sasl_ssl", name
        assert "FRTWATCH_KAFKA_USERNAME" not in environment, name  # each connects as its role
        (mount,) = [v for v in services[name]["volumes"] if v["source"] == "kafka-secrets"]
        assert mount["read_only"] and environment["FRTWATCH_KAFKA_KEYS_DIR"] == mount["target"], name
        assert environment["FRTWATCH_KAFKA_CA_FILE"] == mount["target"] + "/kafka-ca.pem", name
    broker = services["kafka"]
    assert "--command-config" in broker["healthcheck"]["test"][1]
    assert broker["depends_on"]["kafka-secrets"]["condition"] == "service_completed_successfully"
    assert "kafka-secrets" in SASL["volumes"]


# The role each service's command connects as (frtwatch/cli.py, api_cli.py, audit_cli.py).
ROLE_OF_COMMAND = {
    ("stack", "topics"): Role.ADMIN,
    ("events", "tail"): Role.ADMIN,
    ("process",): Role.PROCESSOR,
    ("audit", "sink"): Role.AUDIT,
    ("api", "serve"): Role.API,
}


def test_each_sasl_ssl_service_holds_only_its_roles_password(tmp_path: Path) -> None:
    """A service mounts its role's folder of the secrets volume, which holds that role's
    password and the CA, as `frtwatch stack kafka-secrets` writes them."""
    volume = tmp_path / "kafka-secrets"
    write_compose_secrets(volume, ("kafka",), owner=None)
    for name, override in SASL["services"].items():
        if not name.startswith("frtwatch-"):
            continue
        argv = SERVICES[name]["command"]
        (role,) = [
            role for command, role in ROLE_OF_COMMAND.items() if tuple(argv[1:][: len(command)]) == command
        ]
        (mount,) = override["volumes"]
        assert mount["volume"]["subpath"] == f"clients/{role}", name
        folder = volume / mount["volume"]["subpath"]
        assert sorted(path.name for path in folder.iterdir()) == sorted(
            ["kafka-ca.pem", password_file_name(role.principal)]
        ), name
        assert (folder / password_file_name(role.principal)).stat().st_mode & 0o077 == 0


def test_the_sasl_ssl_brokers_files_are_in_the_repo_and_speak_only_tls() -> None:
    broker = SASL["services"]["kafka"]
    sources = [volume.split(":")[0] for volume in broker["volumes"] if volume.startswith("./")]
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
    start = broker["entrypoint"][-1].replace("/etc/frtwatch/kafka/", "deploy/kafka/sasl-ssl/")
    assert (REPO_ROOT / start).exists()
    assert subprocess.run(["bash", "-n", str(REPO_ROOT / start)]).returncode == 0
    properties = dict(
        line.split("=", 1)
        for line in (REPO_ROOT / "deploy/kafka/sasl-ssl/server.properties").read_text().splitlines()
        if line and not line.startswith("#")
    )
    protocols = dict(pair.split(":") for pair in properties["listener.security.protocol.map"].split(","))
    assert set(protocols.values()) <= {"SASL_SSL", "SSL"}
    assert protocols[properties["controller.listener.names"]] == "SSL"
    assert properties["listener.name.controller.ssl.client.auth"] == "required"
    # Least privilege: no ACL, no access; super users as the local stack has them.
    assert properties["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["super.users"] == super_users(BROKER_USER, NODE_NAME)
    # The base file's ports and the override's broker agree: clients on kafka:29092 and host :9092.
    assert "INTERNAL://kafka:29092" in properties["advertised.listeners"]
    assert "EXTERNAL://127.0.0.1:9092" in properties["advertised.listeners"]


def test_the_sasl_ssl_secrets_service_runs_a_real_command() -> None:
    argv = SASL["services"]["kafka-secrets"]["command"]
    assert argv[:3] == ["frtwatch", "stack", "kafka-secrets"]
    result = subprocess.run(
        [sys.executable, "-m", "frtwatch", *argv[1:3], "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--owner" in result.stdout, result.stderr
