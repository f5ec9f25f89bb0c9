"""Selections as one SQL condition with bound parameters, and the API's opaque page cursor."""

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from audit.queries import Cursor
from audit.selection import ASKER, EARLIEST_MS, LATEST_MS, Selection, milliseconds

MOMENT_MS = 1_795_248_000_123  # 2026-11-21T08:00:00.123Z


def test_an_empty_selection_selects_everything() -> None:
    assert Selection().where() == ("1", {})


def test_equality_filters_bind_parameters_by_name() -> None:
    clause, parameters = Selection(kind="event", operator_id="op-000", site_id="site-1").where()
    assert clause == "kind = %(kind)s AND operator_id = %(operator_id)s AND site_id = %(site_id)s"
    assert parameters == {"kind": "event", "operator_id": "op-000", "site_id": "site-1"}


def test_values_are_never_spliced_into_the_clause() -> None:
    hostile = "x' OR 1=1 --"
    clause, parameters = Selection(subject_ref=hostile).where()
    assert hostile not in clause
    assert parameters == {"subject_ref": hostile}


def test_since_and_until_bind_exact_epoch_milliseconds() -> None:
    since = datetime(2026, 11, 21, 8, 0, 0, 123000, tzinfo=UTC)
    clause, parameters = Selection(since=since, until=since + timedelta(milliseconds=1)).where()
    assert "%(since_ms)s" in clause and "%(until_ms)s" in clause
    assert parameters == {"since_ms": MOMENT_MS, "until_ms": MOMENT_MS + 1}


def test_a_naive_datetime_is_utc() -> None:
    assert milliseconds(datetime(2026, 11, 21, 8, 0, 0, 123000)) == MOMENT_MS


def test_an_offset_datetime_is_converted_to_utc() -> None:
    shanghai = timezone(timedelta(hours=8))
    assert milliseconds(datetime(2026, 11, 21, 16, 0, 0, 123000, tzinfo=shanghai)) == MOMENT_MS


@pytest.mark.parametrize(
    ("moment", "bound"),
    [
        (datetime(1, 1, 1), datetime(1900, 1, 1, tzinfo=UTC)),
        (datetime(1, 1, 1, tzinfo=UTC), datetime(1900, 1, 1, tzinfo=UTC)),
        (datetime(9999, 12, 31, 23, 59, 59), datetime(2299, 12, 31, tzinfo=UTC)),
        (datetime(9999, 12, 31, tzinfo=UTC), datetime(2299, 12, 31, tzinfo=UTC)),
    ],
)
def test_out_of_range_datetimes_are_clamped(moment: datetime, bound: datetime) -> None:
    assert milliseconds(moment) == milliseconds(bound) == int(bound.timestamp()) * 1000
    _, parameters = Selection(since=moment, until=moment).where()
    assert parameters["since_ms"] == parameters["until_ms"] == milliseconds(bound)


def test_no_operators_in_scope_selects_nothing() -> None:
    clause, _ = Selection(kind="event", operators=()).where()
    assert clause.split(" AND ")[-1] == "0"


def test_operators_bind_a_sorted_tuple() -> None:
    clause, parameters = Selection(kind="event", operators=("b", "a")).where()
    assert clause == "kind = %(kind)s AND operator_id IN %(operators)s"
    assert parameters == {"kind": "event", "operators": ("a", "b")}


def test_a_scoped_read_of_every_kind_takes_query_records_by_who_asked_not_by_operator() -> None:
    clause, parameters = Selection(operators=("op-1",), askers=("op-1-dpo",)).where()
    assert clause == (
        "operator_id IN %(operators_or_none)s AND"
        f" if(kind = 'query', {ASKER} IN %(askers)s, operator_id IN %(operators)s)"
    )
    assert parameters == {
        "operators": ("op-1",),
        "askers": ("op-1-dpo",),
        "operators_or_none": ("", "op-1"),
    }


