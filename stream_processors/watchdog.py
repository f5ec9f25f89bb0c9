"""A worker that stops reading part of its input starts over.

Two ways faust has been seen to stop, after a rebalance under load, with no error: its table
recovery waiting for good for changelog records its fetcher never delivers ("No event received
for active tp ... since recovery start", every few seconds), and a lane it was assigned never
fetched again while the others flow (the agent idle, the lane's backlog growing; upstream,
faust-streaming issue 629). Either way the worker holds lanes and judges none of their events.
Its state is in the changelog and its processing is at-least-once, so starting the process
again is as safe as any restart, and the fresh worker recovers and reads every lane.

Every router sends every lane a mark twice a second, so an assigned lane that delivers nothing
for long while marks are being written to it is not quiet but stuck.
"""

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

log = logging.getLogger("frtwatch.watchdog")

STALL_SECONDS = 60.0  # this long without progress is stuck, not slow
CAUSES = ("recovery_stuck", "lane_stuck", "rebuild_failed")
# How often this process has started over, by cause: handed on to the fresh run through its
# environment, so the count survives the restart it counts.
STARTED_OVER_ENV = "FRTWATCH_STARTED_OVER"


@dataclass
class RecoveryWatch:
    """Fed what recovery reports every few seconds; says when it has been stuck too long:
    in recovery with records left to read and the count unchanged for ``limit`` seconds."""

    limit: float = STALL_SECONDS
    clock: Callable[[], float] = time.monotonic
    _remaining: int | None = None
    _since: float = 0.0

    def stuck(self, in_recovery: bool, remaining: int) -> bool:
        now = self.clock()
        if not in_recovery or remaining != self._remaining:
            self._remaining = remaining if in_recovery else None
            self._since = now
            return False
        return remaining > 0 and now - self._since >= self.limit


@dataclass
class LaneWatch:
    """When each lane last delivered a message to the judge. A lane is stuck when it has
    delivered nothing for ``limit`` seconds although marks were written to it since (every
    router marks every lane; with Kafka down none are, and nothing is called stuck)."""

    limit: float = STALL_SECONDS
    clock: Callable[[], float] = time.monotonic
    _heard: dict[int, float] = field(default_factory=dict)
    _since: float = 0.0  # lanes (re)assigned: none has had a chance to deliver before this

    def heard(self, lane: int) -> None:
        self._heard[lane] = self.clock()

    def assigned(self) -> None:
        """A rebalance is done: every lane's silence counts from now."""
        self._heard.clear()
        self._since = self.clock()

    def stuck(self, lanes: Iterable[int], marked_at: float) -> list[int]:
        """The lanes among ``lanes`` that are stuck, given when marks were last written."""
        now = self.clock()
        found = []
        for lane in lanes:
            heard = max(self._heard.get(lane, self._since), self._since)
            if now - heard >= self.limit and marked_at > heard + 1.0:
                found.append(lane)
        return found


def started_over() -> dict[str, int]:
    """How often this process has started over so far, by cause (see STARTED_OVER_ENV)."""
    try:
        counts = json.loads(os.environ.get(STARTED_OVER_ENV, "{}"))
    except ValueError:
        return {}
    if not isinstance(counts, dict):
        return {}
    return {cause: n for cause, n in counts.items() if cause in CAUSES and isinstance(n, int) and n > 0}


def start_over(cause: str, reason: str, cleanup: Callable[[], None]) -> None:
    """Replace this process with a fresh run of the same command (same pid, so whatever
    supervises it sees the same process). ``cause``: one of CAUSES, counted."""
    log.error("%s: starting the worker over", reason)
    logging.shutdown()
    cleanup()
    counts = started_over()
    counts[cause] = counts.get(cause, 0) + 1
    os.environ[STARTED_OVER_ENV] = json.dumps(counts)
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
