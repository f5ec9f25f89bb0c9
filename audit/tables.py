"""Export archives: the signed bundle beside a table of the same entries (CSV, JSON Lines or
Parquet) for the regulator's own tools, and the check that the table says what the bundle
proves. Pure (files only).

The table's ``body`` column is the entry exactly as hashed into the log; the other columns are
conveniences read off it, and the verifier checks every one of them against the body. A
violation's records (its original, a retraction, a late detection) are rows of their own;
``current_status`` is the status of its last record in the export, which the verifier checks
against the bundle's bodies (an export takes all of a violation's records or none of them).
"""

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import IO, Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from audit.entries import dead_letter_id
from contracts.records import Violation
from contracts.timestamps import format_timestamp, format_utc_timestamp, parse_timestamp

FORMATS = ("jsonl", "csv", "parquet")
BUNDLE_NAME = "bundle.json"
STORED_COLUMNS = (
    "seq",
    "kind",
    "entry_id",
    "violation_id",
    "status",
    "operator_id",
    "site_id",
    "device_id",
    "subject_ref",
    "event_type",
    "rule_id",
    "severity",
    "policy_pack",
    "occurred_at",
    "body",
)
# "kind" is also a field of some events (a consent's kind), so the table calls it entry_kind.
# current_status is not stored: the export reads it off the violation's last record.
_NAMED = tuple("entry_kind" if c == "kind" else c for c in STORED_COLUMNS)
COLUMNS = (*_NAMED[:5], "current_status", *_NAMED[5:])
# Columns older exports lack: a table without one of them is not faulted for it.
ADDED_COLUMNS = ("violation_id", "status", "current_status")
_SCHEMA = pa.schema([("seq", pa.int64())] + [(c, pa.string()) for c in COLUMNS[1:]])


def row(stored: dict[str, Any]) -> dict[str, Any]:
    """A table row from an audit_log row, as if it were its violation's last record."""
    out = {("entry_kind" if k == "kind" else k): v for k, v in stored.items()}
    out["seq"] = int(out["seq"])
    out["occurred_at"] = format_utc_timestamp(out["occurred_at"])
    out["body"] = str(out["body"])
    out["current_status"] = out["status"] if out["violation_id"] else ""  # an event's status is its own
    return {column: out[column] for column in COLUMNS}


