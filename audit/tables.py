"""Export archives: the signed bundle beside a table of the same entries (CSV, JSON Lines or
Parquet) for the regulator's own tools, and the check that the table says what the bundle
proves. Pure (files only).

The table's ``body`` column is the entry exactly as hashed into the log; the other columns are
conveniences read off it, and the verifier checks each of them against the body.
"""

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.timestamps import format_timestamp, format_utc_timestamp, parse_timestamp

FORMATS = ("jsonl", "csv", "parquet")
BUNDLE_NAME = "bundle.json"
STORED_COLUMNS = (
    "seq",
    "kind",
    "entry_id",
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
COLUMNS = tuple("entry_kind" if c == "kind" else c for c in STORED_COLUMNS)
_SCHEMA = pa.schema([("seq", pa.int64())] + [(c, pa.string()) for c in COLUMNS[1:]])
# The columns an entry's body states itself, under these names.
_STATED = ("operator_id", "site_id", "device_id", "subject_ref", "event_type", "rule_id", "severity")
_ID_FIELDS = ("event_id", "violation_id", "request_id")


def row(stored: dict[str, Any]) -> dict[str, Any]:
    """A table row from an audit_log row."""
    out = {("entry_kind" if k == "kind" else k): v for k, v in stored.items()}
    out["seq"] = int(out["seq"])
    out["occurred_at"] = format_utc_timestamp(out["occurred_at"])
    out["body"] = str(out["body"])
    return out


def bundle_bytes(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle).encode()


def write_archive(out: IO[bytes], bundle: dict[str, Any], rows: list[dict[str, Any]], format: str) -> None:
    if format not in FORMATS:
        raise ValueError(f"unknown table format {format!r}: one of {', '.join(FORMATS)}")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(BUNDLE_NAME, bundle_bytes(bundle))
        archive.writestr(f"entries.{format}", _table_bytes(rows, format))


def _table_bytes(rows: list[dict[str, Any]], format: str) -> bytes:
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
        bundle = json.loads(archive.read(BUNDLE_NAME))
        names = [n for n in archive.namelist() if n.startswith("entries.")]
        if len(names) != 1 or names[0].split(".", 1)[1] not in FORMATS:
            raise ValueError(f"expected one entries.{{{','.join(FORMATS)}}} table, found {names}")
        data, format = archive.read(names[0]), names[0].split(".", 1)[1]
    if format == "jsonl":
        rows = [json.loads(line) for line in data.splitlines() if line.strip()]
    elif format == "csv":
        rows = list(csv.DictReader(io.StringIO(data.decode())))
    else:
        rows = pq.read_table(io.BytesIO(data)).to_pylist()
    return bundle, rows


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def check_table(bundle: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """Problems where the table differs from the (separately verified) bundle's entries."""
    entries = bundle.get("entries") or []
    if len(rows) != len(entries):
        return [f"the table has {len(rows)} rows, the bundle {len(entries)} entries"]
    problems = []
    for n, (table_row, entry) in enumerate(zip(rows, entries, strict=True)):
        where = f"table row {n} (seq {entry.get('seq')})"
        same = (
            _text(table_row.get("seq")) == _text(entry.get("seq")) and table_row.get("body") == entry["body"]
        )
        if not same:
            problems.append(f"{where}: seq or body differs from the bundle")
            continue
        body = json.loads(entry["body"])
        for column in _STATED:
            if column in body and _text(body[column]) != _text(table_row.get(column)):
                problems.append(f"{where}: {column} differs from the entry's body")
        stated_ids = {_text(body[f]) for f in _ID_FIELDS if f in body}
        if stated_ids and _text(table_row.get("entry_id")) not in stated_ids:
            problems.append(f"{where}: entry_id differs from the entry's body")
        if "occurred_at" in body and _moments_differ(body["occurred_at"], table_row.get("occurred_at")):
            problems.append(f"{where}: occurred_at differs from the entry's body")
    return problems


def _moments_differ(stated: Any, shown: Any) -> bool:
    """To the millisecond the log keeps; an unreadable time differs."""
    try:
        return format_timestamp(parse_timestamp(str(stated))) != format_timestamp(parse_timestamp(str(shown)))
    except ValueError:
        return True
