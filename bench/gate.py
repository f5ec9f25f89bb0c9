"""The gate's cost per event, HMAC-SHA256 beside Ed25519, in one run (no Kafka):

    .venv/bin/python -m bench.processor --gate-only [--events 20000] [--rounds 5]

The simulator's traffic for one fleet seed is made twice, its devices and back offices signing
with HMAC-SHA256 keys, then with Ed25519 keys, and each fleet is enrolled in a key registry.
Per scheme, in alternating rounds on the same machine:
- the gate with the registry, against the same gate without one (no identity checked): the
  difference is what identity costs an event;
- the judging alone (admission and rules, as bench.processor's judge_alone);
- signing on the device (the SDK's EventBuilder.build, without and with a key).
The fastest of the rounds (the least disturbed by the machine's other work).
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.keyring import ED25519, HMAC_SHA256, Keyring, signing_key
from frtwatch import compiled
from producers.builder import EventBuilder
from producers.fleet import FleetShape
from producers.plan import Message
from producers.simulator import Simulation, enrol_fleet, plan, run
from stream_processors.admission import Gate
from stream_processors.judge import Judge
from stream_processors.rules.pack import available_packs, load_packs

SCHEMES = (HMAC_SHA256, ED25519)


def traffic(scheme: str, events: int) -> tuple[list[bytes], Keyring]:
    start = datetime.now(UTC) - timedelta(seconds=events / 500 + 60)
    sim = Simulation(seed=7, events=events, rate=500, start=start, shape=FleetShape(scheme=scheme))
    sent: list[Message] = []
    run(sim, sent.append, paced=False)
    return [m.value for m in sent], enrol_fleet(Keyring(), plan(sim)[0])


def _seconds(work: Callable[..., None], *args: Any) -> float:
    began = time.perf_counter()
    work(*args)
    return time.perf_counter() - began


def _admit_all(gate: Gate, values: list[bytes]) -> None:
    for n, value in enumerate(values):
        if gate.admit(value, f"0:{n}").event is None:
            raise AssertionError("the bench's own traffic was refused")


def _judge_all(keyring: Keyring, values: list[bytes]) -> None:
    judge = Judge(load_packs(available_packs()), Gate(keyring), facts={}, pending={}, published={})
    for n, value in enumerate(values):
        judge.judge(value, f"0:{n}")
    judge.flush_all()


def _sign_all(builder: EventBuilder, count: int) -> None:
    for _ in range(count):
        builder.build("media.deleted", media_id="m-1")


def measure(events: int, rounds: int) -> dict[str, Any]:
    made = {scheme: traffic(scheme, events) for scheme in SCHEMES}
    timings: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        timings.setdefault(name, []).append(seconds)

    builders = {
        "unsigned": EventBuilder(operator_id="op", site_id="s", device_id="d"),
        **{
            scheme: EventBuilder(
                operator_id="op", site_id="s", device_id="d", key=signing_key(scheme, b"k" * 32)
            )
            for scheme in SCHEMES
        },
    }
    for _ in range(rounds):  # alternating, so a noisy neighbour weighs on every mode alike
        for scheme, (values, keyring) in made.items():
            add(f"{scheme}_no_registry", _seconds(_admit_all, Gate(max_age=None), values))
            add(f"{scheme}_gate", _seconds(_admit_all, Gate(keyring, max_age=None), values))
            add(f"{scheme}_judge", _seconds(_judge_all, keyring, values))
        for name, builder in builders.items():
            add(f"{name}_build", _seconds(_sign_all, builder, events))
    per_event_us = {name: min(t) / events * 1e6 for name, t in timings.items()}
    results: dict[str, Any] = {"events": events, "rounds": rounds, "judge_compiled": compiled.active()}
    for scheme in SCHEMES:
        gate, bare = per_event_us[f"{scheme}_gate"], per_event_us[f"{scheme}_no_registry"]
        results[scheme] = {
            "gate_us": gate,
            "gate_without_registry_us": bare,
            "identity_us": gate - bare,
            "judge_events_s": 1e6 / per_event_us[f"{scheme}_judge"],
            "sign_us": per_event_us[f"{scheme}_build"] - per_event_us["unsigned_build"],
        }
    results["unsigned_build_us"] = per_event_us["unsigned_build"]
    return results


def table(results: dict[str, Any]) -> str:
    hmac, ed = results[HMAC_SHA256], results[ED25519]

    def row(label: str, field: str, unit: str, digits: int = 2) -> str:
        a, b = hmac[field], ed[field]
        return f"| {label} | {a:,.{digits}f} {unit} | {b:,.{digits}f} {unit} | {b / a:.2f}x |"

    return "\n".join(
        [
            f"Events: {results['events']:,} simulated (one fleet seed, each scheme), "
            f"the fastest of {results['rounds']} alternating rounds; the judge "
            f"{'compiled by mypyc' if results['judge_compiled'] else 'interpreted'}.",
            "",
            "| per event | HMAC-SHA256 | Ed25519 | Ed25519 / HMAC |",
            "|---|---|---|---|",
            row("the gate with a key registry", "gate_us", "µs"),
            row("the same gate without a registry (no identity)", "gate_without_registry_us", "µs"),
            row("identity (the difference)", "identity_us", "µs"),
            row("the judging alone (admission + rules), events/s", "judge_events_s", "", 0),
            row("signing on the device (EventBuilder.build)", "sign_us", "µs"),
        ]
    )
