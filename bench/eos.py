"""What exactly once costs on aiokafka: a consume-transform-produce loop, at least once and in
Kafka transactions, beside the raw consume rate of the same topic.

    .venv/bin/python -m bench.eos [--events 200000] [--rounds 3] [--latency-seconds 20]

One run, one local broker, a topic of simulated events (producers/simulator.py). In alternating
rounds, each reading the whole topic from its start:

- raw: aiokafka reads and discards (the baseline);
- at least once: getmany, send the batch (identity transform), wait for its acks, commit;
- transactional: one transactional producer per input partition (aiokafka sends no consumer
  group generation with its offsets, so fencing is by transactional id per partition: see
  stream_processors/transactional.py), read_committed; each transaction holds a partition's
  outputs and its input offset, one per getmany batch or per commit interval;
- stream_processors.transactional's loop, the same identity as its Processor, no state.

Both loops send with record batches (``create_batch``/``send_batch``) and gather the next
records while the previous ones commit.

Then, at 50% of the transactional loop's rate (100 ms interval; --load), the loop runs alone in
a subprocess and its latency is measured for a few commit intervals (and the at-least-once
loop's, for reference): from the input record's produce timestamp (the identity keeps it) to
the output being visible to a read_committed consumer. Results: bench/results/eos.{json,md},
or eos-loadNN.* for another --load.
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from bench.harness import local_kafka, write_results
from producers.plan import Message
from producers.simulator import Simulation, run
from stream_processors.transactional import Output, Record, Result, TransactionalLoop, produce

PARTITIONS = 6
SOURCE, SINK, STATE = "eos.in", "eos.out", "eos.state"  # the rounds' topics
LIVE_SOURCE, LIVE_SINK = "eos.live.in", "eos.live.out"  # the latency phase's
MAX_RECORDS = 5000
PRODUCER = {"max_batch_size": 256 * 1024}
Measure = Callable[[str, int, str], Coroutine[Any, Any, float]]
Batches = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


def create_topics(bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        names = (SOURCE, SINK, LIVE_SOURCE, LIVE_SINK)
        admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
        admin.create_topics([NewTopic(STATE, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()


def simulated(events: int) -> list[tuple[bytes | None, bytes]]:
    messages: list[tuple[bytes | None, bytes]] = []

    def keep(message: Message) -> None:
        messages.append((message.key, message.value))

    run(Simulation(seed=7, events=events, rate=500.0), keep, paced=False)
    return messages


async def preload(bootstrap: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, **PRODUCER)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(SOURCE, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def warm_up(bootstrap: str) -> None:
    """Have the broker create its offsets and transaction state topics before any round."""
    reader = consumer(bootstrap, "warm-up", SOURCE)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="warm-up")
    await reader.start()
    await producer.start()
    try:
        tp = TopicPartition(SOURCE, 0)
        reader.assign([tp])
        await reader.commit({tp: 0})
        async with producer.transaction():
            await producer.send_offsets_to_transaction({tp: 0}, "warm-up")
    finally:
        await producer.stop()
        await reader.stop()


def partitions(topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(PARTITIONS)]


def consumer(bootstrap: str, group: str | None, topic: str, **settings: object) -> AIOKafkaConsumer:
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        **{"auto_offset_reset": "earliest", **settings},
    )
    return reader


async def send_all(
    producer: AIOKafkaProducer, sink: str, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
) -> None:
    """The identity: same key, value, partition and timestamp."""
    await produce(producer, (Output(sink, r.key, r.value, tp.partition, r.timestamp) for r in records))


async def raw(bootstrap: str, count: int, tag: str) -> float:
    reader = consumer(bootstrap, None, SOURCE)
    await reader.start()
    try:
        reader.assign(partitions(SOURCE))
        seen, began = 0, time.perf_counter()
        while seen < count:
            batches = await reader.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
            seen += sum(len(records) for records in batches.values())
        return count / (time.perf_counter() - began)
    finally:
        await reader.stop()


class Stage(Protocol):
    """What a loop does with each gathering of batches, and its producers' lifetime."""

    async def start(self) -> None: ...

    async def __call__(self, gathered: Batches) -> None: ...

    async def close(self) -> None: ...


