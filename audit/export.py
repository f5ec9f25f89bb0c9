"""Exporting audit entries, covered by the latest signed checkpoint: a bundle (JSON), or the
same bundle zipped beside a table of the entries (CSV, JSON Lines or Parquet). Every record of
a violation is an entry of its own (its original, a retraction, a late detection), so an
export holds each selected violation's whole history up to the checkpoint."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from audit import tables
from audit.bundle import make_bundle
from audit.checkpoint import Signer
from audit.merkle import Tree
from audit.selection import Selection
from audit.store import Store

FORMATS = ("json", *tables.FORMATS)
MAX_ENTRIES = 1_000_000  # per export: one bundle is built in memory

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class NoCheckpoint(RuntimeError):
    """The log has no signed checkpoint yet: nothing can be exported verifiably."""


class TooLarge(ValueError):
    """The selection holds more entries than one export may."""


@dataclass(frozen=True)
class Export:
    bundle: dict[str, Any]
    rows: list[dict[str, Any]]  # the table's rows, in log order

    def write(self, out: IO[bytes], format: str) -> None:
        if format == "json":
            out.write(tables.bundle_bytes(self.bundle))
        else:
            tables.write_archive(out, self.bundle, self.rows, format)


def export(store: Store, signer: Signer, selection: Selection, progress: Progress | None = None) -> Export:
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
    columns = ", ".join(tables.STORED_COLUMNS)
    rows = store.client.query(
        f"SELECT {columns} FROM {store.db}.audit_log WHERE {where} AND seq < {size} ORDER BY seq",
        parameters=parameters,
    ).named_results()
    table = tables.table(list(rows))
    tree = Tree(_counted(store.leaf_hashes(size), size, progress))
    if progress:
        progress("proofs", 0, len(table))
    bundle = make_bundle(signer, note, tree, [(r["seq"], r["body"]) for r in table], selection.describe())
    if progress:
        progress("proofs", len(table), len(table))
    return Export(bundle, table)


def _counted(leaves: Iterator[bytes], total: int, progress: Progress | None) -> Iterator[bytes]:
    for n, leaf in enumerate(leaves, 1):
        if progress and (n % 100_000 == 0 or n == total):
            progress("tree", n, total)
        yield leaf
