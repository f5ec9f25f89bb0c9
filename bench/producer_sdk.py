"""Producer throughput: the device SDK (build, validate, sign, bounded send) against
kafka-python sending the same pre-encoded bytes with the same settings (the limit).

    .venv/bin/python -m bench.producer_sdk [--messages 100000] [--rounds 3]

Both run side by side in one process against one real local broker, alternating, and the
result is the ratio of the medians.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from bench.harness import local_kafka, write_results
from producers.builder import EventBuilder
from producers.emitter import EventEmitter
from producers.sender import producer_settings

TOPIC = "bench.producer"
KEY = b"bench-device-key-0123456789abcdef"
RECOGNITION = {
    "subject_ref": "sub-5f1c0e9a7b2d4c3e8f6a1b2c3d4e5f60",
    "purpose": "access_control",
    "mode": "verify_1to1",
    "legal_basis": "consent",
    "consent_id": "consent-op-0000042",
    "subject_minor": False,
    "verification_channel": "local",
}
SOURCE = {"operator_id": "op-bench", "site_id": "op-bench-site-00", "device_id": "op-bench-site-00-dev-00"}


def raw_run(bootstrap: str, values: list[bytes]) -> float:
    producer = KafkaProducer(bootstrap_servers=bootstrap, **producer_settings(client_id="bench-raw"))
    key = SOURCE["device_id"].encode()
    producer.send(TOPIC, value=values[0], key=key).get(timeout=30)  # connected and warm
    began = time.perf_counter()
    for value in values:
        producer.send(TOPIC, value=value, key=key)
    producer.flush()
    elapsed = time.perf_counter() - began
    producer.close()
    return len(values) / elapsed


def sdk_run(bootstrap: str, count: int, seq_dir: Path) -> float:
    emitter = EventEmitter(
        bootstrap,
        key=KEY,
        seq_file=seq_dir / f"{time.monotonic_ns()}.seq",
        topic=TOPIC,
        client_id="bench-sdk",
        operator_id=SOURCE["operator_id"],
        site_id=SOURCE["site_id"],
        device_id=SOURCE["device_id"],
    )
    emitter.emit("recognition.performed", **RECOGNITION)
    emitter.flush(timeout=30)
    began = time.perf_counter()
    for _ in range(count):
        emitter.emit("recognition.performed", **RECOGNITION)
    emitter.flush()
    elapsed = time.perf_counter() - began
    emitter.close()
    assert emitter.failed == 0
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, local_kafka(Path(home)) as kafka:
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
        admin.create_topics([NewTopic(TOPIC, 6, 1)])
        admin.close()
        builder = EventBuilder(key=KEY, seq=iter(range(10**9)).__next__, **SOURCE)
        values = [builder.build("recognition.performed", **RECOGNITION)[1] for _ in range(args.messages)]
        raw, sdk = [], []
        for round_ in range(args.rounds):
            raw.append(raw_run(kafka.bootstrap_servers, values))
            sdk.append(sdk_run(kafka.bootstrap_servers, args.messages, Path(home)))
            print(f"round {round_ + 1}: raw {raw[-1]:,.0f} msg/s, sdk {sdk[-1]:,.0f} msg/s", flush=True)
    ratio = statistics.median(sdk) / statistics.median(raw)
    table = "\n".join(
        [
            f"Messages per run: {args.messages:,} ({len(values[0])} bytes each), rounds: {args.rounds}, "
            "settings: acks=all, idempotence, lz4, linger 10 ms, batch 256 KiB.",
            "",
            "| path | median msg/s | runs (msg/s) |",
            "|---|---|---|",
            f"| raw kafka-python, pre-encoded bytes (the limit) | {statistics.median(raw):,.0f} | "
            + ", ".join(f"{r:,.0f}" for r in raw)
            + " |",
            f"| frtwatch SDK: build, validate, sign, bounded send | {statistics.median(sdk):,.0f} | "
            + ", ".join(f"{s:,.0f}" for s in sdk)
            + " |",
            "",
            f"**SDK / raw = {ratio:.0%}** (goal >= 70%)",
        ]
    )
    path = write_results(
        "producer-sdk",
        {
            "messages": args.messages,
            "rounds": args.rounds,
            "raw_msg_s": raw,
            "sdk_msg_s": sdk,
            "ratio": ratio,
        },
        table,
    )
    print(table)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