async def loop(
    bootstrap: str,
    group: str,
    source: str,
    count: int | None,
    stage: Callable[[AIOKafkaConsumer], Stage],
    interval_ms: int,
    live: bool = False,
) -> float:
    """Read ``source`` from its start (``live``: from its end, saying READY once there),
    gathering getmany batches for ``interval_ms`` (0: one batch) and handing each gathering to
    the stage, until ``count`` records (None: for ever)."""
    reset = "latest" if live else "earliest"
    reader = consumer(bootstrap, group, source, isolation_level="read_committed", auto_offset_reset=reset)
    await reader.start()
    try:
        reader.assign(partitions(source))
        handle = stage(reader)
        await handle.start()
        try:
            if live:
                print("READY", flush=True)
            return await run_stage(reader, handle, count, interval_ms)
        finally:
            await handle.close()
    finally:
        await reader.stop()


async def run_stage(reader: AIOKafkaConsumer, handle: Stage, count: int | None, interval_ms: int) -> float:
    """Gather while the previous gathering commits: a cycle lasts the longer of the interval and
    the commit, not their sum."""
    seen, began = 0, time.perf_counter()
    committing: asyncio.Task[None] | None = None
    while count is None or seen < count:
        gathered: Batches = {}
        deadline = time.monotonic() + interval_ms / 1000
        while True:
            remaining = deadline - time.monotonic()
            busy = committing is not None and not committing.done()
            if gathered and remaining <= 0 and not busy:
                break
            # Past the interval and the previous commit still going: keep gathering meanwhile.
            wait = int(remaining * 1000) if remaining > 0.001 else 10 if busy else 1000
            for tp, records in (await reader.getmany(timeout_ms=wait, max_records=MAX_RECORDS)).items():
                gathered.setdefault(tp, []).extend(records)
        if committing is not None:
            await committing
        committing = asyncio.create_task(handle(gathered))
        seen += sum(len(records) for records in gathered.values())
    if committing is not None:
        await committing
    return seen / (time.perf_counter() - began)


class AtLeastOnce:
    """Send the batch, wait for its acks, commit the offsets."""

    def __init__(self, bootstrap: str, reader: AIOKafkaConsumer, sink: str) -> None:
        self.reader, self.sink = reader, sink
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **PRODUCER
        )

    async def start(self) -> None:
        await self.producer.start()

    async def __call__(self, gathered: Batches) -> None:
        for tp, records in gathered.items():
            await send_all(self.producer, self.sink, tp, records)
        await self.producer.flush()
        await self.reader.commit({tp: records[-1].offset + 1 for tp, records in gathered.items()})

    async def close(self) -> None:
        await self.producer.stop()


class Transactional:
    """A transactional producer per input partition (fencing by transactional id); a
    transaction per partition holds its outputs and its input offset."""

    def __init__(self, bootstrap: str, reader: AIOKafkaConsumer, sink: str, group: str) -> None:
        self.sink, self.group = sink, group
        self.producers = {
            tp: AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                transactional_id=f"{group}.{tp.topic}.{tp.partition}",
                **PRODUCER,
            )
            for tp in reader.assignment()
        }

    async def start(self) -> None:
        for producer in self.producers.values():
            await producer.start()
            async with producer.transaction():  # fences an earlier producer of the id
                pass

    async def commit(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        producer = self.producers[tp]
        async with producer.transaction():
            await send_all(producer, self.sink, tp, records)
            await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, self.group)

    async def __call__(self, gathered: Batches) -> None:
        await asyncio.gather(*(self.commit(tp, records) for tp, records in gathered.items()))

    async def close(self) -> None:
        for producer in self.producers.values():
            await producer.stop()


async def at_least_once(bootstrap: str, count: int, tag: str) -> float:
    def stage(reader: AIOKafkaConsumer) -> Stage:
        return AtLeastOnce(bootstrap, reader, SINK)

    return await loop(bootstrap, f"alo.{tag}", SOURCE, count, stage, 0)


