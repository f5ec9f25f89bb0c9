"""Noticing the lane records faust skips: the offset each lane is judged up to, kept by the
journal across owners, and what is missing before a record handed over."""

from stream_processors.journal import Journal
from stream_processors.lane_gaps import judged_already, skipped
from tests.unit.test_judge import Table


def test_records_in_order_skip_nothing() -> None:
    journal = Journal(Table().write)
    journal.judge_from({0: 10})
    for offset in range(10, 15):
        assert not skipped(journal.judged, 0, offset)
        journal.commit(0, offset)


def test_a_jump_names_the_offsets_skipped() -> None:
    assert list(skipped({1: 701}, 1, 767)) == list(range(701, 767))
    assert not skipped({1: 767}, 1, 767)


def test_a_redelivery_is_judged_already_and_skips_nothing() -> None:
    journal = Journal(Table().write)
    journal.judge_from({2: 5})
    assert not judged_already(journal.judged, 2, 5)
    journal.commit(2, 5)
    journal.commit(2, 6)
    assert judged_already(journal.judged, 2, 3)  # faust handing over earlier records again
    assert not skipped(journal.judged, 2, 3)
    assert list(skipped(journal.judged, 2, 8)) == [7]
    assert not judged_already(journal.judged, 3, 0), "a lane not recovered: nothing judged"


def test_a_lane_not_recovered_expects_nothing() -> None:
    assert not skipped({0: 5}, 3, 1000)


def test_the_next_owner_goes_on_from_the_offset_the_stamp_names() -> None:
    """Records faust skipped and counted as committed just before a lane moved are read by
    the lane's next owner: it goes on from the stamp's offset, not from the group's."""
    table = Table()
    first = Journal(table.write)
    first.judge_from({0: 0, 1: 0})
    for offset in range(40):
        first.commit(0, offset)
    first.stamp([0, 1], 1_000)  # lane 0 judged up to 40, lane 1 up to nothing yet
    first.commit(0, 40)  # after the stamp: the next owner reads it again, a redelivery

    journal = Journal(table.write)
    journal.recover(dict(table))
    assert journal.judged == {0: 40, 1: 0}
    journal.judge_from({0: 55, 1: 9, 2: 3})  # where the group resumes: only lanes never stamped take it
    assert journal.judged == {0: 40, 1: 0, 2: 3}
    assert list(skipped(journal.judged, 0, 55)) == list(range(40, 55))


def test_a_stamp_of_an_older_journal_names_no_offset() -> None:
    table = Table()
    table.write(0, "time|0", "1000")  # before stamps named an offset
    journal = Journal(table.write)
    journal.recover(dict(table))
    assert journal.journalled_until([0]) == 1_000
    assert journal.judged == {}
    journal.judge_from({0: 12})
    assert journal.judged == {0: 12}
