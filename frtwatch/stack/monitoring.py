"""Prometheus and Alertmanager from Debian's packages, run with the project's configs."""

import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from frtwatch import REPO_ROOT
from frtwatch.stack.process import ManagedProcess, StackError

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
ALERTMANAGER_CONFIG = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"{name} is not installed: run scripts/bootstrap.sh (Debian package)")
    return path


def _ready(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def local_prometheus_config(targets: dict[str, str]) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with compose host:port targets replaced through
    ``targets`` and rule files made absolute."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config.get("rule_files", [])]
    groups = list(config.get("alerting", {}).get("alertmanagers", []))
    groups += config.get("scrape_configs", [])
    for group in groups:
        for static in group.get("static_configs", []):
            static["targets"] = [targets.get(target, target) for target in static["targets"]]
    return config


def local_alertmanager_config(webhook_base: str) -> dict[str, Any]:
    """deploy/alertmanager/alertmanager.yml with every webhook sent to ``webhook_base``/RECEIVER
    (a local receiver: frtwatch.stack.webhook)."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in config.get("receivers", []):
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"{webhook_base.rstrip('/')}/{receiver['name']}"
    return config


@dataclass(frozen=True)
class Prometheus:
    home: Path
    port: int
    alertmanager_port: int
    processor_metrics_port: int = 9100
    audit_metrics_port: int = 9101

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess("prometheus", self.home)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        if self.process.pid() is None:
            config_path = self.home / "run" / "prometheus.yml"
            config_path.parent.mkdir(parents=True, exist_ok=True)
            targets = {
                "prometheus:9090": f"127.0.0.1:{self.port}",
                "alertmanager:9093": f"127.0.0.1:{self.alertmanager_port}",
                "frtwatch-processor:9100": f"127.0.0.1:{self.processor_metrics_port}",
                "frtwatch-audit:9101": f"127.0.0.1:{self.audit_metrics_port}",
            }
            config_path.write_text(yaml.safe_dump(local_prometheus_config(targets), sort_keys=False))
            self.process.start(
                [
                    _binary("prometheus"),
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.home / 'data' / 'prometheus'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                ]
            )
        self.process.wait_until(lambda: _ready(f"{self.url}/-/ready"), timeout, "ready")


@dataclass(frozen=True)
class Alertmanager:
    home: Path
    port: int
    webhook_base: str | None = None  # send every receiver's webhooks here instead

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess("alertmanager", self.home)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        if self.process.pid() is None:
            config = ALERTMANAGER_CONFIG
            if self.webhook_base:
                config = self.home / "run" / "alertmanager.yml"
                config.parent.mkdir(parents=True, exist_ok=True)
                config.write_text(
                    yaml.safe_dump(local_alertmanager_config(self.webhook_base), sort_keys=False)
                )
            self.process.start(
                [
                    _binary("prometheus-alertmanager"),
                    f"--config.file={config}",
                    f"--storage.path={self.home / 'data' / 'alertmanager'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",  # a single instance: no gossip port
                ]
            )
        self.process.wait_until(lambda: _ready(f"{self.url}/-/ready"), timeout, "ready")
