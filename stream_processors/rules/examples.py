"""The packs' example sequences (packs/examples.yaml): short event histories with the exact
violations each pack must produce, rule by rule, including zero for every rule not named."""

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from contracts import canonical_json, decode_event
from contracts.events import Envelope
from contracts.records import Violation
from contracts.timestamps import format_timestamp, parse_timestamp
from stream_processors.rules.engine import Engine, run_events
from stream_processors.rules.pack import PACKS_DIR, Pack

EXAMPLES_FILE = PACKS_DIR / "examples.yaml"
BACK_OFFICE = {"consent.granted", "consent.withdrawn", "registry.snapshot"}


@dataclass(frozen=True)
class Outcome:
    example: str
    pack: str
    problems: list[str]


def load_examples(path: Path = EXAMPLES_FILE) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def build_events(document: dict[str, Any], example: dict[str, Any]) -> list[Envelope]:
    base = parse_timestamp(document["base_time"])
    events: list[Envelope] = []
    for index, spec in enumerate(example["events"]):
        spec = dict(spec)
        event_type = spec.pop("type")
        at = base + timedelta(seconds=float(spec.pop("at", 0)))
        back_office = event_type in BACK_OFFICE
        fields = {
            "schema": "frt.v1",
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"frtwatch-example/{example['name']}/{index}")),
            "type": event_type,
            "occurred_at": format_timestamp(at),
            "operator_id": "op-1",
            "site_id": None if back_office else "site-1",
            "device_id": None if back_office else "cam-1",
            "seq": None,
            "sig": None,
            **document["defaults"].get(event_type, {}),
            **spec,
        }
        events.append(decode_event(canonical_json(fields)))
    return events


def run_example(document: dict[str, Any], example: dict[str, Any], pack: Pack) -> list[str]:
    """What differs between the example's expectation for ``pack`` and what the engine found.

    ``expect`` is the final state: the violations still open once every record is in (a late
    fact may have retracted some, or found some late). ``retracted`` and ``found_late`` name
    the revisions that must have happened on the way; both default to none, so every other
    example also shows that its facts, late or not, revised nothing."""
    events = build_events(document, example)
    engine = Engine(
        [pack],
        grace=timedelta(seconds=float(document.get("grace_seconds", 10))),
        horizon=timedelta(seconds=horizon_seconds(document, example)),
    )
    return check_records(example, pack, events, list(run_events(engine, iter(events))))


def horizon_seconds(document: dict[str, Any], example: dict[str, Any]) -> float:
    return float(example.get("horizon_seconds", document.get("horizon_seconds", 86_400)))


def check_records(
    example: dict[str, Any], pack: Pack, events: list[Envelope], records: list[Violation]
) -> list[str]:
    """What differs between the example's expectation for ``pack`` and the violation records
    made of its ``events``, in the order they were made."""
    index = {event.event_id: n for n, event in enumerate(events)}
    current: dict[str, tuple[str, int]] = {}
    retracted: Counter[tuple[str, int]] = Counter()
    late: Counter[tuple[str, int]] = Counter()
    for record in records:
        found = (record.rule_id, index[record.event_ids[0]])
        if record.status == "retracted":
            retracted[found] += 1
            current.pop(record.violation_id, None)
            continue
        if record.revised_by is not None:
            late[found] += 1
        current[record.violation_id] = found
    problems = _compare("", Counter(current.values()), _expected(example, pack, "expect"))
    problems += _compare("retracted ", retracted, _expected(example, pack, "retracted"))
    problems += _compare("found late ", late, _expected(example, pack, "found_late"))
    return problems


def _expected(example: dict[str, Any], pack: Pack, name: str) -> Counter[tuple[str, int]]:
    rules = {**(example.get(name) or {}), **(example.get(f"{name}_by_pack") or {}).get(pack.name, {})}
    return Counter((rule, n) for rule, positions in rules.items() for n in positions or [])


def _compare(what: str, found: Counter[tuple[str, int]], expected: Counter[tuple[str, int]]) -> list[str]:
    problems = [f"expected {what}{rule} on event {n}, not found" for rule, n in sorted(expected - found)]
    return problems + [f"unexpected {what}{rule} on event {n}" for rule, n in sorted(found - expected)]


def run_all(packs: list[Pack], path: Path = EXAMPLES_FILE) -> list[Outcome]:
    document = load_examples(path)
    return [
        Outcome(example["name"], pack.name, run_example(document, example, pack))
        for example in document["examples"]
        for pack in packs
    ]
