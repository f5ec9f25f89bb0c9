"""The faust app, run by `frtwatch process` (which also installs the compiled judge, frtwatch/compiled.py).

Thin wiring around pure parts:
- the router (stream_processors.router) reads frt.events.v1 (keyed by device) in batches and
  re-keys it by operator onto the judge's lanes, a topic of this app: an operator's devices,
  consents and registry then meet in one lane, where their facts live. It also sends every
  lane progress marks, from which each lane's event time follows.
- the ``judge_lane`` agent admits each event (signature, time, duplicates, seq), updates the
  facts and runs the rule engine (stream_processors.judge), publishing violations keyed by
  operator_id and refusals to frt.deadletter.v1.
A timer lets wall-clock time close grace periods while every source is caught up. State lives
in a changelogged table, so a restarted worker recovers it; processing is at-least-once, and
violation ids are deterministic, so a replay never yields a different violation. A lanes' new
owner reads back what a crashed one published and had not journalled yet
(stream_processors.readback); records of a lane faust skips are read and judged by the worker
itself (stream_processors.lane_gaps); a worker that stops reading part of its input starts over
(stream_processors.watchdog); long-lived state is kept out of the garbage collector's full
collections (stream_processors.gc_pauses).
"""

import asyncio
import atexit
import logging
import shutil
import signal
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import faust
import msgspec
from faust.utils.terminal import SpinnerHandler
from prometheus_client import REGISTRY

from contracts import topics
from contracts.bundle import Bundle
from contracts.keyring import Keyring
from contracts.records import Violation
from contracts.timestamps import parse_timestamp
from core.kafka_security import Role
from core.metrics_server import serve
from core.settings import Settings
from stream_processors.admission import Gate, load_keys
from stream_processors.alerts import AlertPusher
from stream_processors.fetch_wait import shorten_lane_fetch_wait
from stream_processors.gc_pauses import Collector
from stream_processors.journal import Journal
from stream_processors.judge import Judge
from stream_processors.lane_gaps import judged_already, read_skipped, resume_offsets, skipped
from stream_processors.metrics import AlertMetrics, ProcessorMetrics
from stream_processors.outbox import Outbox
from stream_processors.outputs import Source, dead_letter_value, violation_value
from stream_processors.readback import published_since
from stream_processors.reload import PackWatcher
from stream_processors.router import Router
from stream_processors.rules.pack import available_packs, load_packs
from stream_processors.watchdog import LaneWatch, RecoveryWatch, start_over


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


settings = Settings.from_env(kafka_role=Role.PROCESSOR)  # every Kafka client here: the processor's
# Worker-local scratch (the tables' state is in memory and in their changelog topics).
_scratch = tempfile.mkdtemp(prefix="worker-", dir=_mkdir(settings.home / "processor"))
atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
app = faust.App(
    "frtwatch-processor",
    broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
    broker_credentials=settings.kafka_security.faust_credentials(),
    store="memory://",
    processing_guarantee="at_least_once",
    broker_commit_interval=1.0,  # less to repeat after a crash than faust's 2.8 s
    broker_session_timeout=10.0,  # a crashed worker's lanes move after 10 s, not faust's 60 s
    topic_partitions=settings.events_partitions,
    topic_replication_factor=min(3, settings.brokers),
    key_serializer="raw",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    producer_linger_ms=5,  # let aiokafka batch what the agents send
    producer_max_batch_size=256 * 1024,  # the outbox batches violations by the hundred: not 16 KiB
    web_enabled=False,  # `frtwatch process` also passes --without-web; metrics get their own server
    web_bind="127.0.0.1",
    datadir=_scratch,
)
by_operator = app.topic(topics.LANES, partitions=settings.events_partitions, internal=True)
accepted_topic = app.topic(topics.ACCEPTED, partitions=settings.events_partitions, internal=True)


state_table = app.Table("judge-state", partitions=settings.events_partitions, key_type=str, value_type=str)


encode_json = msgspec.json.Encoder().encode
# Journal records not yet handed to the producer: (partition, key, stored value or None).
_unsent: list[tuple[int, str, str | None]] = []


def _write_state(partition: int, key: str, value: str | None) -> None:
    """One journal record to the table now, and to its changelog by ``persist``."""
    stored = None if value is None else f"{partition}|{value}"
    if stored is None:
        state_table.data.pop(key, None)
    else:
        state_table.data[key] = stored
    _unsent.append((partition, key, stored))


# Every output waits here until the journal records that cover it are added after it.
outbox = Outbox(lambda: app.producer._ensure_producer())  # type: ignore[attr-defined]  # aiokafka's, under faust's


