"""From a critical violation's occurred_at to the security staff's webhook, and what the pager
costs: notifications per violation paged and Alertmanager's CPU.

    .venv/bin/python -m bench.alerts [--events 9000] [--rate 300] [--beside RESULTS.json]

The fleet simulator sends live traffic (event times are now) to a local Kafka, at the demo's
rate by default; one `frtwatch process` worker detects and pushes critical and high violations
to Alertmanager (API v2), which routes them to a local webhook receiver; Prometheus scrapes the
worker meanwhile. For every critical violation: occurred_at -> detected_at (the processor's own
stamp, the baseline: detection alone) and detected_at -> webhook receipt (push, Alertmanager
grouping, webhook), with p50/p99 of each and of the whole, by rule, and for the immediate rules
together (rules none of whose cases waits for a grace period). Violations found late (a
late fact proved them: ``revised_by``) are counted apart: their wait is the late fact's.

Delivered to the security webhook: notifications and firing entries of FRTViolation alerts per
violation paged, and resolutions against the retractions of violations paged. Alertmanager's
CPU (user + system, from /proc) is sampled every second from the first event sent until every
critical violation has paged. ``--beside`` names an earlier run's JSON (the code before a
change, run the same way) to print beside this one.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from bench.harness import Alerting, local_kafka, service_env, write_results
from contracts import topics
from contracts.timestamps import parse_timestamp
from frtwatch.stack.process import free_ports
from frtwatch.stack.webhook import WebhookReceiver
from stream_processors.rules.pack import available_packs, load_packs

PARTITIONS = 6
TICKS = 100  # clock ticks per second of /proc/<pid>/stat (Linux's USER_HZ)


def violations(bootstrap: str) -> list[dict[str, Any]]:
    """Every record of frt.violations.v1, revisions included."""
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


def pager_entries(receiver: WebhookReceiver, status: str) -> list[tuple[float, dict[str, Any]]]:
    """(arrival, alert) of every FRTViolation entry with ``status`` the security webhook got."""
    return [
        (note.received, alert)
        for note in receiver.received()
        if note.receiver == "security"
        for alert in note.alerts()
        if alert["labels"].get("alertname") == "FRTViolation" and alert["status"] == status
    ]


def is_page(receiver: str, alerts: list[dict[str, Any]]) -> bool:
    """A notification to security with a firing FRTViolation in it."""
    pages = (a for a in alerts if a["labels"].get("alertname") == "FRTViolation")
    return receiver == "security" and any(a["status"] == "firing" for a in pages)


def paged(receiver: WebhookReceiver) -> set[str]:
    return {alert["labels"]["violation_id"] for _, alert in pager_entries(receiver, "firing")}


def immediate_rules() -> set[str]:
    """Rules that decide on the event itself in every pack that has them (no case waits)."""
    waits: dict[str, bool] = {}
    for pack in load_packs(available_packs()):
        for rule in pack.rules:
            waits[rule.rule_id] = waits.get(rule.rule_id, False) or any(c.waits for c in rule.cases)
    return {rule for rule, waiting in waits.items() if not waiting}


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


class CpuSampler:
    """A process's CPU time (user + system) and RSS, sampled every second in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []  # (monotonic time, CPU seconds so far)
        self.rss_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.cpu_seconds()))
            self._stop.wait(1.0)

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), self.cpu_seconds()))
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                self.rss_mib = int(line.split()[1]) / 1024

    def summary(self) -> dict[str, float]:
        (t0, c0), (t1, c1) = self.samples[0], self.samples[-1]
        pairs = zip(self.samples, self.samples[1:], strict=False)
        shares = [(cb - ca) / (tb - ta) for (ta, ca), (tb, cb) in pairs if tb > ta]
        return {
            "seconds": t1 - t0,
            "cpu_seconds": c1 - c0,
            "mean_core_share": (c1 - c0) / max(t1 - t0, 1e-9),
            "max_core_share_1s": max(shares, default=0.0),
            "rss_mib": self.rss_mib,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=9000)
    parser.add_argument("--rate", type=int, default=300, help="Events per second (the demo's: 300).")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--grace", type=float, default=10.0, help="The processor's grace period (s).")
    parser.add_argument("--beside", type=Path, help="An earlier run's results (JSON), shown beside these.")
    parser.add_argument(
        "--resolve-wait", type=float, default=90.0, help="At most this long for retractions' resolutions (s)."
    )
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
        alertmanager_pid = alerting.alertmanager.process.pid()
        assert alertmanager_pid is not None, "Alertmanager is not running"
        try:
            while b"router reads frt.events.v1 partitions [" not in (home / "worker.log").read_bytes():
                time.sleep(0.5)
            started = time.time()
            with CpuSampler(alertmanager_pid) as cpu:
                subprocess.run(
                    [*simulate, "--events", str(args.events), "--rate", str(args.rate)],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                time.sleep(args.grace + 2)  # the last grace periods close
                records = violations(kafka.bootstrap_servers)
                critical = {str(v["violation_id"]) for v in records if v["severity"] == "critical"}
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not critical <= paged(receiver):
                    time.sleep(1)
            # Retractions resolve at the next tick of their alert's group: wait for them apart,
            # outside the CPU window (Alertmanager idles meanwhile).
            records = violations(kafka.bootstrap_servers)
            deadline = time.monotonic() + args.resolve_wait
            while time.monotonic() < deadline and not retracted(records, receiver) <= {
                alert["labels"]["violation_id"] for _, alert in pager_entries(receiver, "resolved")
            }:
                time.sleep(1)
        finally:
            worker.terminate()
            worker.wait(60)
            alerting.stop()
    results, table = report(args, started, records, receiver, cpu.summary())
    if args.beside:
        table += "\n\n" + beside(json.loads(args.beside.read_text()), results)
    print(table)
    print(f"written to {write_results('alerts', results, table)}")


def code_measured() -> dict[str, Any]:
    """The commit measured, the files changed from it in the working tree (a change measured
    before it is committed, or the code before it from a worktree), and how the judge ran."""
    root = Path(__file__).resolve().parent.parent

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True).stdout

    return {
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "changed": [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()],
        "FRTWATCH_COMPILED": os.environ.get("FRTWATCH_COMPILED", ""),
    }


