"""The packs in the rule language of issue 27 give the verdicts the packs of 6b47afa gave, to the
record, on the simulator's traffic (every rule, late facts and revisions included).

The old verdicts were recorded once by running this file with the code of 6b47afa, whose loader
cannot read the new packs (nor the new loader the old ones):

    git worktree add /tmp/old 6b47afa
    cd /tmp/old && PYTHONPATH=. /work/main/.venv/bin/python /work/main/tests/unit/test_rules_equivalence.py

which prints each run's events digest and verdicts digest as in RECORDED below.
"""

import hashlib
import json
from datetime import UTC, datetime

import pytest

from contracts import decode_event
from contracts.events import Envelope
from producers.simulator import Simulation, plan
from stream_processors.rules.engine import Engine, run_events
from stream_processors.rules.pack import available_packs, load_packs

START = datetime(2026, 3, 2, 9, tzinfo=UTC)
EVENTS = 20_000
# seed: (sha256 of the events, records, sha256 of the [violation_id, status] of every record in order)
RECORDED = {
    7: (
        "ed26604d0811ab4a499624683a8e6fd60cc8ed85f6bce3dc7b3f9a28f79cde18",
        7887,
        "e889df65ca983ba8fdbc0122774aa6130324fcc8e65d60860e996ff9c57659e6",
    ),
    11: (
        "8c7b65a7e0331b91ddbe56792c3f5c7e02ade54c1fb4cd5459a3f2ada1cb419e",
        8166,
        "413f0ea7e3988e45d91464bfc9022518ab603a0f809dcc702b2b5d79cd5933fe",
    ),
}


def simulated(seed: int) -> tuple[str, list[Envelope]]:
    """The simulator's events for ``seed`` (no malformed ones), and their digest."""
    _, traffic = plan(Simulation(seed=seed, events=EVENTS, start=START))
    values = [message.value for message in traffic.messages(EVENTS) if message.event is not None]
    return hashlib.sha256(b"".join(value + b"\n" for value in values)).hexdigest(), list(
        map(decode_event, values)
    )


def judged(events: list[Envelope]) -> tuple[int, str]:
    """Every record both packs give, in order, as (count, digest of their ids and statuses)."""
    engine = Engine(load_packs(available_packs()))
    records = [[v.violation_id, v.status] for v in run_events(engine, iter(events))]
    return len(records), hashlib.sha256(json.dumps(records).encode()).hexdigest()


@pytest.mark.parametrize("seed", sorted(RECORDED))
def test_the_new_packs_give_the_verdicts_of_the_old(seed: int) -> None:
    events_digest, count, verdicts_digest = RECORDED[seed]
    digest, events = simulated(seed)
    assert digest == events_digest, "the simulator's traffic changed: record again (see the docstring)"
    assert judged(events) == (count, verdicts_digest)


if __name__ == "__main__":
    for seed in sorted(RECORDED):
        digest, events = simulated(seed)
        print(seed, digest, *judged(events))
