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

from core.kafka_security import Role
from core.settings import Settings

audit_app = typer.Typer(help="The audit log in ClickHouse: sink, schema, exports.", no_args_is_help=True)
console = Console(stderr=True)


@audit_app.command("sink")
def audit_sink(
    batch_rows: Annotated[int, typer.Option(help="Write when this many entries are waiting.")] = 20_000,
    batch_seconds: Annotated[float, typer.Option(help="...or when the oldest has waited this long.")] = 1.0,
    checkpoint_seconds: Annotated[float, typer.Option(help="Sign the tree head this often.")] = 10.0,
    refused_linger_seconds: Annotated[
        float, typer.Option(help="On a log that is not the one signed: keep the metrics up this long.")
    ] = 30.0,
) -> None:
    """Write accepted events, violations and dead letters to the audit log until stopped. At
    start the log is checked against the last signed checkpoint: a mismatch is refused (exit 3)."""
    import time

    from prometheus_client import REGISTRY

    from audit.checkpoint import Signer, StatementSigner, statement_key_path
    from audit.metrics import SinkMetrics
    from audit.sink import AuditSink, LogMismatch, signed_head_path
    from audit.store import Store
    from core.metrics_server import serve as serve_metrics
    from frtwatch.stack.clickhouse import describe

    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    console.print(f"audit sink: {settings.bootstrap_servers} -> {describe(settings.clickhouse_dsn)}")
    store = Store(settings.clickhouse_dsn)
    store.migrate()
    store.set_retention(settings.audit_retention_days)
    signer = Signer.load_or_create(settings.audit_key_file)
    StatementSigner.prepare(signer, statement_key_path(settings.audit_key_file))  # for the API
    sink = AuditSink(
        store,
        signer,
        settings.bootstrap_servers,
        settings.kafka_security_for(Role.AUDIT),
        batch_rows=batch_rows,
        batch_seconds=batch_seconds,
        checkpoint_seconds=checkpoint_seconds,
        metrics=SinkMetrics(REGISTRY),
        head_file=signed_head_path(settings.audit_key_file),
    )
    serve_metrics(REGISTRY, settings.audit_metrics_port, "audit sink", settings.metrics_host)
    try:
        sink.run(lambda: bool(stopping))
    except LogMismatch as error:
        console.print(f"[red]{error}[/red]")
        deadline = time.monotonic() + refused_linger_seconds  # so its metric is scraped and alerts
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.2)
        raise typer.Exit(3) from None
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

    from audit.checkpoint import Signer, StatementSigner, statement_key_path
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

            log_key = Signer.load(settings.audit_key_file)
            statements = StatementSigner.prepare(log_key, statement_key_path(settings.audit_key_file))
            made = export(store, statements, selection, progress)
            with out.open("wb") as file:
                made.write(file, format)
    except (NoCheckpoint, TooLarge) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from None
    finally:
        store.close()
    console.print(f"{made.count} entries written to {out}")


def verify(
    bundle: Annotated[
        Path,
        typer.Argument(
            help="An export: a bundle (.json) or an archive (.zip); with --consistency, a "
            "consistency proof (the JSON of GET /v1/proofs/consistency?from=OLD)."
        ),
    ],
    public_key: Annotated[str, typer.Option(help="The log's public key line, or a file holding it.")],
    consistency: Annotated[
        Path | None,
        typer.Option(help="A checkpoint you kept (its signed note): prove the log only grew since."),
    ] = None,
) -> None:
    """Check an export offline: signatures, every inclusion proof, nothing missing or moved, and
    an archive's table against its bundle. With --consistency OLD.note, check instead that the
    newer checkpoint in a consistency proof extends the one kept."""
    import zipfile

    from audit.bundle import verify_bundle
    from audit.tables import check_table, read_archive

    key = Path(public_key).read_text() if Path(public_key).is_file() else public_key
    if consistency is not None:
        _verify_consistency(consistency, bundle, key)
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


def _verify_consistency(kept: Path, proof: Path, key: str) -> None:
    from audit.consistency import check_consistency

    try:
        old_note, document = kept.read_text(), json.loads(proof.read_bytes())
    except (OSError, ValueError) as error:
        console.print(f"[red]cannot read {kept} or {proof}: {error}[/red]")
        raise typer.Exit(2) from None
    problems = (
        check_consistency(old_note, document, key) if isinstance(document, dict) else ["not a JSON object"]
    )
    for problem in problems:
        print(f"FAIL {problem}")
    if not problems:
        old, new = document["from"]["size"], document["to"]["size"]
        print(f"OK the signed tree of {new} entries extends the one kept of {old}")
    sys.exit(0 if not problems else 1)