def transactional(interval_ms: int) -> Measure:
    async def measure(bootstrap: str, count: int, tag: str) -> float:
        group = f"eos{interval_ms}.{tag}"

        def stage(reader: AIOKafkaConsumer) -> Stage:
            return Transactional(bootstrap, reader, SINK, group)

        return await loop(bootstrap, group, SOURCE, count, stage, interval_ms)

    return measure


class Identity:
    """stream_processors.transactional's Processor: each record to SINK unchanged, no state; stops
    the loop after ``count`` records and notes when the first came."""

    def __init__(self, count: int) -> None:
        self.count, self.seen, self.first = count, 0, 0.0
        self.loop: TransactionalLoop | None = None

    def restore(self, partition: int, state: dict[bytes, bytes]) -> None:
        pass

    def revoke(self, partition: int) -> None:
        pass

    def process(self, partition: int, records: Sequence[Record]) -> Result:
        self.first = self.first or time.perf_counter()
        self.seen += len(records)
        if self.seen >= self.count and self.loop is not None:
            self.loop.stop()
        return Result(outputs=[Output(SINK, r.key, r.value, partition) for r in records])


async def module(bootstrap: str, count: int, tag: str) -> float:
    identity = Identity(count)
    identity.loop = TransactionalLoop(bootstrap, f"module.{tag}", SOURCE, STATE, identity)
    await identity.loop.run()
    return identity.seen / (time.perf_counter() - identity.first)


# The latency phase: the loop alone in a subprocess (its own core's worth of Python), fed at a
# paced rate by this process, which also reads the outputs read_committed.


def serve(bootstrap: str, mode: str, interval_ms: int) -> None:
    group = f"live.{mode}.{interval_ms}"

    def stage(reader: AIOKafkaConsumer) -> Stage:
        if mode == "alo":
            return AtLeastOnce(bootstrap, reader, LIVE_SINK)
        return Transactional(bootstrap, reader, LIVE_SINK, group)

    asyncio.run(loop(bootstrap, group, LIVE_SOURCE, None, stage, interval_ms, live=True))


