"""`frtwatch demo` as a new user runs it (`make demo`: its default duration and rate) on a busy
machine, then the next steps it prints, as printed."""

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from contracts import topics
from frtwatch.stack.process import free_ports
from tests.integration.pipeline import current_state
from tests.integration.test_local_stack import frtwatch, stack_env

# Another process keeps one core busy for longer than the demo takes, and then stops by itself
# (it is also stopped when the test ends).
BUSY_SECONDS = 480
BUSY_LOOP = (
    "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"
)


def read_violations(bootstrap: str) -> list[dict[str, object]]:
    """Every record on frt.violations.v1, in the order published per partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topics.VIOLATIONS, p)
            for p in consumer.partitions_for_topic(topics.VIOLATIONS) or ()
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[dict[str, object]] = []
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=500).values():
                records += [json.loads(record.value) for record in batch]
        return records
    finally:
        consumer.close()


@pytest.mark.timeout(1200)
def test_the_demo_as_the_readme_runs_it_on_a_busy_machine_finds_the_ground_truth(tmp_path: Path) -> None:
    api, processor_metrics, audit_metrics = free_ports(3)
    env = {
        **stack_env(tmp_path / "home"),
        "FRTWATCH_EVENTS_PARTITIONS": "6",  # the README's default
        "COLUMNS": "400",  # the summary's status on one line
        "FRTWATCH_API_PORT": str(api),
        "FRTWATCH_PROCESSOR_METRICS_PORT": str(processor_metrics),
        "FRTWATCH_AUDIT_METRICS_PORT": str(audit_metrics),
    }
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(BUSY_SECONDS)])
    try:
        began = time.monotonic()
        demo = frtwatch(env, "demo", timeout=900)
        took = time.monotonic() - began
        busy_throughout = busy.poll() is None
        busy.kill()
        out = demo.stdout
        print(f"demo under load: exit {demo.returncode} in {took:.0f} s\n{out}")
        assert busy_throughout, "the busy loop stopped before the demo ended: make BUSY_SECONDS longer"
        assert demo.returncode == 0, out + demo.stderr
        assert "every expected violation found, none more" in out
        # The summary: every expected rule found in full, dead letters as many as injected.
        counts = re.search(r"violations ([\d,]+)/([\d,]+)", out)
        assert counts is not None and counts[1] == counts[2] and counts[1] != "0", out
        dead = re.search(r"dead\s+letters\s+([\d,]+)/([\d,]+)", out)
        assert dead is not None and dead[1] == dead[2] and dead[1] != "0", out
        revisions = re.search(
            r"revisions\s+([\d,]+)\s+retracted,\s+([\d,]+)\s+found\s+late\s+"
            r"\(by\s+design\s+([\d,]+)\s+and\s+([\d,]+)\)",
            out,
        )
        assert revisions is not None and revisions[3] != "0" and revisions[4] != "0", out
        assert "FRT-PROHIBITED-LOCATION" in out and "invalid_json" in out

        # The final state on frt.violations.v1, read back here: exactly the ground truth.
        truth = [
            json.loads(line) for line in (tmp_path / "home" / "demo" / "truth.jsonl").read_text().splitlines()
        ]
        want = {(e["policy_pack"], e["rule_id"], e["event_id"]) for e in truth if e["expect"] == "violation"}
        got = current_state(read_violations(f"127.0.0.1:{env['FRTWATCH_KAFKA_PORT']}"))
        assert got == want, (sorted(got - want)[:5], sorted(want - got)[:5])

        # The next steps, run exactly as printed (from the home folder the demo names).
        token_file = re.search(r'export FRTWATCH_API_TOKEN="\$\(cat (\S+)\)"', out)
        assert token_file is not None, out
        token = Path(token_file[1]).read_text().strip()
        assert token and token not in out  # the token is in a file of its own, never printed
        assert Path(token_file[1]).stat().st_mode & 0o077 == 0
        env = {**env, "FRTWATCH_API_TOKEN": token}
        steps = [line.strip() for line in out.splitlines() if line.strip().startswith(".venv/bin/frtwatch")]
        assert len(steps) == 5, steps
        for step in steps:
            words = shlex.split(step)
            output = None
            if ">" in words:
                output = tmp_path / words[words.index(">") + 1]
                words = words[: words.index(">")]
            words = [str(tmp_path / w) if w in ("evidence.zip", "audit.vkey") else w for w in words]
            result = frtwatch(env, *words[1:], timeout=120)
            assert result.returncode == 0, f"{step}\n{result.stdout}\n{result.stderr}"
            if output is not None:
                output.write_text(result.stdout)
            if words[1] == "verify":
                assert result.stdout.startswith("OK"), result.stdout
            if words[1:3] == ["query", "violations"]:
                assert result.stdout.count('"kind": "violation"') > 0
    finally:
        busy.kill()
        busy.wait()
        down = frtwatch(env, "stack", "down")
        assert down.returncode == 0, down.stderr
        assert "processor" in down.stdout and "api" in down.stdout, down.stdout
