"""Export archives: a real signed bundle of real audit entries (events, violations and a
retraction, dead letters, query records) beside its table (JSON Lines, CSV, Parquet) reads back
and verifies, and the table check catches a table that says something the bundle does not."""

import base64
import copy
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import entries, tables
from audit.bundle import make_bundle, verify_bundle
from audit.checkpoint import ORIGIN, STATEMENTS, Checkpoint, Signer, StatementSigner, sign_checkpoint
from audit.merkle import Tree, leaf_hash
from audit.query_log import query_record
from contracts import DeadLetter, Violation, canonical_json, topics
from contracts.artifacts import example_events, example_violation
from contracts.timestamps import format_timestamp, parse_timestamp

KINDS = ("event", "violation", "dead_letter", "query")
VIOLATION = msgspec.json.decode(example_violation(), type=Violation)
DEAD_LETTER = DeadLetter(
    original=base64.b64encode(b'{"schema": "frt.v0"}').decode(),
    reason="unsupported_schema: unsupported schema version 'frt.v0', expected 'frt.v1'",
    source_topic=topics.EVENTS,
    source_partition=2,
    source_offset=41,
    dead_lettered_at="2026-11-21T08:02:00.500Z",
)
RETRACTION = msgspec.structs.replace(
    VIOLATION,
    status="retracted",
    revised_at="2026-11-21T09:30:00.000Z",
    revised_by=["7c1e9a52-2f4b-4d0a-9a51-2b8f3c0d6e11"],
    explanation="A consent given before the recognition arrived late: the violation no longer stands.",
)
REGULATOR = {"name": "cac-shanghai", "role": "regulator"}
OPS = {"name": "noc", "role": "ops"}


def _entries() -> list[entries.Entry]:
    events = [
        entries.accepted_event(raw, f"{topics.ACCEPTED}:0:{n}")
        for n, raw in enumerate(example_events().values())
    ]
    anonymous = msgspec.structs.replace(
        VIOLATION, violation_id="v-2", site_id=None, subject_ref=None, severity="low", policy_pack="eu-ai-act"
    )
    violations = [
        entries.violation(msgspec.json.encode(v), f"{topics.VIOLATIONS}:0:{n}")
        for n, v in enumerate([VIOLATION, anonymous, RETRACTION])
    ]
    queries = [
        canonical_json(query_record("req-1", REGULATOR, "GET", "/v1/violations", {"limit": 10}, 200, 3)),
        canonical_json(query_record("req-2", OPS, "GET", "/v1/summary", {}, 200, 0)),
    ]
    return [
        *events,
        *violations,
        entries.dead_letter(msgspec.json.encode(DEAD_LETTER), f"{topics.DEADLETTER}:0:0"),
        *(entries.query(raw, f"{topics.QUERIES}:0:{n}") for n, raw in enumerate(queries)),
    ]


ENTRIES = _entries()
BODIES = [entry.body.decode() for entry in ENTRIES]
SELECTED = [seq for seq in range(len(ENTRIES)) if seq not in (0, 3)]  # two events left out
RECORDED_AT = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def stored(seq: int, aware: bool = True) -> dict[str, Any]:
    """The audit_log row of entry ``seq``, with occurred_at as ClickHouse may hand it back."""
    row = dict(zip(entries.COLUMNS, ENTRIES[seq].row(seq, RECORDED_AT), strict=True))
    if not aware:
        row["occurred_at"] = row["occurred_at"].replace(tzinfo=None)
    return {column: row[column] for column in tables.STORED_COLUMNS}


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate())


@pytest.fixture(scope="module")
def bundle(signer: Signer) -> dict[str, Any]:
    tree = Tree(leaf_hash(body.encode()) for body in BODIES)
    note = sign_checkpoint(signer, Checkpoint(ORIGIN, tree.size, tree.root()))
    statements = StatementSigner.endorsed_by(signer, Signer(Ed25519PrivateKey.generate(), STATEMENTS))
    return make_bundle(statements, note, tree, [(seq, BODIES[seq]) for seq in SELECTED], {"kind": "any"})


def table() -> list[dict[str, Any]]:
    """The table rows of the selected entries, alternately from naive and aware datetimes."""
    return tables.table([stored(seq, aware=n % 2 == 0) for n, seq in enumerate(SELECTED)])


