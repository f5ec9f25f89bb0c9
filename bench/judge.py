"""The judging alone, this tree against a baseline commit, in alternating rounds (no Kafka):

    .venv/bin/python -m bench.judge [--against 6b47afa] [--events 20000] [--rounds 5]

The simulator's signed traffic is made once and written to a temporary file with its key
registry. The baseline is checked out in a temporary `git worktree`, and each tree's judge is
compiled (`frtwatch compile`, run with that tree first on the path: frtwatch/compiled.py keys a
build by its tree's sources). Each round then judges the same events in a fresh process of
each tree, the two in alternating order, with the worker's construction (stream_processors/
app.py: the journal's mappings, the settings' grace, horizon and evidence, event time moved by
the router's marks) and the events in bundles as a lane receives them: expect, judge each
event, then the source's mark. Reported: events/s of each side (median, min and max of the
rounds) and their ratio per round, whether each ran compiled, and the violations and
rejections each found, which must be the same. The rates are per second of the judging
process's own CPU time (its wall-clock rate is in the JSON too): on shared cores the time
another process takes the CPU is not counted against either side.
"""

import argparse
import hashlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = 64  # events a lane receives in one record from the router (a batch of one operator)
LANE, SOURCE = 0, "0"


def _run_one(events_file: Path, keys: Path) -> dict[str, Any]:
    """Judge the events in this process, with the tree first on sys.path (PYTHONPATH)."""
    from datetime import timedelta

    from frtwatch import compiled

    compiled.install()  # the finder, wherever the tree installs it at import
    from contracts.timestamps import parse_timestamp
    from stream_processors.admission import Gate, load_keys
    from stream_processors.journal import Journal
    from stream_processors.judge import Judge
    from stream_processors.rules.pack import available_packs, load_packs

    lines = events_file.read_bytes().splitlines()
    bundles: list[tuple[str, list[bytes]]] = []  # (the mark's event time, the values)
    for first in range(0, len(lines), BUNDLE):
        values = lines[first : first + BUNDLE]
        bundles.append((max(json.loads(value)["occurred_at"] for value in values), values))
    journal = Journal(lambda partition, key, value: None)
    gate = Gate(load_keys(keys), seen=journal.seen, last_seq=journal.last_seq, dedup_window=None)
    judge = Judge(
        load_packs(available_packs()),
        gate,
        facts=journal.facts,
        pending=journal.pending,
        published=journal.published,
        published_window=None,
        grace=timedelta(seconds=10),
        horizon=timedelta(hours=24),
        evidence_limit=200_000 // 6,
        sources=(SOURCE,),
        marks_only=True,
    )
    violations: list[Any] = []
    problems = offset = 0
    began, began_cpu = time.perf_counter(), time.process_time()
    for reached, values in bundles:
        judge.expect(LANE, {SOURCE})
        for raw in values:
            verdict = judge.judge(raw, f"{SOURCE}:{offset}", LANE)
            offset += 1
            problems += len(verdict.problems)
            violations += verdict.violations
        violations += judge.mark(LANE, SOURCE, parse_timestamp(reached), None)
    violations += judge.flush_all()
    elapsed, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    digest = hashlib.sha256()
    for violation in violations:
        digest.update(f"{violation.revision_id}|{violation.status}|{violation.rule_id}\n".encode())
    return {
        "events_s": len(lines) / cpu,
        "wall_events_s": len(lines) / elapsed,
        "compiled": compiled.active(),
        "violations": len(violations),
        "problems": problems,
        "verdicts_sha256": digest.hexdigest()[:16],
    }


def _python(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This interpreter, with ``tree`` first on the path (its packages, not the installed ones;
    for mypyc's type checking too, which does not follow the editable install's finder)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "MYPYPATH": str(tree), "FRTWATCH_COMPILED": "1"}
    done = subprocess.run([sys.executable, "-P", *args], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} in {tree}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done


def _judged_compiled(tree: Path, events_file: Path, keys: Path) -> dict[str, Any]:
    """One side of a round, compiled: built once per tree's sources, and built again if they
    changed while it ran (another edit in a shared working tree)."""
    for _ in range(3):
        _python(tree, "-m", "frtwatch", "compile")
        out = _python(tree, str(Path(__file__).resolve()), "--one", str(events_file), str(keys))
        run: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
        if run["compiled"]:
            return run
    raise RuntimeError(f"{tree} ran interpreted three times: its sources keep changing")


def _traffic(events: int, home: Path) -> tuple[Path, Path]:
    from datetime import UTC, datetime, timedelta

    from producers.plan import Message
    from producers.simulator import Simulation, plan, run, write_keys

    # Event times spread as live traffic's (500 a second, ending a little before now), so
    # deciding waiting events is part of the judging, as in bench.processor.
    start = datetime.now(UTC) - timedelta(seconds=events / 500 + 30)
    sim = Simulation(seed=7, events=events, rate=500, start=start)
    sent: list[Message] = []
    run(sim, sent.append, paced=False)
    events_file, keys = home / "events.jsonl", home / "keys.json"
    events_file.write_bytes(b"\n".join(message.value for message in sent) + b"\n")
    write_keys(keys, plan(sim)[0])
    return events_file, keys


