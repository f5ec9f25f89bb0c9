"""The alert rules, their promtool unit tests and the Alertmanager routing: checked with Debian's
promtool and amtool, and read as YAML for what the tools cannot tell (every alert tested both
ways, its labels, who receives it, what a stalled pipeline inhibits)."""

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from frtwatch import REPO_ROOT
from stream_processors.alerts import ACTIVE_FOR

RULES = REPO_ROOT / "deploy/prometheus/rules/frtwatch.yml"
RULE_TESTS = sorted((REPO_ROOT / "deploy/prometheus/tests").glob("*.yml"))
ALERTMANAGER = REPO_ROOT / "deploy/alertmanager/alertmanager.yml"
# What the processor pushes for each critical or high violation (stream_processors/alerts.py).
PUSHED_VIOLATION = {
    "alertname": "FRTViolation",
    "violation_id": "01J0000000000000000000000",
    "rule_id": "FRT-PROHIBITED-LOCATION",
    "policy_pack": "pipl-2025",
    "operator_id": "op-hotel-1",
    "site_id": "site-1",
    "device_id": "cam-7",
    "team": "security",
}
SYMPTOMS = {
    "FrtwatchProcessorConsumerLagHigh",
    "FrtwatchSinkConsumerLagHigh",
    "FrtwatchDeadLetterRateHigh",
    "FrtwatchSinkKafkaErrors",
}


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerts() -> dict[str, dict[str, Any]]:
    return {
        rule["alert"]: rule for group in load(RULES)["groups"] for rule in group["rules"] if "alert" in rule
    }