async def paced(
    bootstrap: str, messages: list[tuple[bytes | None, bytes]], rate: float, seconds: float
) -> list[float]:
    """Send at ``rate`` for ``seconds``, reading the outputs read_committed; the latencies (ms)
    from each input's produce timestamp to its output's arrival, the first 2 s left out."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1, **PRODUCER)
    reader = consumer(bootstrap, None, LIVE_SINK, isolation_level="read_committed", fetch_max_wait_ms=10)
    await producer.start()
    await reader.start()
    reader.assign(partitions(LIVE_SINK))
    await reader.seek_to_end()
    latencies: list[float] = []
    start = time.time()
    sending = True

    async def read() -> None:
        while sending or time.time() < start + seconds + 5:
            for records in (await reader.getmany(timeout_ms=50)).values():
                now = time.time() * 1000
                latencies.extend(now - r.timestamp for r in records if r.timestamp >= (start + 2) * 1000)

    reading = asyncio.create_task(read())
    sent = 0
    while (now := time.time()) < start + seconds:
        due = int((now - start) * rate)
        batches = {p: producer.create_batch() for p in range(PARTITIONS)}
        for n in range(sent, due):  # the devices' sends, a record batch per partition each tick
            key, value = messages[n % len(messages)]
            batches[n % PARTITIONS].append(key=key, value=value, timestamp=None)
        for partition, batch in batches.items():
            if batch.record_count():
                await producer.send_batch(batch, LIVE_SOURCE, partition=partition)
        sent = due
        await asyncio.sleep(0.005)
    sending = False
    await producer.flush()
    await reading
    await producer.stop()
    await reader.stop()
    return latencies


def latency(
    bootstrap: str,
    messages: list[tuple[bytes | None, bytes]],
    mode: str,
    interval_ms: int,
    rate: float,
    seconds: float,
) -> dict[str, float]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.eos", "--serve", bootstrap, mode, str(interval_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        while server.stdout.readline().strip() != "READY":
            if server.poll() is not None:
                raise RuntimeError(f"the {mode} loop ended with {server.returncode}")
        values = sorted(asyncio.run(paced(bootstrap, messages, rate, seconds)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "outputs": len(values),
        "p50_ms": values[len(values) // 2],
        "p99_ms": values[int(len(values) * 0.99)],
        "max_ms": values[-1],
    }


VARIANTS: dict[str, Measure] = {
    "raw aiokafka consume": raw,
    "at least once (per getmany batch)": at_least_once,
    "transactional (per getmany batch)": transactional(0),
    "transactional (100 ms interval)": transactional(100),
    "stream_processors.transactional (100 ms)": module,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--load", type=float, default=0.5, help="Of the transactional loop's rate.")
    parser.add_argument(
        "--intervals", default="20,50,100", help="Commit intervals (ms) of the latency phase."
    )
    parser.add_argument(
        "--serve", nargs=3, metavar=("BOOTSTRAP", "MODE", "INTERVAL_MS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return
    messages = simulated(args.events)
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    results: dict[str, object] = {
        "aiokafka": version("aiokafka"),
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],  # the cores are shared
        "events": args.events,
        "partitions": PARTITIONS,
        "event_bytes_mean": round(statistics.mean(len(v) for _, v in messages)),
    }
    with tempfile.TemporaryDirectory() as tmp, local_kafka(Path(tmp) / "kafka") as kafka:
        bootstrap = kafka.bootstrap_servers
        create_topics(bootstrap)
        asyncio.run(preload(bootstrap, messages))
        asyncio.run(warm_up(bootstrap))
        for round_ in range(args.rounds):
            for name, measure in VARIANTS.items():
                rates[name].append(asyncio.run(measure(bootstrap, args.events, f"r{round_}")))
                print(f"round {round_ + 1}: {name} {rates[name][-1]:,.0f}/s", flush=True)
        medians = {name: statistics.median(values) for name, values in rates.items()}
        results["events_s"] = {
            name: {"median": medians[name], "rounds": values} for name, values in rates.items()
        }
        rate = args.load * medians["transactional (100 ms interval)"]
        results["latency_rate_events_s"] = rate
        runs: dict[str, dict[str, float]] = {
            "at least once (per batch)": latency(bootstrap, messages, "alo", 0, rate, args.latency_seconds)
        }
        for interval in (int(i) for i in args.intervals.split(",")):
            runs[f"transactional, {interval} ms"] = latency(
                bootstrap, messages, "eos", interval, rate, args.latency_seconds
            )
            print(f"latency at {interval} ms: {runs[f'transactional, {interval} ms']}", flush=True)
        results["latency"] = runs
        results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    raw_rate = medians["raw aiokafka consume"]
    table = "\n".join(
        [
            f"{args.events:,} simulated events ({results['event_bytes_mean']} bytes on average), "
            f"{PARTITIONS} partitions, one broker, aiokafka {results['aiokafka']}; medians of "
            f"{args.rounds} alternating rounds. Load average (1, 5, 15 min) at the start "
            f"{results['load_average_at_start']}, at the end {results['load_average_at_end']}.",
            "",
            "| loop | events/s | / raw consume | rounds |",
            "|---|---|---|---|",
            *(
                f"| {name} | {medians[name]:,.0f} | {medians[name] / raw_rate:.1%} | "
                + ", ".join(f"{v:,.0f}" for v in rates[name])
                + " |"
                for name in VARIANTS
            ),
            "",
            f"Latency at {rate:,.0f} events/s ({args.load:.0%} of the transactional loop, 100 ms "
            "interval), the loop in a process of its own, "
            f"{args.latency_seconds:.0f} s each, the first 2 s left out: input produce timestamp "
            "to the output read, read_committed.",
            "",
            "| loop | p50 ms | p99 ms | max ms | outputs |",
            "|---|---|---|---|---|",
            *(
                f"| {name} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['outputs']:,} |"
                for name, r in runs.items()
            ),
        ]
    )
    print(table)
    name = "eos" if args.load == 0.5 else f"eos-load{round(args.load * 100)}"
    print(f"written to {write_results(name, results, table, 'bench.eos')}")


if __name__ == "__main__":
    main()
