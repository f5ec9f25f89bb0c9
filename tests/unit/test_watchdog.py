import subprocess
import sys
import textwrap
from pathlib import Path

from stream_processors.watchdog import LaneWatch, RecoveryWatch


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


def test_starting_over_runs_the_same_command_again_in_the_same_process(tmp_path: Path) -> None:
    script = tmp_path / "once.py"
    marker = tmp_path / "cleaned"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys
            from pathlib import Path
            from stream_processors.watchdog import start_over
            print(os.getpid(), sys.argv[1:], flush=True)
            if not Path({str(marker)!r}).exists():
                start_over("test", lambda: Path({str(marker)!r}).touch())
            """
        )
    )
    run = subprocess.run(
        [sys.executable, str(script), "process", "--x"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    first, second = run.stdout.splitlines()
    assert first == second  # same pid, same arguments
    assert first.endswith("['process', '--x']")
    assert marker.exists()
    assert "test: starting the worker over" in run.stderr