def first(rows: list[dict[str, Any]], kind: str, column: str = "entry_kind") -> int:
    """The first row of ``kind`` with a value in ``column``."""
    return next(n for n, r in enumerate(rows) if r["entry_kind"] == kind and r[column])


def round_trip(
    tmp_path: Path, bundle: dict[str, Any], rows: list[dict[str, Any]], format: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    path = tmp_path / f"export-{format}.zip"
    with path.open("wb") as out:
        tables.write_archive(out, bundle, rows, format)
    return tables.read_archive(path)


def test_the_stored_columns_are_log_columns_and_the_row_renames_kind() -> None:
    assert set(tables.STORED_COLUMNS) <= set(entries.COLUMNS)
    assert tuple(tables.row(stored(1))) == tables.COLUMNS


def test_the_selection_holds_every_kind() -> None:
    assert sorted({ENTRIES[seq].kind for seq in SELECTED}) == sorted(KINDS)


def test_row_reads_naive_and_aware_datetimes_alike() -> None:
    seq = ENTRIES.index(next(e for e in ENTRIES if e.kind == "violation"))
    naive, aware = tables.row(stored(seq, aware=False)), tables.row(stored(seq, aware=True))
    assert naive == aware
    assert naive["occurred_at"] == VIOLATION.occurred_at
    assert naive["entry_kind"] == "violation" and "kind" not in naive


def test_row_converts_an_offset_datetime_to_utc() -> None:
    seq = SELECTED[0]
    moment = ENTRIES[seq].occurred_at.astimezone(timezone(timedelta(hours=8)))
    assert tables.row(stored(seq) | {"occurred_at": moment}) == tables.row(stored(seq))


def test_the_bundle_verifies(bundle: dict[str, Any], signer: Signer) -> None:
    result = verify_bundle(bundle, signer.vkey())
    assert result.ok, result.problems
    assert (result.entries, result.tree_size) == (len(SELECTED), len(BODIES))


def test_write_archive_holds_the_bundle_and_one_table() -> None:
    out = io.BytesIO()
    tables.write_archive(out, {"entries": []}, [], "csv")
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == [tables.BUNDLE_NAME, "entries.csv"]


def test_write_archive_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="xlsx"):
        tables.write_archive(io.BytesIO(), {}, [], "xlsx")


@pytest.mark.parametrize("format", tables.FORMATS)
def test_an_honest_archive_reads_back_verifies_and_matches(
    tmp_path: Path, bundle: dict[str, Any], signer: Signer, format: str
) -> None:
    read_bundle, rows = round_trip(tmp_path, bundle, table(), format)
    assert read_bundle == bundle
    assert verify_bundle(read_bundle, signer.vkey()).ok
    assert [r["body"] for r in rows] == [BODIES[seq] for seq in SELECTED]
    assert [r["entry_kind"] for r in rows] == [ENTRIES[seq].kind for seq in SELECTED]
    assert tables.check_table(read_bundle, rows) == []


# The columns whose value each kind of entry states (the others it leaves empty).
STATED = {
    "event": ("entry_kind", "entry_id", "operator_id", "site_id", "device_id", "subject_ref", "event_type"),
    "violation": tuple(c for c in tables.COLUMNS[1:-2] if c != "current_status"),
    "dead_letter": ("entry_kind", "entry_id", "event_type"),
    "query": ("entry_kind", "entry_id", "event_type"),  # a query record names no operator
}


def forged(column: str, value: Any) -> Any:
    if column == "entry_kind":
        return KINDS[(KINDS.index(value) + 1) % len(KINDS)]
    if column == "occurred_at":
        return format_timestamp(parse_timestamp(value) + timedelta(milliseconds=1))
    return f"{value}-forged"


@pytest.mark.parametrize("format", tables.FORMATS)
@pytest.mark.parametrize(
    ("kind", "column"), [(kind, c) for kind, columns in STATED.items() for c in (*columns, "occurred_at")]
)
def test_a_tampered_column_is_caught(
    tmp_path: Path, bundle: dict[str, Any], format: str, kind: str, column: str
) -> None:
    rows = table()
    n = first(rows, kind, column)
    rows[n][column] = forged(column, rows[n][column])
    problems = tables.check_table(*round_trip(tmp_path, bundle, rows, format))
    assert problems == [f"table row {n} (seq {SELECTED[n]}): {column} differs from the entry's body"]


