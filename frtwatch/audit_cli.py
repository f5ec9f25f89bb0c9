"""`frtwatch audit ...` and `frtwatch verify`: the audit log from the terminal."""

import json
import logging
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from frtwatch.config import Settings

audit_app = typer.Typer(help="The audit log in ClickHouse: sink, schema, exports.", no_args_is_help=True)
console = Console(stderr=True)


@audit_app.command("sink")
def audit_sink(
    batch_rows: Annotated[int, typer.Option(help="Write when this many entries are waiting.")] = 20_000,
    batch_seconds: Annotated[float, typer.Option(help="...or when the oldest has waited this long.")] = 1.0,
    checkpoint_seconds: Annotated[float, typer.Option(help="Sign the tree head this often.")] = 10.0,
) -> None:
    """Write accepted events, violations and dead letters to the audit log until stopped."""
    from prometheus_client import REGISTRY

    from audit.checkpoint import Signer
    from audit.sink import AuditSink
    from audit.store import Store
    from frtwatch.stack.clickhouse import describe
    from stream_processors.metrics import SinkMetrics
    from stream_processors.metrics import serve as serve_metrics

    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    console.print(f"audit sink: {settings.bootstrap_servers} -> {describe(settings.clickhouse_dsn)}")
    store = Store(settings.clickhouse_dsn)
    store.migrate()
    store.set_retention(settings.audit_retention_days)
    sink = AuditSink(
        store,
        Signer.load_or_create(settings.audit_key_file),
        settings.bootstrap_servers,
        settings.kafka_security,
        batch_rows=batch_rows,
        batch_seconds=batch_seconds,
        checkpoint_seconds=checkpoint_seconds,
        metrics=SinkMetrics(REGISTRY),
    )
    serve_metrics(REGISTRY, settings.audit_metrics_port, "audit sink", settings.metrics_host)
    try:
        sink.run(lambda: bool(stopping))
    finally:
        store.close()
        console.print(f"audit sink stopped: {sink.stats}")


@audit_app.command("migrate")
def audit_migrate(
    down_to: Annotated[
        int | None, typer.Option(help="Reverse migrations above this version (0: all).")
    ] = None,
    status: Annotated[
        bool, typer.Option(help="Only list the migrations and whether each is applied.")
    ] = False,
) -> None:
    """Apply the audit schema's migrations (or reverse them with --down-to)."""
    from audit import migrate
    from audit.store import Store

    store = Store(Settings.from_env().clickhouse_dsn)
    try:
        if not status:
            ran = (
                migrate.downgrade(store.client, store.db, down_to)
                if down_to is not None
                else migrate.upgrade(store.client, store.db)
            )
            verb = "reversed" if down_to is not None else "applied"
            for migration in ran:
                console.print(f"{verb} {migration.version:04d} {migration.name}")
        done = migrate.applied(store.client, store.db)
        for migration in migrate.migrations():
            at = done.get(migration.version)
            print(
                f"{migration.version:04d} {migration.name}: {'applied ' + str(at) if at else 'not applied'}"
            )
    finally:
        store.close()


@audit_app.command("public-key")
def audit_public_key() -> None:
    """Print the audit log's public key (what `frtwatch verify` needs)."""
    from audit.checkpoint import CheckpointError, Signer

    try:
        print(Signer.load(Settings.from_env().audit_key_file).vkey())
    except CheckpointError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    format: Annotated[
        str, typer.Option(help="json: the bundle; jsonl, csv, parquet: a zip of the bundle and a table.")
    ] = "json",
    operator: Annotated[str | None, typer.Option(help="Only this operator_id.")] = None,
    kind: Annotated[str | None, typer.Option(help="event, violation, dead_letter or query.")] = None,
    rule: Annotated[str | None, typer.Option(help="Only this rule_id.")] = None,
    violation_id: Annotated[
        str | None, typer.Option("--violation", help="Every record of this violation_id.")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="occurred_at at or after (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="occurred_at before (UTC).")] = None,
) -> None:
    """Export entries with their inclusion proofs and the covering signed checkpoint (straight from
    the store: with chDB, only while no sink or API holds its folder)."""
    from rich.progress import Progress

    from audit.checkpoint import Signer
    from audit.export import FORMATS, NoCheckpoint, TooLarge, export
    from audit.selection import Selection
    from audit.store import Store

    if format not in FORMATS:
        console.print(f"[red]--format must be one of {', '.join(FORMATS)}[/red]")
        raise typer.Exit(2)
    settings = Settings.from_env()
    store = Store(settings.clickhouse_dsn)
    selection = Selection(
        kind=kind, operator_id=operator, rule_id=rule, violation_id=violation_id, since=since, until=until
    )
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("selecting entries", total=None)

            def progress(stage: str, done: int, total: int) -> None:
                bar.update(task, description=stage, completed=done, total=total)

            made = export(store, Signer.load(settings.audit_key_file), selection, progress)
    except (NoCheckpoint, TooLarge) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    finally:
        store.close()
    with out.open("wb") as file:
        made.write(file, format)
    console.print(f"{len(made.rows)} entries written to {out}")


def verify(
    bundle: Annotated[Path, typer.Argument(help="An export: a bundle (.json) or an archive (.zip).")],
    public_key: Annotated[str, typer.Option(help="The log's public key line, or a file holding it.")],
) -> None:
    """Check an export offline: signatures, every inclusion proof, nothing missing or moved, and
    an archive's table against its bundle."""
    import zipfile

    from audit.bundle import verify_bundle
    from audit.tables import check_table, read_archive

    key = Path(public_key).read_text() if Path(public_key).is_file() else public_key
    rows = None
    try:
        if zipfile.is_zipfile(bundle):
            document, rows = read_archive(bundle)
        else:
            document = json.loads(bundle.read_bytes())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        console.print(f"[red]cannot read {bundle}: {error}[/red]")
        raise typer.Exit(2) from None
    result = verify_bundle(document, key)
    problems = result.problems + (check_table(document, rows) if rows is not None and result.ok else [])
    for problem in problems:
        print(f"FAIL {problem}")
    if not problems:
        table = f"; the table's {len(rows)} rows match" if rows is not None else ""
        print(f"OK {result.entries} entries, each included in the signed tree of {result.tree_size}{table}")
    sys.exit(0 if not problems else 1)
