import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stream_processors.watchdog import STARTED_OVER_ENV, LaneWatch, RecoveryWatch, started_over


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stuck_verdicts(steps: list[tuple[float, bool, int]]) -> list[bool]:
    """What a recovery watch says at each (time, in recovery, records left) it is fed."""
    clock = Clock()
    watch = RecoveryWatch(limit=60, clock=clock)
    verdicts = []
    for at, in_recovery, remaining in steps:
        clock.now = at
        verdicts.append(watch.stuck(in_recovery, remaining))
    return verdicts


def test_a_recovery_reading_nothing_for_the_limit_is_stuck() -> None:
    assert stuck_verdicts([(0, True, 500), (59, True, 500), (60, True, 500)]) == [False, False, True]


def test_a_recovery_that_reads_is_not_stuck_however_long_it_takes() -> None:
    steps = [(30.0 * n, True, remaining) for n, remaining in enumerate(range(10_000, 0, -100))]
    assert not any(stuck_verdicts(steps))


def test_nothing_left_to_read_or_no_recovery_is_not_stuck() -> None:
    steps = [(100.0 * n, n % 2 == 0, 0) for n in range(10)]
    assert not any(stuck_verdicts(steps))


def test_the_stall_is_timed_from_the_recovery_it_belongs_to() -> None:
    """A recovery that ended and a new one with the same count left: the clock starts again."""
    steps = [(0, True, 500), (50, False, 0), (70, True, 500), (129, True, 500), (130, True, 500)]
    assert stuck_verdicts(steps) == [False, False, False, False, True]


def test_a_lane_silent_for_the_limit_while_marked_is_stuck() -> None:
    clock = Clock()
    watch = LaneWatch(limit=60, clock=clock)
    watch.assigned()
    for second in range(1, 120):
        clock.now = second
        watch.heard(0)  # lane 0 delivers; lane 1 has not since its assignment
        stuck = watch.stuck([0, 1], marked_at=clock.now)
        assert stuck == ([1] if second >= 60 else [])


def test_a_lane_is_not_stuck_when_no_marks_were_written_since_it_was_heard() -> None:
    """Kafka down, or no router reading: silence is expected."""
    clock = Clock()
    watch = LaneWatch(limit=60, clock=clock)
    watch.assigned()
    clock.now = 10
    watch.heard(1)
    clock.now = 200
    assert watch.stuck([1], marked_at=10.5) == []
    assert watch.stuck([1], marked_at=199) == [1]


def test_silence_counts_from_the_last_assignment() -> None:
    clock = Clock()
    watch = LaneWatch(limit=60, clock=clock)
    watch.assigned()
    clock.now = 100
    watch.assigned()  # a rebalance finished: lane 2 is new here
    clock.now = 150
    assert watch.stuck([2], marked_at=150) == []
    clock.now = 160
    assert watch.stuck([2], marked_at=160) == [2]


def test_starting_over_runs_the_same_command_again_in_the_same_process_and_counts(tmp_path: Path) -> None:
    script = tmp_path / "twice.py"
    cleaned = tmp_path / "cleaned"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            from pathlib import Path
            from prometheus_client import CollectorRegistry
            from stream_processors.metrics import ProcessorMetrics
            from stream_processors.watchdog import start_over, started_over
            registry = CollectorRegistry()
            ProcessorMetrics(registry)
            counted = registry.get_sample_value(
                "frtwatch_processor_starts_over_total", {{"cause": "lane_stuck"}}
            )
            print(os.getpid(), sys.argv[1:], started_over(), counted, flush=True)
            if started_over().get("lane_stuck", 0) < 2:
                start_over("lane_stuck", "test", lambda: Path({str(cleaned)!r}).touch())
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k != STARTED_OVER_ENV}
    run = subprocess.run(
        [sys.executable, str(script), "process", "--x"], capture_output=True, text=True, timeout=60, env=env
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 3
    assert len({line.split()[0] for line in lines}) == 1  # same pid each time
    assert all("['process', '--x']" in line for line in lines)  # same arguments
    assert lines[0].endswith("{} 0.0")
    assert lines[1].endswith("{'lane_stuck': 1} 1.0")
    assert lines[2].endswith("{'lane_stuck': 2} 2.0")  # the metric goes on counting across restarts
    assert cleaned.exists()
    assert run.stderr.count("test: starting the worker over") == 2


def test_a_garbled_count_in_the_environment_counts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for garbled in ("not json", "[1]", '{"lane_stuck": "x", "other": 3}'):
        monkeypatch.setenv(STARTED_OVER_ENV, garbled)
        assert started_over() == {}
