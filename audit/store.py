"""The audit store in ClickHouse: embedded chDB by default, a server by URL; one client
(clickhouse-connect), one SQL. chDB lets only one process open its folder, so the process that
runs the sink owns it (see README, "The audit log").
"""

from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any

import clickhouse_connect

from audit import migrate
from audit.entries import COLUMNS, Entry
from audit.merkle import STORED_HEIGHT, StoredTree

DATABASE = "frtwatch"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _hash(value: Any) -> bytes:
    """A FixedString(32) as the client returns it (bytes, or str when it decodes)."""
    return bytes(value) if not isinstance(value, str) else value.encode("latin-1")


class Store:
    def __init__(self, dsn: str, database: str = DATABASE) -> None:
        if dsn.startswith("chdb://"):
            Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
        self.client: Any = clickhouse_connect.get_client(dsn=dsn)
        self.dsn, self.db = dsn, database

    def another(self) -> "Store":
        """A connection of its own to the same store: a query on one never waits for another's
        (chDB serves many connections in one process, a server many clients)."""
        return Store(self.dsn, self.db)

    def close(self) -> None:
        self.client.close()

    def migrate(self) -> list[migrate.Migration]:
        return migrate.upgrade(self.client, self.db)

    # -- the log -------------------------------------------------------------------------------

    def size(self) -> int:
        """Entries in the log: its leaves, which are written last (the commit point)."""
        return int(self.client.command(f"SELECT count() FROM {self.db}.audit_leaves"))

    def drop_unfinished(self, size: int) -> None:
        """Rows of a batch whose leaves never landed (a crash between the two inserts)."""
        if self.client.command(f"SELECT count() FROM {self.db}.audit_log WHERE seq >= {size}"):
            self.client.command(f"DELETE FROM {self.db}.audit_log WHERE seq >= {size}")

    def known(self, entry_ids: Iterable[str], chunk: int = 4_000) -> set[str]:
        """Which of these ids are in the log (in chunks: a query's text is limited to 256 KiB)."""
        ids = list(entry_ids)
        found: set[str] = set()
        for start in range(0, len(ids), chunk):
            # Quoted here: the client's parameter binding costs more than the query itself.
            listed = ",".join(_quote(entry_id) for entry_id in ids[start : start + chunk])
            rows = self.client.query(
                f"SELECT entry_id FROM {self.db}.audit_leaves WHERE entry_id IN ({listed})"
            ).result_rows
            found.update(row[0] for row in rows)
        return found

    def append(
        self, entries: Sequence[Entry], first_seq: int, recorded_at: datetime, leaf_hashes: Sequence[bytes]
    ) -> None:
        """Entries numbered from ``first_seq``, in one insert: the rows, and (by the materialized
        view of migration 0004) then their leaves. An entry counts once its leaf is in."""
        if not entries:
            return
        # Column by column, times as epoch milliseconds: the client's own conversion of rows
        # and datetimes costs more than the insert itself.
        columns: list[Sequence[Any]] = []
        for name in COLUMNS:
            if name == "seq":
                columns.append(range(first_seq, first_seq + len(entries)))
            elif name == "occurred_at":
                columns.append([(e.occurred_at - _EPOCH) // _MILLISECOND for e in entries])
            elif name == "recorded_at":
                columns.append([(recorded_at - _EPOCH) // _MILLISECOND] * len(entries))
            elif name == "body":
                columns.append([e.body.decode() for e in entries])
            else:
                columns.append(list(map(attrgetter(name), entries)))
        self.client.insert(
            f"{self.db}.audit_log",
            [*columns, leaf_hashes],
            column_names=[*COLUMNS, "leaf_hash"],
            column_oriented=True,
        )

    def leaves(self, end: int, chunk: int = 500_000) -> Iterator[tuple[str, bytes]]:
        """(entry_id, leaf hash) of seq 0 .. end-1, in order: one scan serves the tree and the
        id filter."""
        for start in range(0, end, chunk):
            rows = self.client.query(
                f"SELECT entry_id, leaf_hash FROM {self.db}.audit_leaves WHERE seq >= {start} AND seq < "
                f"{min(end, start + chunk)} ORDER BY seq"
            ).result_rows
            for entry_id, leaf in rows:
                yield entry_id, _hash(leaf)

    def leaf_hashes(self, end: int) -> Iterator[bytes]:
        return (leaf for _, leaf in self.leaves(end))

    # -- stored tree nodes (audit_nodes) --------------------------------------------------------

    def add_nodes(self, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        if nodes:
            self.client.insert(f"{self.db}.audit_nodes", list(nodes), column_names=["height", "idx", "hash"])

    def nodes(self, keys: Collection[tuple[int, int]], chunk: int = 4_000) -> dict[tuple[int, int], bytes]:
        found: dict[tuple[int, int], bytes] = {}
        listed = sorted(keys)
        for start in range(0, len(listed), chunk):
            wanted = ",".join(f"({h},{i})" for h, i in listed[start : start + chunk])
            rows = self.client.query(
                f"SELECT height, idx, hash FROM {self.db}.audit_nodes WHERE (height, idx) IN ({wanted})"
            ).result_rows
            found.update(((int(h), int(i)), _hash(node)) for h, i, node in rows)
        return found

    def all_nodes(self) -> Iterator[tuple[int, int, bytes]]:
        """Every stored node, in (height, index) order (about one per 32 leaves)."""
        rows = self.client.query(
            f"SELECT DISTINCT height, idx, hash FROM {self.db}.audit_nodes ORDER BY height, idx"
        ).result_rows
        return ((int(h), int(i), _hash(node)) for h, i, node in rows)

    def leaf_blocks(self, blocks: Collection[int], chunk: int = 4_000) -> dict[int, bytes]:
        """{seq: leaf hash} of the leaves in these blocks of 2**STORED_HEIGHT."""
        found: dict[int, bytes] = {}
        listed = sorted(blocks)
        for start in range(0, len(listed), chunk):
            wanted = ",".join(map(str, listed[start : start + chunk]))
            rows = self.client.query(
                f"SELECT seq, leaf_hash FROM {self.db}.audit_leaves "
                f"WHERE intDiv(seq, {1 << STORED_HEIGHT}) IN ({wanted})"
            ).result_rows
            found.update((int(seq), _hash(leaf)) for seq, leaf in rows)
        return found

    def tree(self, size: int) -> StoredTree:
        """The log's tree of ``size`` leaves, for proofs, read from its stored nodes."""
        return StoredTree(size, self.nodes, self.leaf_blocks)

    def bodies_not_matching_leaves(self, limit: int = 5) -> list[int]:
        """Seqs whose stored body no longer hashes to its leaf: a rewritten entry (bodies past
        retention are gone, and not checked). One scan, inside ClickHouse."""
        rows = self.client.query(
            f"SELECT l.seq FROM {self.db}.audit_log AS l INNER JOIN {self.db}.audit_leaves AS v "
            f"ON l.seq = v.seq WHERE SHA256(concat(char(0), l.body)) != v.leaf_hash ORDER BY l.seq "
            f"LIMIT {int(limit)}"
        ).result_rows
        return [int(row[0]) for row in rows]

    # -- checkpoints ---------------------------------------------------------------------------

    def add_checkpoint(self, size: int, root: bytes, note: str) -> None:
        self.client.insert(
            f"{self.db}.audit_checkpoints",
            [(size, root, note, datetime.now(UTC))],
            column_names=["size", "root", "note", "signed_at"],
        )

    def checkpoint_at(self, size: int) -> str | None:
        """The checkpoint signed at exactly this size (every one is kept)."""
        rows = self.client.query(
            f"SELECT note FROM {self.db}.audit_checkpoints WHERE size = {int(size)} "
            "ORDER BY signed_at LIMIT 1"
        ).result_rows
        return str(rows[0][0]) if rows else None

    def latest_checkpoint(self) -> tuple[int, str] | None:
        rows = self.client.query(
            f"SELECT size, note FROM {self.db}.audit_checkpoints ORDER BY size DESC LIMIT 1"
        ).result_rows
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def set_retention(self, days: int | None) -> None:
        """Entry bodies older than ``days`` (by record time) expire; their leaves stay, so every
        checkpoint still verifies. None: keep everything."""
        table = f"{self.db}.audit_log"
        if days:
            self.client.command(
                f"ALTER TABLE {table} MODIFY TTL toDateTime(recorded_at) + INTERVAL {int(days)} DAY"
            )
        elif " TTL " in str(
            self.client.command(
                f"SELECT engine_full FROM system.tables WHERE database = '{self.db}' AND name = 'audit_log'"
            )
        ):
            self.client.command(f"ALTER TABLE {table} REMOVE TTL")
