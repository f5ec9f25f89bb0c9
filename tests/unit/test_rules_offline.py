"""The rule engine, offline: the packs' example sequences, and exact agreement with the
simulator's independently computed ground truth through `frtwatch rules eval`."""

import json
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from audit import entries, tables
from contracts.records import Violation
from stream_processors.rules.examples import (
    build_events,
    check_records,
    horizon_seconds,
    load_examples,
    run_example,
)
from stream_processors.rules.pack import available_packs, load_pack

PACKS = {name: load_pack(name) for name in available_packs()}
DOCUMENT = load_examples()
RULES = {rule.rule_id for pack in PACKS.values() for rule in pack.rules}


@pytest.mark.parametrize("pack_name", sorted(PACKS))
@pytest.mark.parametrize("example", DOCUMENT["examples"], ids=[e["name"] for e in DOCUMENT["examples"]])
def test_example_sequence(example: dict[str, object], pack_name: str) -> None:
    assert run_example(DOCUMENT, example, PACKS[pack_name]) == []


def test_every_rule_has_positive_and_negative_examples() -> None:
    positive: Counter[str] = Counter()
    for example in DOCUMENT["examples"]:
        named = set(example.get("expect") or {})
        for by_pack in (example.get("expect_by_pack") or {}).values():
            named |= set(by_pack)
        positive.update(named)
    assert set(positive) == RULES
    negatives = [e for e in DOCUMENT["examples"] if not e.get("expect") and not e.get("expect_by_pack")]
    assert len(negatives) >= len(RULES)


def test_without_the_grace_period_a_late_consent_is_revised_and_without_revisions_it_is_missed() -> None:
    late = next(e for e in DOCUMENT["examples"] if e["name"].startswith("consent that arrives late"))
    no_grace = {**DOCUMENT, "grace_seconds": 0}
    assert run_example(no_grace, late, PACKS["cn-cac-2025"]) == [
        "unexpected retracted FRT-CONSENT-MISSING on event 1"
    ]
    assert run_example({**no_grace, "horizon_seconds": 0}, late, PACKS["cn-cac-2025"]) == [
        "unexpected FRT-CONSENT-MISSING on event 1"
    ]


REVISION_EXAMPLES = [
    e
    for e in DOCUMENT["examples"]
    if any(e.get(k) for k in ("retracted", "found_late", "found_late_by_pack", "horizon_seconds"))
]


@pytest.mark.parametrize("example", REVISION_EXAMPLES, ids=lambda e: e["name"])
def test_revision_examples_through_rules_eval(example: dict[str, object], tmp_path: Path) -> None:
    """The examples of late facts give the same records through `frtwatch rules eval`."""
    events = build_events(DOCUMENT, example)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(event) + b"\n" for event in events))
    for name, pack in PACKS.items():
        hours = str(horizon_seconds(DOCUMENT, example) / 3600)
        command = [
            "rules",
            "eval",
            "--pack",
            name,
            "--grace",
            str(DOCUMENT["grace_seconds"]),
            "--horizon",
            hours,
        ]
        result = subprocess.run(
            [sys.executable, "-m", "frtwatch", *command, str(path)], capture_output=True, timeout=120
        )
        assert result.returncode == 0, result.stderr[-2000:]
        records = [msgspec.json.decode(line, type=Violation) for line in result.stdout.splitlines()]
        assert check_records(example, pack, events, records) == [], name


def test_rules_eval_agrees_exactly_with_the_simulator_ground_truth(tmp_path: Path) -> None:
    events, truth, keys = tmp_path / "events.jsonl", tmp_path / "truth.jsonl", tmp_path / "keys.json"
    simulate = [
        sys.executable,
        "-m",
        "frtwatch",
        "simulate",
        "--events",
        "15000",
        "--seed",
        "11",
        "--bad-share",
        "0.02",
        "--output",
        str(events),
        "--ground-truth",
        str(truth),
        "--keys-file",
        str(keys),
    ]
    assert subprocess.run(simulate, capture_output=True, timeout=300).returncode == 0
    result = rules_eval("--keys", str(keys), str(events))

    found = [Violation(**json.loads(line)) for line in result.stdout.splitlines()]
    expected = [json.loads(line) for line in truth.read_text().splitlines()]
    want = {(e["policy_pack"], e["rule_id"], e["event_id"]) for e in expected if e["expect"] == "violation"}
    assert len({v.revision_id for v in found}) == len(found), "a record was reported twice"
    current = {v.violation_id: v for v in found}  # the last record of a violation is its state
    got = {(v.policy_pack, v.rule_id, v.event_ids[0]) for v in current.values() if v.status == "open"}
    assert got == want

    refused = Counter(line.split(": ")[1] for line in result.stderr.splitlines() if line.startswith("line "))
    kinds = Counter(e["kind"] for e in expected if e["expect"] == "dead_letter")
    assert refused["seq_gap"] == kinds["seq_gap"]
    assert refused["duplicate_event_id"] == kinds["replayed_event_id"]
    assert refused["bad_signature"] == kinds["bad_signature"]
    assert refused["future_timestamp"] == kinds["future_timestamp"]
    assert sum(refused.values()) == sum(kinds.values())


