"""Noticing the lane records faust skips: the offsets a lane should hand over, and what is missing."""

from stream_processors.lane_gaps import LaneOffsets


def test_records_in_order_skip_nothing() -> None:
    offsets = LaneOffsets()
    offsets.resume({0: 10})
    assert [offsets.skipped(0, n) for n in range(10, 15)] == [range(0)] * 5


def test_a_jump_names_the_offsets_skipped_and_the_lane_goes_on_from_it() -> None:
    offsets = LaneOffsets()
    offsets.resume({1: 701})
    assert list(offsets.skipped(1, 767)) == list(range(701, 767))
    assert not offsets.skipped(1, 768)
    assert list(offsets.skipped(1, 770)) == [769]


def test_a_redelivery_skips_nothing_and_does_not_move_the_lane_back() -> None:
    offsets = LaneOffsets()
    offsets.resume({2: 5})
    offsets.skipped(2, 5)
    offsets.skipped(2, 6)
    assert not offsets.skipped(2, 3)  # faust handing over earlier records again
    assert list(offsets.skipped(2, 8)) == [7]


def test_lanes_are_apart_and_unknown_until_recovered() -> None:
    offsets = LaneOffsets()
    assert not offsets.skipped(3, 1000)  # not recovered: nothing to expect yet
    offsets.resume({0: 0, 1: 50})
    assert list(offsets.skipped(0, 2)) == [0, 1]
    assert list(offsets.skipped(1, 51)) == [50]


def test_moving_lanes_forget_what_they_expected() -> None:
    offsets = LaneOffsets()
    offsets.resume({0: 0})
    offsets.forget()
    assert not offsets.skipped(0, 99)
