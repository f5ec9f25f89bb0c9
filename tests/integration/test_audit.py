"""The audit log with real services: chDB for the schema, and the whole pipeline (simulator,
processor worker, audit sink, Kafka) for exact contents through kill -9 of the sink; the log's
check of itself at sink start, consistency proofs, the API's reads, and exports at 10 M entries."""

import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from audit import migrate
from audit.entries import COLUMNS
from audit.store import Store
from frtwatch.stack.kafka import KafkaCluster
from tests.integration.pipeline import (
    Worker,
    check_audit_log,
    expected,
    fleet_keys,
    simulate,
    wait_for_log,
    wait_for_the_sink,
    wait_for_verdicts,
    wait_until_assigned,
)

SINK = ("audit", "sink", "--batch-rows", "300", "--checkpoint-seconds", "1")


def test_every_migration_applies_and_reverses(tmp_path: Path) -> None:
    store = Store(f"chdb://{tmp_path / 'ch'}")
    try:
        everything = migrate.migrations()
        assert [m.version for m in migrate.upgrade(store.client, store.db)] == [m.version for m in everything]
        tables = {r[0] for r in store.client.query(f"SHOW TABLES FROM {store.db}").result_rows}
        assert {"audit_log", "audit_leaves", "audit_checkpoints", "schema_migrations"} <= tables
        assert migrate.upgrade(store.client, store.db) == []  # nothing left to apply
        reversed_ = migrate.downgrade(store.client, store.db)
        assert [m.version for m in reversed_] == [m.version for m in reversed(everything)]
        tables = {r[0] for r in store.client.query(f"SHOW TABLES FROM {store.db}").result_rows}
        assert tables == {"schema_migrations"} and migrate.applied(store.client, store.db) == {}
        assert len(migrate.upgrade(store.client, store.db)) == len(everything)  # and forwards again
    finally:
        store.close()


def test_violations_logged_before_revisions_read_as_open_originals(tmp_path: Path) -> None:
    """Rows written before migration 0005 have no violation_id or status: each reads as an open
    original of its own violation, and a retraction written after it revises it."""
    import msgspec

    from audit import queries
    from audit.checkpoint import Signer
    from audit.entries import violation
    from audit.merkle import leaf_hash
    from audit.selection import Selection
    from audit.sink import AuditSink
    from contracts import Violation, topics
    from contracts.artifacts import example_violation

    original = msgspec.json.decode(example_violation(), type=Violation)
    store = Store(f"chdb://{tmp_path / 'ch'}")
    try:
        migrate.upgrade(store.client, store.db, target=4)
        old = violation(msgspec.json.encode(original), f"{topics.VIOLATIONS}:0:0")
        before = [c for c in COLUMNS if c not in ("violation_id", "status")]
        store.client.insert(
            f"{store.db}.audit_log",
            [[*old.row(0, datetime.now(UTC))[: len(before)], leaf_hash(old.body)]],
            column_names=[*before, "leaf_hash"],
        )
        assert [m.version for m in migrate.upgrade(store.client, store.db, target=5)] == [5]
        listed, _ = queries.violations(store, Selection(), 10)
        assert [(v["entry_id"], v["status"], v["records"]) for v in listed] == [
            (original.violation_id, "open", 1)
        ]
        sink = AuditSink(store, Signer.load_or_create(tmp_path / "key"), "unused:9092")
        sink.recover()
        retracted = msgspec.structs.replace(
            original, status="retracted", revised_at=original.detected_at, revised_by=["e-late"]
        )
        sink._append(
            [violation(msgspec.json.encode(r), f"{topics.VIOLATIONS}:0:1") for r in (original, retracted)]
        )
        assert sink.stats.repeats == 1  # the original again: already in the log
        listed, _ = queries.violations(store, Selection(), 10)
        assert [(v["entry_id"], v["status"], v["records"]) for v in listed] == [
            (retracted.revision_id, "retracted", 2)
        ]
        history = queries.history(store, Selection(violation_id=original.violation_id))
        assert [h["entry_id"] for h in history] == [original.violation_id, retracted.revision_id]
    finally:
        store.close()