def retracted(records: list[dict[str, Any]], receiver: WebhookReceiver) -> set[str]:
    """The violations paged whose last record is a retraction."""
    last = {str(v["violation_id"]): v for v in records}
    return {vid for vid in paged(receiver) if last.get(vid, {}).get("status") == "retracted"}


def report(
    args: argparse.Namespace,
    started: float,
    records: list[dict[str, Any]],
    receiver: WebhookReceiver,
    cpu: dict[str, float],
) -> tuple[dict[str, Any], str]:
    firing, resolved = pager_entries(receiver, "firing"), pager_entries(receiver, "resolved")
    first_page: dict[str, float] = {}
    for arrived, alert in firing:
        first_page.setdefault(alert["labels"]["violation_id"], arrived)
    notifications = sum(1 for note in receiver.received() if is_page(note.receiver, note.alerts()))
    pages = len(first_page)
    retractions = retracted(records, receiver)
    resolutions = Counter(alert["labels"]["violation_id"] for _, alert in resolved)
    opened = {str(v["violation_id"]): v for v in records if v.get("status", "open") == "open"}
    critical = [v for v in opened.values() if v["severity"] == "critical"]
    immediate = immediate_rules()
    rows: dict[str, list[tuple[float, float]]] = {}
    missing = history = late = 0
    for v in critical:
        if v["violation_id"] not in first_page:
            missing += 1
            continue
        if v.get("revised_by"):  # found late: the wait was the late fact's
            late += 1
            continue
        occurred = parse_timestamp(str(v["occurred_at"])).timestamp()
        if occurred < started - 1:  # the fleet's history (devices registered before the run)
            history += 1
            continue
        detected = parse_timestamp(str(v["detected_at"])).timestamp()
        pair = (detected - occurred, first_page[str(v["violation_id"])] - detected)
        rows.setdefault(str(v["rule_id"]), []).append(pair)
        if v["rule_id"] in immediate:
            rows.setdefault("immediate rules", []).append(pair)
    results: dict[str, Any] = {
        "grace_seconds": args.grace,
        "history": history,
        "events": args.events,
        "rate": args.rate,
        "critical": len(critical),
        "missing": missing,
        "found_late": late,
        "violations_paged": pages,
        "notifications": notifications,
        "notifications_per_violation_paged": notifications / max(1, pages),
        # Alertmanager sends a group's every firing alert with each notification of the group.
        "firing_entries_delivered": len(firing),
        "entries_per_violation_paged": len(firing) / max(1, pages),
        "retractions_of_violations_paged": len(retractions),
        "resolutions_delivered": len(resolved),
        "retractions_resolved": len(retractions & set(resolutions)),
        "alertmanager_cpu": cpu,
        "code": code_measured(),
        "immediate_rules": sorted(immediate),
    }
    lines = [
        f"{len(critical)} critical violations from {args.events:,} simulated events at {args.rate}/s, "
        f"grace period {args.grace:g} s; {missing} never paged; {history} left out because their "
        "events are the fleet's history (registrations of the day before, sent at the start), not "
        f"live; {late} found late (by a late fact), left out of the latencies. Rules that wait for a "
        "missing consent decide after the grace period by design; the push-to-webhook column is "
        "the alerting path alone.",
        "",
        f"The security webhook received {notifications:,} notifications with {len(firing):,} firing "
        f"FRTViolation entries for {pages:,} violations paged ({len(firing) / max(1, pages):.2f} entries, "
        f"{notifications / max(1, pages):.2f} notifications per violation paged), and {len(resolved):,} "
        f"resolutions for {len(retractions):,} retractions of violations paged "
        f"({len(retractions & set(resolutions)):,} of them resolved).",
        "",
        f"Code: {results['code']['commit']}, changed in the working tree: "
        f"{', '.join(results['code']['changed']) or 'nothing'}; FRTWATCH_COMPILED="
        f"{results['code']['FRTWATCH_COMPILED'] or '(unset)'}.",
        "",
        f"Alertmanager: {cpu['cpu_seconds']:.1f} CPU seconds over {cpu['seconds']:.0f} s of traffic "
        f"({cpu['mean_core_share']:.0%} of a core on average, {cpu['max_core_share_1s']:.0%} at most "
        f"in a second); RSS {cpu['rss_mib']:.0f} MiB at the end.",
        "",
        "| rule | pages | detection p50 / p99 (baseline) | push to webhook p50 / p99 "
        "| occurred_at to webhook p50 / p99 |",
        "|---|---|---|---|---|",
    ]
    every = [pair for rule, pairs in rows.items() if rule != "immediate rules" for pair in pairs]
    named = sorted((rule, pairs) for rule, pairs in rows.items() if rule != "immediate rules")
    immediate_pairs = rows.get("immediate rules", [])
    for rule, pairs in [*named, ("immediate rules", immediate_pairs), ("all critical", every)]:
        if not pairs:
            continue
        detect = [d for d, _ in pairs]
        push = [p for _, p in pairs]
        whole = [d + p for d, p in pairs]
        results[rule] = {
            "pages": len(pairs),
            "p50": percentile(whole, 50),
            "p99": percentile(whole, 99),
            "push_p50": percentile(push, 50),
            "push_p99": percentile(push, 99),
        }
        lines.append(
            f"| {rule} | {len(pairs)} | {percentile(detect, 50):.2f} / {percentile(detect, 99):.2f} s "
            f"| {percentile(push, 50):.2f} / {percentile(push, 99):.2f} s "
            f"| {percentile(whole, 50):.2f} / {percentile(whole, 99):.2f} s |"
        )
    return results, "\n".join(lines)


