"""The audit sink's id filter: never "certainly new" for an id it holds, rarely "maybe" for one
it does not, across segments."""

import uuid

from audit.idfilter import IdFilter


def test_no_false_negatives_and_few_false_positives_across_segments() -> None:
    ids = [str(uuid.UUID(int=n, version=4)) for n in range(50_000)]
    others = [str(uuid.UUID(int=10**9 + n, version=4)) for n in range(50_000)]
    seen = IdFilter(segment=20_000)  # three segments
    seen.add(ids)
    assert all(seen.maybe(i) for i in ids)
    false_positives = sum(seen.maybe(o) for o in others)
    assert false_positives < 0.01 * len(others)  # three segments at 0.2% each, with margin
    assert not IdFilter().maybe(ids[0])
