"""The pipeline's pieces as the integration tests run them: frtwatch services as processes, the
simulator with its ground truth, and reading topics back."""

import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from prometheus_client.parser import text_string_to_metric_families

from audit.sink import TOPICS as SINK_TOPICS
from audit.store import Store
from contracts import ContractError, decode_event, topics
from core.settings import kafka_environment
from frtwatch.stack.kafka import KafkaCluster
from producers.simulator import Simulation, plan, write_keys

PARTITIONS = 4
# A valid recognition's fields, for tests that emit through the device SDK.
RECOGNITION = {
    "subject_ref": "sub-1",
    "purpose": "access_control",
    "mode": "verify_1to1",
    "legal_basis": "consent",
    "consent_id": "c-1",
    "subject_minor": False,
    "verification_channel": "local",
}


class Worker:
    """A frtwatch service in its own process (by default a processor worker), logging to a file."""

    def __init__(
        self,
        kafka: KafkaCluster,
        home: Path,
        keys: Path,
        name: str,
        command: tuple[str, ...] = ("process", "--loglevel", "info"),
        env: dict[str, str] | None = None,
    ) -> None:
        self.log = home / f"{name}.log"
        env = {
            **os.environ,
            "FRTWATCH_HOME": str(home),
            **kafka_environment(kafka.bootstrap_servers, kafka.security),
            "FRTWATCH_EVENTS_PARTITIONS": str(PARTITIONS),
            "FRTWATCH_KEYS_FILE": str(keys),  # the fleet's key registry: signatures required
            "FRTWATCH_UNSIGNED_OPERATORS": "",  # of every operator
            "FRTWATCH_ALERTMANAGER_URL": "",  # no alerts pushed unless a test asks
            "FRTWATCH_PROCESSOR_METRICS_PORT": "0",  # nor metrics served (ports would collide)
            "FRTWATCH_AUDIT_METRICS_PORT": "0",
            **(env or {}),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "frtwatch", *command],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """kill -9: no shutdown of any kind."""
        self.proc.kill()
        self.proc.wait()


