"""Selecting audit entries for an export bundle, covered by the latest signed checkpoint."""

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from audit.bundle import make_bundle
from audit.checkpoint import Signer
from audit.merkle import Tree
from audit.store import Store


@dataclass(frozen=True)
class Selection:
    operator_id: str | None = None
    kind: str | None = None  # event | violation | dead_letter | query
    rule_id: str | None = None
    since: datetime | None = None  # occurred_at >= since
    until: datetime | None = None  # occurred_at < until

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses, parameters = [], {}
        for column in ("operator_id", "kind", "rule_id"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = %({column})s")
                parameters[column] = value
        if self.since is not None:
            clauses.append("occurred_at >= %(since)s")
            parameters["since"] = self.since
        if self.until is not None:
            clauses.append("occurred_at < %(until)s")
            parameters["until"] = self.until
        return " AND ".join(clauses) or "1", parameters

    def describe(self) -> dict[str, Any]:
        return {
            k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in asdict(self).items()
            if v is not None
        }


class NoCheckpoint(RuntimeError):
    """The log has no signed checkpoint yet: nothing can be exported verifiably."""


def export(store: Store, signer: Signer, selection: Selection) -> dict[str, Any]:
    latest = store.latest_checkpoint()
    if latest is None:
        raise NoCheckpoint(
            "the audit log has no signed checkpoint yet (the sink signs one every few seconds)"
        )
    size, note = latest
    where, parameters = selection.where()
    rows = store.client.query(
        f"SELECT seq, body FROM {store.db}.audit_log WHERE {where} AND seq < {size} ORDER BY seq",
        parameters=parameters,
    ).result_rows
    tree = Tree(store.leaf_hashes(size))
    return make_bundle(
        signer, note, tree, [(int(seq), str(body)) for seq, body in rows], selection.describe()
    )