def test_a_crash_between_rows_and_leaves_leaves_no_trace(tmp_path: Path) -> None:
    """The rows land, then (by the materialized view) their leaves: rows whose leaves never
    landed are dropped on recovery, and the replayed batch is written once."""
    from audit.checkpoint import Signer
    from audit.entries import accepted_event
    from audit.sink import AuditSink
    from contracts.artifacts import example_events

    store = Store(f"chdb://{tmp_path / 'ch'}")
    try:
        sink = AuditSink(store, Signer.load_or_create(tmp_path / "key"), "unused:9092")
        sink.recover()
        batch = [accepted_event(raw, f"t:0:{n}") for n, raw in enumerate(example_events().values())]
        sink._append(batch[:3])
        rows = [e.row(3 + n, datetime.now(UTC)) for n, e in enumerate(batch[3:])]
        store.client.insert(f"{store.db}.audit_log", rows, column_names=list(COLUMNS))
        store.client.command(  # their leaves: "crash"
            f"ALTER TABLE {store.db}.audit_leaves DELETE WHERE seq >= 3 SETTINGS mutations_sync = 1"
        )
        again = AuditSink(store, sink.signer, "unused:9092")
        again.recover()
        again._append(batch)  # the replay: the first three are known, the rest written once
        counts = store.client.query(
            f"SELECT count(), count(DISTINCT entry_id), max(seq) FROM {store.db}.audit_log"
        ).result_rows
        assert counts == [(len(batch), len(batch), len(batch) - 1)]
        assert again.stats.repeats == 3 and store.size() == len(batch)
    finally:
        store.close()


def test_the_audit_log_holds_exactly_the_pipeline_output_through_kill_9_of_the_sink(
    kafka_alone: KafkaCluster, tmp_path: Path
) -> None:
    fleet_keys(tmp_path, seed=24)
    worker = Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "worker")
    sinks = [Worker(kafka_alone, tmp_path, tmp_path / "keys.json", "sink-1", SINK)]
    sim = None
    try:
        wait_until_assigned([worker])
        sim = simulate(kafka_alone, tmp_path, seed=24, events=3000, rate=300)
        for n in (2, 3):  # kill -9 the sink twice while entries flow, restart it each time
            wait_for_log(sinks[-1], "checkpoint signed")  # it has written entries
            time.sleep(1)
            sinks[-1].kill()
            sinks.append(Worker(kafka_alone, tmp_path, tmp_path / "keys.json", f"sink-{n}", SINK))
        assert sim.wait(timeout=120) == 0
        wait_for_verdicts(kafka_alone, expected(tmp_path)[0])
        wait_for_the_sink(kafka_alone, sinks[-1], timeout=120)
    finally:
        if sim is not None:
            sim.kill()
        worker.stop()
        for sink in sinks:
            sink.stop()

    violations = check_audit_log(kafka_alone, tmp_path)
    store = Store(f"chdb://{tmp_path / 'data' / 'clickhouse'}")
    try:  # every record of every violation: a revised one has more than one
        records = int(
            store.client.command(f"SELECT count() FROM {store.db}.audit_log WHERE kind = 'violation'")
        )
    finally:
        store.close()
    assert records >= len(violations)

    # A regulator's export verifies offline with the public key; a changed row does not.
    env = {**os.environ, "FRTWATCH_HOME": str(tmp_path)}

    def frtwatch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "frtwatch", *args], env=env, capture_output=True, text=True, timeout=300
        )

    bundle = tmp_path / "violations.json"
    exported = frtwatch("audit", "export", "--kind", "violation", "--out", str(bundle))
    assert exported.returncode == 0, exported.stderr
    key = frtwatch("audit", "public-key").stdout.strip()
    checked = frtwatch("verify", str(bundle), "--public-key", key)
    assert checked.returncode == 0 and checked.stdout.startswith(f"OK {records} entries"), checked.stdout
    document = json.loads(bundle.read_text())
    document["entries"][0]["body"] = document["entries"][0]["body"].replace("FRT-", "FRT-X")
    bundle.write_text(json.dumps(document))
    assert frtwatch("verify", str(bundle), "--public-key", key).returncode == 1


