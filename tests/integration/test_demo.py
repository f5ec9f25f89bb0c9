"""`frtwatch demo` as a new user runs it (shorter), then the next steps it prints, as printed."""

import re
import shlex
from pathlib import Path

from frtwatch.stack.process import free_ports
from tests.integration.test_local_stack import frtwatch, stack_env


def test_demo_finds_the_ground_truth_and_its_next_steps_work(tmp_path: Path) -> None:
    api, processor_metrics, audit_metrics = free_ports(3)
    env = {
        **stack_env(tmp_path / "home"),
        "FRTWATCH_API_PORT": str(api),
        "FRTWATCH_PROCESSOR_METRICS_PORT": str(processor_metrics),
        "FRTWATCH_AUDIT_METRICS_PORT": str(audit_metrics),
    }
    try:
        demo = frtwatch(env, "demo", "--duration", "12", "--rate", "300", "--bad-share", "0.05", timeout=400)
        out = demo.stdout
        assert demo.returncode == 0, out + demo.stderr
        assert "every expected violation found, none more" in out
        # The summary: every expected rule found in full, dead letters as many as injected.
        counts = re.search(r"violations ([\d,]+)/([\d,]+)", out)
        assert counts is not None and counts[1] == counts[2] and counts[1] != "0", out
        dead = re.search(r"dead letters ([\d,]+)/([\d,]+)", out)
        assert dead is not None and dead[1] == dead[2] and dead[1] != "0", out
        assert "FRT-PROHIBITED-LOCATION" in out and "invalid_json" in out

        # The next steps, run exactly as printed (from the home folder the demo names).
        token = re.search(r"export FRTWATCH_API_TOKEN=(\S+)", out)
        assert token is not None
        env = {**env, "FRTWATCH_API_TOKEN": token[1]}
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
        down = frtwatch(env, "stack", "down")
        assert down.returncode == 0, down.stderr
        assert "processor" in down.stdout and "api" in down.stdout, down.stdout