def seconds(duration: str) -> float:
    """A Prometheus duration ("1s", "5m", "1h30m") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def matches(matchers: list[str], labels: dict[str, str]) -> bool:
    """Alertmanager's matchers ('name="value"', =, !=, =~, !~) against a label set."""
    for matcher in matchers:
        found = re.fullmatch(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"(.*)"\s*', matcher)
        assert found, f"matcher not understood by this test: {matcher}"
        name, op, value = found.groups()
        actual = labels.get(name, "")
        ok = {
            "=": actual == value,
            "!=": actual != value,
            "=~": re.fullmatch(value, actual) is not None,
            "!~": re.fullmatch(value, actual) is None,
        }[op]
        if not ok:
            return False
    return True


def routed_to(labels: dict[str, str], receiver: str) -> subprocess.CompletedProcess[str]:
    """amtool's routing of an alert with ``labels``; fails unless it reaches ``receiver`` only."""
    pairs = [f"{name}={value}" for name, value in labels.items()]
    config, verify = f"--config.file={ALERTMANAGER}", f"--verify.receivers={receiver}"
    return run("amtool", "config", "routes", "test", config, verify, *pairs)


# --- Prometheus rules -------------------------------------------------------------------------


def test_rules_pass_promtool_check() -> None:
    result = run("promtool", "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(group["rules"]) for group in load(RULES)["groups"])
    assert f"SUCCESS: {rules} rules found" in result.stdout


def test_there_are_rule_unit_tests() -> None:
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests/"


@pytest.mark.parametrize("path", RULE_TESTS, ids=[path.name for path in RULE_TESTS])
def test_rule_unit_tests_pass(path: Path) -> None:
    # promtool resolves rule_files relative to the test file; they must be the real rules.
    assert [(path.parent / f).resolve() for f in load(path)["rule_files"]] == [RULES.resolve()]
    result = run("promtool", "test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_required_alerts_exist() -> None:
    required = {
        "FrtwatchCriticalViolation",
        "FrtwatchViolationRateSpike",
        "FrtwatchPipelineStalled",
        "FrtwatchOperatorNearFilingThreshold",
        "FrtwatchSinkWriteFailing",
        "FrtwatchScrapeTargetDown",
        *SYMPTOMS,
    }
    assert required <= set(alerts())


def test_every_alert_is_labelled_and_annotated() -> None:
    for name, rule in alerts().items():
        labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
        assert labels.get("severity") in {"critical", "warning"}, name
        assert labels.get("team") in {"security", "operations"}, name
        assert annotations.get("summary") and annotations.get("description"), name


def test_critical_violations_keep_rule_and_operator() -> None:
    rule = alerts()["FrtwatchCriticalViolation"]
    assert rule["labels"] == {"severity": "critical", "team": "security"}
    assert "sum by (rule_id, operator_id, policy_pack)" in rule["expr"]
    assert 'severity="critical"' in rule["expr"]


def test_every_alert_has_a_firing_and_a_quiet_test_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in load(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alerts())
    assert not names - firing, f"no test case where these fire: {sorted(names - firing)}"
    assert not names - quiet, f"no test case where these stay quiet: {sorted(names - quiet)}"
    assert not (firing | quiet) - names, f"tests of alerts that do not exist: {(firing | quiet) - names}"


# --- Alertmanager -----------------------------------------------------------------------------


def test_alertmanager_config_is_valid() -> None:
    result = run("amtool", "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_commented_email_example_is_valid_when_uncommented(tmp_path: Path) -> None:
    text = ALERTMANAGER.read_text()
    block = re.search(r"\n[ ]*# email example: begin\n(.*?)\n[ ]*# email example: end\n", text, re.S)
    assert block, "the email example's begin/end markers are missing"
    uncommented = re.sub(r"(?m)^(\s*)# ?", r"\1", block.group(1))
    path = tmp_path / "alertmanager.yml"
    path.write_text(text.replace(block.group(0), "\n" + uncommented + "\n"))
    security = next(r for r in load(path)["receivers"] if r["name"] == "security")
    assert security["email_configs"][0]["to"]
    result = run("amtool", "check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_receiver_has_one_webhook_named_after_it() -> None:
    receivers = {r["name"]: r for r in load(ALERTMANAGER)["receivers"]}
    assert set(receivers) == {"security", "operations"}
    for name, receiver in receivers.items():
        assert [w["url"] for w in receiver["webhook_configs"]] == [f"http://127.0.0.1:9099/{name}"]


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({**PUSHED_VIOLATION, "severity": "critical"}, "security"),
        ({**PUSHED_VIOLATION, "severity": "high"}, "security"),
        (
            {"alertname": "FrtwatchPipelineStalled", "severity": "critical", "team": "operations"},
            "operations",
        ),
        ({"alertname": "SomethingUnrouted"}, "operations"),
    ],
    ids=["pushed-critical", "pushed-high", "team-operations", "default"],
)
def test_amtool_routes(labels: dict[str, str], receiver: str) -> None:
    result = routed_to(labels, receiver)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_every_alert_reaches_its_team() -> None:
    for name, rule in alerts().items():
        result = routed_to({"alertname": name, **rule["labels"]}, rule["labels"]["team"])
        assert result.returncode == 0, name + ": " + result.stdout + result.stderr
        assert result.stdout.split() == [rule["labels"]["team"]], name


def test_pushed_violations_page_once_each_at_once_and_resolve_on_retraction() -> None:
    routes = load(ALERTMANAGER)["route"]["routes"]
    pushed = [r for r in routes if matches(r.get("matchers", []), {**PUSHED_VIOLATION, "severity": "high"})]
    route = pushed[0]  # the first matching route takes it (no `continue` before it)
    assert not any(r.get("continue") for r in routes[: routes.index(route)])
    assert route["receiver"] == "security"
    # A group per alert: a notification never repeats another violation still firing.
    assert route["group_by"] == ["..."]
    assert seconds(route["group_wait"]) == 0  # nothing to gather: page at once
    # A retraction's resolution is sent at its group's next tick: within a minute.
    assert seconds(route["group_interval"]) <= 60
    # An alert lives its revision horizon (and a margin): never repeated while it fires.
    assert seconds(route["repeat_interval"]) > ACTIVE_FOR.total_seconds() >= 24 * 3600
    security = next(r for r in load(ALERTMANAGER)["receivers"] if r["name"] == "security")
    assert all(webhook["send_resolved"] for webhook in security["webhook_configs"])


def test_operations_wait_longer_than_security_pages() -> None:
    config = load(ALERTMANAGER)
    operations = [r for r in config["route"]["routes"] if r["receiver"] == "operations"]
    assert operations
    for route in [config["route"], *operations]:
        assert seconds(route.get("group_wait", config["route"]["group_wait"])) >= 10


def test_a_stalled_pipeline_inhibits_its_symptoms_only() -> None:
    rules = alerts()
    inhibited: set[str] = set()
    for inhibit in load(ALERTMANAGER)["inhibit_rules"]:
        sources = {
            n
            for n, r in rules.items()
            if matches(inhibit["source_matchers"], {"alertname": n, **r["labels"]})
        }
        targets = {
            n
            for n, r in rules.items()
            if matches(inhibit["target_matchers"], {"alertname": n, **r["labels"]})
        }
        if sources == {"FrtwatchPipelineStalled"}:
            inhibited |= targets
            # Alerts differing in `equal` labels would not inhibit each other: processor and sink
            # alerts share no job or instance.
            assert not set(inhibit.get("equal", [])) & {"job", "instance"}
    assert inhibited == SYMPTOMS
    assert all(rules[name]["labels"]["team"] == "operations" for name in inhibited)