async def persist() -> None:
    """Hand the outputs gathered so far, then the journal's new records, to the producer
    before the offsets they cover can be committed. Not through faust's send_changelog: its
    buffer's flush gives up after 0.1 s without a send, so faust could commit an offset whose
    journal records were still buffered, and a kill -9 then lost them (facts, published ids).
    Records handed to the producer itself are flushed by faust's commit before it commits."""
    topic = state_table.changelog_topic.get_topic_name()
    records = _unsent.copy()
    _unsent.clear()
    for partition, key, stored in records:  # JSON strings, as faust reads a str table back
        outbox.add(topic, encode_json(key), None if stored is None else encode_json(stored), partition)
    await outbox.send()


pack_names = list(settings.packs) or available_packs()
packs = load_packs(pack_names, settings.pack_extensions)
watcher = PackWatcher(pack_names, settings.pack_extensions)
log = logging.getLogger("frtwatch.processor")
metrics = ProcessorMetrics(REGISTRY)
metrics.packs_active(packs)
pusher = (
    AlertPusher(
        settings.alert_push_url,
        settings.evidence_url,
        AlertMetrics(REGISTRY),
        # An alert lives as long as its verdict may be revised, and an hour more (alerts.py).
        active_for=timedelta(hours=settings.revision_hours + 1),
    )
    if settings.alert_push_url
    else None
)
journal = Journal(_write_state)
# The journal bounds the dedup and publication windows (None: the gate and judge keep no order).
gate = Gate(
    # Fail closed: without a registry no source has a key, so only the operators named unsigned pass.
    load_keys(settings.keys_file) if settings.keys_file else Keyring(),  # read again when it changes
    unsigned_operators=settings.unsigned_operators,
    seen=journal.seen,
    last_seq=journal.last_seq,
    dedup_window=None,
)
judge = Judge(
    packs,
    gate,
    facts=journal.facts,
    pending=journal.pending,
    published=journal.published,
    published_window=None,
    grace=timedelta(seconds=settings.grace_seconds),
    horizon=timedelta(hours=settings.revision_hours),
    # The worker's evidence for revisions, split among the lanes it may hold (each has an engine).
    evidence_limit=settings.revision_evidence // settings.events_partitions,
    # Input sources are the partitions of frt.events.v1 (a judged event's origin is partition:offset).
    sources=tuple(str(partition) for partition in range(settings.events_partitions)),
    marks_only=True,
)


# Outputs go to the outbox, and from there to the producer by ``persist``, batched: faust's
# per-message machinery (its send buffer) cost more than the judging when a bundle yields many
# violations. Faust's offset commit flushes the producer first, so nothing is committed before
# its outputs are acknowledged.
def publish(violations: list[Violation]) -> None:
    for violation in violations:
        outbox.add(topics.VIOLATIONS, violation.operator_id.encode(), violation_value(violation))
        metrics.violation(violation)
        if pusher is not None:
            pusher.offer(violation)


def dead_letter(raw: bytes, reason: str, source: Source) -> None:
    outbox.add(topics.DEADLETTER, None, dead_letter_value(raw, reason, source))
    metrics.dead_letter(reason)


router: Router | None = None  # this worker's, once its task runs
lane_watch = LaneWatch(settings.stall_seconds)
# Lanes recovered whose first record since is still to come: faust resumes a lane where its
# group committed, and the records from the journal's stamp to there are read by the worker.
resuming: set[int] = set()
rebuilding = asyncio.Lock()  # held while the judge's state is rebuilt (its lanes wait meanwhile)


@app.task
async def route() -> None:
    global router
    # The internal topics exist, with their partitions, before anything is sent to them.
    await by_operator.maybe_declare()
    await accepted_topic.maybe_declare()
    router = Router(
        app.producer,
        settings.bootstrap_servers,
        topics.LANES,
        settings.events_partitions,
        "frtwatch-router",
        metrics,
        settings.kafka_security,
    )
    await router.run()


def lane_key(lane: int) -> bytes:
    """Accepted events keep their lane's order in one partition, however many it has."""
    return str(lane).encode()


# A bundle is judged, sent and journalled whole before the timer or a pack reload may touch the
# judge: they would otherwise journal part of its state under their own records.
judging = asyncio.Lock()


@app.agent(by_operator)
async def judge_lane(stream: Any) -> None:
    async for event in stream.events():
        lane, offset = event.message.partition, event.message.offset
        lane_watch.heard(lane)
        async with judging:
            if judged_already(journal.judged, lane, offset):
                continue
            missed = skipped(journal.judged, lane, offset)
            if missed:
                await judge_skipped(lane, missed, lane in resuming)
            resuming.discard(lane)
            await judge_bundle(lane, offset, event.value)


