"""Exporting audit entries, covered by the latest signed checkpoint: a bundle (JSON), or the
same bundle zipped beside a table of the entries (CSV, JSON Lines or Parquet). Every record of
a violation is an entry of its own (its original, a retraction, a late detection), so an
export holds each selected violation's whole history up to the checkpoint.

An export costs what it returns, not the size of the log: its rows are streamed from
ClickHouse and written entry by entry, each block's inclusion proofs built from the log's
stored nodes (audit/merkle.py StoredTree), never from the whole tree."""

import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from audit import tables
from audit.bundle import BundleWriter
from audit.checkpoint import StatementSigner
from audit.selection import Selection
from audit.store import Store

FORMATS = ("json", *tables.FORMATS)
MAX_ENTRIES = 1_000_000  # per export: a verifier reads one bundle into memory

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class NoCheckpoint(RuntimeError):
    """The log has no signed checkpoint yet: nothing can be exported verifiably."""


class TooLarge(ValueError):
    """The selection holds more entries than one export may."""


@dataclass(frozen=True)
class Export:
    """A selection counted against a fixed checkpoint, ready to be written."""

    store: Store
    statements: StatementSigner
    selection: Selection
    tree_size: int
    checkpoint_note: str
    count: int
    progress: Progress | None = None

    def write(self, out: IO[bytes], format: str) -> None:
        if format == "json":
            for _ in self._bundle(out, None):
                pass
            return
        if format not in tables.FORMATS:
            raise ValueError(f"unknown format {format!r}: one of {', '.join(FORMATS)}")
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            stored: list[dict[str, Any]] = []
            with archive.open(tables.BUNDLE_NAME, "w", force_zip64=True) as member:
                for _ in self._bundle(member, stored):
                    pass
            # The table names each violation's current status: it needs all the rows, which
            # an archive returns anyway.
            archive.writestr(f"entries.{format}", tables.table_bytes(tables.table(stored), format))

    def json_chunks(self) -> Iterator[bytes]:
        """The JSON bundle a block of entries at a time, as the API streams it to its caller."""
        buffer = io.BytesIO()
        for _ in self._bundle(buffer, None):
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    def _bundle(self, out: IO[bytes], kept: list[dict[str, Any]] | None) -> Iterator[None]:
        """Write the bundle to ``out``, pausing after each block of entries (and keeping their
        rows in ``kept``, if given)."""
        writer = BundleWriter(
            out, self.statements, self.checkpoint_note, self.tree_size, self.selection.describe()
        )
        tree = self.store.tree(self.tree_size)
        where, parameters = self.selection.where()
        # Rows stream on a connection of their own: the proofs' queries run beside them.
        rows_reader = self.store.another()
        try:
            with rows_reader.client.query_row_block_stream(
                f"SELECT {', '.join(tables.STORED_COLUMNS)} FROM {self.store.db}.audit_log "
                f"WHERE {where} AND seq < {self.tree_size} ORDER BY seq",
                parameters=parameters,
            ) as blocks:
                for block in blocks:
                    rows = [dict(zip(tables.STORED_COLUMNS, values, strict=True)) for values in block]
                    proofs = tree.inclusion_proofs([int(row["seq"]) for row in rows])
                    for row, proof in zip(rows, proofs, strict=True):
                        writer.add(int(row["seq"]), str(row["body"]), proof)
                    if kept is not None:
                        kept += rows
                    if self.progress:
                        self.progress("entries", writer.count, self.count)
                    yield
        finally:
            rows_reader.close()
        writer.close()


def export(
    store: Store, statements: StatementSigner, selection: Selection, progress: Progress | None = None
) -> Export:
    """The export of ``selection`` under the latest checkpoint; ``write`` writes it."""
    latest = store.latest_checkpoint()
    if latest is None:
        raise NoCheckpoint(
            "the audit log has no signed checkpoint yet (the sink signs one every few seconds)"
        )
    size, note = latest
    where, parameters = selection.where()
    count = int(
        store.client.command(
            f"SELECT count() FROM {store.db}.audit_log WHERE {where} AND seq < {size}", parameters=parameters
        )
    )
    if count > MAX_ENTRIES:
        raise TooLarge(f"{count} entries selected; one export holds at most {MAX_ENTRIES}: narrow it")
    return Export(store, statements, selection, size, note, count, progress)
