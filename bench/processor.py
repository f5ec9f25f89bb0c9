"""Stream-processor throughput and detection latency, beside the raw consume rate.

    .venv/bin/python -m bench.processor [--events 100000] [--latency-seconds 30]
    .venv/bin/python -m bench.processor --gate-only   # the gate's cost, HMAC beside Ed25519 (bench/gate.py)

One run, one local broker: the same topic of simulated, signed events is read and discarded by
aiokafka (faust's client) and by kafka-python (the raw consume rates), then judged by one
`frtwatch process` worker from a cold start (sustained events/s, counted from the first
committed offset so start-up is excluded; the preloaded events' times are spread like live
traffic's, so deciding waiting events is part of the run). Then the worker, caught up and with
nothing left waiting, gets the simulator's
traffic at 50% and 90% of that rate, and the latency from occurred_at to the violation record
being produced (its Kafka timestamp) is measured, split between rules decided at once and
rules that wait for the grace period by design.
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench import gate
from bench.harness import local_kafka, records_since, send_on_schedule, service_env, write_results
from contracts import topics
from contracts.bundle import Bundle
from contracts.timestamps import parse_timestamp
from frtwatch import compiled
from frtwatch.stack.kafka import KafkaCluster
from producers.plan import Message
from producers.sender import producer_settings
from producers.simulator import Simulation, plan, run, write_keys
from stream_processors.admission import Gate, load_keys
from stream_processors.judge import Judge
from stream_processors.rules.pack import available_packs, load_packs

PARTITIONS = 6
PRELOAD_EVENT_RATE = 500  # events per second of event time in the preloaded topic
# The load phases' traffic comes from the preload's fleet: each phase's seqs start above all
# before it (starting at 0 again, most of a phase was refused as seq_backwards, not judged).
LOAD_FIRST_SEQ = {0.5: 10**9, 0.9: 2 * 10**9}
WAITING_RULES = {
    rule.rule_id
    for pack in load_packs(available_packs())
    for rule in pack.rules
    if all(case.waits for case in rule.cases)
}


def preload(kafka: KafkaCluster, sim: Simulation) -> list[bytes]:
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, **producer_settings(linger_ms=50))
    values: list[bytes] = []

    def send(message: Message) -> None:
        producer.send(topics.EVENTS, value=message.value, key=message.key)
        values.append(message.value)

    run(sim, send, paced=False)
    producer.flush()
    producer.close()
    return values


def judge_alone(values: list[bytes], keys: Path) -> float:
    """Admission and rules in one process on the same bytes, no Kafka and no faust: the
    ceiling of the judging itself."""
    judge = Judge(load_packs(available_packs()), Gate(load_keys(keys)), facts={}, pending={}, published={})
    began = time.perf_counter()
    for n, value in enumerate(values):
        judge.judge(value, f"0:{n}")
    judge.flush_all()
    return len(values) / (time.perf_counter() - began)


def topic_partitions(topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(PARTITIONS)]


def raw_kafka_python(kafka: KafkaCluster, count: int) -> float:
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        enable_auto_commit=False,
        max_poll_records=5000,
        fetch_max_bytes=50 * 1024 * 1024,
    )
    consumer.assign(topic_partitions(topics.EVENTS))
    consumer.seek_to_beginning()
    seen, began = 0, time.perf_counter()
    while seen < count:
        for records in consumer.poll(timeout_ms=1000).values():
            seen += len(records)
    elapsed = time.perf_counter() - began
    consumer.close()
    return count / elapsed


async def _raw_aiokafka(bootstrap: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(topic_partitions(topics.EVENTS))
        await consumer.seek_to_beginning()
        seen, began = 0, time.perf_counter()
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            seen += sum(len(records) for records in batches.values())
        return count / (time.perf_counter() - began)
    finally:
        await consumer.stop()


def faust_floor(kafka: KafkaCluster, count: int) -> float:
    env = {**os.environ, "FRTWATCH_KAFKA_BOOTSTRAP": kafka.bootstrap_servers, "FLOOR_EVENTS": str(count)}
    result = subprocess.run(
        [sys.executable, "-m", "bench.faust_floor"], env=env, capture_output=True, text=True, timeout=600
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("FLOOR "))
    return float(line.split()[1])


def start_worker(kafka: KafkaCluster, home: Path, keys: Path) -> subprocess.Popen[bytes]:
    env = service_env(home, kafka, PARTITIONS, FRTWATCH_KEYS_FILE=str(keys))
    log = (home / "worker.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "frtwatch", "process"], env=env, stdout=log, stderr=log)


def committed(kafka: KafkaCluster, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        return {tp: consumer.committed(tp) or 0 for tp in partitions}
    finally:
        consumer.close()


def lane_ends(kafka: KafkaCluster) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        return consumer.end_offsets(topic_partitions(topics.LANES))  # type: ignore[no-any-return]
    finally:
        consumer.close()


def running(worker: subprocess.Popen[bytes]) -> None:
    """A worker that has exited will commit nothing more: say so rather than wait for ever."""
    if worker.poll() is not None:
        raise RuntimeError(f"the worker exited with code {worker.returncode}; see its log")


def routed(kafka: KafkaCluster, count: int, worker: subprocess.Popen[bytes]) -> tuple[float, int]:
    """Wait until the router has committed ``count`` events; return when it first committed
    any (so start-up is left out of a rate) and how many it had then."""
    first_at = first_done = None
    while True:
        running(worker)
        done = sum(committed(kafka, "frtwatch-router", topic_partitions(topics.EVENTS)).values())
        if done and first_at is None:
            first_at, first_done = time.monotonic(), done
        if done >= count:
            assert first_at is not None and first_done is not None
            return first_at, first_done
        time.sleep(0.2)


def judged(kafka: KafkaCluster, worker: subprocess.Popen[bytes]) -> None:
    """Wait until the judge has committed every lane up to where the router has written."""
    ends = lane_ends(kafka)
    while any(offset < ends[tp] for tp, offset in committed(kafka, "frtwatch-processor", list(ends)).items()):
        running(worker)
        time.sleep(0.2)


def worker_throughput(
    kafka: KafkaCluster, count: int, worker: subprocess.Popen[bytes]
) -> tuple[float, float]:
    """(events/s judged, seconds from worker start to the first routed offset committed)."""
    started = time.monotonic()
    first_at, first_done = routed(kafka, count, worker)
    judged(kafka, worker)
    return (count - first_done) / (time.monotonic() - first_at), first_at - started


class _EventId(msgspec.Struct):
    event_id: str


_event_id = msgspec.json.Decoder(_EventId).decode


def routed_at(kafka: KafkaCluster, since: dict[TopicPartition, int]) -> dict[str, float]:
    """When the router sent each event onto a lane (its bundle's timestamp, epoch s), by event_id."""
    at: dict[str, float] = {}
    for _, record in records_since(kafka, since):
        for _, raw in Bundle.decode(record.value).items:
            try:
                at.setdefault(_event_id(raw).event_id, record.timestamp / 1000)
            except msgspec.DecodeError:
                continue  # a hostile input: the judge dead-letters it
    return at


def latencies(
    kafka: KafkaCluster, since: dict[TopicPartition, int], emitted: dict[str, float], routed: dict[str, float]
) -> dict[str, list[float]]:
    """Seconds to the violation record of the given events (by their emit times): from
    occurred_at, and from the moment the generator sent the event (so a generator running
    behind its schedule shows apart), for rules decided at once and rules that wait; for the
    immediate ones also split at the router's send onto a lane (routing / judging)."""
    found: dict[str, list[float]] = {
        "immediate": [],
        "immediate_sent": [],
        "immediate_routing": [],
        "immediate_judging": [],
        "waiting": [],
        "waiting_sent": [],
    }
    for _, record in records_since(kafka, since):
        violation = json.loads(record.value)
        sent = emitted.get(violation["event_ids"][0])
        occurred = parse_timestamp(violation["occurred_at"]).timestamp()
        if sent is None or occurred < time.time() - 3600:
            continue  # another phase's, or history the simulator backfills months back
        kind = "waiting" if violation["rule_id"] in WAITING_RULES else "immediate"
        found[kind].append(record.timestamp / 1000 - occurred)
        found[f"{kind}_sent"].append(record.timestamp / 1000 - sent)
        onward = routed.get(violation["event_ids"][0])
        if kind == "immediate" and onward is not None:
            found["immediate_routing"].append(onward - sent)
            found["immediate_judging"].append(record.timestamp / 1000 - onward)
    return found


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument(
        "--throughput-only", action="store_true", help="Skip the latency runs (quick tuning)."
    )
    parser.add_argument(
        "--gate-only",
        action="store_true",
        help="Only the gate's cost per event, HMAC beside Ed25519 (no Kafka).",
    )
    parser.add_argument("--rounds", type=int, default=5, help="With --gate-only: alternating rounds.")
    args = parser.parse_args()
    if args.gate_only:
        figures = gate.measure(min(args.events, 20_000), args.rounds)
        print(gate.table(figures))
        print(
            f"written to {write_results('processor-gate', figures, gate.table(figures), 'bench.processor')}"
        )
        return
    # The worker, started from the same tree and environment, judges the same way.
    results: dict[str, object] = {"events": args.events, "judge_compiled": compiled.active()}
    with tempfile.TemporaryDirectory() as tmp, local_kafka(Path(tmp) / "kafka") as kafka:
        home = Path(tmp)
        kafka.create_topics(PARTITIONS)
        # Event times spread as live traffic would be (PRELOAD_EVENT_RATE a second, ending a little
        # before now), so waiting events are decided as event time passes, inside the measured
        # run; only the last grace period's worth is left to the quiet-stream timer.
        span = args.events / PRELOAD_EVENT_RATE
        start = datetime.now(UTC) - timedelta(seconds=span + 30)
        sim = Simulation(seed=7, events=args.events, rate=PRELOAD_EVENT_RATE, start=start)
        write_keys(home / "keys.json", plan(sim)[0])
        values = preload(kafka, sim)
        results["judge_alone_events_s"] = judge_alone(values, home / "keys.json")
        results["raw_kafka_python_events_s"] = raw_kafka_python(kafka, args.events)
        results["raw_aiokafka_events_s"] = asyncio.run(_raw_aiokafka(kafka.bootstrap_servers, args.events))
        results["faust_empty_agent_events_s"] = faust_floor(kafka, args.events)
        print(
            f"empty faust agent {results['faust_empty_agent_events_s']:,.0f}/s; "
            f"raw consume: kafka-python {results['raw_kafka_python_events_s']:,.0f}/s, "
            f"aiokafka {results['raw_aiokafka_events_s']:,.0f}/s",
            flush=True,
        )

        worker = start_worker(kafka, home, home / "keys.json")
        try:
            rate, startup = worker_throughput(kafka, args.events, worker)
            results["worker_events_s"], results["worker_startup_s"] = rate, startup
            print(f"one worker: {rate:,.0f} events/s (start-up {startup:.1f} s)", flush=True)
            time.sleep(15)  # the quiet timer decides what still waits, before load is measured
            for share in () if args.throughput_only else (0.5, 0.9):
                consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
                since = consumer.end_offsets(topic_partitions(topics.VIOLATIONS)[:3])
                lanes_since = consumer.end_offsets(topic_partitions(topics.LANES))
                consumer.close()
                load = Simulation(
                    seed=100 + int(share * 10),
                    fleet_seed=7,
                    first_seq=LOAD_FIRST_SEQ[share],  # the preload's devices go on, not back
                    rate=rate * share,
                    events=int(rate * share * args.latency_seconds),
                )
                producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, **producer_settings())
                sends = send_on_schedule(load, producer)
                producer.flush()
                producer.close()
                time.sleep(15)  # grace period plus the timer
                found = latencies(kafka, since, sends.sent, routed_at(kafka, lanes_since))
                key = f"load_{int(share * 100)}"
                results[key] = {
                    "rate_events_s": load.rate,
                    "immediate": len(found["immediate"]),
                    "waiting": len(found["waiting"]),
                    "generator_behind_p50_ms": percentile(sends.behind, 50) * 1000,
                    "generator_behind_p99_ms": percentile(sends.behind, 99) * 1000,
                    **{
                        f"{name}_p{q}_ms": percentile(values, q) * 1000
                        for name, values in found.items()
                        for q in (50, 99)
                    },
                }
                print(f"{key}: {results[key]}", flush=True)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
    if args.throughput_only:
        return
    raw = float(results["raw_aiokafka_events_s"])  # type: ignore[arg-type]
    kafka_python = float(results["raw_kafka_python_events_s"])  # type: ignore[arg-type]
    worker_rate = float(results["worker_events_s"])  # type: ignore[arg-type]
    floor = float(results["faust_empty_agent_events_s"])  # type: ignore[arg-type]
    rows = [
        "| measure | value |",
        "|---|---|",
        f"| the judge (admission, codec, rules) | "
        f"{'compiled by mypyc' if results['judge_compiled'] else 'interpreted'} |",
        f"| raw consume, aiokafka (faust's client), read and discard | {raw:,.0f} events/s |",
        f"| raw consume, kafka-python | {results['raw_kafka_python_events_s']:,.0f} events/s |",
        f"| one `frtwatch process` worker, sustained | {worker_rate:,.0f} events/s |",
        f"| an empty faust agent on the same topic (faust's own floor) | "
        f"{results['faust_empty_agent_events_s']:,.0f} events/s |",
        f"| the judging alone (admission + rules), in one process, no Kafka | "
        f"{results['judge_alone_events_s']:,.0f} events/s |",
        f"| worker / raw kafka-python | {worker_rate / kafka_python:.1%} |",
        f"| worker / raw aiokafka | {worker_rate / raw:.1%} |",
        f"| worker / empty faust agent | {worker_rate / floor:.1%} |",
    ]
    for key in ("load_50", "load_90"):
        r = results[key]
        assert isinstance(r, dict)
        rows.append(
            f"| {key[5:]}% load ({r['rate_events_s']:,.0f}/s): immediate rules p50 / p99 "
            f"| {r['immediate_p50_ms']:,.0f} / {r['immediate_p99_ms']:,.0f} ms "
            f"({r['immediate']} violations) |"
        )
        rows.append(
            f"| {key[5:]}% load: immediate rules, from the event's send, p50 / p99 "
            f"| {r['immediate_sent_p50_ms']:,.0f} / {r['immediate_sent_p99_ms']:,.0f} ms |"
        )
        rows.append(
            f"| {key[5:]}% load: immediate rules, send to routed onto a lane / routed to published, p99 "
            f"| {r['immediate_routing_p99_ms']:,.0f} / {r['immediate_judging_p99_ms']:,.0f} ms |"
        )
        rows.append(
            f"| {key[5:]}% load: generator behind its schedule (send - due time), p50 / p99 "
            f"| {r['generator_behind_p50_ms']:,.0f} / {r['generator_behind_p99_ms']:,.0f} ms |"
        )
        rows.append(
            f"| {key[5:]}% load: grace-period rules p50 / p99 (wait 10 s by design) "
            f"| {r['waiting_p50_ms']:,.0f} / {r['waiting_p99_ms']:,.0f} ms ({r['waiting']} violations) |"
        )
    table = "\n".join(
        [f"Events: {args.events:,} simulated and signed, {PARTITIONS} partitions, one broker.", "", *rows]
    )
    print(table)
    print(f"written to {write_results('processor', results, table)}")


if __name__ == "__main__":
    main()
