"""The lane fetch hold (stream_processors.fetch_wait): set on faust's aiokafka fetcher when it
exists, and a warning, not a failure, when this faust has none."""

import asyncio
import logging
from types import SimpleNamespace

import pytest

from stream_processors.fetch_wait import shorten_lane_fetch_wait


def test_the_hold_is_set_once_the_fetcher_exists() -> None:
    fetcher = SimpleNamespace(_fetch_max_wait_ms=1500)
    consumer = SimpleNamespace(_thread=SimpleNamespace(_consumer=None))

    async def start_later() -> None:
        await asyncio.sleep(0.3)
        consumer._thread._consumer = SimpleNamespace(_fetcher=fetcher)

    async def both() -> bool:
        started = asyncio.ensure_future(start_later())
        done = await shorten_lane_fetch_wait(consumer, wait_ms=40, timeout=5)
        await started
        return done

    assert asyncio.run(both()) is True
    assert fetcher._fetch_max_wait_ms == 40


def test_a_consumer_without_a_fetcher_is_reported_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="frtwatch.processor"):
        assert asyncio.run(shorten_lane_fetch_wait(SimpleNamespace(), timeout=0.3)) is False
    assert "could not shorten faust's 1.5 s fetch hold" in caplog.text
