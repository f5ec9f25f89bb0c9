"""The `frtwatch` command."""

import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from core.kafka_security import Role
from core.settings import Settings
from frtwatch.api_cli import api_app
from frtwatch.audit_cli import audit_app, verify
from frtwatch.demo_cli import demo
from frtwatch.keys_cli import keys_app
from frtwatch.query_cli import query_app
from producers.fleet import FleetShape

if TYPE_CHECKING:
    from producers.simulator import Report, Simulation
    from stream_processors.rules.pack import Pack

app = typer.Typer(
    help="frtwatch: audit log and real-time monitor for facial-recognition deployments.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
events_app = typer.Typer(help="Work with contract v1 events.", no_args_is_help=True)
stack_app = typer.Typer(
    help="The local stack: Kafka, Prometheus, Alertmanager, ClickHouse (chDB).", no_args_is_help=True
)
contracts_app = typer.Typer(help="The contract's machine-readable artifacts.", no_args_is_help=True)
rules_app = typer.Typer(
    help="Policy packs: check them, run their examples, judge events offline.", no_args_is_help=True
)
app.add_typer(events_app, name="events")
app.add_typer(stack_app, name="stack")
app.add_typer(contracts_app, name="contracts")
app.add_typer(rules_app, name="rules")
app.add_typer(audit_app, name="audit")
app.add_typer(api_app, name="api")
app.add_typer(keys_app, name="keys")
app.add_typer(query_app, name="query")
app.command("verify")(verify)
app.command("demo")(demo)

console = Console()
errors = Console(stderr=True, soft_wrap=True)

Brokers = Annotated[
    int | None, typer.Option(help="Kafka brokers: 1, or 3 (replication 3, min.insync.replicas 2).")
]
Partitions = Annotated[int | None, typer.Option(help="Partitions of frt.events.v1 (default 6).")]


def _settings(**overrides: object) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except ValueError as error:
        errors.print(f"[red]configuration error:[/] {error}")
        raise typer.Exit(2) from None


@events_app.command("validate")
def events_validate(
    file: Annotated[str, typer.Argument(help="JSON Lines file, one event per line; '-' for stdin.")],
) -> None:
    """Check each line against contract v1: print `ok` or the error; exit 0 only if all are valid."""
    from frtwatch.validate import validate_stream

    if file == "-":
        stream = sys.stdin.buffer
    else:
        try:
            stream = Path(file).open("rb")  # noqa: SIM115 - closed below
        except OSError as error:
            errors.print(f"cannot read {file}: {error.strerror}")
            raise typer.Exit(2) from None
    total = invalid = 0
    out = sys.stdout
    with stream:
        for number, problem in validate_stream(stream):
            total += 1
            if problem is None:
                out.write(f"line {number}: ok\n")
            else:
                invalid += 1
                out.write(f"line {number}: error: {problem}\n")
    errors.print(f"{total} line(s), {total - invalid} valid, {invalid} invalid")
    raise typer.Exit(1 if invalid else 0)


@events_app.command("tail")
def events_tail(
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest event, not the newest.")] = False,
    limit: Annotated[int | None, typer.Option(help="Stop after this many events.")] = None,
) -> None:
    """Print the events arriving on frt.events.v1, decoded, as JSON Lines (invalid ones to stderr)."""
    from kafka import KafkaConsumer

    from contracts import ContractError, decode_event, encode_event, topics

    settings = _settings()
    consumer = KafkaConsumer(
        topics.EVENTS,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        client_id="frtwatch-tail",
        **settings.kafka_security_for(Role.ADMIN).kafka_python(),
    )
    seen = 0
    try:
        for record in consumer:
            try:
                sys.stdout.write(encode_event(decode_event(record.value)).decode() + "\n")
            except ContractError as error:
                errors.print(f"partition {record.partition} offset {record.offset}: {error}")
            sys.stdout.flush()
            seen += 1
            if limit is not None and seen >= limit:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


@stack_app.command("up")
def stack_up(
    brokers: Brokers = None,
    partitions: Partitions = None,
    monitoring: Annotated[bool, typer.Option(help="Also run Prometheus and Alertmanager.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service to become healthy.")] = 120,
) -> None:
    """Start the local stack (idempotent: running services are left as they are)."""
    from frtwatch.stack import LocalStack, StackError

    stack = LocalStack(_settings(brokers=brokers, events_partitions=partitions))
    try:
        with console.status("starting the local stack..."):
            summary = stack.up(monitoring=monitoring, timeout=timeout)
    except StackError as error:
        errors.print(f"[red]stack up failed:[/] {error}")
        raise typer.Exit(1) from None
    _print_summary("frtwatch stack is up", summary)


@stack_app.command("down")
def stack_down() -> None:
    """Stop every service of the local stack, all brokers included (data and logs are kept)."""
    from frtwatch.stack import LocalStack

    stopped = LocalStack(_settings()).down()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack_app.command("status")
def stack_status() -> None:
    """Show which services run, and where the logs and data are."""
    from frtwatch.stack import LocalStack

    _print_summary("frtwatch stack", LocalStack(_settings()).status())


@stack_app.command("topics")
def stack_topics(
    partitions: Partitions = None,
    replicas: Annotated[
        int | None, typer.Option(help="Replication factor (default: 1, or 3 with 3 brokers).")
    ] = None,
) -> None:
    """Create the contract topics on the configured Kafka (FRTWATCH_KAFKA_BOOTSTRAP), if missing."""
    from frtwatch.stack.kafka import create_contract_topics
    from frtwatch.stack.kafka_acls import grant_roles

    settings = _settings(events_partitions=partitions)
    admin = settings.kafka_security_for(Role.ADMIN)
    counts = create_contract_topics(
        settings.bootstrap_servers, settings.events_partitions, replicas or min(3, settings.brokers), admin
    )
    for name, count in counts.items():
        console.print(f"{name}: {count} partition(s)")
    if admin.secure:
        granted = grant_roles(settings.bootstrap_servers, admin)
        console.print(f"{granted} ACLs granted to the roles' principals")


@stack_app.command("kafka-secrets")
def stack_kafka_secrets(
    directory: Annotated[Path, typer.Argument(help="Where to write them (docker-compose: a volume).")],
    host: Annotated[
        list[str] | None, typer.Option(help="A broker host name for the certificate (repeatable).")
    ] = None,
    owner: Annotated[int | None, typer.Option(help="uid to own the files (the broker's user).")] = None,
) -> None:
    """Write a Kafka's SASL/SCRAM-over-TLS secrets once (CA, certificate, passwords, broker files)."""
    from frtwatch.stack.compose import write_compose_secrets

    secrets = write_compose_secrets(directory, tuple(host or ()), owner)
    console.print(
        f"Kafka secrets in {directory}: a password file for each of "
        f"{', '.join(user.username for user in secrets.users)}; CA certificate {secrets.ca_file}"
    )


@stack_app.command("kafka-user")
def stack_kafka_user(
    name: Annotated[str, typer.Argument(help="The SCRAM user: one device or back office, say.")],
    password_file: Annotated[
        Path, typer.Option(help="Its password, in a file (written, random and 0600, if missing).")
    ],
    role: Annotated[Role, typer.Option(help="The role whose rights it gets.")] = Role.DEVICE,
) -> None:
    """Add a Kafka principal with a role's rights (sasl_ssl), as the admin; again: a new password."""
    import secrets

    from frtwatch.stack.kafka_acls import add_principal
    from frtwatch.stack.kafka_secrets import write_private

    settings = _settings()
    if not password_file.exists():
        write_private(password_file, secrets.token_urlsafe(24) + "\n")
    password = password_file.read_text().strip()
    add_principal(settings.bootstrap_servers, settings.kafka_security_for(Role.ADMIN), name, role, password)
    console.print(f"Kafka user {name} has the {role} role's rights; its password is in {password_file}")


@stack_app.command("fetch")
def stack_fetch() -> None:
    """Fetch the pinned Kafka jars from Maven Central into the cache (once)."""
    from frtwatch.stack import StackError
    from frtwatch.stack.kafka import ensure_jars, kafka_version

    try:
        with console.status(f"fetching Apache Kafka {kafka_version()} jars..."):
            libs = ensure_jars()
    except StackError as error:
        errors.print(f"[red]{error}[/]")
        raise typer.Exit(1) from None
    console.print(f"Apache Kafka {kafka_version()} jars in {libs}")


@contracts_app.command("schemas")
def contracts_schemas(
    write: Annotated[bool, typer.Option("--write", help="Regenerate the checked-in files.")] = False,
) -> None:
    """Check (or --write) the JSON Schema files generated from the typed models."""
    from contracts.artifacts import SCHEMA_DIR, generate_schemas, write_schemas

    if write:
        for path in write_schemas():
            console.print(f"wrote {path}")
        return
    stale = [
        name
        for name, text in generate_schemas().items()
        if not (SCHEMA_DIR / name).exists() or (SCHEMA_DIR / name).read_text() != text
    ]
    if stale:
        errors.print(f"out of date: {', '.join(stale)}; run `frtwatch contracts schemas --write`")
        raise typer.Exit(1)
    console.print("schemas match the models")


PackOption = Annotated[
    list[str] | None, typer.Option("--pack", help="A policy pack name or file (repeatable; default: all).")
]
ExtensionsOption = Annotated[
    Path | None, typer.Option(help="A deployment's extension lists (YAML with `lists:`).")
]


def _packs(names: list[str] | None, extensions: Path | None) -> "list[Pack]":
    from stream_processors.rules.pack import PackError, available_packs, load_packs

    try:
        return load_packs(names or available_packs(), extensions)
    except PackError as error:
        errors.print(f"[red]invalid pack:[/] {error}")
        raise typer.Exit(1) from None


@rules_app.command("validate")
def rules_validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Pack files (default: the packs that ship).")
    ] = None,
    extensions: ExtensionsOption = None,
) -> None:
    """Check packs: structure, severities, event types, predicates, lists, explanation fields."""
    packs = _packs([str(p) for p in paths] if paths else None, extensions)
    for pack in packs:
        console.print(f"{pack.name}: {len(pack.rules)} rules, ruleset {pack.ruleset_hash} - ok")


