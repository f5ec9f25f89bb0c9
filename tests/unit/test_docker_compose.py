"""docker-compose.yml cannot run here (no Docker engine): check its shape, its ports, that
every file it mounts exists, and that the frtwatch services run real commands."""

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from frtwatch import REPO_ROOT

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