def simulate(
    kafka: KafkaCluster, tmp_path: Path, seed: int, events: int, rate: int
) -> subprocess.Popen[bytes]:
    env = {**os.environ, **kafka_environment(kafka.bootstrap_servers, kafka.security)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "frtwatch",
            "simulate",
            "--seed",
            str(seed),
            "--events",
            str(events),
            "--rate",
            str(rate),
            "--bad-share",
            "0.02",
            "--ground-truth",
            str(tmp_path / "truth.jsonl"),
            "--keys-file",
            str(tmp_path / "keys.json"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def consumer_of(kafka: KafkaCluster, **options: Any) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, **options, **kafka.security.kafka_python()
    )


def read_records(kafka: KafkaCluster, topic: str) -> list[Any]:
    """Every record of ``topic`` now, as kafka-python's ConsumerRecords."""
    consumer = consumer_of(kafka, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[Any] = []
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
        return records
    finally:
        consumer.close()


def read_topic(kafka: KafkaCluster, topic: str) -> list[dict[str, Any]]:
    return [json.loads(record.value) for record in read_records(kafka, topic)]


def commit_at_the_end(kafka: KafkaCluster, group_id: str, topic: str) -> None:
    """Move an idle group's offsets of ``topic`` to its ends."""
    consumer = consumer_of(kafka, group_id=group_id, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        ends = consumer.end_offsets(partitions)
        consumer.commit({tp: OffsetAndMetadata(ends[tp], "", -1) for tp in partitions})
    finally:
        consumer.close()


def expected(tmp_path: Path) -> tuple[set[tuple[str, str, str]], dict[str, str]]:
    """The ground truth: the final state of the violations (the open ones, by their last
    record), and the expected dead letters by the sha256 of the bytes."""
    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    violations = {
        (e["policy_pack"], e["rule_id"], e["event_id"]) for e in truth if e["expect"] == "violation"
    }
    dead = {e["value_sha256"]: e["kind"] for e in truth if e["expect"] == "dead_letter"}
    return violations, dead


def is_open(record: dict[str, Any]) -> bool:
    """A violation record without a status is open (contract.md, "Verdict revisions")."""
    return bool(record.get("status", "open") == "open")


def current_state(records: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """The open violations by the last record of each violation_id, ``records`` in the order
    they were published (all records of one violation share a key: one partition)."""
    last = {record["violation_id"]: record for record in records}
    return {(v["policy_pack"], v["rule_id"], v["event_ids"][0]) for v in last.values() if is_open(v)}


def revision_key(record: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """What tells a violation's records apart: the original, and each revision by its cause."""
    return record["violation_id"], record.get("status", "open"), tuple(record.get("revised_by") or ())


def published_twice(records: list[dict[str, Any]]) -> list[tuple[str, str, tuple[str, ...]]]:
    """Records published more than once (the same violation, status and cause)."""
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    twice = []
    for record in records:
        key = revision_key(record)
        if key in seen:
            twice.append(key)
        seen.add(key)
    return twice


def wait_for_verdicts(
    kafka: KafkaCluster, want: set[tuple[str, str, str]], timeout: float = 180
) -> list[dict[str, Any]]:
    """Every record of frt.violations.v1, once its final state is ``want`` (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        found = read_topic(kafka, topics.VIOLATIONS)
        if current_state(found) == want or time.monotonic() > deadline:
            time.sleep(3)  # anything unexpected still in flight shows up too
            return read_topic(kafka, topics.VIOLATIONS)
        time.sleep(2)


def check(kafka: KafkaCluster, tmp_path: Path, found: list[dict[str, Any]]) -> None:
    """The final state of ``found`` (every violation record, in order) is the ground truth's,
    no record was published twice, and every expected dead letter is there."""
    want, dead = expected(tmp_path)
    got = current_state(found)
    assert got - want == set(), f"unexpected violations: {sorted(got - want)[:10]}"
    assert want - got == set(), f"violations not found: {sorted(want - got)[:10]}"
    assert not published_twice(found), f"published twice: {published_twice(found)[:5]}"
    letters = read_topic(kafka, topics.DEADLETTER)
    lettered = {hashlib.sha256(base64.b64decode(d["original"])).hexdigest() for d in letters}
    assert set(dead) <= lettered, {dead[h] for h in set(dead) - lettered}


def wait_until_assigned(workers: list[Worker], timeout: float = 90) -> None:
    """Each worker has joined the group and owns its share of the partitions."""
    deadline = time.monotonic() + timeout
    while not all(re.search(ASSIGNED, w.log.read_text()) for w in workers if w.log.exists()):
        assert time.monotonic() < deadline, "a worker was never assigned partitions"
        assert all(w.proc.poll() is None for w in workers), "a worker died"
        time.sleep(1)


ASSIGNED = r"router reads frt\.events\.v1 partitions \[\d"


def sink_caught_up(kafka: KafkaCluster) -> bool:
    """The audit sink has committed everything on its topics."""
    consumer = consumer_of(kafka, group_id="frtwatch-audit")
    try:
        partitions = [
            TopicPartition(t, p) for t in SINK_TOPICS for p in consumer.partitions_for_topic(t) or []
        ]
        ends = consumer.end_offsets(partitions)
        return all((consumer.committed(tp) or 0) >= ends[tp] for tp in partitions)
    finally:
        consumer.close()


def fleet_keys(tmp_path: Path, seed: int) -> None:
    """The fleet's keys, for the workers to load before the simulator starts."""
    write_keys(tmp_path / "keys.json", plan(Simulation(seed=seed))[0])


def accepted_event_ids(kafka: KafkaCluster, refused: set[str]) -> set[str]:
    """Event ids of the input messages the processor should accept: valid, and not labelled
    as refused in the ground truth (a duplicate event_id counts once)."""
    consumer = consumer_of(kafka, enable_auto_commit=False)
    partitions = [
        TopicPartition(topics.EVENTS, p) for p in consumer.partitions_for_topic(topics.EVENTS) or []
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    ids: set[str] = set()
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                if hashlib.sha256(record.value).hexdigest() in refused:
                    continue
                with contextlib.suppress(ContractError):
                    ids.add(decode_event(record.value).event_id)
    consumer.close()
    return ids


def check_audit_log(kafka: KafkaCluster, tmp_path: Path) -> set[tuple[str, str, str]]:
    """The audit log (chDB under tmp_path, with every service stopped) holds exactly what the
    pipeline had to write: each entry once, seqs without gaps, violation records whose final
    state (the last record of each, in log order) is the ground truth's, every labelled bad
    input's dead letter without its bytes, and exactly the accepted events. Returns the
    violations open in the end."""
    want, dead = expected(tmp_path)
    store = Store(f"chdb://{tmp_path / 'data' / 'clickhouse'}")
    try:
        db = store.db
        rows = store.client.query(f"SELECT kind, entry_id, body FROM {db}.audit_log ORDER BY seq").result_rows
        leaves = store.client.command(f"SELECT count() FROM {db}.audit_leaves")
        seqs = store.client.query(
            f"SELECT min(seq), max(seq), count(DISTINCT seq) FROM {db}.audit_log"
        ).result_rows
    finally:
        store.close()
    assert len(rows) == len({entry_id for _, entry_id, _ in rows}), "an entry was written twice"
    assert leaves == len(rows) and seqs == [(0, len(rows) - 1, len(rows))], "the log has gaps or extra rows"

    records = [json.loads(body) for kind, _, body in rows if kind == "violation"]
    violations = current_state(records)
    assert violations == want, (len(violations - want), len(want - violations))
    assert not published_twice(records), "a violation record was logged twice"
    lettered = {json.loads(body)["original_sha256"] for kind, _, body in rows if kind == "dead_letter"}
    assert set(dead) <= lettered, {dead[h] for h in set(dead) - lettered}
    # A seq gap is reported and accepted; a replay repeats the bytes of an accepted original.
    refused = {sha for sha, kind in dead.items() if kind not in ("seq_gap", "replayed_event_id")}
    events = {entry_id for kind, entry_id, _ in rows if kind == "event"}
    assert events == accepted_event_ids(kafka, refused)
    assert all('original"' not in body for _, _, body in rows), "a dead letter kept the original bytes"
    verify_violation_records(tmp_path, len(records))
    return violations


def verify_violation_records(home: Path, count: int) -> None:
    """Every violation record of the log (revisions included), exported as a regulator gets
    them, verifies offline against the log's public key."""
    env = {**os.environ, "FRTWATCH_HOME": str(home)}
    archive = home / "violations.zip"
    frtwatch = [sys.executable, "-m", "frtwatch"]
    export = ["audit", "export", "--kind", "violation", "--format", "csv", "--out", str(archive)]
    made = subprocess.run([*frtwatch, *export], env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    key = subprocess.run(
        [*frtwatch, "audit", "public-key"], env=env, capture_output=True, text=True, timeout=60
    )
    checked = subprocess.run(
        [*frtwatch, "verify", str(archive), "--public-key", key.stdout.strip()],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0 and checked.stdout.startswith(f"OK {count} entries"), checked.stdout[
        -2000:
    ]


def wait_for_the_sink(kafka: KafkaCluster, sink: Worker, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not sink_caught_up(kafka):
        assert time.monotonic() < deadline, "the sink never caught up"
        assert sink.proc.poll() is None, "the sink died"
        time.sleep(1)
    time.sleep(3)  # its last checkpoint


def wait_for_log(worker: Worker, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (worker.log.exists() and text in worker.log.read_text()):
        assert time.monotonic() < deadline and worker.proc.poll() is None, f"never logged {text!r}"
        time.sleep(0.2)


def metric(port: int, name: str, **labels: str) -> float:
    """A metric's value from a /metrics page (summed over the samples with these labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        page = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
