"""Packs reload without a restart: valid changes are swapped in, keeping state; broken ones
are refused and the running packs stay."""

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from producers.plan import Message
from producers.simulator import Simulation, run
from stream_processors.admission import Gate
from stream_processors.judge import Judge
from stream_processors.reload import PackWatcher
from stream_processors.rules.pack import PACKS_DIR, load_packs


def test_a_changed_pack_is_swapped_in_and_a_broken_one_refused(tmp_path: Path) -> None:
    for pack in PACKS_DIR.glob("*.yaml"):
        shutil.copy(pack, tmp_path / pack.name)
    watcher = PackWatcher([str(tmp_path / "cn-cac-2025.yaml")], directory=tmp_path)
    assert not watcher.changed()

    sent: list[Message] = []
    run(
        Simulation(seed=4, events=3000, start=datetime.now(UTC) - timedelta(minutes=1)),
        sent.append,
        paced=False,
    )
    judge = Judge(
        load_packs([str(tmp_path / "cn-cac-2025.yaml")]), Gate(), facts={}, pending={}, published={}
    )
    before = [v for n, m in enumerate(sent[:2000]) for v in judge.judge(m.value, f"0:{n}").violations]
    assert any(v.rule_id == "FRT-AUTH-CHANNEL" for v in before)

    pack = tmp_path / "cn-cac-2025.yaml"
    pack.write_text(pack.read_text() + "  - id: FRT-AUTH-CHANNEL\n    enabled: false\n")
    assert watcher.changed()
    errors: list[str] = []
    new = watcher.reload(errors.append)
    assert new is not None and errors == []
    judge.swap_packs(new)
    after = [v for n, m in enumerate(sent[2000:], 2000) for v in judge.judge(m.value, f"0:{n}").violations]
    assert after and not any(v.rule_id == "FRT-AUTH-CHANNEL" for v in after)
    assert {v.ruleset_hash for v in after} == {new[0].ruleset_hash} != {v.ruleset_hash for v in before}
    assert any(
        v.rule_id == "FRT-CONSENT-MISSING" for v in after
    )  # consents learnt before the swap still count

    pack.write_text(pack.read_text().replace("severity: high", "severity: dire", 1))
    assert watcher.changed()
    assert watcher.reload(errors.append) is None
    assert "severity 'dire' is not one of" in errors[0]
    assert watcher.last_error == errors[0]
