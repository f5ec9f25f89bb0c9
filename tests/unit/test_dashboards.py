"""The Grafana dashboards in dashboards/ are well formed and query only what exists: every panel
reads the provisioned Prometheus datasource, every variable used is defined, every metric named
is one stream_processors/metrics.py exposes (with the labels it has), and promtool parses every
expression. Pure: no Grafana or Prometheus runs here.

``panel_expressions()`` returns each expression with the template variables filled in, for an
integration test to run against a real Prometheus."""

import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from audit.metrics import SinkMetrics
from frtwatch import REPO_ROOT
from stream_processors.metrics import ProcessorMetrics

DASHBOARDS_DIR = REPO_ROOT / "dashboards"
DATASOURCES = REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
REQUIRED = ("operations-overview", "violations", "pipeline-health", "operator-compliance")
DATASOURCE_UID = "frtwatch-prometheus"
API = "http://127.0.0.1:8088"

# Values for the template variables when an expression is run outside Grafana: every operator and
# pack, and fixed windows for Grafana's own interval variables.
DEFAULT_VALUES: Mapping[str, str] = {
    "operator": ".*",
    "pack": ".*",
    "site": "",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}
# Grafana's built-in variables used in data links; they need no definition.
BUILTIN_LINK_VARIABLES = {"__data", "__field", "__series", "__value", "__url_time_range", "__from", "__to"}

