"""The audit sink's id filter: never "certainly new" for an id it holds, rarely "maybe" for one
it does not, across segments."""

import uuid

from audit.idfilter import IdFilter


def test_no_false_negatives_and_few_false_positives_across_segments() -> None:
    ids = [str(uuid.UUID(int=n, version=4)) for n in range(50_000)]
    others = [str(uuid.UUID(int=10**9 + n, version=4)) for n in range(50_000)]
    seen = IdFilter(segment=20_000)  # three segments
    seen.add(ids)
    assert all(seen.maybe(ids))
    false_positives = sum(seen.maybe(others))
    assert false_positives <= 3  # three segments at one in a million each, with margin
    assert IdFilter().maybe(ids[:3]) == [False] * 3
    assert seen.maybe([]) == []


def test_ids_added_one_batch_at_a_time_are_all_held() -> None:
    seen = IdFilter(segment=1_000)
    batches = [[f"id-{b}-{n}" for n in range(700)] for b in range(4)]  # batches straddle segments
    for batch in batches:
        seen.add(batch)
    assert all(all(seen.maybe(batch)) for batch in batches)