def measure(against: str, tree: str | None, events: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="frtwatch-bench-judge-") as tmp:
        home = Path(tmp)
        events_file, keys = _traffic(events, home)
        trees = {"baseline": home / "baseline", "today": ROOT if tree is None else home / "today"}
        checkouts = {home / "baseline": against, **({home / "today": tree} if tree else {})}
        for path, commit in checkouts.items():
            subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=ROOT, check=True)
        try:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
            for round_ in range(rounds):
                order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
                for name in order:
                    runs[name].append(_judged_compiled(trees[name], events_file, keys))
                    print(
                        f"round {round_ + 1} {name}: {runs[name][-1]['events_s']:,.0f} events/s", flush=True
                    )
        finally:
            for path in checkouts:
                subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)
    return {**_summary(against, events, runs), "tree": tree or "working tree"}


def _summary(against: str, events: int, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def side(name: str) -> dict[str, Any]:
        rates = [run["events_s"] for run in runs[name]]
        first = runs[name][0]
        return {
            "events_s": rates,
            "median_events_s": statistics.median(rates),
            "wall_median_events_s": statistics.median(run["wall_events_s"] for run in runs[name]),
            "us_per_event": 1e6 / statistics.median(rates),
            "compiled": all(run["compiled"] for run in runs[name]),
            "violations": first["violations"],
            "problems": first["problems"],
            "verdicts_sha256": first["verdicts_sha256"],
            "same_every_round": all(
                (run["violations"], run["verdicts_sha256"]) == (first["violations"], first["verdicts_sha256"])
                for run in runs[name]
            ),
        }

    ratios = [t["events_s"] / b["events_s"] for t, b in zip(runs["today"], runs["baseline"], strict=True)]
    baseline, today = side("baseline"), side("today")
    return {
        "against": against,
        "events": events,
        "rounds": len(ratios),
        "baseline": baseline,
        "today": today,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
        # The fastest round of each: the least disturbed by the machine's other work.
        "best_ratio": max(today["events_s"]) / max(baseline["events_s"]),
        "same_verdicts": (baseline["violations"], baseline["verdicts_sha256"], baseline["problems"])
        == (today["violations"], today["verdicts_sha256"], today["problems"]),
    }


def table(results: dict[str, Any]) -> str:
    rows = [
        f"| | baseline {results['against']} | {results['tree']} |",
        "|---|---|---|",
    ]
    b, t = results["baseline"], results["today"]
    rows += [
        f"| events per CPU second, median of {results['rounds']} "
        f"| {b['median_events_s']:,.0f} | {t['median_events_s']:,.0f} |",
        f"| the same, min to max | {min(b['events_s']):,.0f} to {max(b['events_s']):,.0f} "
        f"| {min(t['events_s']):,.0f} to {max(t['events_s']):,.0f} |",
        f"| events per wall-clock second, median | {b['wall_median_events_s']:,.0f} "
        f"| {t['wall_median_events_s']:,.0f} |",
        f"| CPU us an event (median) | {b['us_per_event']:.1f} | {t['us_per_event']:.1f} |",
        f"| compiled (mypyc) | {b['compiled']} | {t['compiled']} |",
        f"| violation records | {b['violations']:,} | {t['violations']:,} |",
        f"| rejections | {b['problems']:,} | {t['problems']:,} |",
        f"| verdicts digest | {b['verdicts_sha256']} | {t['verdicts_sha256']} |",
        "",
        f"Ratio {results['tree']} / baseline, per round: {', '.join(f'{r:.2f}' for r in results['ratios'])}; "
        f"median {results['median_ratio']:.2f} (spread {min(results['ratios']):.2f} to "
        f"{max(results['ratios']):.2f}); fastest rounds {results['best_ratio']:.2f}. "
        f"Same verdicts: {results['same_verdicts']}.",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--against", default="6b47afa", help="The baseline commit.")
    parser.add_argument("--tree", help="A commit to measure instead of the working tree.")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--one", nargs=2, metavar=("EVENTS", "KEYS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # one side of one round, in its tree's process
        print(json.dumps(_run_one(Path(args.one[0]), Path(args.one[1]))))
        return
    from bench.harness import write_results

    results = measure(args.against, args.tree, args.events, args.rounds)
    print(table(results))
    print(f"written to {write_results('judge', results, table(results))}")
    if not results["same_verdicts"]:
        sys.exit("the two trees' verdicts differ")


if __name__ == "__main__":
    main()
