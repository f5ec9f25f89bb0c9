"""The contract's checked-in artifacts: JSON Schema files generated from the models, and one
example message of every type."""

import json
from pathlib import Path
from typing import Any

import msgspec

from contracts.events import EVENT_TYPES, Event
from contracts.records import DeadLetter, Violation

SCHEMA_DIR = Path(__file__).parent / "schemas"
EXAMPLES_DIR = Path(__file__).parent / "examples"

_SCHEMA_SOURCES: dict[str, Any] = {
    "event.v1.json": Event,
    "violation.v1.json": Violation,
    "deadletter.v1.json": DeadLetter,
}


def generate_schemas() -> dict[str, str]:
    """File name -> JSON Schema text, generated from the models."""
    texts = {}
    for name, model in _SCHEMA_SOURCES.items():
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://frtwatch.invalid/schemas/{name}",
            **msgspec.json.schema(model),
        }
        texts[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return texts


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    written = []
    for name, text in generate_schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def example_events() -> dict[str, bytes]:
    """Event type -> the example message (compact JSON bytes), in contract order."""
    return {
        event_type: json.dumps(json.loads((EXAMPLES_DIR / f"{event_type}.json").read_text())).encode()
        for event_type in EVENT_TYPES
    }


def example_violation() -> bytes:
    return (EXAMPLES_DIR / "violation.json").read_bytes()