def test_a_write_that_landed_but_reported_failure_is_not_written_twice(tmp_path: Path) -> None:
    """A timeout after the insert: the retry takes the log as it is, so no leaf is doubled
    and the rebuilt tree is the one that was signed."""
    from audit.checkpoint import Signer
    from audit.entries import accepted_event
    from audit.merkle import root
    from audit.sink import AuditSink
    from contracts.artifacts import example_events

    store = Store(f"chdb://{tmp_path / 'ch'}")
    try:
        sink = AuditSink(store, Signer.load_or_create(tmp_path / "key"), "unused:9092")
        sink.recover()
        batch = [accepted_event(raw, f"t:0:{n}") for n, raw in enumerate(example_events().values())]
        real_append = store.append

        def lands_then_fails(*arguments: Any) -> None:
            real_append(*arguments)
            raise TimeoutError("the reply was lost")

        store.append = lands_then_fails  # type: ignore[method-assign]
        try:
            sink._append(batch)
        except TimeoutError:
            sink._write_failed = True  # what _write records before retrying
        store.append = real_append  # type: ignore[method-assign]
        sink._append(batch)
        assert store.size() == len(batch) == sink.frontier.size
        assert store.client.command(f"SELECT count() FROM {store.db}.audit_log") == len(batch)
        assert sink.frontier.root() == root(list(store.leaf_hashes(len(batch))))
    finally:
        store.close()


FILLER = 1_000  # entries of a synthetic log: stored nodes of heights 6 to 9


def _synthetic_log(store: Store, count: int, first: int = 0) -> None:
    """Entries ``first`` .. ``first + count - 1`` written by ClickHouse itself (their leaves by
    the materialized view), as a sink would have written them."""
    store.client.command(
        f"INSERT INTO {store.db}.audit_log (seq, kind, entry_id, operator_id, occurred_at, recorded_at, "
        "source, body, leaf_hash) SELECT number, 'event', concat('filler-', toString(number)), "
        "'op-filler', now64(3), now64(3), 'bench', concat('{\"event_id\":\"filler-', toString(number), "
        "'\"}') AS b, SHA256(concat(char(0), b)) "
        f"FROM numbers({first}, {count})"
    )


@pytest.mark.parametrize("change", ["leaf", "body", "node", "truncated", "checkpoint"])
def test_a_rewritten_log_is_refused_at_sink_start(tmp_path: Path, change: str) -> None:
    """The sink signed a log; the database is changed; a sink started on it refuses to sign,
    naming sizes and roots, and sets its metric. An unchanged log starts again as before."""
    from audit.checkpoint import Signer
    from audit.sink import AuditSink, LogMismatch

    store = Store(f"chdb://{tmp_path / 'ch'}")
    try:
        signer = Signer.load_or_create(tmp_path / "key")
        store.migrate()
        _synthetic_log(store, FILLER)
        sink = AuditSink(store, signer, "unused:9092")
        sink.recover()  # stores the nodes of a log written before them (a backfill)
        sink.checkpoint()
        stored = store.client.command(f"SELECT count() FROM {store.db}.audit_nodes")
        assert stored == 15 + 7 + 3 + 1  # heights 6 to 9
        AuditSink(store, signer, "unused:9092").recover()  # unchanged: accepted
        tamper = {
            "leaf": f"ALTER TABLE {store.db}.audit_leaves UPDATE leaf_hash = SHA256('x') WHERE seq = 700",
            "body": f"ALTER TABLE {store.db}.audit_log UPDATE body = '{{}}' WHERE seq = 5",
            "node": f"ALTER TABLE {store.db}.audit_nodes UPDATE hash = SHA256('x') WHERE height = 9",
            "truncated": f"ALTER TABLE {store.db}.audit_leaves DELETE WHERE seq >= 990",
            "checkpoint": f"ALTER TABLE {store.db}.audit_checkpoints UPDATE note = replaceOne(note, "
            f"'\\n{FILLER}\\n', '\\n{FILLER - 1}\\n') WHERE 1",
        }[change]
        store.client.command(tamper + " SETTINGS mutations_sync = 1")
        again = AuditSink(store, signer, "unused:9092")
        with pytest.raises(LogMismatch, match="refusing to sign") as refused:
            again.recover()
        assert again.metrics.log_mismatch._value.get() == 1
        if change == "leaf":
            assert f"its tree of {FILLER} entries has root" in str(refused.value)
            assert "but its last signed checkpoint of that size has root" in str(refused.value)
        if change == "truncated":
            assert f"fewer than the {FILLER} of its last signed checkpoint" in str(refused.value)
        assert store.client.command(f"SELECT count() FROM {store.db}.audit_checkpoints") == 1  # none signed
    finally:
        store.close()

