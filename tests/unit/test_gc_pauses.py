"""Full collections kept short: long-lived objects frozen now and then, handed back hourly."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from stream_processors.gc_pauses import FREEZE_EVERY_S, THAW_EVERY_S, Collector


@pytest.fixture
def thawed() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_what_lives_is_frozen_at_once_and_again_when_due(thawed: None) -> None:
    clock = Clock()
    collector = Collector(clock)
    collector.tick()
    frozen = gc.get_freeze_count()
    assert frozen > 0, "the first tick freezes what is alive"
    kept = [[n] for n in range(10_000)]  # new long-lived objects: tracked until the next freeze
    clock.now = FREEZE_EVERY_S / 2
    collector.tick()
    assert gc.get_freeze_count() == frozen
    clock.now = FREEZE_EVERY_S
    collector.tick()
    assert gc.get_freeze_count() >= frozen + len(kept)


def test_cyclic_garbage_frozen_meanwhile_is_collected_at_the_hourly_thaw(thawed: None) -> None:
    clock = Clock()
    collector = Collector(clock)
    cycle = Node()
    cycle.self = cycle
    alive = weakref.ref(cycle)
    collector.tick()  # frozen while alive
    del cycle
    gc.collect()
    assert alive() is not None, "frozen: out of the collector's sight"
    clock.now = THAW_EVERY_S
    collector.tick()
    assert alive() is None, "handed back at the hourly thaw, and collected"


def test_young_cyclic_garbage_is_collected_before_a_freeze_not_frozen(thawed: None) -> None:
    clock = Clock()
    collector = Collector(clock)
    collector.tick()
    cycle = Node()
    cycle.self = cycle
    gone = weakref.ref(cycle)
    del cycle  # garbage, but only the collector can tell
    clock.now = FREEZE_EVERY_S
    collector.tick()
    assert gone() is None


class Node:
    self: "Node"