async def judge_bundle(lane: int, offset: int, value: bytes) -> None:
    """One record of a lane, judged, sent and journalled (the caller holds ``judging``)."""
    bundle = Bundle.decode(value)
    judge.expect(lane, {str(source[1]) for source, _ in bundle.items})
    accepted = Bundle()  # for the audit log: the contract's fields only
    for source, raw in bundle.items:
        # The source position names the message, so a redelivery is not taken for a replay.
        verdict = judge.judge(raw, f"{source[1]}:{source[2]}", lane)
        if verdict.accepted is not None:
            accepted.add(source, encode_json(verdict.accepted))
            metrics.accepted(verdict.accepted)
        for problem in verdict.problems:
            dead_letter(raw, f"{problem.reason}: {problem.detail}", source)
        if verdict.violations:
            publish(verdict.violations)
    if accepted.items:
        outbox.add(topics.ACCEPTED, lane_key(lane), accepted.encode())
    for partition, reached, caught_up_at in bundle.marks:
        reached_at = parse_timestamp(reached) if reached else None
        caught_up = datetime.fromtimestamp(caught_up_at, UTC) if caught_up_at else None
        publish(judge.mark(lane, str(partition), reached_at, caught_up))
    journal.commit(lane, offset)
    now_ms = int(time.time() * 1000)
    if lane in recovered and journal.stamp_due((lane,), now_ms, STAMP_MS):
        journal.stamp((lane,), now_ms)  # after the bundle's own records, in its partition
    await persist()


async def judge_skipped(lane: int, missed: range, resumed: bool) -> None:
    """Records faust did not hand over (stream_processors.lane_gaps): read and judged first."""
    first, last = missed.start, missed.stop - 1
    if resumed:
        log.info(
            "lane %d: judging offsets %d to %d from the journal's stamp on, read by the worker",
            lane,
            first,
            last,
        )
    else:
        log.warning(
            "lane %d: faust skipped offsets %d to %d; the worker reads and judges them", lane, first, last
        )
    topic = by_operator.get_topic_name()
    records = await read_skipped(settings.bootstrap_servers, settings.kafka_security, topic, lane, missed)
    metrics.lane_records_skipped.inc(len(records))
    for offset, value in records:
        await judge_bundle(lane, offset, value)


# The lanes whose state this worker has recovered, and stamps in the journal: a busy lane at
# the end of a bundle at most every STAMP_MS (its records go out with the bundle's), an idle
# one from the timer (whose sends, made holding the judging lock, must not wait on busy ones).
recovered: set[int] = set()
STAMP_MS, IDLE_STAMP_MS = 1_000, 5_000


@app.timer(interval=1.0)
async def close_quiet_grace_periods() -> None:
    async with judging:
        await publish_decided(judge.tick())
        now_ms = int(time.time() * 1000)
        idle = journal.stamp_due(recovered, now_ms, IDLE_STAMP_MS)
        if idle:  # between bundles: every violation handed to the producer is journalled now
            journal.stamp(idle, now_ms)
            await persist()


async def publish_decided(violations: list[Violation]) -> None:
    """Publish what was decided outside a bundle (waiting events), journalled in their lanes."""
    by_event: dict[str, list[str]] = {}
    for violation in violations:
        by_event.setdefault(violation.event_ids[0], []).append(violation.revision_id)
    publish(violations)
    journal.commit_decided(by_event, int(time.time() * 1000))
    await persist()


collector = Collector()


@app.timer(interval=5.0)
async def report_revision_reach() -> None:
    engines = list(judge.engines.values())
    metrics.revision_reach(
        {
            "beyond_horizon": sum(e.stats.beyond_horizon for e in engines),
            "beyond_evidence": sum(e.stats.beyond_evidence for e in engines),
        },
        sum(len(e.evidence) for e in engines if e.evidence is not None),
    )


@app.timer(interval=1.0)
async def keep_collections_short() -> None:
    """See stream_processors.gc_pauses."""
    collector.tick()


@app.timer(interval=2.0)
async def reload_packs_when_changed() -> None:
    if watcher.changed():
        await reload_packs()


async def reload_packs() -> None:
    def failed(error: str) -> None:
        log.error("pack reload failed, keeping the running packs: %s", error)
        metrics.pack_reloads.labels("failure").inc()

    new = watcher.reload(failed)
    if new is not None:
        async with judging:
            await publish_decided(judge.swap_packs(new))
        metrics.pack_reloads.labels("success").inc()
        metrics.packs_active(new)
        log.warning("packs reloaded: %s", ", ".join(f"{p.name} {p.ruleset_hash}" for p in new))


