"""`frtwatch demo`: the README's main command (see frtwatch.demo for the pieces)."""

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core.kafka_security import Role
from core.settings import Settings
from frtwatch.stack import LocalStack, StackError
from frtwatch.stack.kafka_secrets import write_private
from frtwatch.stack.webhook import WebhookReceiver

if TYPE_CHECKING:  # the pieces import Kafka and the simulator: only when the demo runs
    from frtwatch.demo import DemoRun, Outputs, Sending

console = Console()
errors = Console(stderr=True, soft_wrap=True)
# After the last message is sent: the processor's grace period and quiet timer (10 s + 3 s)
# pass before its state can be final, then it has until SETTLE_SECONDS to reach the truth.
QUIET_SECONDS = 15.0
SETTLE_SECONDS = 60.0  # a loaded machine's catch-up, a restart's


def demo(
    duration: Annotated[float, typer.Option(help="Seconds of fleet traffic.")] = 60.0,
    rate: Annotated[float, typer.Option(help="Messages per second.")] = 300.0,
    bad_share: Annotated[float, typer.Option(help="Share of malformed or hostile messages.")] = 0.01,
    partitions: Annotated[int | None, typer.Option(help="Partitions of frt.events.v1 (default 6).")] = None,
) -> None:
    """Bring the whole pipeline up, run a city fleet through it with a live summary, and show
    where to look next (the stack keeps running: `make down` stops it)."""
    from frtwatch import demo as pieces

    settings = Settings.from_env(events_partitions=partitions)
    stack = LocalStack(settings)
    try:
        with console.status("starting the local stack (the first run fetches Kafka, about a minute)..."):
            summary = stack.up()
        with console.status("planning this run's fleet and its ground truth..."):
            run = pieces.new_run(settings, rate, duration, bad_share)
        with console.status("starting the processor and the regulators' API (with the audit sink)..."):
            summary |= pieces.start_pipeline(settings, run.keys_file)
    except StackError as error:
        errors.print(f"[red]demo failed:[/] {error}")
        raise typer.Exit(1) from None
    _table("frtwatch is up", summary)
    token_file = settings.home / "demo" / "regulator.token"
    write_private(token_file, pieces.grant_regulator(settings, run.operators) + "\n")

    pages = _webhook()
    outputs = pieces.Outputs(
        settings.bootstrap_servers, set(run.operators), settings.kafka_security_for(Role.ADMIN)
    )  # an operator's view of what the processor publishes
    sending = pieces.Sending(run.sim, settings.bootstrap_servers, settings.kafka_security_for(Role.DEVICE))
    judged = pieces.Throughput()
    console.print(
        f"{len(run.operators)} operators, {run.sim.events:,} messages at {rate:,.0f}/s "
        f"({bad_share:.0%} hostile); every violation the fleet commits is worked out in advance."
    )
    sending.start()
    sent_at = None
    with Live(console=console, refresh_per_second=2) as live:
        while True:
            outputs.read()
            live.update(_view(run, outputs, sending, judged.add(pieces.events_judged(settings)), pages))
            if sending.is_alive():
                continue
            sent_at = sent_at or time.monotonic()
            waited = time.monotonic() - sent_at
            if sending.error or waited > SETTLE_SECONDS:
                break
            if waited >= QUIET_SECONDS and outputs.state() == run.truth:
                break
    console.print()
    outputs.close()
    if pages is not None:
        pages.close()
    if sending.error is not None:
        errors.print(f"[red]the fleet could not send:[/] {sending.error}")
        raise typer.Exit(1)
    state = outputs.state()
    complete = state == run.truth
    console.print(
        "[green]every expected violation found, none more[/] "
        "(the final state: the last record of each violation)"
        if complete
        else "[red]the violations found differ from the ground truth[/]: "
        f"{len(run.truth - state):,} missing, {len(state - run.truth):,} not in it "
        f"(see {settings.logs_dir}/processor.log)"
    )
    _next_steps(settings, token_file, run.operators[0])
    raise typer.Exit(0 if complete else 1)


def _webhook() -> WebhookReceiver | None:
    """The local Alertmanager sends its pages to 127.0.0.1:9099 (deploy/alertmanager)."""
    try:
        return WebhookReceiver(port=9099)
    except OSError:
        return None  # something else listens there: pages go to it


