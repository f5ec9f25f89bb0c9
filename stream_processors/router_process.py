"""The router in a process of its own, so that it routes on another core than the judge.

The worker is one busy core of Python: while the router routed a backlog in the judge's event
loop, the judge got half of it (BENCHMARKS.md, "One core, busy throughout"). The worker starts
``python -m stream_processors.router_process`` and reads what it reports on its stdout, a line
each (dead letters it wrote, the lag of the partitions it reads, when its marks were
acknowledged), into the worker's own metrics and watchdog: one /metrics page, as before.
Logs go to stderr, the worker's log. The router stops when its stdin closes, so it never
outlives the worker, however the worker ends.
"""

import asyncio
import contextlib
import logging
import signal
import sys
from asyncio.subprocess import PIPE
from typing import IO

from contracts import topics
from frtwatch.config import Settings
from stream_processors.metrics import ProcessorMetrics
from stream_processors.router import GROUP_ID, Router

log = logging.getLogger("frtwatch.router")


class LineReports:
    """The router's reports as lines on ``out``, sent with each round of marks."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def dead_letter(self, reason: str) -> None:
        self.out.write(f"dead_letter {reason.split(':', 1)[0]}\n")

    def lag(self, partition: int, records: int) -> None:
        self.out.write(f"lag {partition} {records}\n")

    def marked(self, at: float) -> None:
        self.out.write(f"marked {at}\n")
        self.out.flush()


class RouterProcess:
    """The worker's side: starts the router and takes in its reports."""

    def __init__(self, metrics: ProcessorMetrics) -> None:
        self.metrics = metrics
        # When Kafka last acknowledged the router's marks for every lane: time.monotonic() of
        # the router's process, the same clock as this one's (the system's monotonic clock).
        self.marked_at = 0.0

    async def run(self, log_level: int) -> int:
        """Until the router exits (returns its exit code); cancelled, it stops the router."""
        router = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stream_processors.router_process", str(log_level), stdin=PIPE, stdout=PIPE
        )
        assert router.stdout is not None and router.stdin is not None
        try:
            async for line in router.stdout:
                self._take(line.decode().split())
            return await router.wait()
        finally:
            if router.returncode is None:  # cancelled: the worker is stopping
                router.stdin.close()
                try:
                    await asyncio.wait_for(router.wait(), 15.0)
                except TimeoutError:
                    router.kill()

    def _take(self, report: list[str]) -> None:
        match report:
            case ["dead_letter", reason]:
                self.metrics.dead_letter(reason)
            case ["lag", partition, records] if records.isdigit():
                self.metrics.consumer_lag.labels(partition).set(int(records))
            case ["marked", at] if at.replace(".", "", 1).isdigit():
                self.marked_at = float(at)
            case _:  # a library printing to stdout, say: not to be taken for a report
                log.warning("the router wrote something that is no report: %s", " ".join(report))


async def _route_until_stdin_closes() -> None:
    settings = Settings.from_env()
    router = Router(
        settings.bootstrap_servers,
        topics.LANES,
        settings.events_partitions,
        GROUP_ID,
        LineReports(sys.stdout),
        settings.kafka_security,
    )
    routing = asyncio.ensure_future(router.run())
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    closed = asyncio.ensure_future(stdin.read())
    await asyncio.wait([routing, closed], return_when=asyncio.FIRST_COMPLETED)
    routing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await routing  # its consumer leaves the group, so the next router starts at once


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C is the worker's to handle: it closes stdin
    logging.basicConfig(
        level=int(sys.argv[1]) if len(sys.argv) > 1 else logging.WARNING,  # the worker's level
        stream=sys.stderr,
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
    )
    try:
        asyncio.run(_route_until_stdin_closes())
    except Exception:
        log.exception("the router failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
