"""The whole pipeline, beside Kafka's own limits on the same messages, in one run.

    .venv/bin/python -m bench.e2e [--events 60000] [--latency-seconds 30] [--load 0.5]
    (make bench)

One local broker, one `frtwatch process` worker, one `frtwatch audit sink` (embedded chDB),
Alertmanager (the worker pushes critical and high violations to it, and it pages a local
webhook) and Prometheus scraping both. In the same run:

1. Kafka's limits: ProducerPerformance and ConsumerPerformance from the broker's own jars,
   with the SDK's producer settings, on the simulator's own messages (--payload-file).
2. Sustained: the simulated events preloaded (event times spread like live traffic), then the
   worker and the sink started; events/s from the router's first commit until the sink has
   committed everything the worker produced (every entry in the audit log), and the sink's lag
   (entries produced, not yet in the log) sampled all along.
3. Live: the simulator paced at --load of that rate for --latency-seconds; for every violation,
   occurred_at -> produced on frt.violations.v1 (detection) and occurred_at -> committed by
   the sink (in the audit log: the sink commits only after the write), p50/p99, for rules
   decided at once and those that wait for the grace period by design; sink lag p50/p99/max.
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from audit.sink import TOPICS as SINK_TOPICS
from bench.harness import (
    Alerting,
    local_kafka,
    records_since,
    send_on_schedule,
    service_env,
    write_results,
)
from bench.processor import PRELOAD_EVENT_RATE, WAITING_RULES, judged, preload, routed
from contracts import topics
from contracts.timestamps import parse_timestamp
from frtwatch.stack.kafka import KafkaCluster, ensure_jars
from frtwatch.stack.process import free_ports
from producers.sender import producer_settings
from producers.simulator import Simulation, plan, run, write_keys

PARTITIONS = 6
SAMPLE_SECONDS = 0.1
PERF_TOPIC = "bench.kafka-perf"
# The SDK's producer settings (producers/sender.py), as Kafka's tool takes them.
PERF_PRODUCER_PROPS = [
    "acks=all",
    "enable.idempotence=true",
    "linger.ms=10",
    "batch.size=262144",
    "compression.type=lz4",
    "max.in.flight.requests.per.connection=5",
]


def kafka_tool(main_class: str, *args: str) -> str:
    classpath = f"{ensure_jars()}/*"
    result = subprocess.run(
        ["java", "-Xmx1g", "-cp", classpath, main_class, *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{main_class} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def kafka_limits(kafka: KafkaCluster, payloads: Path, count: int) -> dict[str, float]:
    """Records/s of Kafka's own producer and consumer tools on the simulator's messages."""
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    admin.create_topics([NewTopic(PERF_TOPIC, PARTITIONS, 1)])
    admin.close()
    produced = kafka_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        *("--topic", PERF_TOPIC, "--num-records", str(count), "--throughput", "-1"),
        *("--payload-file", str(payloads), "--payload-delimiter", "\n"),
        "--producer-props",
        f"bootstrap.servers={kafka.bootstrap_servers}",
        *PERF_PRODUCER_PROPS,
    )
    # The last line: "N records sent, R records/sec (M MB/sec), A ms avg latency, ..."
    total = [line for line in produced.splitlines() if "records sent" in line][-1]
    producer_rate = float(re.search(r"([\d.]+) records/sec", total)[1])  # type: ignore[index]
    consumed = kafka_tool(
        "org.apache.kafka.tools.ConsumerPerformance",
        *("--bootstrap-server", kafka.bootstrap_servers, "--topic", PERF_TOPIC),
        *("--messages", str(count), "--timeout", "60000"),
    )
    header, values = [line for line in consumed.splitlines() if line.strip()][-2:]
    row = dict(
        zip([h.strip() for h in header.split(",")], [v.strip() for v in values.split(",")], strict=False)
    )
    # fetch.nMsg.sec leaves out the group join, as the pipeline's rate leaves out its start-up.
    return {"producer_records_s": producer_rate, "consumer_records_s": float(row["fetch.nMsg.sec"])}


class SinkProgress:
    """The sink's committed offsets (what is in the audit log) and the topics' ends, sampled."""

    def __init__(self, kafka: KafkaCluster) -> None:
        self.admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        self.ends = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
        self.partitions = [
            TopicPartition(topic, p)
            for topic in SINK_TOPICS
            for p in sorted(self.ends.partitions_for_topic(topic) or ())
        ]
        self.samples: list[tuple[float, dict[TopicPartition, int]]] = []  # (time, committed)
        self.lags: list[tuple[float, int]] = []  # (time, entries produced but not yet in the log)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def committed(self) -> dict[TopicPartition, int]:
        offsets = self.admin.list_group_offsets("frtwatch-audit")["frtwatch-audit"]
        return {tp: offsets[tp].offset if tp in offsets else 0 for tp in self.partitions}

    def lag(self) -> int:
        ends = self.ends.end_offsets(self.partitions)
        committed = self.committed()
        return sum(max(0, ends[tp] - committed[tp]) for tp in self.partitions)

    def start(self) -> None:
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            self.samples.append((now, self.committed()))
            self.lags.append((now, self.lag()))
            self._stop.wait(SAMPLE_SECONDS)

    def landed_at(self, tp: TopicPartition, offset: int) -> float | None:
        """When the sink's committed offset first passed ``offset``: the entry is in the log."""
        for at, committed in self.samples:
            if committed.get(tp, 0) > offset:
                return at
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.admin.close()
        self.ends.close()


