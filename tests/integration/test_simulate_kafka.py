"""`frtwatch simulate` against the real broker: every message arrives, at the asked rate."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from contracts import topics
from contracts.keyring import Keyring
from frtwatch.stack.kafka import KafkaCluster
from tests.conftest import EVENTS_PARTITIONS


def end_offsets(kafka: KafkaCluster) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers)
    try:
        offsets: dict[TopicPartition, int] = consumer.end_offsets(
            [TopicPartition(topics.EVENTS, p) for p in range(EVENTS_PARTITIONS)]
        )
        return offsets
    finally:
        consumer.close()


def broker_timestamps(kafka: KafkaCluster, since: dict[TopicPartition, int], count: int) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, enable_auto_commit=False)
    stamps: list[int] = []
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + 60
        while len(stamps) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500, max_records=5000).values():
                stamps += [record.timestamp for record in records]
    finally:
        consumer.close()
    return sorted(stamps)


def test_simulate_delivers_every_message_at_the_asked_rate(kafka: KafkaCluster, tmp_path: Path) -> None:
    rate, seconds = 1000, 8
    before = end_offsets(kafka)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "frtwatch",
            "simulate",
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--bad-share",
            "0.01",
            "--ground-truth",
            str(tmp_path / "truth.jsonl"),
            "--keys-file",
            str(tmp_path / "keys.json"),
        ],
        env={**os.environ, "FRTWATCH_KAFKA_BOOTSTRAP": kafka.bootstrap_servers, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reported = re.search(r"asked 1,000, ([+-][0-9.]+)%", result.stdout)
    assert reported, result.stdout
    assert abs(float(reported.group(1))) <= 5

    after = end_offsets(kafka)
    total = rate * seconds
    assert sum(after.values()) - sum(before.values()) == total

    # The records' own timestamps (taken as each was handed to the client) agree.
    stamps = broker_timestamps(kafka, before, total)
    assert len(stamps) == total
    achieved = (total - 1) / ((stamps[-1] - stamps[0]) / 1000)
    assert abs(achieved - rate) / rate <= 0.05, achieved

    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert truth[0]["expect"] == "run" and truth[0]["events"] == total
    assert any(entry["expect"] == "violation" for entry in truth)
    keys = Keyring.load(tmp_path / "keys.json").entries  # a key registry: each key bound to its source
    assert len([k for k in keys if k.device_id]) == 64 and len([k for k in keys if not k.device_id]) == 4
