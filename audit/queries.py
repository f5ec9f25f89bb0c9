"""The regulators' questions as reads of the audit log: pages of entries in time order (with an
opaque cursor), a device's configurations over time, and counts. Only entries whose leaf is in
(seq below the log's size) are ever shown: the rest may still be an unfinished write.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from audit.selection import EARLIEST_MS, LATEST_MS, Selection
from audit.store import Store
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
        {
            "seq": int(seq),
            "kind": kind,
            "entry_id": entry_id,
            "operator_id": operator_id,
            "occurred_at": format_utc_timestamp(occurred_at),
            "record": json.loads(body),
        }
        for seq, kind, entry_id, operator_id, occurred_at, _, body in rows[:limit]
    ]
    more = len(rows) > limit
    return items, Cursor(int(rows[limit - 1][5]), int(rows[limit - 1][0])) if more else None


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
    """Counts only, never a row: violations by operator, rule, severity and pack; events by
    operator and type; dead letters by reason."""
    where, parameters = selection.where()
    rows = store.client.query(
        "SELECT kind, operator_id, if(kind = 'violation', rule_id, event_type), severity, policy_pack,"
        f" count() FROM {store.db}.audit_log WHERE {where}"
        f" AND kind IN ('event', 'violation', 'dead_letter') AND seq < {store.size()}"
        " GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5",
        parameters=parameters,
    ).result_rows
    out: dict[str, list[dict[str, Any]]] = {"violations": [], "events": [], "dead_letters": []}
    for kind, operator_id, what, severity, pack, count in rows:
        if kind == "violation":
            out["violations"].append(
                {
                    "operator_id": operator_id,
                    "rule_id": what,
                    "severity": severity,
                    "policy_pack": pack,
                    "count": int(count),
                }
            )
        elif kind == "event":
            out["events"].append({"operator_id": operator_id, "event_type": what, "count": int(count)})
        else:
            out["dead_letters"].append({"reason": what, "count": int(count)})
    return out