def start(home: Path, env: dict[str, str], name: str, *args: str) -> subprocess.Popen[bytes]:
    log = (home / f"{name}.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "frtwatch", *args], env=env, stdout=log, stderr=log)


def sustained(
    kafka: KafkaCluster, progress: SinkProgress, count: int, worker: subprocess.Popen[bytes]
) -> tuple[float, int]:
    """(events/s from the router's first commit until the audit log holds every accepted event,
    the largest sink lag seen meanwhile). Violations still waiting for their grace period then
    are decided by the quiet timer later, by design, and are left out of the rate."""
    first_at, first_done = routed(kafka, count, worker)
    judged(kafka, worker)
    accepted = [tp for tp in progress.partitions if tp.topic == topics.ACCEPTED]
    accepted_ends = progress.ends.end_offsets(accepted)
    while any(progress.committed()[tp] < accepted_ends[tp] for tp in accepted):
        time.sleep(0.1)
    done = time.monotonic()
    peak = max((lag for _, lag in progress.lags), default=0)
    return (count - first_done) / (done - first_at), peak


def live_latencies(
    kafka: KafkaCluster,
    progress: SinkProgress,
    since: dict[TopicPartition, int],
    started: float,
    sent: dict[str, float],
) -> dict[str, list[float]]:
    """Seconds from occurred_at to detection and to the audit log, and from the event's send
    to detection (``sent``: event_id -> when the generator sent it)."""
    found: dict[str, list[float]] = {
        f"{kind}_{stage}": []
        for kind in ("immediate", "waiting")
        for stage in ("detected", "logged", "detected_from_send")
    }
    missing = 0
    for tp, record in records_since(kafka, since):
        violation = json.loads(record.value)
        occurred = parse_timestamp(violation["occurred_at"]).timestamp()
        if occurred < started - 1:
            continue  # the fleet's history, sent first with old event times
        kind = "waiting" if violation["rule_id"] in WAITING_RULES else "immediate"
        landed = progress.landed_at(tp, record.offset)
        if landed is None:
            missing += 1
            continue
        found[f"{kind}_detected"].append(record.timestamp / 1000 - occurred)
        found[f"{kind}_logged"].append(landed - occurred)
        sent_at = sent.get(violation["event_ids"][0])
        if sent_at is not None:
            found[f"{kind}_detected_from_send"].append(record.timestamp / 1000 - sent_at)
    if missing:
        raise RuntimeError(f"{missing} violations never reached the audit log")
    return found


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--load", type=float, default=0.5, help="Share of the sustained rate, live.")
    args = parser.parse_args()
    results: dict[str, object] = {"events": args.events, "partitions": PARTITIONS}
    with tempfile.TemporaryDirectory() as tmp, local_kafka(Path(tmp) / "kafka") as kafka:
        home = Path(tmp)
        kafka.create_topics(PARTITIONS)
        span = args.events / PRELOAD_EVENT_RATE
        sim = Simulation(
            seed=7,
            events=args.events,
            rate=PRELOAD_EVENT_RATE,
            start=datetime.now(UTC) - timedelta(seconds=span + 30),
        )
        write_keys(home / "keys.json", plan(sim)[0])
        payloads = home / "payloads.txt"
        messages: list[bytes] = []
        run(sim, lambda m: messages.append(m.value), paced=False)
        # The same messages for Kafka's own tools, one a line (a hostile one's newlines would split it).
        payloads.write_bytes(b"".join(m.replace(b"\n", b" ") + b"\n" for m in messages))
        sizes = [len(m) for m in messages]
        results["message_bytes_mean"] = statistics.fmean(sizes)
        mean = results["message_bytes_mean"]
        print(f"Kafka's own tools on {len(sizes):,} simulated messages ({mean:.0f} B mean)...", flush=True)
        results["kafka"] = kafka_limits(kafka, payloads, args.events)
        print(f"kafka: {results['kafka']}", flush=True)
        preload(kafka, sim)

        processor_metrics, sink_metrics = free_ports(2)
        alerting = Alerting.start(home, processor_metrics, sink_metrics)
        env = service_env(
            home,
            kafka,
            PARTITIONS,
            FRTWATCH_ALERTMANAGER_URL=alerting.alertmanager.url,
            FRTWATCH_PROCESSOR_METRICS_PORT=str(processor_metrics),
            FRTWATCH_AUDIT_METRICS_PORT=str(sink_metrics),
        )
        services = [start(home, env, "worker", "process"), start(home, env, "sink", "audit", "sink")]
        progress = SinkProgress(kafka)
        progress.start()
        try:
            rate, peak_lag = sustained(kafka, progress, args.events, services[0])
            results["sustained_events_s"], results["sustained_sink_lag_max"] = rate, peak_lag
            print(
                f"sustained: {rate:,.0f} events/s into the audit log (sink lag at most {peak_lag:,})",
                flush=True,
            )

            consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
            violation_partitions = [
                TopicPartition(topics.VIOLATIONS, p)
                for p in sorted(consumer.partitions_for_topic(topics.VIOLATIONS) or ())
            ]
            since = consumer.end_offsets(violation_partitions)
            consumer.close()
            live_rate = rate * args.load
            load = Simulation(
                seed=101,
                fleet_seed=7,
                first_seq=10**9,  # the preload's devices go on: seqs back at 0 would be refused
                rate=live_rate,
                events=int(live_rate * args.latency_seconds),
            )
            producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, **producer_settings())
            started = time.time()
            lag_from = len(progress.lags)
            sends = send_on_schedule(load, producer)
            producer.flush()
            producer.close()
            time.sleep(15)  # the last grace periods close and the sink writes them
            live_lags = [lag for _, lag in progress.lags[lag_from:]]
            found = live_latencies(kafka, progress, since, started, sends.sent)
        finally:
            progress.stop()
            for service in services:
                service.terminate()
            for service in services:
                service.wait(60)
            alerting.stop()
    results["live"] = {
        "rate_events_s": live_rate,
        "sink_lag_p50": percentile([float(x) for x in live_lags], 50),
        "sink_lag_p99": percentile([float(x) for x in live_lags], 99),
        "sink_lag_max": max(live_lags, default=0),
        "generator_behind_p50_s": percentile(sends.behind, 50),
        "generator_behind_p99_s": percentile(sends.behind, 99),
        **{name: len(values) for name, values in found.items() if name.endswith("_logged")},
        **{f"{name}_p{q}_s": percentile(values, q) for name, values in found.items() for q in (50, 99)},
    }
    results["pages"] = len(
        {a["labels"].get("violation_id") for n in alerting.receiver.received() for a in n.alerts()}
    )
    kafka_rates = results["kafka"]
    assert isinstance(kafka_rates, dict)
    live = results["live"]
    assert isinstance(live, dict)
    ms = 1000
    measures = [
        ("Kafka ProducerPerformance, same messages, the SDK's settings (acks=all, lz4)",
         f"{kafka_rates['producer_records_s']:,.0f} records/s"),
        ("Kafka ConsumerPerformance, same messages", f"{kafka_rates['consumer_records_s']:,.0f} records/s"),
        ("pipeline sustained: Kafka -> one worker -> one sink -> audit log", f"{rate:,.0f} events/s"),
        ("pipeline / Kafka consumer tool", f"{rate / kafka_rates['consumer_records_s']:.1%}"),
        ("pipeline / Kafka producer tool", f"{rate / kafka_rates['producer_records_s']:.1%}"),
        ("sink lag during the sustained run, at most", f"{peak_lag:,} records"),
        (f"live at {args.load:.0%} ({live_rate:,.0f} events/s): immediate rules, occurred_at -> "
         "detected, p50 / p99",
         f"{live['immediate_detected_p50_s'] * ms:,.0f} / {live['immediate_detected_p99_s'] * ms:,.0f} ms"),
        ("live: immediate rules, the event's send -> detected, p50 / p99",
         f"{live['immediate_detected_from_send_p50_s'] * ms:,.0f} / "
         f"{live['immediate_detected_from_send_p99_s'] * ms:,.0f} ms"),
        ("live: the generator behind its schedule (send - due time), p50 / p99",
         f"{live['generator_behind_p50_s'] * ms:,.0f} / {live['generator_behind_p99_s'] * ms:,.0f} ms"),
        (f"live: immediate rules, occurred_at -> in the audit log, p50 / p99 "
         f"({live['immediate_logged']} violations)",
         f"{live['immediate_logged_p50_s'] * ms:,.0f} / {live['immediate_logged_p99_s'] * ms:,.0f} ms"),
        ("live: grace-period rules (they wait 10 s by design), occurred_at -> in the audit log, "
         f"p50 / p99 ({live['waiting_logged']} violations)",
         f"{live['waiting_logged_p50_s']:,.2f} / {live['waiting_logged_p99_s']:,.2f} s"),
        ("live: sink lag p50 / p99 / max",
         f"{live['sink_lag_p50']:,.0f} / {live['sink_lag_p99']:,.0f} / {live['sink_lag_max']:,} records"),
        ("violations paged through Alertmanager (critical and high, whole run)", f"{results['pages']:,}"),
    ]  # fmt: skip
    rows = ["| measure | value |", "|---|---|", *(f"| {m} | {v} |" for m, v in measures)]
    table = "\n".join(
        [
            f"{args.events:,} simulated signed events ({results['message_bytes_mean']:.0f} B mean), "
            f"{PARTITIONS} partitions, one broker, everything on this machine; the audit log in embedded "
            f"chDB; sink lag sampled every {SAMPLE_SECONDS:g} s.",
            "",
            *rows,
        ]
    )
    print(table)
    print(f"written to {write_results('e2e', results, table)}")


if __name__ == "__main__":
    main()