def test_a_log_rewritten_whole_is_refused_by_the_head_the_sink_kept(tmp_path: Path) -> None:
    """Bodies and leaves rewritten alike, the stored nodes and checkpoints deleted: the database
    alone no longer says what was signed, but the sink's own record beside its key does."""
    from audit.checkpoint import Signer
    from audit.sink import AuditSink, LogMismatch, signed_head_path

    store = Store(f"chdb://{tmp_path / 'ch'}")
    try:
        signer = Signer.load_or_create(tmp_path / "keys" / "audit.key")
        head = signed_head_path(tmp_path / "keys" / "audit.key")
        store.migrate()
        _synthetic_log(store, FILLER)
        sink = AuditSink(store, signer, "unused:9092", head_file=head)
        sink.recover()
        sink.checkpoint()
        assert head.stat().st_mode & 0o077 == 0 and f"\n{FILLER}\n" in head.read_text()
        body, leaf = "'{\"event_id\":\"forged\"}'", "SHA256(concat(char(0), '{\"event_id\":\"forged\"}'))"
        for tamper in [
            f"ALTER TABLE {store.db}.audit_log UPDATE body = {body}, leaf_hash = {leaf} WHERE seq = 5",
            f"ALTER TABLE {store.db}.audit_leaves UPDATE leaf_hash = {leaf} WHERE seq = 5",
            f"ALTER TABLE {store.db}.audit_nodes DELETE WHERE 1",
            f"ALTER TABLE {store.db}.audit_checkpoints DELETE WHERE 1",
        ]:
            store.client.command(tamper + " SETTINGS mutations_sync = 1")
        # Without its record the sink would sign the rewrite as the log (what it did before)...
        assert store.latest_checkpoint() is None
        AuditSink(store, signer, "unused:9092").recover()
        with pytest.raises(LogMismatch, match=f"its tree of {FILLER} entries has root"):
            AuditSink(store, signer, "unused:9092", head_file=head).recover()
        # ...and the record itself cannot be forged without the key.
        head.write_text(head.read_text().replace(f"\n{FILLER}\n", f"\n{FILLER - 1}\n"))
        with pytest.raises(LogMismatch, match="does not verify"):
            AuditSink(store, signer, "unused:9092", head_file=head).recover()
        assert store.latest_checkpoint() is None  # nothing signed over it
    finally:
        store.close()


def test_nodes_lost_in_a_crash_are_stored_again_at_start(tmp_path: Path) -> None:
    from audit.checkpoint import Signer
    from audit.merkle import consistency_proof, inclusion_proof, root
    from audit.sink import AuditSink

    store = Store(f"chdb://{tmp_path / 'ch'}")
    try:
        store.migrate()
        _synthetic_log(store, FILLER)
        sink = AuditSink(store, Signer.load_or_create(tmp_path / "key"), "unused:9092")
        sink.recover()
        store.client.command(
            f"ALTER TABLE {store.db}.audit_nodes DELETE WHERE idx > 0 SETTINGS mutations_sync = 1"
        )
        sink.recover()
        leaves = list(store.leaf_hashes(FILLER))
        tree = store.tree(FILLER - 3)
        assert tree.root() == root(leaves[: FILLER - 3])
        assert tree.inclusion_proofs([600]) == [inclusion_proof(leaves[: FILLER - 3], 600)]
        assert tree.consistency_proof(513) == consistency_proof(leaves[: FILLER - 3], 513)
    finally:
        store.close()


