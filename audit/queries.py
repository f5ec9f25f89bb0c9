"""The regulators' questions as reads of the audit log: pages of entries in time order (with an
opaque cursor), violations as they stand now and each one's history, a device's configurations
over time, and counts. Only entries whose leaf is in (seq below the log's size) are ever shown:
the rest may still be an unfinished write.

A violation may have several records (contract.md, "Verdict revisions"); the last by seq is its
current state. Every record of a violation shares its fields, occurred_at included, so any
selection takes all of a violation's records or none.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from audit.selection import EARLIEST_MS, LATEST_MS, Selection
from audit.store import Store
from contracts.records import ViolationStatus
from contracts.timestamps import format_utc_timestamp

_AFTER = (
    " AND (occurred_at > fromUnixTimestamp64Milli(%(after_ms)s, 'UTC')"
    " OR (occurred_at = fromUnixTimestamp64Milli(%(after_ms)s, 'UTC') AND seq > %(after_seq)s))"
)


# Every string of this shape is a usable cursor (so the API's schema says exactly what it takes).
CURSOR_PATTERN = r"^-?[0-9]{1,15}\.[0-9]{1,19}$"


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the (occurred_at in epoch milliseconds, seq) of its last entry."""

    occurred_ms: int
    seq: int

    def encode(self) -> str:
        return f"{self.occurred_ms}.{self.seq}"

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        if not re.fullmatch(CURSOR_PATTERN, text):
            raise ValueError("not a cursor: expected MILLISECONDS.SEQ, a page's next_cursor")
        ms, seq = text.split(".")
        return cls(min(max(int(ms), EARLIEST_MS), LATEST_MS), int(seq))