@pytest.mark.parametrize(
    ("kind", "column"),
    [
        ("event", "rule_id"),
        ("event", "policy_pack"),
        ("dead_letter", "operator_id"),
        ("dead_letter", "site_id"),
        ("query", "severity"),
        ("query", "subject_ref"),
    ],
)
def test_a_value_where_the_body_states_none_is_caught(bundle: dict[str, Any], kind: str, column: str) -> None:
    rows = table()
    n = first(rows, kind)
    assert not rows[n][column]
    rows[n][column] = "forged"
    assert tables.check_table(bundle, rows) == [
        f"table row {n} (seq {SELECTED[n]}): {column} differs from the entry's body"
    ]


def _tamper(rows: list[dict[str, Any]], change: str) -> None:
    if change == "body":
        rows[1]["body"] = rows[1]["body"].replace("op-metro-bank", "op-other")
    elif change == "seq":
        rows[1]["seq"] = 0
    elif change == "unreadable occurred_at":
        rows[1]["occurred_at"] = "yesterday"
    elif change == "dropped row":
        del rows[3]
    elif change == "swapped rows":
        rows[2], rows[3] = rows[3], rows[2]
    else:
        raise AssertionError(change)


CAUGHT = {
    "body": ["table row 1 (seq 2): seq or body differs from the bundle"],
    "seq": ["table row 1 (seq 2): seq or body differs from the bundle"],
    "unreadable occurred_at": ["table row 1 (seq 2): occurred_at differs from the entry's body"],
    "dropped row": [f"the table has {len(SELECTED) - 1} rows, the bundle {len(SELECTED)} entries"],
    "swapped rows": [
        f"table row {n} (seq {SELECTED[n]}): seq or body differs from the bundle" for n in (2, 3)
    ],
}


@pytest.mark.parametrize("format", tables.FORMATS)
@pytest.mark.parametrize("change", list(CAUGHT))
def test_a_tampered_table_is_caught(tmp_path: Path, bundle: dict[str, Any], format: str, change: str) -> None:
    rows = table()
    _tamper(rows, change)
    assert tables.check_table(*round_trip(tmp_path, bundle, rows, format)) == CAUGHT[change]


@pytest.mark.parametrize("format", tables.FORMATS)
def test_an_empty_cell_for_a_null_and_a_null_for_an_empty_cell_are_no_difference(
    tmp_path: Path, bundle: dict[str, Any], format: str
) -> None:
    rows = table()
    swap = {None: "", "": None}
    cells = [(r, c) for r in rows for c in tables.COLUMNS[1:-2] if r[c] in swap]
    assert {r[c] for r, c in cells} == {None, ""}
    for r, c in cells:
        r[c] = swap[r[c]]
    assert tables.check_table(bundle, rows) == []
    assert tables.check_table(*round_trip(tmp_path, bundle, rows, format)) == []


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_moment_in_another_offset_is_no_difference(bundle: dict[str, Any], kind: str) -> None:
    rows = table()
    n = first(rows, kind)
    moment = parse_timestamp(rows[n]["occurred_at"]).astimezone(timezone(timedelta(hours=8)))
    rows[n]["occurred_at"] = moment.isoformat(timespec="milliseconds")
    assert rows[n]["occurred_at"].endswith("+08:00")
    assert tables.check_table(bundle, rows) == []


def test_each_record_of_a_violation_is_a_row_naming_its_current_status() -> None:
    rows = {r["entry_id"]: r for r in table() if r["entry_kind"] == "violation"}
    original, retraction = rows[VIOLATION.violation_id], rows[RETRACTION.revision_id]
    assert retraction["entry_id"] != original["entry_id"] == original["violation_id"]
    assert original["violation_id"] == retraction["violation_id"] == VIOLATION.violation_id
    assert (original["status"], retraction["status"]) == ("open", "retracted")
    assert original["current_status"] == retraction["current_status"] == "retracted"
    assert rows["v-2"]["current_status"] == "open"


