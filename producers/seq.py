"""A per-source sequence counter that survives a restart of the emitter.

Every value is written to the file (pwrite, no fsync) before it is used, so a crashed or
restarted emitter continues where it stopped: the kernel keeps the write even if the process
dies. close() fsyncs. A lock on the file stops two emitters from sharing one counter.
"""

import fcntl
import os
import threading
from pathlib import Path

_WIDTH = 20


class SeqCounter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise RuntimeError(f"{path} is in use by another emitter") from None
        text = os.pread(self._fd, _WIDTH, 0).strip()
        self._next = int(text) if text else 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            value = self._next
            self._next += 1
            os.pwrite(self._fd, b"%0*d" % (_WIDTH, self._next), 0)
            return value

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)  # releases the lock
            self._fd = -1