@app.task
async def log_at_the_chosen_level() -> None:
    """faust's worker lowers the root logger to DEBUG so that its start-up spinner turns on every
    record; left so, aiokafka builds a debug record for every message sent (8% of the worker's
    time). The spinner is done once tasks run."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, SpinnerHandler)]:
        root.removeHandler(handler)
    root.setLevel(min((h.level for h in root.handlers), default=logging.WARNING) or logging.WARNING)


@app.task
async def say_who_may_send() -> None:
    if settings.keys_file is None:
        log.warning(
            "no key registry (FRTWATCH_KEYS_FILE): every signed event is refused; unsigned events "
            "are admitted only from %s",
            ", ".join(settings.unsigned_operators) or "no operator (FRTWATCH_UNSIGNED_OPERATORS)",
        )


@app.task
async def hold_lane_fetches_briefly() -> None:
    """See stream_processors.fetch_wait."""
    await shorten_lane_fetch_wait(app.consumer)


@app.task
async def start_over_when_stuck() -> None:
    """See stream_processors.watchdog: a stuck recovery, or a lane that stopped delivering."""
    recovery_watch = RecoveryWatch(settings.stall_seconds)
    recovery = app.tables.recovery  # type: ignore[attr-defined]  # the manager has one; its interface omits it
    limit = f"{settings.stall_seconds:.0f} s"
    while not app.should_stop:
        await asyncio.sleep(min(5.0, settings.stall_seconds / 4))
        if app.should_stop:
            return
        if recovery.in_recovery or rebuilding.locked():
            lane_watch.assigned()  # a lane's silence while it is recovered does not count
            if recovery_watch.stuck(True, recovery.active_remaining_total()):
                start_over("recovery_stuck", f"table recovery has read nothing for {limit}", _forget_scratch)
        else:
            recovery_watch.stuck(False, 0)
            stuck = lane_watch.stuck(assigned_lanes(), router.marked_at if router else 0.0)
            if stuck:
                start_over(
                    "lane_stuck",
                    f"lanes {stuck} delivered nothing for {limit}, though marked",
                    _forget_scratch,
                )


def _forget_scratch() -> None:
    shutil.rmtree(_scratch, ignore_errors=True)


def assigned_lanes() -> set[int]:
    lanes = by_operator.get_topic_name()
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == lanes}


@app.task
async def push_alerts() -> None:
    if pusher is not None:
        await pusher.run()


@app.task
async def serve_metrics() -> None:
    serve(REGISTRY, settings.processor_metrics_port, "processor", settings.metrics_host)


@app.task
async def reload_packs_on_sighup() -> None:
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGHUP, lambda: asyncio.ensure_future(reload_packs())
    )


@app.on_partitions_revoked.connect
async def forget_everything_until_recovered(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    """Partitions are moving: hold no state (the timer must not decide another worker's
    events) until recovery rebuilds it for the new assignment. Faust has let the agent finish
    its bundle by now; the lock waits for a timer tick in progress. The lanes are stamped
    first, so each owner after the rebalance (this worker too) goes on from where their
    judging stands rather than from an older stamp (stream_processors.lane_gaps)."""
    async with judging:
        journal.stamp(recovered, int(time.time() * 1000))
        await persist()
        recovered.clear()
        resuming.clear()
        journal.recover({})
        judge.rebuild()


@state_table.on_recover
async def rebuild_engine() -> None:
    """After every rebalance: the state of exactly the partitions this worker now owns (the
    store may still hold records of partitions that moved to another worker)."""
    try:
        async with rebuilding:
            await rebuild(assigned_lanes())
    except Exception:  # faust drops a recovery callback's error unseen, and judging on would be wrong
        if app.should_stop:
            return  # the worker is stopping (its producer may be gone already): nothing to judge
        log.exception("rebuilding the judge's state failed")
        start_over("rebuild_failed", "rebuilding the judge's state failed", _forget_scratch)
    lane_watch.assigned()


async def rebuild(mine: set[int]) -> None:
    records = {}
    for key, stored in list(state_table.data.items()):
        partition, value = str(stored).split("|", 1)
        if int(partition) in mine:
            records[key] = (int(partition), value)
    async with judging:
        journal.recover(records)
        # What a crashed owner published and had not journalled yet must not be published again.
        found = await published_since(
            settings.bootstrap_servers,
            settings.kafka_security,
            journal.journalled_until(mine),
            mine,
            settings.events_partitions,
        )
        journal.journal_published(found, int(time.time() * 1000))
        await publish_decided(judge.rebuild())
        unstamped = mine - journal.judged.keys()
        journal.judge_from(
            await resume_offsets(
                settings.bootstrap_servers,
                settings.kafka_security,
                app.conf.id,
                by_operator.get_topic_name(),
                unstamped,
            )
        )
        resuming.update(mine)
        recovered.update(mine)
        journal.stamp(recovered, int(time.time() * 1000))
        await persist()