def beside(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A table of an earlier run's figures beside this run's."""

    nan = float("nan")

    def figures(run: dict[str, Any]) -> list[str]:
        cpu = run.get("alertmanager_cpu", {})
        immediate, every = run.get("immediate rules", {}), run.get("all critical", {})
        return [
            f"{run.get('notifications_per_violation_paged', float('nan')):.2f}",
            f"{run['entries_per_violation_paged']:.2f}",
            f"{run.get('resolutions_delivered', 0)} / {run.get('retractions_of_violations_paged', 0)}",
            f"{immediate.get('p50', float('nan')):.2f} / {immediate.get('p99', float('nan')):.2f} s",
            f"{every.get('push_p50', float('nan')):.2f} / {every.get('push_p99', float('nan')):.2f} s",
            f"{cpu.get('mean_core_share', nan):.0%} / {cpu.get('max_core_share_1s', nan):.0%}",
            f"{cpu.get('rss_mib', float('nan')):.0f} MiB",
        ]

    names = [
        "notifications per violation paged",
        "firing entries per violation paged",
        "resolutions / retractions of violations paged",
        "immediate rules, occurred_at to webhook p50 / p99",
        "all critical, push to webhook p50 / p99",
        "Alertmanager CPU, mean / max in a second (share of a core)",
        "Alertmanager RSS at the end",
    ]
    head = f"| | before ({before['when']}, `{before['command']}`) | this run |"
    pairs = zip(names, figures(before), figures(after), strict=True)
    rows = [f"| {name} | {b} | {a} |" for name, b, a in pairs]
    return "\n".join([head, "|---|---|---|", *rows])


if __name__ == "__main__":
    main()
