"""Garbage collection without long pauses in the judging.

A full collection walks every object the collector tracks, and a worker holds many long-lived
ones (accepted event ids, facts, events waiting for their grace period, their bookkeeping): on
the state of 100,000 simulated events one took 160 to 250 ms, during which nothing is judged.
That state is freed by reference counting, not by the collector (it holds no cycles), so every
second everything alive is moved out of the collector's sight (``gc.freeze``) and full
collections only ever walk the last second's survivors. Frozen once a minute, they walked a
minute's: at 50% load they still paused the judging 62 to 168 ms (BENCHMARKS.md). The young
generations are collected just before each freeze (a few ms), so that little cyclic garbage
is frozen; what is would be kept for good, so once an hour everything is handed back and
collected in one full collection, at a time of our choosing.
"""

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

FREEZE_EVERY_S = 1.0
THAW_EVERY_S = 3600.0


@dataclass
class Collector:
    clock: Callable[[], float] = time.monotonic
    _frozen_at: float = float("-inf")
    _thawed_at: float = field(init=False)

    def __post_init__(self) -> None:
        self._thawed_at = self.clock()

    def tick(self) -> None:
        """Called every second: freeze, or thaw and collect, when due."""
        now = self.clock()
        if now - self._thawed_at >= THAW_EVERY_S:
            gc.unfreeze()
            gc.collect()
            self._thawed_at, self._frozen_at = now, float("-inf")  # and freeze again at once
        if now - self._frozen_at >= FREEZE_EVERY_S:
            gc.collect(1)
            gc.freeze()
            self._frozen_at = now