def table(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table rows of audit_log rows in log order: each violation's rows name the status of
    its last record as its current_status."""
    rows = [row(r) for r in stored]
    current = {r["violation_id"]: r["status"] for r in rows if r["violation_id"]}
    for r in rows:
        if r["violation_id"]:
            r["current_status"] = current[r["violation_id"]]
    return rows


def bundle_bytes(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle).encode()


def write_archive(out: IO[bytes], bundle: dict[str, Any], rows: list[dict[str, Any]], format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f"unknown table format {format!r}: one of {', '.join(FORMATS)}")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(BUNDLE_NAME, bundle_bytes(bundle))
        archive.writestr(f"entries.{format}", table_bytes(rows, format))


def table_bytes(rows: list[dict[str, Any]], format: str) -> bytes:
    if format == "jsonl":
        return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)
    if format == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return text.getvalue().encode()
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=_SCHEMA), buffer)
    return buffer.getvalue()


def read_archive(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The bundle and the table rows of an export archive."""
    with zipfile.ZipFile(path) as archive:
        if BUNDLE_NAME not in archive.namelist():
            raise ValueError(f"no {BUNDLE_NAME} in the archive")
        bundle = json.loads(archive.read(BUNDLE_NAME))
        names = [n for n in archive.namelist() if n.startswith("entries.")]
        if len(names) != 1 or names[0].split(".", 1)[1] not in FORMATS:
            raise ValueError(f"expected one entries.{{{','.join(FORMATS)}}} table, found {names}")
        data, format = archive.read(names[0]), names[0].split(".", 1)[1]
    if format == "jsonl":
        rows = [json.loads(line) for line in data.splitlines() if line.strip()]
        if not all(isinstance(r, dict) for r in rows):
            raise ValueError("entries.jsonl: every line must be an object")
    elif format == "csv":
        rows = list(csv.DictReader(io.StringIO(data.decode())))
    else:
        rows = pq.read_table(io.BytesIO(data)).to_pylist()
    return bundle, rows


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def stated_columns(body: dict[str, Any]) -> dict[str, Any]:
    """The table's convenience columns as an entry's body states them (audit/entries.py makes
    the log's columns the same way)."""
    kind: str
    entry_id: Any
    event_type: Any
    violation_id: str | None = None
    status: str | None = None
    if "violation_id" in body:
        record = msgspec.convert(body, Violation)  # its revision id names its entry
        kind, entry_id, event_type, at = "violation", record.revision_id, "violation", record.occurred_at
        violation_id, status = record.violation_id, record.status
    elif "event_id" in body:
        kind, entry_id, event_type, at = "event", body["event_id"], body["type"], body["occurred_at"]
        status = "unsigned" if body.get("sig") is None else None  # admitted unsigned: weaker evidence
    elif body.get("kind") == "query":
        kind, entry_id, event_type, at = "query", body["request_id"], body.get("route"), body["at"]
    elif body.get("kind") == "dead_letter":
        code = str(body["reason"]).split(":", 1)[0]
        kind, entry_id, event_type = "dead_letter", dead_letter_id(str(body["source"]), code), code
        at = body["dead_lettered_at"]
    else:
        raise ValueError("an entry of no known kind")
    return {
        "entry_kind": kind,
        "entry_id": entry_id,
        "violation_id": violation_id,
        "status": status,
        "operator_id": body.get("operator_id"),
        "site_id": body.get("site_id"),
        "device_id": body.get("device_id"),
        "subject_ref": body.get("subject_ref"),
        "event_type": event_type,
        "rule_id": body.get("rule_id"),
        "severity": body.get("severity"),
        "policy_pack": body.get("policy_pack"),
        "occurred_at": at,
    }


def check_table(bundle: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Problems where the table differs from the (separately verified) bundle's entries."""
    entries = bundle.get("entries") or []
    if len(rows) != len(entries):
        return [f"the table has {len(rows)} rows, the bundle {len(entries)} entries"]
    problems = []
    checked: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # (where, table row, stated)
    for n, (table_row, entry) in enumerate(zip(rows, entries, strict=True)):
        where = f"table row {n} (seq {entry.get('seq')})"
        if _text(table_row.get("seq")) != _text(entry["seq"]) or table_row.get("body") != entry["body"]:
            problems.append(f"{where}: seq or body differs from the bundle")
            continue
        try:
            body = json.loads(entry["body"])
            if not isinstance(body, dict):
                raise ValueError("not an object")
            checked.append((where, table_row, stated_columns(body)))
        except (KeyError, ValueError) as error:
            problems.append(f"{where}: the body is not an audit entry ({error!r})")
    # Bodies whose rows differ still state their violation's last status: the bundle decides.
    current = _current_statuses(entries)
    for where, table_row, stated in checked:
        at = stated.pop("occurred_at")
        problems += [
            f"{where}: {column} differs from the entry's body"
            for column, value in stated.items()
            if _shown(table_row, column) and _text(value) != _text(table_row.get(column))
        ]
        if _moments_differ(at, table_row.get("occurred_at")):
            problems.append(f"{where}: occurred_at differs from the entry's body")
        last = current.get(stated["violation_id"]) if stated["violation_id"] else None
        if _shown(table_row, "current_status") and _text(last) != _text(table_row.get("current_status")):
            problems.append(f"{where}: current_status differs from its violation's last record in the bundle")
    return problems


def _shown(table_row: dict[str, Any], column: str) -> bool:
    """Whether the table has this column (an older export lacks the added ones)."""
    return column in table_row or column not in ADDED_COLUMNS


def _current_statuses(entries: list[dict[str, Any]]) -> dict[str, str]:
    """violation_id -> the status of its last record among the bundle's entries."""
    current: dict[str, str] = {}
    for entry in entries:
        try:
            body = json.loads(entry["body"])
        except (KeyError, TypeError, ValueError):
            continue
        if isinstance(body, dict) and isinstance(body.get("violation_id"), str):
            current[body["violation_id"]] = str(body.get("status", "open"))
    return current


def _moments_differ(stated: Any, shown: Any) -> bool:
    """To the millisecond the log keeps; an unreadable time differs."""
    try:
        return format_timestamp(parse_timestamp(str(stated))) != format_timestamp(parse_timestamp(str(shown)))
    except ValueError:
        return True
