"""A worker whose table recovery stops making progress starts over.

After a rebalance under load, faust's recovery has been seen to wait for good for changelog
records its fetcher never delivers ("No event received for active tp ... since recovery
start", logged every few seconds): the worker then holds its lanes and judges none of them.
Its state is in the changelog and its processing is at-least-once, so starting the process
again is as safe as any restart, and the fresh recovery reads the changelog from the start.
"""

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("frtwatch.watchdog")

STALL_SECONDS = 60.0  # a recovery that reads nothing for this long is stuck, not slow


@dataclass
class RecoveryWatch:
    """Fed what recovery reports every few seconds; says when it has been stuck too long:
    in recovery with records left to read and the count unchanged for ``limit`` seconds."""

    limit: float = STALL_SECONDS
    clock: Callable[[], float] = time.monotonic
    _remaining: int | None = None
    _since: float = field(default=0.0)

    def stuck(self, in_recovery: bool, remaining: int) -> bool:
        now = self.clock()
        if not in_recovery or remaining != self._remaining:
            self._remaining = remaining if in_recovery else None
            self._since = now
            return False
        return remaining > 0 and now - self._since >= self.limit


def start_over(reason: str, cleanup: Callable[[], None]) -> None:
    """Replace this process with a fresh run of the same command (same pid, so whatever
    supervises it sees the same process)."""
    log.error("%s: starting the worker over", reason)
    logging.shutdown()
    cleanup()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