@rules_app.command("test")
def rules_test(pack: PackOption = None, extensions: ExtensionsOption = None) -> None:
    """Run the packs' example sequences; exit 1 if any example's violations differ."""
    from stream_processors.rules.examples import run_all

    outcomes = run_all(_packs(pack, extensions))
    failed = [o for o in outcomes if o.problems]
    for outcome in failed:
        errors.print(f"[red]FAIL[/] {outcome.pack}: {outcome.example}")
        for problem in outcome.problems:
            errors.print(f"    {problem}")
    console.print(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    raise typer.Exit(1 if failed else 0)


@rules_app.command("eval")
def rules_eval(
    file: Annotated[
        str,
        typer.Argument(
            help="Events as JSON Lines, in arrival order; '-' for stdin; or an export archive (.zip), "
            "whose accepted events are judged in log order."
        ),
    ],
    pack: PackOption = None,
    extensions: ExtensionsOption = None,
    keys: Annotated[
        Path | None,
        typer.Option(help="The key registry (`frtwatch keys`, simulate --keys-file): signatures required."),
    ] = None,
    unsigned_operator: Annotated[
        list[str] | None,
        typer.Option(help="With --keys: an operator whose sources without a key may send unsigned (repeat)."),
    ] = None,
    grace: Annotated[float, typer.Option(help="Seconds of event time to wait for late consents.")] = 10.0,
    horizon: Annotated[
        float, typer.Option(help="Hours of event time within which a late fact revises verdicts (0: never).")
    ] = 24.0,
    evidence: Annotated[
        int, typer.Option(help="Decided events kept for revisions, at most (about 0.2 KB each).")
    ] = 2_000_000,
) -> None:
    """Judge events of any date with the pure engine (no Kafka): every violation record to
    stdout as JSON Lines in the order it was made (revisions included: the last record of a
    violation_id is its state), refused inputs to stderr."""
    from datetime import timedelta

    from contracts.records import Violation
    from frtwatch.validate import read_lines
    from stream_processors.admission import Gate, load_keys
    from stream_processors.rules.engine import Engine

    engine = Engine(
        _packs(pack, extensions),
        grace=timedelta(seconds=grace),
        horizon=timedelta(hours=horizon),
        evidence_limit=evidence,
    )
    try:
        # History is judged however old: the live gate's age limit is for live traffic. Times
        # ahead of now are still refused (a device clock running ahead, or a forgery).
        gate = Gate(
            load_keys(keys) if keys else None, unsigned_operators=unsigned_operator or (), max_age=None
        )
    except (OSError, ValueError, KeyError) as error:
        errors.print(f"[red]cannot use keys file {keys}:[/] {error}")
        raise typer.Exit(2) from None
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    refused = total = 0

    def emit(violations: list[Violation]) -> None:
        for violation in violations:
            out.write(encoder.encode(violation) + b"\n")

    with ExitStack() as opened:
        if file.endswith(".zip"):
            lines = _archived_events(Path(file))
        else:
            lines = read_lines(
                sys.stdin.buffer if file == "-" else opened.enter_context(Path(file).open("rb"))
            )
        for number, line in lines:
            total += 1
            if isinstance(line, int):
                refused += 1
                sys.stderr.write(f"line {number}: too_large: {line} bytes\n")
                continue
            admission = gate.admit(line)
            for problem in admission.problems:
                sys.stderr.write(f"line {number}: {problem.reason}: {problem.detail}\n")
            if admission.event is None:
                refused += 1
                continue
            emit(engine.process(admission.event))
    emit(engine.flush_all())
    out.flush()
    stats = engine.stats
    errors.print(
        f"{total} line(s): {total - refused} judged, {refused} refused; {stats.violations} violation(s)"
        f"; {stats.late_events} late event(s); {stats.retractions} retracted, {stats.late_detections} found "
        f"late, {stats.beyond_horizon} fact(s) past the horizon, {stats.beyond_evidence} older than the "
        "evidence kept"
    )


def _archived_events(path: Path) -> Iterator[tuple[int, bytes | int]]:
    """The accepted events of an export archive, in log order, as (number, line)."""
    from audit.tables import read_archive

    try:
        _, rows = read_archive(path)
    except (OSError, ValueError, KeyError) as error:
        errors.print(f"[red]cannot read export archive {path}:[/] {error}")
        raise typer.Exit(2) from None
    events = sorted((int(r["seq"]), str(r["body"])) for r in rows if r.get("entry_kind") == "event")
    for number, (_, body) in enumerate(events, 1):
        yield number, body.encode()


@app.command("simulate")
def simulate(
    rate: Annotated[float, typer.Option(help="Messages per second (Kafka mode).")] = 200.0,
    duration: Annotated[float | None, typer.Option(help="Seconds to run (events = rate x duration).")] = None,
    events: Annotated[int | None, typer.Option(help="Messages to send (default 2,000).")] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same fleet and traffic.")] = 1,
    fleet_seed: Annotated[
        int | None, typer.Option(help="Keep this seed's fleet (and keys), new traffic.")
    ] = None,
    first_seq: Annotated[
        int,
        typer.Option(
            min=0,
            help="Every device's first seq: above an earlier run's for the same fleet, or its events "
            "are refused as seq_backwards.",
        ),
    ] = 0,
    operators: Annotated[
        int, typer.Option(help="Operators (organisations using FRT).")
    ] = FleetShape.operators,
    sites: Annotated[int, typer.Option(help="Sites per operator.")] = FleetShape.sites,
    devices: Annotated[int, typer.Option(help="Devices per site.")] = FleetShape.devices,
    subjects: Annotated[int, typer.Option(help="People per operator.")] = FleetShape.subjects,
    misconfigured: Annotated[
        float, typer.Option(help="Share of devices with a defect.")
    ] = FleetShape.misconfigured_share,
    mix: Annotated[str | None, typer.Option(help="Scenario weights, e.g. 'recognition=60,entry=10'.")] = None,
    bad_share: Annotated[float, typer.Option(help="Share of malformed or hostile messages.")] = 0.0,
    start_time: Annotated[
        str | None, typer.Option(help="Event time of the first message (RFC 3339).")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Kafka topic (default frt.events.v1).")] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write messages to this file, one per line, not Kafka.")
    ] = None,
    ground_truth: Annotated[
        Path | None, typer.Option(help="Write the expected violations here (JSON Lines).")
    ] = None,
    keys_file: Annotated[
        Path | None, typer.Option(help="Enrol the fleet's keys in this key registry (created if need be).")
    ] = None,
) -> None:
    """Simulate a fleet of devices and back offices, with the ground truth of its violations."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from contracts import topics
    from contracts.timestamps import parse_timestamp
    from producers.plan import parse_mix
    from producers.simulator import Simulation, plan, to_file, to_kafka, write_keys

    try:
        sim = Simulation(
            seed=seed,
            fleet_seed=fleet_seed,
            first_seq=first_seq,
            rate=rate,
            bad_share=bad_share,
            shape=FleetShape(
                operators=operators,
                sites=sites,
                devices=devices,
                subjects=subjects,
                misconfigured_share=misconfigured,
            ),
            events=events
            if events is not None
            else round(rate * duration)
            if duration is not None
            else 2_000,
            start=parse_timestamp(start_time) if start_time else None,
            mix=parse_mix(mix) if mix else None,
        )
    except ValueError as error:
        errors.print(f"[red]invalid option:[/] {error}")
        raise typer.Exit(2) from None
    if keys_file:
        write_keys(keys_file, plan(sim)[0])
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f} msg/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=errors) as progress:
        task = progress.add_task("simulating", total=sim.events, rate=0.0)
        began = time.perf_counter()

        def advance(done: int) -> None:
            elapsed = time.perf_counter() - began
            progress.update(task, completed=done, rate=done / elapsed if elapsed else 0.0)

        if output is not None:
            report = to_file(sim, output, ground_truth=ground_truth, progress=advance)
        else:
            settings = _settings()
            report = to_kafka(
                sim,
                settings.bootstrap_servers,
                topic or topics.EVENTS,
                ground_truth=ground_truth,
                progress=advance,
                security=settings.kafka_security_for(Role.DEVICE),
            )
    _print_simulation(sim, report, paced=output is None)
    raise typer.Exit(1 if report.delivery_failures else 0)


def _print_simulation(sim: "Simulation", report: "Report", paced: bool) -> None:
    summary = {
        "messages": f"{report.sent:,}",
        "elapsed": f"{report.elapsed_s:.1f} s",
        "achieved rate": f"{report.achieved_rate:,.0f} msg/s",
    }
    if paced:
        deviation = (report.achieved_rate - sim.rate) / sim.rate * 100
        summary["achieved rate"] += f" (asked {sim.rate:,.0f}, {deviation:+.1f}%)"
    if report.delivery_failures:
        summary["delivery failures"] = f"[red]{report.delivery_failures}[/]"
    summary["expected dead letters"] = (
        ", ".join(f"{k} {v}" for k, v in sorted(report.dead_letters.items())) or "0"
    )
    if report.violations:
        summary["expected violations"] = ", ".join(f"{k} {v}" for k, v in sorted(report.violations.items()))
    _print_summary("simulation", summary)


@stack_app.command("check")
def stack_check() -> None:
    """Send one example event of every contract type through Kafka and read each back."""
    from frtwatch.roundtrip import produce_examples, read_back

    settings = _settings()
    with console.status("producing the example events and reading them back..."):
        security = settings.kafka_security_for(Role.ADMIN)
        sent = produce_examples(settings.bootstrap_servers, security)
        trips = read_back(settings.bootstrap_servers, sent, security=security)
    table = Table(title=f"example events through {settings.bootstrap_servers}")
    for column in ("type", "event_id", "partition", "offset", "read back"):
        table.add_column(column)
    for trip in trips:
        verdict = "[green]equal[/]" if trip.received == trip.sent else "[red]MISSING OR DIFFERENT[/]"
        table.add_row(
            trip.sent.event_type, trip.sent.event_id, str(trip.partition), str(trip.offset), verdict
        )
    console.print(table)
    failed = sum(trip.received != trip.sent for trip in trips)
    console.print(f"{len(trips) - failed}/{len(trips)} events round-tripped.")
    raise typer.Exit(1 if failed else 0)


def _print_summary(title: str, rows: dict[str, str]) -> None:
    table = Table(title=title, show_header=False)
    for name, value in rows.items():
        table.add_row(name, value)
    console.print(table)


@app.command("process")
def process(
    loglevel: Annotated[str, typer.Option(help="Worker log level: crit, error, warn, info, debug.")] = "warn",
) -> None:
    """Run a stream-processor worker (Kafka settings from FRTWATCH_*; start more for more partitions)."""
    from frtwatch.stack.kafka import create_contract_topics
    from frtwatch.stack.kafka_acls import PROCESSOR_TOPICS

    settings = _settings()
    if settings.keys_file is not None and not settings.keys_file.is_file():
        errors.print(
            f"no key registry at {settings.keys_file} (FRTWATCH_KEYS_FILE): `frtwatch keys enrol` makes it"
        )
        raise typer.Exit(2)
    create_contract_topics(
        settings.bootstrap_servers,
        settings.events_partitions,
        security=settings.kafka_security_for(Role.PROCESSOR),
        names=PROCESSOR_TOPICS,  # those it may see: the admin makes the others
    )
    from frtwatch import compiled
    from stream_processors.app import app as faust_app

    if compiled.enabled() and not compiled.active():
        errors.print("the judge runs interpreted: no build of these sources (run `frtwatch compile`)")
    sys.argv = ["frtwatch process", "worker", "--loglevel", loglevel, "--without-web"]
    faust_app.main()


@app.command("compile")
def compile_judge() -> None:
    """Compile the judge's hot modules with mypyc for these sources (once; see frtwatch/compiled.py)."""
    from frtwatch import compiled

    try:
        with console.status(f"compiling {len(compiled.MODULES)} modules with mypyc (a minute or two)..."):
            target = compiled.build()
    except (RuntimeError, OSError) as error:
        errors.print(f"[red]compile failed; the judge runs interpreted:[/] {error}")
        raise typer.Exit(1) from None
    console.print(f"the judge's modules compiled for these sources, in {target}", soft_wrap=True)


def main() -> None:
    """The console entry point. A Kafka credential found missing only when a client is built
    (no password file yet) ends in one clear line, not a traceback."""
    from core.kafka_security import KafkaSecurityError

    try:
        app(prog_name="frtwatch")
    except KafkaSecurityError as error:
        errors.print(f"[red]Kafka security:[/] {error}")
        sys.exit(2)
