"""Start, find and stop the stack's server processes, with a pid file and a log file each."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class StackError(RuntimeError):
    """A service could not be started or reached; the message carries its log tail."""


def free_ports(count: int) -> list[int]:
    """Loopback ports free right now (bound together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(text)


@dataclass(frozen=True)
class ManagedProcess:
    """One server process. ``name`` names its pid file (run/NAME.pid) and log (logs/NAME.log)."""

    name: str
    home: Path

    @property
    def pid_path(self) -> Path:
        return self.home / "run" / f"{self.name}.pid"

    @property
    def log_path(self) -> Path:
        return self.home / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the live process, or None (a stale pid file is removed)."""
        try:
            pid_text, started = self.pid_path.read_text().split()
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        if _alive(pid) and _start_time(pid) == started:  # not a reused pid
            return pid
        self.pid_path.unlink(missing_ok=True)
        return None

    def start(self, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        self.pid_path.write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
        return proc.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout``. True if a process was running."""
        return bool(stop_all([self], timeout))

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``check`` until true; fail with the log tail on timeout or if the process dies."""
        deadline = time.monotonic() + timeout
        while True:
            if self.pid() is None:
                raise StackError(
                    f"{self.name} exited while {what}; log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            try:
                if check():
                    return
            except Exception:  # not up yet: connection refused and the like
                pass
            if time.monotonic() > deadline:
                tail = log_tail(self.log_path)
                raise StackError(f"{self.name} not {what} after {timeout:.0f}s; log {self.log_path}:\n{tail}")
            time.sleep(0.25)


def stop_all(processes: list[ManagedProcess], timeout: float = 30.0) -> list[str]:
    """Stop several processes together (SIGTERM to all, then SIGKILL to whoever is left when
    ``timeout`` runs out), so that peers such as a KRaft quorum shut down side by side.
    Returns the names of those that were running."""
    running = [(proc, pid) for proc in processes if (pid := proc.pid()) is not None]
    for _, pid in running:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc, pid in running:
        while _alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while _alive(pid):
                _reap(pid)
                time.sleep(0.05)
        proc.pid_path.unlink(missing_ok=True)
    return [proc.name for proc, _ in running]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (our own, not yet reaped) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