def test_rules_eval_judges_a_year_old_history(tmp_path: Path) -> None:
    """A regulator replaying last year's log gets every event judged, not refused as stale."""
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    simulate = [sys.executable, "-m", "frtwatch", "simulate", "--events", "3000", "--seed", "5"]
    simulate += ["--start-time", "2025-06-02T08:00:00.000Z", "--output", str(events)]
    simulate += ["--ground-truth", str(truth)]
    assert subprocess.run(simulate, capture_output=True, timeout=300).returncode == 0
    result = rules_eval(str(events))
    assert "3000 line(s): 3000 judged, 0 refused" in result.stderr
    expected = [json.loads(line) for line in truth.read_text().splitlines()]
    want = {(e["policy_pack"], e["rule_id"], e["event_id"]) for e in expected if e["expect"] == "violation"}
    current = {}
    for line in result.stdout.splitlines():
        record = json.loads(line)
        current[record["violation_id"]] = record
    got = {(v["policy_pack"], v["rule_id"], v["event_ids"][0]) for v in current.values() if "status" not in v}
    assert want and got == want

    # The same history as the audit log exports it: rules eval reads the archive's events.
    archive = tmp_path / "export.zip"
    stored = []
    for seq, line in enumerate(events.read_bytes().splitlines()):
        entry = entries.accepted_event(line, f"frt.events.v1:0:{seq}")
        values = dict(zip(entries.COLUMNS, entry.row(seq, entries.recorded_now()), strict=True))
        stored.append({column: values[column] for column in tables.STORED_COLUMNS})
    with archive.open("wb") as out:
        tables.write_archive(out, {}, tables.table(stored), "csv")
    from_archive = rules_eval(str(archive))
    assert verdicts(from_archive.stdout) == verdicts(result.stdout)