def page(
    store: Store, selection: Selection, limit: int, after: Cursor | None = None
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Up to ``limit`` entries in (occurred_at, seq) order after ``after``, and the next cursor."""
    where, parameters = selection.where()
    if after is not None:
        where += _AFTER
        parameters |= {"after_ms": after.occurred_ms, "after_seq": after.seq}
    rows = store.client.query(
        "SELECT seq, kind, entry_id, operator_id, occurred_at, toUnixTimestamp64Milli(occurred_at), body"
        f" FROM {store.db}.audit_log WHERE {where} AND seq < {store.size()}"
        f" ORDER BY occurred_at, seq LIMIT {int(limit) + 1}",
        parameters=parameters,
    ).result_rows
    items = [
        _item(seq, kind, entry_id, operator_id, at, body)
        for seq, kind, entry_id, operator_id, at, _, body in rows[:limit]
    ]
    more = len(rows) > limit
    return items, Cursor(int(rows[limit - 1][5]), int(rows[limit - 1][0])) if more else None


def _item(
    seq: int, kind: str, entry_id: str, operator_id: str, occurred_at: Any, body: str
) -> dict[str, Any]:
    return {
        "seq": int(seq),
        "kind": kind,
        "entry_id": entry_id,
        "operator_id": operator_id,
        "occurred_at": format_utc_timestamp(occurred_at),
        "record": json.loads(body),
    }


def violations(
    store: Store, selection: Selection, limit: int, after: Cursor | None = None, status: str | None = None
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Up to ``limit`` violations, each once as it stands now: its current record (the last by
    seq) with ``status`` and the number of its ``records``; only those now ``status`` if given.
    In (occurred_at, seq of the current record) order after ``after``: a violation revised
    while a client pages may come again, later, as it now stands, and none is ever skipped."""
    where, parameters = selection.where()
    where += f" AND kind = 'violation' AND seq < {store.size()}"
    having = []
    if after is not None:
        where += " AND occurred_at >= fromUnixTimestamp64Milli(%(after_ms)s, 'UTC')"
        having.append("(at_ms > %(after_ms)s OR (at_ms = %(after_ms)s AND last_seq > %(after_seq)s))")
        parameters |= {"after_ms": after.occurred_ms, "after_seq": after.seq}
    if status is not None:
        having.append("current = %(status)s")
        parameters["status"] = status
    groups = store.client.query(
        "SELECT max(seq) AS last_seq, argMax(status, seq) AS current, count() AS records,"
        f" toUnixTimestamp64Milli(min(occurred_at)) AS at_ms FROM {store.db}.audit_log WHERE {where}"
        f" GROUP BY violation_id{' HAVING ' + ' AND '.join(having) if having else ''}"
        f" ORDER BY at_ms, last_seq LIMIT {int(limit) + 1}",
        parameters=parameters,
    ).result_rows
    shown = groups[:limit]
    current = {}
    if shown:
        seqs = ",".join(str(int(group[0])) for group in shown)
        rows = store.client.query(
            f"SELECT seq, kind, entry_id, operator_id, occurred_at, body FROM {store.db}.audit_log"
            f" WHERE {where} AND seq IN ({seqs})",
            parameters=parameters,
        ).result_rows
        current = {int(row[0]): row for row in rows}
    items = [
        _item(*current[int(last_seq)]) | {"status": state, "records": int(records)}
        for last_seq, state, records, _ in shown
    ]
    more = len(groups) > limit
    return items, Cursor(int(shown[-1][3]), int(shown[-1][0])) if more else None


def history(store: Store, selection: Selection, limit: int = 1000) -> list[dict[str, Any]]:
    """Every selected violation record in log order: for one violation_id, its history, the
    last record its current state."""
    where, parameters = selection.where()
    rows = store.client.query(
        f"SELECT seq, kind, entry_id, operator_id, occurred_at, body FROM {store.db}.audit_log"
        f" WHERE {where} AND kind = 'violation' AND seq < {store.size()} ORDER BY seq LIMIT {int(limit)}",
        parameters=parameters,
    ).result_rows
    return [_item(*row) for row in rows]


def current_status(records: list[dict[str, Any]]) -> ViolationStatus:
    """A violation's status as its last record states it (a record without one is open)."""
    return "retracted" if records[-1]["record"].get("status") == "retracted" else "open"


def configurations(store: Store, selection: Selection, limit: int = 1000) -> list[dict[str, Any]]:
    """A device's registrations (its declared configuration) in time order."""
    where, parameters = selection.where()
    rows = store.client.query(
        f"SELECT occurred_at, body FROM {store.db}.audit_log WHERE {where}"
        f" AND kind = 'event' AND event_type = 'device.registered' AND seq < {store.size()}"
        f" ORDER BY occurred_at, seq LIMIT {int(limit)}",
        parameters=parameters,
    ).result_rows
    return [{"occurred_at": format_utc_timestamp(at), "configuration": json.loads(body)} for at, body in rows]


def summary(store: Store, selection: Selection) -> dict[str, list[dict[str, Any]]]:
    """Counts only, never a row: violations by operator, rule, severity and pack, each counted
    once by its current state (``count``: those that stand, ``retracted``: those withdrawn);
    events by operator and type; dead letters by reason."""
    where, parameters = selection.where()
    size = store.size()
    standing = store.client.query(
        "SELECT operator_id, rule_id, severity, policy_pack, countIf(current = 'open'),"
        " countIf(current = 'retracted') FROM (SELECT operator_id, rule_id, severity, policy_pack,"
        f" argMax(status, seq) AS current FROM {store.db}.audit_log WHERE {where}"
        f" AND kind = 'violation' AND seq < {size}"
        " GROUP BY violation_id, operator_id, rule_id, severity, policy_pack)"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        parameters=parameters,
    ).result_rows
    out: dict[str, list[dict[str, Any]]] = {"violations": [], "events": [], "dead_letters": []}
    for operator_id, rule_id, severity, pack, count, retracted in standing:
        out["violations"].append(
            {
                "operator_id": operator_id,
                "rule_id": rule_id,
                "severity": severity,
                "policy_pack": pack,
                "count": int(count),
                "retracted": int(retracted),
            }
        )
    rows = store.client.query(
        f"SELECT kind, operator_id, event_type, count() FROM {store.db}.audit_log WHERE {where}"
        f" AND kind IN ('event', 'dead_letter') AND seq < {size} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        parameters=parameters,
    ).result_rows
    for kind, operator_id, what, count in rows:
        if kind == "event":
            out["events"].append({"operator_id": operator_id, "event_type": what, "count": int(count)})
        else:
            out["dead_letters"].append({"reason": what, "count": int(count)})
    return out
