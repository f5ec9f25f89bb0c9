"""The API's bounds: token buckets by principal and address, the tally of calls refused over
them, and the parameters a query record keeps (audit/limits.py, audit/api.py)."""

from typing import Any

import pytest
from starlette.requests import Request

from audit import limits
from audit.api import MAX_PARAM_CHARS, MAX_PARAM_KEY_CHARS, MAX_PARAMS, MAX_QUERY_CHARS, kept_params, too_long
from audit.limits import Buckets, Rate, Tally, address_key, retry_after
from audit.query_log import query_record, rate_limited_record


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_lets_a_burst_through_then_one_call_per_period() -> None:
    clock = Clock()
    buckets = Buckets(Rate(per_second=2, burst=3), clock)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)  # the next token comes in half a second
    clock.now += 0.5
    assert buckets.take("a") == 0
    assert buckets.take("a") > 0
    clock.now += 60  # refilled to the burst, no further
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_keys_have_buckets_of_their_own() -> None:
    buckets = Buckets(Rate(1, 1), Clock())
    assert buckets.take("a") == 0 and buckets.take("a") > 0
    assert buckets.take("b") == 0


def test_the_buckets_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_BUCKETS", 3)
    buckets = Buckets(Rate(1, 1), Clock())
    for key in "abcd":
        buckets.take(key)
    assert len(buckets._buckets) == 3
    assert buckets.take("a") == 0  # the least recently used was forgotten: a fresh bucket


@pytest.mark.parametrize("rate", [Rate(0, 1), Rate(1, 0), Rate(-1, 5)])
def test_a_rate_that_lets_nothing_through_is_refused(rate: Rate) -> None:
    with pytest.raises(ValueError):
        Buckets(rate)


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (29.5, "30")])
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert retry_after(seconds) == header


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.9", "address 203.0.113.9"),
        ("2001:db8:1:2:aaaa::1", "address 2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::7", "address 2001:db8:1:2::/64"),  # one subscriber's /64, one bucket
        ("::ffff:203.0.113.9", "address 203.0.113.9"),
        ("testclient", "address testclient"),
        (None, "address unknown"),
    ],
)
def test_an_address_key(host: str | None, key: str) -> None:
    assert address_key(host) == key


def test_the_tally_counts_refusals_by_key_and_starts_a_new_window() -> None:
    clock = Clock()
    tally = Tally(clock)
    assert tally.take() is None
    for key in ("address 1.2.3.4",) * 3 + ("principal noc",):
        tally.add(key)
    clock.now += 60
    assert tally.take() == (1000.0, {"address 1.2.3.4": 3, "principal noc": 1})
    assert tally.take() is None


def test_the_tally_names_the_most_refused_and_sums_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_TALLIED", 2)
    tally = Tally(Clock())
    for n, key in enumerate("abcd"):
        for _ in range(n + 1):
            tally.add(key)
    assert tally.take() == (1000.0, {"d": 4, "c": 3, "others": 3})


def test_a_tally_not_recorded_joins_the_next_window() -> None:
    clock = Clock()
    tally = Tally(clock)
    tally.add("a")
    taken = tally.take()
    assert taken is not None
    clock.now += 60
    tally.add("a")
    tally.give_back(*taken)
    assert tally.take() == (1000.0, {"a": 2})


def test_a_query_record_names_no_operator() -> None:
    record = query_record("r1", {"name": None, "role": "anonymous"}, "GET", "/v1/export", {}, 401, 0)
    assert "operator_id" not in record


def test_the_refusals_record_counts_calls_and_names_nobody() -> None:
    record = rate_limited_record("2026-12-07T21:00:00.000Z", {"address 1.2.3.4": 7, "principal x": 2})
    assert record["kind"] == "query" and record["status"] == 429 and record["calls"] == 9
    assert record["principal"] == {"name": None, "role": "rate-limited"}
    assert "operator_id" not in record


def request(path: str = "/v1/summary", query: str = "", headers: dict[str, str] | None = None) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    return Request(scope)


def test_a_record_keeps_bounded_keys_values_and_count() -> None:
    long_key, long_value = "k" * 10_000, "v" * 10_000
    kept = kept_params([(long_key, "1"), ("operator_id", long_value)])
    assert kept == {"k" * MAX_PARAM_KEY_CHARS: "1", "operator_id": "v" * MAX_PARAM_CHARS}
    many = kept_params([(f"p{n}", "x") for n in range(1000)])
    assert len(many) == MAX_PARAMS
    wide = kept_params([(f"{n:0{MAX_PARAM_KEY_CHARS}d}", "v" * MAX_PARAM_CHARS) for n in range(MAX_PARAMS)])
    assert sum(len(k) + len(v) for k, v in wide.items()) <= MAX_QUERY_CHARS


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (request(path="/v1/" + "a" * 2000), 414),
        (request(query="x=" + "a" * 5000), 414),
        (request(query="&".join(f"p{n}=1" for n in range(MAX_PARAMS + 1))), 400),
        (request(headers={"Content-Length": "10"}), 413),
        (request(headers={"Transfer-Encoding": "chunked"}), 413),
    ],
)
def test_a_call_longer_than_the_api_takes_is_refused(call: Request, status: int) -> None:
    refusal = too_long(call)
    assert refusal is not None and refusal.status_code == status


@pytest.mark.parametrize(
    "call",
    [
        request(),
        request(query="&".join(f"p{n}=1" for n in range(MAX_PARAMS))),
        request(headers={"Content-Length": "0"}),
    ],
)
def test_a_call_within_bounds_goes_on(call: Request) -> None:
    assert too_long(call) is None
