"""Audit-log ingest and regulator query latency in embedded chDB; and exports at log size.

    .venv/bin/python -m bench.audit [--rows 10000000] [--batch 20000] [--queries 50]
    .venv/bin/python -m bench.audit --exports [--sizes 10000,10000000] [--before]

Ingest: the sink's write path (drop known ids, number, one insert of the rows that lands their
leaves after them, extend the Merkle tree) over synthetic entries shaped like the pipeline's
(16 operators, 64 devices, 20,000 subjects, a year of event time, a third violations, ~400-byte
bodies), beside the naive path on the same rows: one plain insert into audit_log, no dedup, no
leaves, no tree. Then, with all rows loaded, p50/p95 of the two typical regulator queries (one
operator's violations for a quarter, first page of 1,000 and its count; one subject's whole
history).

Exports (--exports): the same 1,000 entries exported (one JSON bundle, proofs and signed
statement, verified once) from logs of each size, built in ClickHouse itself (numbers(): rows,
their leaves by the materialized view, and the stored nodes level by level), the 1,000 every
10th entry of the last 10,000; then spread over the whole log. --before times the tree the
export used to build over the whole log. Also the sink's start on the log (rebuild and check
it against its checkpoint)."""

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from audit.bundle import verify_bundle
from audit.checkpoint import ORIGIN, STATEMENTS, Checkpoint, Signer, StatementSigner, sign_checkpoint
from audit.entries import COLUMNS, Entry
from audit.export import export
from audit.merkle import STORED_HEIGHT, Tree
from audit.selection import Selection
from audit.sink import AuditSink
from audit.store import Store
from bench.harness import write_results

OPERATORS = [f"op-{n:02d}" for n in range(16)]
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)


def synthetic(rng: random.Random, count: int) -> list[Entry]:
    entries = []
    for _ in range(count):
        operator = rng.choice(OPERATORS)
        device = f"{operator}-cam-{rng.randrange(4)}"
        subject = f"subj-{rng.randrange(20_000):05d}"
        at = YEAR_START + timedelta(seconds=rng.randrange(365 * 86400))
        violation = rng.random() < 0.33
        entry_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        body = json.dumps(
            {
                "id": entry_id,
                "operator_id": operator,
                "device_id": device,
                "subject_ref": subject,
                "occurred_at": at.isoformat(),
                "purpose": "access_control",
                "legal_basis": "consent",
                "explanation": "x" * 220,
            },
            sort_keys=True,
        ).encode()
        entries.append(
            Entry(
                "violation" if violation else "event",
                entry_id,
                operator,
                at,
                body,
                "frt.events.v1:0:0",
                site_id=f"{operator}-site",
                device_id=device,
                subject_ref=subject,
                event_type="violation" if violation else "recognition.performed",
                rule_id="FRT-CONSENT-MISSING" if violation else "",
                severity="high" if violation else "",
                policy_pack="cn-cac-2025" if violation else "",
            )
        )
    return entries


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


def synthetic_log(store: Store, size: int, picked: str) -> None:
    """A log of ``size`` entries written by ClickHouse: the entries where ``picked`` (SQL over
    ``number``, the seq) holds are operator op-bench's (about 330-byte bodies), the rest fill;
    then the nodes the sink stores, level by level (a level: one GROUP BY over the one below)."""
    db = store.db
    store.client.command(
        f"INSERT INTO {db}.audit_log (seq, kind, entry_id, operator_id, occurred_at, recorded_at, source, "
        "body, leaf_hash) SELECT number, 'event', concat(if(picked, 'bench-', 'filler-'), toString(number)), "
        "if(picked, 'op-bench', 'op-filler'), toDateTime64('2026-06-01 00:00:00', 3, 'UTC') + number / 1000, "
        "now64(3), 'bench', concat('{\"event_id\":\"', if(picked, 'bench-', 'filler-'), toString(number), "
        "'\",\"explanation\":\"', repeat('x', if(picked, 300, 20)), '\"}') AS b, SHA256(concat(char(0), b)) "
        f"FROM (SELECT number, {picked} AS picked FROM numbers({size}))"
    )
    below = f"(SELECT seq AS i, leaf_hash AS node FROM {db}.audit_leaves)"
    for height in range(1, size.bit_length()):
        store.client.command(
            f"CREATE TABLE {db}.level_{height} (i UInt64, node FixedString(32)) ENGINE = Memory"
        )
        store.client.command(
            f"INSERT INTO {db}.level_{height} SELECT intDiv(i, 2) AS parent, "
            f"SHA256(concat(char(1), argMin(node, i), argMax(node, i))) FROM {below} AS b "
            f"WHERE i < {(size >> height) * 2} GROUP BY parent"
        )
        if height >= STORED_HEIGHT:
            store.client.command(
                f"INSERT INTO {db}.audit_nodes SELECT {height}, i, node FROM {db}.level_{height}"
            )
        if height > 1:
            store.client.command(f"DROP TABLE {db}.level_{height - 1}")
        below = f"{db}.level_{height}"
    store.client.command(f"DROP TABLE IF EXISTS {below}")


