"""The memory verdict revisions cost: one worker's RSS under live traffic with the default
revision horizon, beside one without revisions, in one run.

    .venv/bin/python -m bench.revision_memory [--rate 5000] [--seconds 600]

Each mode gets a fresh local broker and a fresh worker, then `frtwatch simulate` sends the
same seed's traffic at ``--rate`` for ``--seconds``; the worker's resident memory is sampled
from /proc every few seconds. The events judged come from the worker's /metrics, so a worker
that fell behind the rate says so. First, the rule engine alone on 60,000 simulated events,
both ways: the memory its evidence holds per event kept (tracemalloc) and its time, alternately.
"""

import argparse
import gc
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.harness import local_kafka, service_env, write_results
from contracts.events import Envelope
from frtwatch import compiled
from frtwatch.stack.process import free_ports
from producers.plan import Message
from producers.simulator import Simulation, run
from stream_processors.admission import Gate
from stream_processors.rules.engine import Engine
from stream_processors.rules.pack import available_packs, load_packs

PARTITIONS = 6
MODES = {"with revisions (24 h horizon)": "24", "without revisions": "0"}


def engine_alone(events: int = 60_000, rounds: int = 3) -> dict[str, float]:
    messages: list[Message] = []
    start = datetime.now(UTC) - timedelta(minutes=30)
    run(Simulation(seed=3, events=events, start=start), messages.append, paced=False)
    gate = Gate(max_age=None)
    admitted: list[Envelope] = [e for e in (gate.admit(m.value).event for m in messages) if e is not None]
    packs = load_packs(available_packs())

    def judge_all(horizon: timedelta, traced: bool) -> tuple[Engine, float, int]:
        gc.collect()
        if traced:
            tracemalloc.start()
        engine = Engine(packs, horizon=horizon)
        began = time.perf_counter()
        for event in admitted:
            engine.process(event)
        engine.flush_all()
        seconds = time.perf_counter() - began
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] if traced else 0
        tracemalloc.stop()
        return engine, seconds, held

    with_, _, held_with = judge_all(timedelta(hours=24), traced=True)
    _, _, held_without = judge_all(timedelta(0), traced=True)
    kept = len(with_.evidence) if with_.evidence is not None else 0
    times: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(rounds):
        times["with"].append(judge_all(timedelta(hours=24), traced=False)[1])
        times["without"].append(judge_all(timedelta(0), traced=False)[1])
    return {
        "events": len(admitted),
        "kept": kept,
        "bytes_per_event_kept": round((held_with - held_without) / max(kept, 1)),
        "retractions": with_.stats.retractions,
        "late_detections": with_.stats.late_detections,
        "events_s_with": round(len(admitted) / min(times["with"])),
        "events_s_without": round(len(admitted) / min(times["without"])),
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def judged(metrics_port: int) -> float | None:
    """Events the worker judged so far (every event type); None while it serves no /metrics."""
    try:
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("frtwatch_processor_events_consumed_total{")
    )


def run_mode(hours: str, rate: float, seconds: float, sample: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="frtwatch-bench-mem-") as tmp:
        home = Path(tmp)
        with local_kafka(home / "kafka") as kafka:
            (metrics_port,) = free_ports(1)
            env = service_env(
                home,
                kafka,
                PARTITIONS,
                FRTWATCH_REVISION_HOURS=hours,
                FRTWATCH_PROCESSOR_METRICS_PORT=str(metrics_port),
                FRTWATCH_ALERTMANAGER_URL="",
            )
            keys = home / "keys.json"
            keys_only = [
                "simulate",
                "--events",
                "1",
                "--output",
                str(home / "one.jsonl"),
                "--keys-file",
                str(keys),
            ]
            subprocess.run(
                [sys.executable, "-m", "frtwatch", *keys_only], env=env, check=True, capture_output=True
            )
            log = (home / "worker.log").open("wb")
            worker = subprocess.Popen(
                [sys.executable, "-m", "frtwatch", "process"], env=env, stdout=log, stderr=log
            )
            try:
                while judged(metrics_port) is None and worker.poll() is None:
                    time.sleep(1)
                time.sleep(5)
                idle = rss_mib(worker.pid)
                sender = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "frtwatch",
                        "simulate",
                        "--rate",
                        str(rate),
                        "--duration",
                        str(seconds),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                samples: list[float] = []
                began = time.monotonic()
                while time.monotonic() - began < seconds:
                    time.sleep(sample)
                    if worker.poll() is not None:
                        raise RuntimeError(f"the worker exited; see {home / 'worker.log'}")
                    samples.append(rss_mib(worker.pid))
                    print(f"  {time.monotonic() - began:5.0f} s: RSS {samples[-1]:7.1f} MiB", flush=True)
                events = judged(metrics_port) or 0.0
                sender.terminate()
                sender.wait(timeout=30)
            finally:
                worker.terminate()
                worker.wait(timeout=60)
    tail = samples[len(samples) // 2 :]
    return {
        "idle_rss_mib": round(idle, 1),
        "max_rss_mib": round(max(samples), 1),
        "second_half_mean_rss_mib": round(sum(tail) / len(tail), 1),
        "final_rss_mib": round(samples[-1], 1),
        "events_judged": events,
        "events_judged_per_s": round(events / seconds, 1),
    }


def engine_row(alone: dict[str, float]) -> str:
    return (
        f"The engine alone ({'compiled' if compiled.active() else 'interpreted'}), "
        f"{alone['events']:,} simulated events: {alone['kept']:,} kept as evidence, "
        f"{alone['bytes_per_event_kept']} B each; "
        f"{alone['retractions']} retractions, {alone['late_detections']} late detections; "
        f"{alone['events_s_with']:,} events/s with revisions, {alone['events_s_without']:,} without "
        f"(best of 3 alternate rounds)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000.0, help="messages per second sent")
    parser.add_argument("--seconds", type=float, default=600.0, help="how long each mode runs")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--engine-only", action="store_true", help="only the engine alone (a minute)")
    args = parser.parse_args()
    results: dict[str, object] = {
        "rate": args.rate,
        "seconds": args.seconds,
        "judge_compiled": compiled.active(),
    }
    alone = results["engine_alone"] = engine_alone()
    print(f"the engine alone: {alone}", flush=True)
    if args.engine_only:
        print(f"written to {write_results('revision_memory_engine', results, engine_row(alone))}")
        return
    for name, hours in MODES.items():
        print(f"{name}: {args.rate:,.0f} messages/s for {args.seconds:.0f} s", flush=True)
        results[name] = run_mode(hours, args.rate, args.seconds, args.sample_seconds)
        print(f"{name}: {results[name]}", flush=True)
    with_, without = (results[name] for name in MODES)
    assert isinstance(with_, dict) and isinstance(without, dict)
    ratio = with_["max_rss_mib"] / without["max_rss_mib"]
    results["max_rss_ratio"] = round(ratio, 3)
    rows = [
        "| worker | idle RSS | max RSS | mean RSS, second half | events judged/s |",
        "|---|---|---|---|---|",
    ]
    for name in MODES:
        r = results[name]
        assert isinstance(r, dict)
        rows.append(
            f"| {name} | {r['idle_rss_mib']} MiB | {r['max_rss_mib']} MiB "
            f"| {r['second_half_mean_rss_mib']} MiB | {r['events_judged_per_s']:,.0f} |"
        )
    rows += ["", f"Max RSS with revisions / without: {ratio:.2f}x", ""]
    rows.append(engine_row(alone))
    print(f"written to {write_results('revision_memory', results, chr(10).join(rows))}")


if __name__ == "__main__":
    main()
