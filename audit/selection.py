"""Which audit entries a query or an export means, as one SQL condition with bound parameters.

A scoped read sees two kinds of rows: the events, violations and dead letters of the operators
it may read (``operators``), and the query records of the principals whose queries it may read
(``askers``: its own, or everyone's for an auditor). A query record is no operator's row: who
asked decides who sees it, so an operator never reads a regulator's question about its subjects.
"""

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

# DateTime64's range; bounds outside it are clamped rather than sent to ClickHouse.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(2299, 12, 31, tzinfo=UTC)
EARLIEST_MS, LATEST_MS = (int(moment.timestamp() * 1000) for moment in (_EARLIEST, _LATEST))
ASKER = "JSONExtractString(body, 'principal', 'name')"  # who made a query record
_EQUALITY = (
    "kind",
    "operator_id",
    "site_id",
    "device_id",
    "subject_ref",
    "event_type",
    "rule_id",
    "severity",
    "policy_pack",
    "violation_id",
)


def milliseconds(moment: datetime) -> int:
    """Milliseconds since the epoch (naive times are UTC), clamped to what the log can hold."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return int(min(max(moment, _EARLIEST), _LATEST).timestamp() * 1000)


@dataclass(frozen=True)
class Selection:
    kind: str | None = None  # event | violation | dead_letter | query
    operator_id: str | None = None
    site_id: str | None = None
    device_id: str | None = None
    subject_ref: str | None = None
    event_type: str | None = None
    rule_id: str | None = None
    severity: str | None = None
    policy_pack: str | None = None
    violation_id: str | None = None  # every record of one violation
    since: datetime | None = None  # occurred_at >= since
    until: datetime | None = None  # occurred_at < until
    operators: tuple[str, ...] | None = None  # rows of these operators only; None: every operator's
    askers: tuple[str, ...] | None = None  # query records of these principals only; None: anyone's

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses, parameters = [], {}
        for column in _EQUALITY:
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = %({column})s")
                parameters[column] = value
        # Bound as epoch milliseconds: a bound datetime would lose its milliseconds.
        if self.since is not None:
            clauses.append("occurred_at >= fromUnixTimestamp64Milli(%(since_ms)s, 'UTC')")
            parameters["since_ms"] = milliseconds(self.since)
        if self.until is not None:
            clauses.append("occurred_at < fromUnixTimestamp64Milli(%(until_ms)s, 'UTC')")
            parameters["until_ms"] = milliseconds(self.until)
        if self.operators is not None or self.askers is not None:
            clauses += self._scope(parameters)
        return " AND ".join(clauses) or "1", parameters

    def _scope(self, parameters: dict[str, Any]) -> list[str]:
        rows, asked = "1", "1"
        if self.operators is not None:
            rows = "operator_id IN %(operators)s" if self.operators else "0"
            parameters["operators"] = tuple(sorted(self.operators))
        if self.askers is not None:
            asked = f"{ASKER} IN %(askers)s" if self.askers else "0"
            parameters["askers"] = tuple(sorted(self.askers))
        if self.kind == "query":
            return [asked]
        if self.kind is not None:
            return [rows]
        clauses = [f"if(kind = 'query', {asked}, {rows})"]
        if self.operators and self.askers is not None:
            # Query records carry no operator, so the scope's operators and the untagged keep the
            # table's ORDER BY (operator_id, ...) pruning the read. (Older records carry the
            # operator a call named: an asker's own that named one outside its scope, refused
            # calls, are left out.)
            clauses.insert(0, "operator_id IN %(operators_or_none)s")
            parameters["operators_or_none"] = ("", *sorted(self.operators))
        return clauses

    def describe(self) -> dict[str, Any]:
        """The selection as the export statement names it."""
        described: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = sorted(value)
            described[field.name] = value
        return described