def rules_eval(*args: str) -> subprocess.CompletedProcess[str]:
    """`frtwatch rules eval` with these arguments, which must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "frtwatch", "rules", "eval", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def verdicts(output: str) -> list[dict[str, object]]:
    """Records as rules eval printed them, without the processing times."""
    records = [json.loads(line) for line in output.splitlines()]
    return [{k: v for k, v in r.items() if k not in ("detected_at", "revised_at")} for r in records]


def test_an_invalid_pack_is_refused_naming_the_file_and_the_rule(tmp_path: Path) -> None:
    pack = tmp_path / "broken.yaml"
    pack.write_text(
        "pack: broken\ntitle: t\nparams: {filing_threshold: 1, filing_working_days: 1}\nrules:\n"
        "  - id: FRT-X\n    title: x\n    severity: urgent\n    reference: r\n    cases: [{}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "frtwatch", "rules", "validate", str(pack)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"invalid pack: {pack}: rule FRT-X: severity 'urgent' is not one of" in result.stderr


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "    cases: [{events: [recognition.performed], when: [no_such_thing], explanation: x}]",
            "rule FRT-X, case 1: unknown predicate 'no_such_thing'",
        ),
        (
            "    cases: [{events: [face.sold], when: [has_subject], explanation: x}]",
            "rule FRT-X, case 1: unknown event type(s) face.sold",
        ),
        (
            "    cases: [{events: [recognition.performed], when: [{in: {field: purpose, values: nowhere}}],"
            " explanation: x}]",
            "rule FRT-X, case 1: unknown list 'nowhere'",
        ),
        (
            "    cases: [{events: [media.deleted], when: [has_subject], explanation: '{purpose}'}]",
            "rule FRT-X, case 1: explanation uses {purpose}, which media.deleted lacks",
        ),
    ],
)
def test_pack_errors_are_specific(tmp_path: Path, body: str, message: str) -> None:
    from stream_processors.rules.pack import PackError

    pack = tmp_path / "p.yaml"
    pack.write_text(
        "pack: p\ntitle: t\nparams: {filing_threshold: 1, filing_working_days: 1}\nrules:\n"
        "  - id: FRT-X\n    title: x\n    severity: low\n    reference: r\n" + body + "\n"
    )
    with pytest.raises(PackError) as error:
        load_pack(pack)
    assert str(error.value) == f"{pack}: {message}"


def test_extension_lists_extend_without_editing_a_rule(tmp_path: Path) -> None:
    extensions = tmp_path / "site.yaml"
    extensions.write_text("lists:\n  deployment_private_places: [lobby]\n")
    extended = load_pack("cn-cac-2025", extensions)
    assert extended.ruleset_hash != PACKS["cn-cac-2025"].ruleset_hash
    lobby = {
        "name": "x",
        "events": [{"type": "device.registered", "at": -100, "location_type": "lobby"}],
        "expect": {"FRT-PROHIBITED-LOCATION": [0]},
    }
    assert run_example(DOCUMENT, lobby, extended) == []
    assert run_example(DOCUMENT, lobby, PACKS["cn-cac-2025"]) == [
        "expected FRT-PROHIBITED-LOCATION on event 0, not found"
    ]


def test_the_2025_calendar_skips_golden_week() -> None:
    from datetime import datetime

    from stream_processors.rules.calendar import CHINA, working_days_deadline

    # After Monday 2025-09-29: 30 Sep, (1-8 Oct: holidays) 9 Oct, 10 Oct, 11 Oct (a working Saturday), 13 Oct.
    deadline = working_days_deadline(datetime(2025, 9, 29, 10, tzinfo=CHINA), 5)
    assert deadline == datetime(2025, 10, 14, tzinfo=CHINA)
    assert working_days_deadline(datetime(2026, 3, 2, tzinfo=CHINA), 30) - timedelta(days=1) == datetime(
        2026, 4, 13, tzinfo=CHINA
    )


def test_event_time_waits_for_the_slowest_source() -> None:
    """A consent routed through a lagging source still covers a recognition that another,
    faster source carried far ahead; with one source for both, it would arrive too late."""
    from stream_processors.rules.engine import Engine
    from stream_processors.rules.examples import build_events

    example = {
        "name": "lagging source",
        "events": [
            {"type": "device.registered", "at": -100},
            {"type": "recognition.performed", "at": 5},
            {"type": "recognition.performed", "at": 60, "subject_ref": "s2", "legal_basis": "law"},
            {"type": "consent.granted", "at": 4},
        ],
    }
    registration, recognition, later, consent = build_events(DOCUMENT, example)

    def found(sources: tuple[str, str]) -> list[str]:
        engine = Engine([PACKS["cn-cac-2025"]], grace=timedelta(seconds=10))
        fast, slow = sources
        verdicts = engine.process(registration, fast) + engine.process(registration, slow)
        verdicts += engine.process(recognition, fast) + engine.process(later, fast)
        verdicts += engine.process(consent, slow) + engine.flush_all()
        return [f"{v.rule_id} {v.status}" for v in verdicts]

    assert found(("devices", "back-office")) == []
    # With one source the consent comes after its grace period: the verdict is made, then revised.
    assert found(("one", "one")) == ["FRT-CONSENT-MISSING open", "FRT-CONSENT-MISSING retracted"]


def test_rules_eval_with_a_registry_refuses_every_forged_source(tmp_path: Path) -> None:
    """The forgeries of issue 26 against a simulated, signed fleet's registry: each refused with
    its reason; unsigned traffic judged only from an operator named as allowed."""
    import uuid
    from datetime import UTC, datetime

    from contracts import canonical_json, sign
    from producers.fleet import FleetShape, build_fleet

    events, keys = tmp_path / "events.jsonl", tmp_path / "keys.json"
    simulate = [sys.executable, "-m", "frtwatch", "simulate", "--events", "300", "--seed", "3"]
    simulate += ["--output", str(events), "--keys-file", str(keys)]
    assert subprocess.run(simulate, capture_output=True, timeout=300).returncode == 0
    op_a, op_b = build_fleet(3, FleetShape())[:2]
    a_device, b_device, revoked = op_a.devices[0], op_b.devices[0], op_a.devices[1]
    frtwatch_keys = [sys.executable, "-m", "frtwatch", "keys"]
    listed = subprocess.run([*frtwatch_keys, "list", "--registry", str(keys)], capture_output=True, text=True)
    key_id = next(line.split()[0] for line in listed.stdout.splitlines() if f"/{revoked.device_id} " in line)
    revoke = subprocess.run([*frtwatch_keys, "revoke", key_id, "--registry", str(keys)], capture_output=True)
    assert revoke.returncode == 0, revoke.stderr

    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def forged(operator: str, device: str | None, key: object = None) -> bytes:
        fields = {
            "schema": "frt.v1", "event_id": str(uuid.uuid4()), "type": "media.deleted", "occurred_at": at,
            "operator_id": operator, "site_id": "s", "device_id": device, "seq": None, "sig": None,
            "media_id": "m-1",
        }  # fmt: skip
        return canonical_json(sign(fields, key) if key is not None else fields)  # type: ignore[arg-type]

    cases = [
        (forged(op_a.operator_id, "made-up-cam"), "unknown_source"),
        (forged(op_a.operator_id, b_device.device_id, b_device.signing_key), "key_not_bound"),
        (forged(op_a.operator_id, a_device.device_id, b_device.signing_key), "bad_signature"),
        (forged(op_a.operator_id, revoked.device_id, revoked.signing_key), "revoked_key"),
        (forged("op-not-named", "cam"), "unknown_source"),
        (forged("op-named", "cam"), None),
    ]
    first = len(events.read_bytes().splitlines()) + 1
    with events.open("ab") as out:
        out.writelines(raw + b"\n" for raw, _ in cases)
    result = rules_eval("--keys", str(keys), "--unsigned-operator", "op-named", str(events))
    refused = {
        int(line.split(":")[0].removeprefix("line ")): line.split(": ")[1]
        for line in result.stderr.splitlines()
        if line.startswith("line ")
    }
    assert [refused.get(first + n) for n in range(len(cases))] == [want for _, want in cases]
