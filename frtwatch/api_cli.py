"""`frtwatch api ...`: serve the regulators' API and manage who may use it."""

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from core.kafka_security import Role
from core.settings import Settings

api_app = typer.Typer(help="The regulators' HTTP API over the audit log.", no_args_is_help=True)
console = Console(stderr=True)
log = logging.getLogger("frtwatch.api")
AccessFileOption = Annotated[
    Path | None, typer.Option(help="Default: FRTWATCH_API_ACCESS, or HOME/api-access.yaml.")
]


@api_app.command("serve")
def api_serve(
    port: Annotated[int | None, typer.Option(help="Port (default FRTWATCH_API_PORT, 8088).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 only inside a container).")] = (
        "127.0.0.1"
    ),
    sink: Annotated[
        bool | None,
        typer.Option(
            "--sink/--no-sink",
            help="Run the audit sink in this process. Default: yes with embedded chDB, which lets "
            "one process own its folder; with a ClickHouse server run `frtwatch audit sink` apart.",
        ),
    ] = None,
) -> None:
    """Serve the API (OpenAPI at /openapi.json, docs at /docs) until stopped."""
    import uvicorn
    from kafka.errors import KafkaError
    from prometheus_client import REGISTRY

    from audit.access import AccessError, AccessFile
    from audit.api import Service, create_app
    from audit.checkpoint import CheckpointError, Signer, StatementSigner, statement_key_path
    from audit.limits import Rate
    from audit.metrics import SinkMetrics
    from audit.query_log import QueryLog
    from audit.sink import AuditSink, signed_head_path
    from audit.store import Store
    from core.metrics_server import serve as serve_metrics
    from frtwatch.stack.clickhouse import describe

    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with_sink = settings.clickhouse_url is None if sink is None else sink
    console.print(f"audit log: {describe(settings.clickhouse_dsn)}")  # never its password
    try:
        access = AccessFile(settings.api_access)
        statement_key = statement_key_path(settings.audit_key_file)
        if with_sink:  # one process owns chDB's folder: it holds the log's key too
            signer = Signer.load_or_create(settings.audit_key_file)
            statements = StatementSigner.prepare(signer, statement_key)
        else:  # the sink apart alone holds the log's key; the API signs exports with one it endorsed
            statements = StatementSigner.load(statement_key)
    except (OSError, AccessError, CheckpointError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    try:
        query_log = QueryLog(settings.bootstrap_servers, security=settings.kafka_security_for(Role.API))
    except KafkaError as error:  # no query may go unrecorded, so none is served
        console.print(f"[red]Kafka at {settings.bootstrap_servers} unreachable ({error}): not serving[/red]")
        raise typer.Exit(2) from None
    store = Store(settings.clickhouse_dsn)
    store.migrate()
    stopping = threading.Event()
    sink_failed: list[BaseException] = []
    thread = None
    if with_sink:
        sink_store = Store(settings.clickhouse_dsn)
        sink_store.set_retention(settings.audit_retention_days)
        audit_sink = AuditSink(
            sink_store,
            signer,
            settings.bootstrap_servers,
            settings.kafka_security_for(Role.AUDIT),
            metrics=SinkMetrics(REGISTRY),
            head_file=signed_head_path(settings.audit_key_file),
        )
        serve_metrics(REGISTRY, settings.audit_metrics_port, "audit sink", settings.metrics_host)

        def run_sink() -> None:
            try:
                audit_sink.run(stopping.is_set)
            except BaseException as error:  # the service must not answer from a log nobody writes
                log.exception("the audit sink failed; stopping the API")
                sink_failed.append(error)
                os.kill(os.getpid(), signal.SIGTERM)
            finally:
                sink_store.close()

        thread = threading.Thread(target=run_sink, name="audit-sink", daemon=True)
        thread.start()
    if not settings.api_access.exists():
        console.print(f"no access file at {settings.api_access} yet: every call is refused until "
                      "`frtwatch api token` makes one")  # fmt: skip
    api_port = port or settings.api_port
    console.print(
        f"regulators' API on http://{host}:{api_port} (docs at /docs)"
        + ("; audit sink in this process" if with_sink else "")
    )
    service = Service(
        store,
        access,
        query_log,
        statements,
        rate=Rate(settings.api_rate, settings.api_burst),
        anonymous_rate=Rate(settings.api_anonymous_rate, settings.api_anonymous_burst),
    )
    try:
        uvicorn.run(
            create_app(service),
            host=host,
            port=api_port,
            log_level="warning",
        )
    finally:
        stopping.set()
        if thread is not None:
            thread.join(timeout=60)
        query_log.close()
        service.close()
        store.close()
    if sink_failed:
        raise typer.Exit(1)


@api_app.command("token")
def api_token(
    name: Annotated[str, typer.Argument(help="Who the token is for, as query records will name them.")],
    role: Annotated[
        str, typer.Option(help="regulator, operator, ops or auditor (reads every query record).")
    ],
    jurisdiction: Annotated[str | None, typer.Option(help="A regulator's jurisdiction.")] = None,
    operator: Annotated[str | None, typer.Option(help="An operator principal's operator_id.")] = None,
    access_file: Annotated[
        Path | None, typer.Option(help="Default FRTWATCH_API_ACCESS or HOME/api-access.yaml.")
    ] = None,
) -> None:
    """Make a new token for NAME (replacing any old one) and print it once; only its hash is kept."""
    from audit.access import AccessError, add_principal

    path = access_file or Settings.from_env().api_access
    try:
        print(add_principal(path, name, role, jurisdiction, operator))
    except AccessError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    console.print(f"token for {name} ({role}) stored as a hash in {path}")


@api_app.command("jurisdiction")
def api_jurisdiction(
    name: Annotated[str, typer.Argument(help="The jurisdiction's name.")],
    operators: Annotated[list[str], typer.Argument(help="The operator_ids it covers.")],
    access_file: Annotated[
        Path | None, typer.Option(help="Default FRTWATCH_API_ACCESS or HOME/api-access.yaml.")
    ] = None,
) -> None:
    """Set which operators a jurisdiction covers (its regulators see only these)."""
    from audit.access import AccessError, set_jurisdiction

    path = access_file or Settings.from_env().api_access
    try:
        set_jurisdiction(path, name, operators)
    except AccessError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    console.print(f"jurisdiction {name}: {', '.join(sorted(set(operators)))} ({path})")