def _signed_log(tmp_path: Path) -> tuple[Store, Any, str]:
    """A log the sink signed at 1000 entries and again at 1700: (store, log key, the note of
    1000 a regulator kept)."""
    from audit.checkpoint import Signer
    from audit.sink import AuditSink

    store = Store(f"chdb://{tmp_path / 'ch'}")
    signer = Signer.load_or_create(tmp_path / "key")
    store.migrate()
    _synthetic_log(store, FILLER)
    sink = AuditSink(store, signer, "unused:9092")
    sink.recover()
    sink.checkpoint()
    _synthetic_log(store, 700, first=FILLER)
    sink.recover()
    sink.checkpoint()
    kept = store.checkpoint_at(FILLER)
    assert kept is not None and store.latest_checkpoint() is not None
    return store, signer, kept


def _verify_consistency(tmp_path: Path, kept: str, document: dict[str, Any], vkey: str) -> Any:
    (tmp_path / "old.note").write_text(kept)
    (tmp_path / "proof.json").write_text(json.dumps(document))
    return subprocess.run(
        [sys.executable, "-m", "frtwatch", "verify", "--consistency", str(tmp_path / "old.note"),
         str(tmp_path / "proof.json"), "--public-key", vkey],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_consistency_proof_shows_the_log_only_grew(tmp_path: Path) -> None:
    from audit.consistency import check_consistency, consistency_document

    store, signer, kept = _signed_log(tmp_path)
    try:
        document = consistency_document(store, FILLER)
        assert document["to"]["size"] == FILLER + 700
        assert check_consistency(kept, document, signer.vkey()) == []
        checked = _verify_consistency(tmp_path, kept, document, signer.vkey())
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert (
            f"OK the signed tree of {FILLER + 700} entries extends the one kept of {FILLER}" in checked.stdout
        )
    finally:
        store.close()


def test_a_rewritten_and_signed_again_log_cannot_prove_consistency(tmp_path: Path) -> None:
    """The worst case: whoever rewrote an entry also signs again (as recovery once did). The
    regulator's kept checkpoint still exposes it: no proof from it reaches the new tree."""
    from audit.checkpoint import ORIGIN, Checkpoint, sign_checkpoint
    from audit.consistency import check_consistency, consistency_document
    from audit.sink import AuditSink

    store, signer, kept = _signed_log(tmp_path)
    try:
        for statement in (
            f"ALTER TABLE {store.db}.audit_leaves UPDATE leaf_hash = SHA256(concat(char(0), 'x')) "
            "WHERE seq = 10",
            f"ALTER TABLE {store.db}.audit_log UPDATE body = 'x' WHERE seq = 10",
            f"TRUNCATE TABLE {store.db}.audit_nodes",
            f"TRUNCATE TABLE {store.db}.audit_checkpoints",
        ):
            store.client.command(statement, settings={"mutations_sync": 1})
        resigning = AuditSink(store, signer, "unused:9092")
        resigning.recover()  # no checkpoint left to compare with: nodes of the rewritten log
        resigning.checkpoint()
        tree = store.tree(FILLER)
        store.add_checkpoint(
            FILLER, tree.root(), sign_checkpoint(signer, Checkpoint(ORIGIN, FILLER, tree.root()))
        )
        document = consistency_document(store, FILLER)
        problems = check_consistency(kept, document, signer.vkey())
        assert problems == [f"two different trees were signed at size {FILLER}: the log was rewritten"]
        document["from"]["note"] = kept  # claim the kept one: the proof cannot reach the new root
        problems = check_consistency(kept, document, signer.vkey())
        assert problems and "does not extend the one kept" in problems[0]
        checked = _verify_consistency(tmp_path, kept, document, signer.vkey())
        assert checked.returncode == 1 and "FAIL" in checked.stdout
    finally:
        store.close()


def test_the_api_serves_proofs_and_exports_while_another_read_is_under_way(
    kafka_alone: KafkaCluster, tmp_path: Path
) -> None:
    """The real API over a signed log: a read held open (as a long export holds its connection)
    keeps no other caller waiting; the consistency route's proof verifies against the kept
    checkpoint; an export verifies with the log's public key though the API holds only the
    statement key."""
    import threading

    import httpx
    import uvicorn

    from audit.access import AccessFile, add_principal, set_jurisdiction
    from audit.api import Service, create_app
    from audit.bundle import verify_bundle
    from audit.checkpoint import StatementSigner, statement_key_path
    from audit.consistency import check_consistency
    from audit.query_log import QueryLog
    from frtwatch.stack.process import free_ports

    store, signer, kept = _signed_log(tmp_path)
    StatementSigner.prepare(signer, statement_key_path(tmp_path / "key"))  # the sink's part
    access = tmp_path / "access.yaml"
    set_jurisdiction(access, "filler", ["op-filler"])
    token = add_principal(access, "reg", "regulator", jurisdiction="filler")
    query_log = QueryLog(kafka_alone.bootstrap_servers)
    service = Service(
        store, AccessFile(access), query_log, StatementSigner.load(statement_key_path(tmp_path / "key"))
    )
    (port,) = free_ports(1)
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    held, release = threading.Event(), threading.Event()

    def long_read() -> None:
        with service.reading():
            held.set()
            release.wait(60)

    reader = threading.Thread(target=long_read)

    def get(path: str, **params: Any) -> httpx.Response:
        return httpx.get(
            f"http://127.0.0.1:{port}{path}",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        reader.start()
        assert held.wait(10)
        answer = get("/v1/checkpoint")  # waited for the held read under the old lock (timed out)
        assert answer.status_code == 200 and answer.json()["size"] == FILLER + 700
        assert answer.json()["public_key"] == signer.vkey()
        proof = get("/v1/proofs/consistency", **{"from": FILLER})
        assert proof.status_code == 200, proof.text
        assert check_consistency(kept, proof.json(), signer.vkey()) == []
        assert get("/v1/proofs/consistency", **{"from": FILLER + 1}).status_code == 404  # never signed
        exported = get("/v1/export", format="json", operator_id="op-filler", since="1970-01-01T00:00:00Z")
        assert exported.status_code == 200, exported.text
        result = verify_bundle(exported.json(), signer.vkey())
        assert result.ok and result.entries == FILLER + 700, result.problems
    finally:
        release.set()
        server.should_exit = True
        reader.join(timeout=10)
        query_log.close()
        service.close()
        store.close()


def test_an_export_at_10m_entries_answers_as_fast_as_at_10k(tmp_path: Path) -> None:
    """The same 1,000 entries (every 10th of the last 10,000) exported from a log of 10 k and
    one of 10 M entries, built in ClickHouse (bench/audit.py): proofs come from stored nodes,
    so the larger log costs only its longer paths (24 hashes an entry, not 14)."""
    from bench.audit import LAST_10K, signed_log, time_export

    seconds = {}
    for size in (10_000, 10_000_000):
        folder = tmp_path / str(size)
        folder.mkdir()
        store, log_key, statements = signed_log(folder, size, LAST_10K.format(size=size))
        try:
            seconds[size], count = time_export(store, log_key, statements)
            assert count == 1_000
        finally:
            store.close()
    small, large = seconds[10_000] * 1000, seconds[10_000_000] * 1000
    print(f"export of 1,000 entries: {small:.0f} ms at 10 k entries, {large:.0f} ms at 10 M")
    assert seconds[10_000_000] < 2 * seconds[10_000]


def test_audit_sink_refuses_a_rewritten_log_shows_it_in_its_metrics_and_exits_3(tmp_path: Path) -> None:
    """`frtwatch audit sink` on a log whose leaf was changed after it was signed: a clear error,
    frtwatch_sink_log_mismatch 1 on its metrics while it lingers (what the alert reads), exit 3,
    and no new checkpoint."""
    import httpx

    from audit.checkpoint import Signer
    from audit.sink import AuditSink
    from frtwatch.stack.process import free_ports

    store = Store(f"chdb://{tmp_path / 'data' / 'clickhouse'}")
    store.migrate()
    _synthetic_log(store, FILLER)
    sink = AuditSink(store, Signer.load_or_create(tmp_path / "keys" / "audit-ed25519.key"), "unused:9092")
    sink.recover()
    sink.checkpoint()
    store.client.command(
        f"ALTER TABLE {store.db}.audit_leaves UPDATE leaf_hash = SHA256('x') WHERE seq = 3",
        settings={"mutations_sync": 1},
    )
    store.close()
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "FRTWATCH_HOME": str(tmp_path),
        "FRTWATCH_AUDIT_METRICS_PORT": str(port),
        "FRTWATCH_KAFKA_BOOTSTRAP": "127.0.0.1:1",  # never reached: it refuses first
    }
    started = subprocess.Popen(
        [sys.executable, "-m", "frtwatch", "audit", "sink", "--refused-linger-seconds", "15"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline, seen = time.monotonic() + 60, ""
        while "frtwatch_sink_log_mismatch 1.0" not in seen:
            assert time.monotonic() < deadline and started.poll() is None, seen[-2000:]
            time.sleep(0.3)
            with contextlib.suppress(httpx.HTTPError):
                seen = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        _, stderr = started.communicate(timeout=60)
    finally:
        started.kill()
    assert started.returncode == 3, stderr
    flat = " ".join(stderr.split())
    assert "refusing to sign over it" in flat and f"its tree of {FILLER} entries has root" in flat, flat
    store = Store(f"chdb://{tmp_path / 'data' / 'clickhouse'}")
    try:
        assert store.client.command(f"SELECT count() FROM {store.db}.audit_checkpoints") == 1
    finally:
        store.close()


def test_api_serve_without_the_sink_needs_no_log_key(kafka_alone: KafkaCluster, tmp_path: Path) -> None:
    """`frtwatch api serve --no-sink` (as beside a ClickHouse server) with only the statement key
    and its endorsement in its home: it serves, and its exports verify with the log's public
    key, which it never had."""
    import signal

    import httpx

    from audit.access import add_principal, set_jurisdiction
    from audit.bundle import verify_bundle
    from audit.checkpoint import Signer, StatementSigner, statement_key_path
    from audit.sink import AuditSink
    from frtwatch.stack.process import free_ports

    store = Store(f"chdb://{tmp_path / 'data' / 'clickhouse'}")
    store.migrate()
    _synthetic_log(store, FILLER)
    log_key = Signer.load_or_create(tmp_path / "the-sinks-host" / "audit-ed25519.key")
    sink = AuditSink(store, log_key, "unused:9092")
    sink.recover()
    sink.checkpoint()
    store.close()
    home_key = tmp_path / "keys" / "audit-ed25519.key"  # where the API would look for the log's key
    StatementSigner.prepare(log_key, statement_key_path(home_key))  # the sink's part, copied over
    set_jurisdiction(tmp_path / "api-access.yaml", "filler", ["op-filler"])
    token = add_principal(tmp_path / "api-access.yaml", "reg", "regulator", jurisdiction="filler")
    (port,) = free_ports(1)
    env = {
        **os.environ,
        "FRTWATCH_HOME": str(tmp_path),
        "FRTWATCH_KAFKA_BOOTSTRAP": kafka_alone.bootstrap_servers,
    }
    served = subprocess.Popen(
        [sys.executable, "-m", "frtwatch", "api", "serve", "--no-sink", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline, answer = time.monotonic() + 90, None
        while answer is None or answer.status_code != 200:
            assert time.monotonic() < deadline and served.poll() is None, (
                served.stdout and served.stdout.read()
            )
            time.sleep(0.3)
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/checkpoint", headers=headers, timeout=5)
        assert answer.json()["public_key"] == log_key.vkey()
        exported = httpx.get(
            f"http://127.0.0.1:{port}/v1/export", params={"format": "json"}, headers=headers, timeout=60
        )
        assert exported.status_code == 200, exported.text
        assert verify_bundle(exported.json(), log_key.vkey()).entries == FILLER
        assert verify_bundle(exported.json(), log_key.vkey()).ok
        assert not home_key.exists()
    finally:
        served.send_signal(signal.SIGTERM)
        served.wait(timeout=60)
