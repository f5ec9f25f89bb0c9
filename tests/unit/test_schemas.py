"""The checked-in JSON Schema files: generated from the models, and true to them."""

import json

import jsonschema
import pytest

from contracts import EVENT_TYPES
from contracts.artifacts import SCHEMA_DIR, example_events, example_violation, generate_schemas


@pytest.mark.parametrize("name", sorted(generate_schemas()))
def test_checked_in_schema_matches_the_models(name: str) -> None:
    """Fails when a model changed and `make schemas` was not run."""
    assert (SCHEMA_DIR / name).read_text() == generate_schemas()[name], f"run `make schemas` to update {name}"


def schema(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((SCHEMA_DIR / name).read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_example_event_validates_against_the_schema(event_type: str) -> None:
    jsonschema.validate(json.loads(example_events()[event_type]), schema("event.v1.json"))


def test_the_schema_rejects_what_the_decoder_rejects() -> None:
    event = json.loads(example_events()["device.registered"])
    validator = jsonschema.Draft202012Validator(schema("event.v1.json"))
    for field, value in [
        ("venue_type", "casino"),
        ("purposes", []),
        ("event_id", "x"),
        ("schema", "frt.v2"),
        ("occurred_at", "2026-11-21T08:00:00+08:00"),
        ("seq", -1),
        ("type", "unknown.type"),
    ]:
        assert not validator.is_valid({**event, field: value}), field


def test_the_example_violation_validates() -> None:
    jsonschema.validate(json.loads(example_violation()), schema("violation.v1.json"))
