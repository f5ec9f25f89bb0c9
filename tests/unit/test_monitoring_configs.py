"""The Prometheus and Alertmanager configs pass their own tools' checks (Debian's promtool and
amtool), for docker-compose and as the local stack rewrites them."""

import subprocess
from pathlib import Path

import yaml

from frtwatch import REPO_ROOT
from frtwatch.stack.monitoring import local_prometheus_config


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_prometheus_config_and_rules_are_valid() -> None:
    result = run("promtool", "check", "config", str(REPO_ROOT / "deploy/prometheus/prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_local_rewrite_points_at_loopback_and_stays_valid(tmp_path: Path) -> None:
    config = local_prometheus_config(
        {
            "prometheus:9090": "127.0.0.1:19090",
            "alertmanager:9093": "127.0.0.1:19093",
            "frtwatch-processor:9100": "127.0.0.1:19100",
            "frtwatch-audit:9101": "127.0.0.1:19101",
        }
    )
    targets = [t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]]
    assert targets == ["127.0.0.1:19090", "127.0.0.1:19093", "127.0.0.1:19100", "127.0.0.1:19101"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run("promtool", "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_alertmanager_config_is_valid() -> None:
    result = run("amtool", "check-config", str(REPO_ROOT / "deploy/alertmanager/alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
