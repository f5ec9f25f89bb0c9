"""The router process's reports, as written by it and taken in by the worker."""

import io

from prometheus_client import CollectorRegistry

from stream_processors.metrics import ProcessorMetrics
from stream_processors.router_process import LineReports, RouterProcess


def test_what_the_router_reports_reaches_the_workers_metrics_and_watchdog() -> None:
    out = io.StringIO()
    reports = LineReports(out)
    reports.dead_letter("invalid_json: not valid JSON: Input data was truncated")
    reports.dead_letter("invalid_json: another")
    reports.lag(4, 1234)
    reports.marked(98765.25)
    registry = CollectorRegistry()
    worker = RouterProcess(ProcessorMetrics(registry))
    for line in out.getvalue().splitlines():
        worker._take(line.split())
    assert registry.get_sample_value("frtwatch_processor_dead_letters_total", {"reason": "invalid_json"}) == 2
    assert registry.get_sample_value("frtwatch_processor_consumer_lag_messages", {"partition": "4"}) == 1234
    assert worker.marked_at == 98765.25


def test_lines_that_are_no_report_change_nothing() -> None:
    registry = CollectorRegistry()
    worker = RouterProcess(ProcessorMetrics(registry))
    for line in ("lag 4 many", "marked soon", "hello", ""):
        worker._take(line.split())
    assert worker.marked_at == 0.0
    assert registry.get_sample_value("frtwatch_processor_consumer_lag_messages", {"partition": "4"}) is None