def signed_log(folder: Path, size: int, picked: str) -> tuple[Store, Signer, StatementSigner]:
    """synthetic_log, signed at its size as the sink would."""
    store = Store(f"chdb://{folder / 'ch'}")
    store.migrate()
    synthetic_log(store, size, picked)
    log_key = Signer.load_or_create(folder / "key")
    root = store.tree(size).root()
    store.add_checkpoint(size, root, sign_checkpoint(log_key, Checkpoint(ORIGIN, size, root)))
    statements = StatementSigner.endorsed_by(
        log_key, Signer.load_or_create(folder / "statements", STATEMENTS)
    )
    return store, log_key, statements


def time_export(
    store: Store, log_key: Signer, statements: StatementSigner, repeats: int = 5
) -> tuple[float, int]:
    """Median seconds to export op-bench's entries as a JSON bundle, and their count (the
    bundle verified once)."""
    import io

    spent = []
    for n in range(repeats):
        out = io.BytesIO()
        began = time.perf_counter()
        export(store, statements, Selection(operator_id="op-bench")).write(out, "json")
        spent.append(time.perf_counter() - began)
        if n == 0:
            result = verify_bundle(json.loads(out.getvalue()), log_key.vkey())
            assert result.ok, result.problems[:3]
    return statistics.median(spent), result.entries


LAST_10K = "number >= {size} - 10000 AND number % 10 = 0"  # 1,000 entries, the same at any size