def test_query_records_are_selected_by_asker_alone() -> None:
    clause, parameters = Selection(kind="query", operators=("op-1",), askers=("b", "a")).where()
    assert clause == f"kind = %(kind)s AND {ASKER} IN %(askers)s"
    assert parameters["askers"] == ("a", "b")


def test_other_kinds_are_selected_by_operator_alone() -> None:
    clause, _ = Selection(kind="violation", operators=("op-1",), askers=("a",)).where()
    assert clause == "kind = %(kind)s AND operator_id IN %(operators)s"


@pytest.mark.parametrize(
    ("operators", "askers", "scope"),
    [
        ((), None, "if(kind = 'query', 1, 0)"),  # an auditor: every query record, no other row
        ((), ("a",), f"if(kind = 'query', {ASKER} IN %(askers)s, 0)"),
        (None, (), "if(kind = 'query', 0, 1)"),  # every operator's rows, no query record
    ],
)
def test_empty_scopes_select_none_of_their_kind(
    operators: tuple[str, ...] | None, askers: tuple[str, ...] | None, scope: str
) -> None:
    assert Selection(operators=operators, askers=askers).where()[0] == scope


def test_describe_omits_none_renders_datetimes_iso_and_sorts_operators() -> None:
    since = datetime(2026, 11, 21, 8, 0, 0, 123000, tzinfo=UTC)
    described = Selection(kind="violation", since=since, operators=("op-2", "op-1")).describe()
    assert described == {
        "kind": "violation",
        "since": "2026-11-21T08:00:00.123000+00:00",
        "operators": ["op-1", "op-2"],
    }


def test_describe_of_an_empty_selection_is_empty() -> None:
    assert Selection().describe() == {}


@pytest.mark.parametrize(
    "cursor",
    [
        Cursor(MOMENT_MS, 42),
        Cursor(0, 0),
        Cursor(-1, 3),
        Cursor(EARLIEST_MS, 7),
        Cursor(LATEST_MS, 2**63 - 1),
    ],
)
def test_a_cursor_round_trips(cursor: Cursor) -> None:
    assert Cursor.decode(cursor.encode()) == cursor


def test_a_negative_cursor_is_before_the_epoch() -> None:
    assert Cursor.decode("-1.2") == Cursor(-1, 2)
    assert Cursor.decode("-0.2") == Cursor(0, 2)


@pytest.mark.parametrize(
    ("text", "cursor"),
    [
        (f"{LATEST_MS + 1}.7", Cursor(LATEST_MS, 7)),
        ("9" * 15 + ".7", Cursor(LATEST_MS, 7)),
        (f"{EARLIEST_MS - 1}.7", Cursor(EARLIEST_MS, 7)),
        ("-" + "9" * 15 + ".7", Cursor(EARLIEST_MS, 7)),
    ],
)
def test_a_cursor_beyond_the_log_s_range_is_clamped(text: str, cursor: Cursor) -> None:
    assert Cursor.decode(text) == cursor


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "garbage",
    [
        "zzz",
        "",
        _b64("a.b"),
        _b64("1.2.3"),
        _b64("1.2"),
        "1.2.3",
        "1.",
        ".1",
        "--1.2",
        "+1.2",
        "1.-2",
        " 1.2",
        "1.2\n",
        "1_0.2",
        "1" * 16 + ".1",
        "é",
        "日本語",
        "\udcff",
    ],
)
def test_garbage_is_not_a_cursor(garbage: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        Cursor.decode(garbage)


@pytest.mark.parametrize(
    "digits", ["\u0661.\u0662", "\uff11\uff12.\uff13", "1\u0662.3"]
)  # Arabic-Indic, fullwidth
def test_non_ascii_digits_are_not_a_cursor(digits: str) -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        Cursor.decode(digits)


def test_a_violation_id_selects_every_record_of_that_violation() -> None:
    clause, parameters = Selection(kind="violation", violation_id="v-1").where()
    assert clause == "kind = %(kind)s AND violation_id = %(violation_id)s"
    assert parameters == {"kind": "violation", "violation_id": "v-1"}
    assert Selection(violation_id="v-1").describe() == {"violation_id": "v-1"}