@pytest.mark.parametrize("format", tables.FORMATS)
@pytest.mark.parametrize("entry_id", [VIOLATION.violation_id, "v-2"])
def test_a_forged_current_status_is_caught(
    tmp_path: Path, bundle: dict[str, Any], format: str, entry_id: str
) -> None:
    rows = table()
    n = next(n for n, r in enumerate(rows) if r["entry_id"] == entry_id)
    rows[n]["current_status"] = "open" if rows[n]["current_status"] == "retracted" else "retracted"
    assert tables.check_table(*round_trip(tmp_path, bundle, rows, format)) == [
        f"table row {n} (seq {SELECTED[n]}): current_status differs from its violation's last record "
        "in the bundle"
    ]


def test_a_table_of_an_older_export_without_the_revision_columns_still_matches(
    bundle: dict[str, Any],
) -> None:
    rows = [{c: v for c, v in r.items() if c not in tables.ADDED_COLUMNS} for r in table()]
    assert tables.check_table(bundle, rows) == []
    rows[0]["entry_id"] = "forged"  # the columns it has are still checked
    assert len(tables.check_table(bundle, rows)) == 1


def test_the_table_is_checked_against_the_bundle_not_itself(bundle: dict[str, Any]) -> None:
    """A body changed in the bundle (which then fails verification) is no table problem, but a
    table that still shows the original body differs from it."""
    changed = copy.deepcopy(bundle)
    assert "op-metro-bank" in changed["entries"][0]["body"]
    changed["entries"][0]["body"] = changed["entries"][0]["body"].replace("op-metro-bank", "op-other")
    assert tables.check_table(changed, table()) == [
        f"table row 0 (seq {SELECTED[0]}): seq or body differs from the bundle"
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"kind": "note", "text": "no such entry"}, "no known kind"),
        ({"kind": "query", "route": "/v1/summary", "at": "2026-11-21T08:00:00.000Z"}, "request_id"),
        # an event as the old tests imagined it: no "type" tag
        (
            {"event_id": "e-1", "event_type": "match.reported", "occurred_at": "2026-11-21T08:00:00.000Z"},
            "'type'",
        ),
    ],
)
def test_a_body_of_no_known_kind_is_reported(body: dict[str, Any], error: str) -> None:
    text = canonical_json(body).decode()
    problems = tables.check_table({"entries": [{"seq": 0, "body": text}]}, [{"seq": 0, "body": text}])
    assert len(problems) == 1
    assert problems[0].startswith("table row 0 (seq 0): the body is not an audit entry")
    assert error in problems[0]


def _zip(tmp_path: Path, names: list[str], bundle: bool = True) -> Path:
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as archive:
        if bundle:
            archive.writestr(tables.BUNDLE_NAME, json.dumps({"entries": []}))
        for name in names:
            archive.writestr(name, "")
    return path


@pytest.mark.parametrize(
    "names", [[], ["entries.xlsx"], ["entries.csv", "entries.jsonl"], ["table.csv"], ["entries"]]
)
def test_read_archive_wants_exactly_one_known_table(tmp_path: Path, names: list[str]) -> None:
    with pytest.raises(ValueError, match="expected one entries"):
        tables.read_archive(_zip(tmp_path, names))


def test_read_archive_wants_the_bundle(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no bundle\.json"):
        tables.read_archive(_zip(tmp_path, ["entries.jsonl"], bundle=False))


def test_read_archive_of_an_empty_table(tmp_path: Path) -> None:
    bundle, rows = tables.read_archive(_zip(tmp_path, ["entries.jsonl"]))
    assert (bundle, rows) == ({"entries": []}, [])
    assert tables.check_table(bundle, rows) == []


def test_a_jsonl_line_that_is_not_an_object_is_refused(tmp_path: Path, bundle: dict[str, Any]) -> None:
    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(tables.BUNDLE_NAME, json.dumps(bundle))
        archive.writestr("entries.jsonl", "".join(f"{seq}\n" for seq in SELECTED))
    try:
        read_bundle, rows = tables.read_archive(path)
    except ValueError:
        return
    assert tables.check_table(read_bundle, rows) != []
