"""From a critical violation's occurred_at to the security staff's webhook.

    .venv/bin/python -m bench.alerts [--events 6000] [--rate 200]

The fleet simulator sends live traffic (event times are now) to a local Kafka; one
`frtwatch process` worker detects and pushes critical and high violations to Alertmanager
(API v2), which routes them to a local webhook receiver; Prometheus scrapes the worker
meanwhile. For every critical violation: occurred_at -> detected_at (the processor's own
stamp, the baseline: detection alone) and detected_at -> webhook receipt (push, Alertmanager
grouping, webhook), with p50/p99 of each and of the whole, by rule.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from bench.harness import Alerting, local_kafka, service_env, write_results
from contracts import topics
from contracts.timestamps import parse_timestamp
from frtwatch.stack.process import free_ports
from frtwatch.stack.webhook import WebhookReceiver

PARTITIONS = 6


def violations(bootstrap: str) -> list[dict[str, object]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partitions = [
        TopicPartition(topics.VIOLATIONS, p) for p in consumer.partitions_for_topic(topics.VIOLATIONS) or []
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    found = []
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        for records in consumer.poll(timeout_ms=500).values():
            found += [json.loads(r.value) for r in records]
    consumer.close()
    return found


def paged(receiver: WebhookReceiver) -> set[str]:
    return {a["labels"].get("violation_id", "") for note in receiver.received() for a in note.alerts()}


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--grace", type=float, default=10.0, help="The processor's grace period (s).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, local_kafka(Path(tmp) / "kafka") as kafka:
        home = Path(tmp)
        kafka.create_topics(PARTITIONS)
        (metrics_port,) = free_ports(1)
        alerting = Alerting.start(home, metrics_port)
        receiver = alerting.receiver
        env = service_env(
            home,
            kafka,
            PARTITIONS,
            FRTWATCH_ALERTMANAGER_URL=alerting.alertmanager.url,
            FRTWATCH_PROCESSOR_METRICS_PORT=str(metrics_port),
            FRTWATCH_GRACE_SECONDS=str(args.grace),
        )
        frtwatch = [sys.executable, "-m", "frtwatch"]
        simulate = [*frtwatch, "simulate", "--seed", str(args.seed), "--keys-file", str(home / "keys.json")]
        keys_only = [*simulate, "--events", "1", "--output", str(home / "keys-only.jsonl")]
        subprocess.run(keys_only, env=env, check=True, capture_output=True)  # the fleet's keys, first
        log = (home / "worker.log").open("wb")
        worker = subprocess.Popen(
            [*frtwatch, "process", "--loglevel", "info"], env=env, stdout=log, stderr=log
        )
        try:
            while b"router reads frt.events.v1 partitions [" not in (home / "worker.log").read_bytes():
                time.sleep(0.5)
            started = time.time()
            subprocess.run(
                [*simulate, "--events", str(args.events), "--rate", str(args.rate)],
                env=env,
                check=True,
                capture_output=True,
            )
            time.sleep(args.grace + 2)  # the last grace periods close
            critical = [v for v in violations(kafka.bootstrap_servers) if v["severity"] == "critical"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not {str(v["violation_id"]) for v in critical} <= paged(
                receiver
            ):
                time.sleep(1)
        finally:
            worker.terminate()
            worker.wait(60)
            alerting.stop()
    received: dict[str, float] = {}
    delivered = 0  # alert entries in the security webhook's notifications, repeats included
    for note in receiver.received():
        for alert in note.alerts():
            received.setdefault(alert["labels"].get("violation_id", ""), note.received)
            delivered += note.receiver == "security" and alert["status"] == "firing"
    per_violation = delivered / max(1, len(received))
    rows: dict[str, list[tuple[float, float]]] = {}
    missing = history = 0
    for v in critical:
        if v["violation_id"] not in received:
            missing += 1
            continue
        occurred = parse_timestamp(str(v["occurred_at"])).timestamp()
        if occurred < started - 1:  # the fleet's history (devices registered before the run)
            history += 1
            continue
        detected = parse_timestamp(str(v["detected_at"])).timestamp()
        rows.setdefault(str(v["rule_id"]), []).append(
            (detected - occurred, received[str(v["violation_id"])] - detected)
        )
    every = [pair for pairs in rows.values() for pair in pairs]
    results: dict[str, object] = {
        "grace_seconds": args.grace,
        "history": history,
        "events": args.events,
        "rate": args.rate,
        "critical": len(critical),
        "missing": missing,
        # Alertmanager sends a group's every firing alert with each notification of the group,
        # so a violation is delivered again with every later one of its (operator, rule).
        "firing_entries_delivered": delivered,
        "entries_per_violation_paged": per_violation,
    }
    lines = [
        f"{len(critical)} critical violations from {args.events:,} simulated events at {args.rate}/s, "
        f"grace period {args.grace:g} s; {missing} never paged; {history} left out because their "
        "events are the fleet's history (registrations of the day before, sent at the start), not "
        "live. Rules that wait for a missing consent decide after the grace period by design; the "
        "push-to-webhook column is the alerting path alone.",
        "",
        f"The security webhook received {delivered:,} firing alert entries for {len(received):,} "
        f"violations paged ({per_violation:.1f} per violation): each notification "
        "of a group repeats every alert still firing in it.",
        "",
        "| rule | pages | detection p50 / p99 (baseline) | push to webhook p50 / p99 "
        "| occurred_at to webhook p50 / p99 |",
        "|---|---|---|---|---|",
    ]
    for rule, pairs in [*sorted(rows.items()), ("all critical", every)]:
        detect = [d for d, _ in pairs]
        push = [p for _, p in pairs]
        whole = [d + p for d, p in pairs]
        results[rule] = {"pages": len(pairs), "p50": percentile(whole, 50), "p99": percentile(whole, 99)}
        lines.append(
            f"| {rule} | {len(pairs)} | {percentile(detect, 50):.2f} / {percentile(detect, 99):.2f} s "
            f"| {percentile(push, 50):.2f} / {percentile(push, 99):.2f} s "
            f"| {percentile(whole, 50):.2f} / {percentile(whole, 99):.2f} s |"
        )
    table = "\n".join(lines)
    print(table)
    print(f"written to {write_results('alerts', results, table)}")


if __name__ == "__main__":
    main()