def exports(sizes: list[int], before: bool) -> None:
    results: dict[str, object] = {}
    lines = [
        "| log size | export, 1,000 entries in its last 10,000 | ...spread over the whole log | "
        "sink start (rebuild, check) | of which bodies against leaves |"
        + (" before: the tree over the whole log |" if before else ""),
        "|---|---|---|---|---|" + ("---|" if before else ""),
    ]
    for size in sizes:
        row = [f"{size:,}"]
        for label, picked in (
            ("last", LAST_10K.format(size=size)),
            ("spread", f"number % {size // 1000} = 0"),
        ):
            with tempfile.TemporaryDirectory() as tmp:
                began = time.perf_counter()
                store, log_key, statements = signed_log(Path(tmp), size, picked)
                print(f"{size:,} entries built in {time.perf_counter() - began:.1f} s", flush=True)
                seconds, count = time_export(store, log_key, statements)
                assert count == 1000, count
                results[f"export_{label}_{size}_ms"] = seconds * 1000
                row.append(f"{seconds * 1000:,.0f} ms")
                if label == "last":
                    sink = AuditSink(store, log_key, "unused:9092")
                    began = time.perf_counter()
                    sink.recover()
                    results[f"sink_start_{size}_s"] = started = time.perf_counter() - began
                    began = time.perf_counter()
                    assert not store.bodies_not_matching_leaves()
                    results[f"body_check_{size}_s"] = checked = time.perf_counter() - began
                    sink_start = f"{started:,.1f} s | {checked:,.1f} s"
                    if before:
                        began = time.perf_counter()
                        Tree(store.leaf_hashes(size))
                        results[f"tree_{size}_s"] = tree = time.perf_counter() - began
                store.close()
            print(f"{size:,}: export of {label} {seconds * 1000:,.0f} ms", flush=True)
        row.append(sink_start)
        if before:
            row.append(f"{tree:,.1f} s")
        lines.append("| " + " | ".join(row) + " |")
    table = "\n".join(lines)
    print(table)
    print(f"written to {write_results('audit-exports', results, table, module='bench.audit')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exports", action="store_true", help="Only the exports at log sizes.")
    parser.add_argument("--sizes", default="10000,10000000", help="Log sizes for --exports.")
    parser.add_argument("--before", action="store_true", help="With --exports: time the old whole tree.")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--naive-rows", type=int, default=1_000_000, help="Rows for the naive baseline.")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    if args.exports:
        exports([int(size) for size in args.sizes.split(",")], args.before)
        return
    rng = random.Random(7)
    results: dict[str, object] = {"rows": args.rows, "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        naive = Store(f"chdb://{Path(tmp) / 'naive'}")
        naive.migrate()
        spent = 0.0
        for _ in range(0, args.naive_rows, args.batch):
            batch = synthetic(rng, args.batch)
            now = datetime.now(UTC)
            began = time.perf_counter()
            naive.client.insert(
                f"{naive.db}.audit_log", [e.row(0, now) for e in batch], column_names=list(COLUMNS)
            )
            spent += time.perf_counter() - began
        naive.close()
        results["naive_rows_s"] = args.naive_rows / spent
        print(f"naive insert: {results['naive_rows_s']:,.0f} rows/s", flush=True)

        store = Store(f"chdb://{Path(tmp) / 'log'}")
        sink = AuditSink(store, Signer.load_or_create(Path(tmp) / "key"), "unused:9092")
        sink.recover()
        spent, done = 0.0, 0
        while done < args.rows:
            batch = synthetic(rng, min(args.batch, args.rows - done))
            began = time.perf_counter()
            sink._append(batch)
            spent += time.perf_counter() - began
            done += len(batch)
            if done % 1_000_000 < args.batch:
                print(f"sink path: {done:,} rows, {done / spent:,.0f} rows/s", flush=True)
        results["sink_rows_s"] = args.rows / spent
        began = time.perf_counter()
        sink.checkpoint()
        results["checkpoint_s"] = time.perf_counter() - began

        timings: dict[str, list[float]] = {
            "operator_quarter": [],
            "operator_quarter_count": [],
            "subject": [],
        }
        db = store.db
        for n in range(args.queries):
            operator = OPERATORS[n % len(OPERATORS)]
            quarter = YEAR_START + timedelta(days=91 * (n % 4))
            parameters = {"op": operator, "since": quarter, "until": quarter + timedelta(days=91)}
            where = (
                "operator_id = %(op)s AND kind = 'violation' AND occurred_at >= %(since)s "
                "AND occurred_at < %(until)s"
            )
            page = f"SELECT seq, body FROM {db}.audit_log WHERE {where} ORDER BY occurred_at, seq LIMIT 1000"
            count = f"SELECT count() FROM {db}.audit_log WHERE {where}"
            for name, sql in (("operator_quarter", page), ("operator_quarter_count", count)):
                began = time.perf_counter()
                store.client.query(sql, parameters=parameters)
                timings[name].append(time.perf_counter() - began)
            subject = f"subj-{rng.randrange(20_000):05d}"
            began = time.perf_counter()
            history = f"SELECT seq, kind, occurred_at, body FROM {db}.audit_log WHERE subject_ref = %(s)s"
            rows = store.client.query(
                f"{history} ORDER BY occurred_at", parameters={"s": subject}
            ).result_rows
            timings["subject"].append(time.perf_counter() - began)
            assert rows, "every subject has a history in this data"
        store.close()
    for name, values in timings.items():
        results[f"{name}_p50_ms"] = percentile(values, 50) * 1000
        results[f"{name}_p95_ms"] = percentile(values, 95) * 1000
    r = results
    ms = {k: f"{v:,.0f}" for k, v in r.items() if k.endswith("_ms") and isinstance(v, float)}
    sink_rate, naive_rate = float(r["sink_rows_s"]), float(r["naive_rows_s"])  # type: ignore[arg-type]
    table = "\n".join(
        [
            f"Rows: {args.rows:,} synthetic audit entries in batches of {args.batch:,}; embedded chDB.",
            "",
            "| measure | value |",
            "|---|---|",
            f"| naive path: plain insert, {args.naive_rows:,} rows | {naive_rate:,.0f} rows/s |",
            f"| sink path: dedup by id, rows and their leaves, Merkle tree | {sink_rate:,.0f} rows/s |",
            f"| sink / naive | {sink_rate / naive_rate:.0%} |",
            f"| sign a checkpoint of {args.rows:,} entries | {float(r['checkpoint_s']) * 1000:,.1f} ms |",  # type: ignore[arg-type]
            "| one operator's violations for a quarter, first 1,000, p50 / p95 | "
            f"{ms['operator_quarter_p50_ms']} / {ms['operator_quarter_p95_ms']} ms |",
            "| ...and their count, p50 / p95 | "
            f"{ms['operator_quarter_count_p50_ms']} / {ms['operator_quarter_count_p95_ms']} ms |",
            f"| one subject's history, p50 / p95 | {ms['subject_p50_ms']} / {ms['subject_p95_ms']} ms |",
        ]
    )
    print(table)
    print(f"written to {write_results('audit', results, table)}")


if __name__ == "__main__":
    main()