# $name, ${name}, ${name:format}, ${__data.fields.x}, [[name]]
VARIABLE = re.compile(r"\$\{(\w+)[^}]*\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
METRIC = re.compile(r"(?<![\w:])frtwatch_\w+")
# metric{matchers}: the label names of its matchers
SELECTOR = re.compile(r"(?<![\w:])(frtwatch_\w+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
# What prometheus-client exposes per metric family type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
    "summary": ("", "_sum", "_count", "_created"),
    "stateset": ("",),
    "enum": ("",),
}
SCRAPE_LABELS = {"job", "instance"}


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


@cache
def _load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def dashboards() -> dict[str, dict[str, Any]]:
    """Each dashboard by its file name without .json."""
    return {path.stem: _load(path) for path in dashboard_files()}


def all_panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, the panels of collapsed rows included (rows themselves too)."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def data_panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    return (panel for panel in all_panels(board) if panel.get("type") != "row")


def variables(board: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in board.get("templating", {}).get("list", [])}


def query_annotations(board: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [a for a in board.get("annotations", {}).get("list", []) if not a.get("builtIn")]


def raw_expressions(board: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) of every panel target and query annotation, unsubstituted."""
    for panel in data_panels(board):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel.get("title", ""), target["expr"]
    for annotation in query_annotations(board):
        if annotation.get("expr"):
            yield f"annotation: {annotation['name']}", annotation["expr"]


def variable_queries(board: Mapping[str, Any]) -> Iterator[str]:
    """The queries of query variables (label_values(...): Grafana's, not PromQL)."""
    for variable in variables(board).values():
        if variable.get("type") == "query":
            query = variable.get("query")
            yield query.get("query", "") if isinstance(query, dict) else str(query or "")
            yield variable.get("definition", "")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each $var, ${var}, ${var:format} and [[var]] replaced by values[var]."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"no value for ${name} in {text!r}")
        return values[name]

    return VARIABLE.sub(value, text)


def panel_expressions(values: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(dashboard file stem, panel title, expression) for every expression of every dashboard,
    template variables replaced by ``values`` (default: every operator and pack, ``.*``, and
    fixed windows for $__rate_interval, $__interval and $__range), ready for Prometheus."""
    chosen = {**DEFAULT_VALUES, **(values or {})}
    return [
        (name, substitute(title, chosen), substitute(expr, chosen))
        for name, board in dashboards().items()
        for title, expr in raw_expressions(board)
    ]


def used_variables(value: Any) -> Iterator[tuple[str, str]]:
    """(variable name, the string using it) for every variable anywhere in a JSON value."""
    if isinstance(value, str):
        for match in VARIABLE.finditer(value):
            yield next(group for group in match.groups() if group), value
    elif isinstance(value, dict):
        for item in value.values():
            yield from used_variables(item)
    elif isinstance(value, list):
        for item in value:
            yield from used_variables(item)


def fresh_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessorMetrics(registry)
    SinkMetrics(registry)
    return registry


def exposed_metric_names() -> set[str]:
    """Every series name prometheus-client exposes for the frtwatch metrics (a family with no
    labelled child yet exposes nothing, hence the names from the families' types)."""
    names: set[str] = set()
    for family in fresh_registry().collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def metric_labels() -> dict[str, set[str]]:
    """Label names by exposed series name (prometheus-client keeps them in ``_labelnames``)."""
    registry = fresh_registry()
    labels: dict[str, set[str]] = {}
    for family in registry.collect():
        collector = registry._names_to_collectors[family.name + SUFFIXES[family.type][0]]
        names = set(getattr(collector, "_labelnames", ())) | SCRAPE_LABELS
        for suffix in SUFFIXES[family.type]:
            labels[family.name + suffix] = names | ({"le"} if suffix == "_bucket" else set())
    return labels


def promtool_check(expressions: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """promtool check rules on a rules file recording each expression (so promtool parses them)."""
    rules = [{"record": f"frtwatch_dashboard:expr_{n}", "expr": expr} for n, expr in enumerate(expressions)]
    path = tmp_path / "dashboard-expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, sort_keys=False))
    return subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


def test_the_required_dashboards_exist_and_every_file_parses() -> None:
    assert {path.stem for path in dashboard_files()} >= set(REQUIRED)
    for path in dashboard_files():
        board = json.loads(path.read_text())
        assert isinstance(board, dict), path
        assert board.get("panels"), f"{path.name}: no panels"


def test_dashboards_are_tagged_refreshed_and_timed() -> None:
    for name, board in dashboards().items():
        assert board.get("uid") and board.get("title"), name
        assert len(board["uid"]) <= 40, f"{name}: Grafana uids are at most 40 characters"
        assert "frtwatch" in board.get("tags", []), name
        assert board.get("refresh") == "10s", name
        assert board.get("time", {}).get("from") and board["time"].get("to"), name
        assert isinstance(board.get("schemaVersion"), int) and board["schemaVersion"] >= 36, name
        assert board.get("id") is None, f"{name}: provisioned dashboards carry no database id"


def test_uids_and_titles_are_unique_across_dashboards() -> None:
    uids = [board["uid"] for board in dashboards().values()]
    titles = [board["title"] for board in dashboards().values()]
    assert len(set(uids)) == len(uids), uids
    assert len(set(titles)) == len(titles), titles


def test_panel_ids_are_unique_within_a_dashboard_and_panels_are_placed() -> None:
    for name, board in dashboards().items():
        ids = [panel.get("id") for panel in all_panels(board)]
        assert None not in ids, f"{name}: a panel has no id"
        assert len(set(ids)) == len(ids), f"{name}: repeated panel ids {ids}"
        for panel in all_panels(board):
            grid = panel.get("gridPos", {})
            assert {"x", "y", "w", "h"} <= set(grid), f"{name}: {panel.get('title')} has no gridPos"
            assert grid["x"] + grid["w"] <= 24, f"{name}: {panel.get('title')} is wider than the grid"
            if panel.get("type") == "row" and not panel.get("collapsed"):
                assert not panel.get("panels"), f"{name}: an open row holds panels: {panel['title']}"


def test_the_provisioned_datasource_has_the_uid_the_dashboards_use() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert {"uid": DATASOURCE_UID, "type": "prometheus"}.items() <= provisioned[0].items()


def test_every_panel_reads_the_provisioned_datasource_with_refids() -> None:
    datasource = {"type": "prometheus", "uid": DATASOURCE_UID}
    for name, board in dashboards().items():
        for panel in data_panels(board):
            where = f"{name}: panel {panel.get('title')!r}"
            assert panel.get("datasource") == datasource, where
            targets = panel.get("targets")
            assert targets, f"{where} has no targets"
            for target in targets:
                assert target.get("datasource") == datasource, where
                assert target.get("refId"), f"{where}: a target has no refId"
                assert target.get("expr"), f"{where}: target {target['refId']} has no expression"
            ref_ids = [target["refId"] for target in targets]
            assert len(set(ref_ids)) == len(ref_ids), f"{where}: repeated refIds {ref_ids}"
        for annotation in query_annotations(board):
            assert annotation.get("datasource") == datasource, f"{name}: annotation {annotation['name']}"
        for variable in variables(board).values():
            if variable.get("type") == "query":
                assert variable.get("datasource") == datasource, f"{name}: variable {variable['name']}"


def test_every_variable_used_is_defined() -> None:
    for name, board in dashboards().items():
        defined = set(variables(board))
        # Everything but the variables' own settings (their current value may be $__all).
        uses = [{key: value for key, value in board.items() if key != "templating"}, *variable_queries(board)]
        for variable, text in used_variables(uses):
            builtin = variable in DEFAULT_VALUES or variable in BUILTIN_LINK_VARIABLES
            assert variable in defined or (variable.startswith("__") and builtin), (
                f"{name}: ${variable} is not defined (in {text!r})"
            )


def test_operator_pack_and_site_variables() -> None:
    for name in ("operations-overview", "violations", "operator-compliance"):
        defined = variables(dashboards()[name])
        assert {"operator", "pack", "site"} <= set(defined), name
        assert defined["operator"]["type"] == "query"
        assert "operator_id" in defined["operator"]["definition"]
        assert defined["pack"]["type"] == "query"
        assert "policy_pack" in defined["pack"]["definition"]
        # Sites are no metric label (series stay bounded): the site feeds the API links only.
        assert defined["site"]["type"] in {"textbox", "custom"}
        assert "not a metric label" in defined["site"]["description"].lower()
    for name, board in dashboards().items():
        for title, expr in raw_expressions(board):
            assert "site" not in {variable for variable, _ in used_variables(expr)}, f"{name}: {title}"
            assert "site_id" not in expr, f"{name}: {title}: site_id is no metric label"


def test_dashboards_link_to_each_other_and_to_the_api() -> None:
    uids = {board["uid"] for board in dashboards().values()}
    for name, board in dashboards().items():
        urls = [link.get("url", "") for link in board.get("links", [])]
        assert f"{API}/docs" in urls, name
        linked = {url.removeprefix("/d/").split("?")[0] for url in urls if url.startswith("/d/")}
        assert linked <= uids, f"{name}: links to unknown dashboards {linked - uids}"
        assert linked == uids - {board["uid"]}, f"{name}: does not link to every other dashboard"
    violations = [link["url"] for link in dashboards()["violations"]["links"]]
    assert any(url.startswith(f"{API}/v1/violations?operator_id=") for url in violations)


def test_the_metric_name_set_matches_what_prometheus_client_exposes() -> None:
    names = exposed_metric_names()
    for family in fresh_registry().collect():
        for sample in family.samples:
            assert sample.name in names, sample.name
    assert "frtwatch_processor_violations_total" in names
    assert "frtwatch_processor_detection_latency_seconds_bucket" in names
    assert "frtwatch_processor_ruleset_info" in names
    assert "frtwatch_sink_log_entries" in names
    assert "frtwatch_processor_violations" not in names


def test_every_metric_named_exists() -> None:
    names = exposed_metric_names()
    for name, board in dashboards().items():
        texts = [expr for _, expr in raw_expressions(board)] + list(variable_queries(board))
        for text in texts:
            for metric in METRIC.findall(text):
                assert metric in names, f"{name}: {metric} is not in stream_processors/metrics.py ({text!r})"


def test_every_selector_matches_labels_the_metric_has() -> None:
    labels = metric_labels()
    for name, board in dashboards().items():
        for title, expr in raw_expressions(board):
            for metric, matchers in SELECTOR.findall(expr):
                if metric not in labels:
                    continue  # test_every_metric_named_exists names it
                unknown = set(MATCHER.findall(matchers)) - labels[metric]
                assert not unknown, f"{name}: {title}: {metric} has no label {unknown}"


def test_every_metric_is_on_some_dashboard() -> None:
    used = {
        metric
        for board in dashboards().values()
        for _, expr in raw_expressions(board)
        for metric in METRIC.findall(expr)
    }
    families = {family.name for family in fresh_registry().collect()}
    unused = {family for family in families if not any(metric.startswith(family) for metric in used)}
    assert not unused, f"metrics on no dashboard: {sorted(unused)}"


def test_panel_expressions_substitutes_every_variable() -> None:
    found = panel_expressions()
    assert {name for name, _, _ in found} >= set(REQUIRED)
    for name, title, expr in found:
        assert "$" not in expr and "$" not in title, (name, title, expr)
    chosen = panel_expressions({"operator": "op-1", "__rate_interval": "2m"})
    assert any('operator_id=~"op-1"' in expr for _, _, expr in chosen)
    assert any("[2m]" in expr for _, _, expr in chosen)
    with pytest.raises(KeyError):
        substitute("rate(x[$nowhere])", DEFAULT_VALUES)


def test_promtool_parses_every_expression(tmp_path: Path) -> None:
    found = panel_expressions()
    result = promtool_check([expr for _, _, expr in found], tmp_path)
    report = "\n".join(f"expr_{n}: {name} / {title}: {expr}" for n, (name, title, expr) in enumerate(found))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\n{report}"
    assert f"SUCCESS: {len(found)} rules found" in result.stdout


def test_promtool_check_fails_on_a_syntax_error(tmp_path: Path) -> None:
    result = promtool_check(["sum(rate(frtwatch_processor_events_consumed_total[1m])"], tmp_path)
    assert result.returncode != 0
    assert "expr_0" in result.stdout + result.stderr or "parse error" in result.stdout + result.stderr