def _view(
    run: "DemoRun",
    outputs: "Outputs",
    sending: "Sending",
    judged: tuple[float, float | None] | None,
    pages: WebhookReceiver | None,
) -> Group:
    found = outputs.found()
    severity = outputs.severities()
    rules = Table(title="violations by rule (open, by the last record of each)", title_justify="left")
    for column in ("rule", "severity", "found", "expected", "retracted", "found late"):
        rules.add_column(column, justify="left" if column in ("rule", "severity") else "right")
    for rule_id in sorted(set(run.expected) | set(found) | set(outputs.retractions)):
        mark = "" if found[rule_id] == run.expected[rule_id] else " …"
        rules.add_row(
            rule_id,
            severity.get(rule_id, ""),
            f"{found[rule_id]:,}{mark}",
            f"{run.expected[rule_id]:,}",
            f"{outputs.retractions[rule_id]:,}",
            f"{outputs.late_detections[rule_id]:,}",
        )
    dead = Table(title="dead letters by reason", title_justify="left")
    dead.add_column("reason")
    dead.add_column("count", justify="right")
    for reason, count in outputs.dead_letters.most_common():
        dead.add_row(reason, f"{count:,}")
    by_severity = outputs.by_severity()
    paged = None  # distinct violations paged to security staff
    if pages is not None:
        paged = len(
            {
                alert["labels"].get("violation_id")
                for notification in pages.received()
                if notification.receiver == "security"
                for alert in notification.alerts()
            }
            - {None}
        )
    status = Text.assemble(
        ("sent ", "bold"),
        f"{sending.sent:,}/{run.sim.events:,}",
        ("   judged ", "bold"),
        _judged(judged),
        ("   violations ", "bold"),
        f"{sum(found.values()):,}/{sum(run.expected.values()):,} "
        + "("
        + ", ".join(f"{s} {c:,}" for s, c in sorted(by_severity.items()))
        + ")",
        ("   revisions ", "bold"),
        f"{sum(outputs.retractions.values()):,} retracted, "
        f"{sum(outputs.late_detections.values()):,} found late "
        f"(by design {_designed(run, 'retraction'):,} and {_designed(run, 'late_detection'):,})",
        ("   dead letters ", "bold"),
        f"{sum(outputs.dead_letters.values()):,}/{run.expected_dead_letters:,}",
        ("   pages ", "bold"),
        f"{paged:,}" if paged is not None else "n/a",
    )
    return Group(status, rules, dead)


def _designed(run: "DemoRun", revision: str) -> int:
    """Revisions the fleet's late facts call for: a verdict decided after its late fact arrived
    (a slow processor) needs none, one decided early (the quiet timer) may need more."""
    return sum(count for (kind, _), count in run.revisions.items() if kind == revision)


def _judged(judged: tuple[float, float | None] | None) -> str:
    if judged is None:
        return "n/a (no processor /metrics)"
    count, rate = judged
    return f"{count:,.0f}" + (f" ({rate:,.0f}/s)" if rate is not None else "")


def _next_steps(settings: Settings, token_file: Path, operator: str) -> None:
    api = f"http://127.0.0.1:{settings.api_port}"
    console.print(
        f"""
[bold]Ask the audit log[/] (a regulator of this run's operators; its token is in a file only you can read):
  export FRTWATCH_API_TOKEN="$(cat {token_file})"
  .venv/bin/frtwatch query violations --operator {operator} --all
  .venv/bin/frtwatch query summary
  .venv/bin/frtwatch query export --kind violation --operator {operator} --format csv -o evidence.zip
  .venv/bin/frtwatch audit public-key > audit.vkey
  .venv/bin/frtwatch verify evidence.zip --public-key audit.vkey
  API docs: {api}/docs

[bold]Watch it[/]: Prometheus http://127.0.0.1:{settings.prometheus_port} (alert rules under /alerts),
  Alertmanager http://127.0.0.1:{settings.alertmanager_port} (the pushed critical and high violations)
[bold]Grafana[/]: on a machine with Docker, `docker compose up -d`, then http://127.0.0.1:3000
  (dashboards provisioned from dashboards/)
[bold]Stop[/]: make down (data and logs stay in {settings.home})""",
        soft_wrap=True,  # commands stay whole lines, to copy
    )


def _table(title: str, rows: dict[str, str]) -> None:
    table = Table(title=title, show_header=False)
    for name, value in rows.items():
        table.add_row(name, value)
    console.print(table)
