"""The floor of faust's per-event machinery: an agent that does nothing but count.

    FRTWATCH_KAFKA_BOOTSTRAP=... FLOOR_EVENTS=N python -m bench.faust_floor

Run by bench.processor as a baseline beside the raw consume rate: whatever a faust worker does,
it cannot judge events faster than faust hands them over. Prints the rate and exits.
"""

import os
import sys
import tempfile
import time
from typing import Any

import faust

TARGET = int(os.environ.get("FLOOR_EVENTS", "100000"))
app = faust.App(
    f"frtwatch-bench-floor-{os.getpid()}",
    broker=[f"kafka://{s}" for s in os.environ.get("FRTWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092").split(",")],
    value_serializer="raw",
    key_serializer="raw",
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    store="memory://",
    datadir=tempfile.mkdtemp(prefix="frtwatch-floor-"),
)
events = app.topic("frt.events.v1")
state: dict[str, Any] = {"n": 0, "began": None}


@app.agent(events)
async def count(stream: Any) -> None:
    async for _ in stream.events():
        if state["began"] is None:
            state["began"] = time.monotonic()
        state["n"] += 1
        if state["n"] >= TARGET:
            rate = (state["n"] - 1) / (time.monotonic() - state["began"])
            os.write(1, f"FLOOR {rate:.0f}\n".encode())  # faust has wrapped sys.stdout
            os._exit(0)  # a measurement, not a service: stop at once


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()
