"""Properties of the codec over generated input: valid events round-trip, and no input makes
the decoder fail with anything but a ContractError."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import ContractError, decode_event, encode_event
from contracts.artifacts import example_events

EXAMPLES = [json.loads(raw) for raw in example_events().values()]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=500)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_refused_cleanly_or_accepted(raw: bytes) -> None:
    try:
        decode_event(raw)
    except ContractError as error:
        assert error.reason


@settings(max_examples=1000)
@given(st.sampled_from(EXAMPLES), st.sampled_from(sorted({k for e in EXAMPLES for k in e})), json_values)
def test_any_field_replaced_by_any_json_value(example: dict[str, object], field: str, value: object) -> None:
    raw = json.dumps({**example, field: value}).encode()
    try:
        event = decode_event(raw)
    except ContractError as error:
        assert error.reason
    else:
        assert decode_event(encode_event(event)) == event


@settings(max_examples=300)
@given(st.sampled_from(EXAMPLES), st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=3))
def test_extra_fields_never_change_the_decoded_event(
    example: dict[str, object], extra: dict[str, object]
) -> None:
    extra = {k: v for k, v in extra.items() if k not in example}
    assert decode_event(json.dumps({**extra, **example}).encode()) == decode_event(
        json.dumps(example).encode()
    )
