"""Faust tables seen as plain mappings of str to str.

Faust writes a table change to the changelog partition of the event being processed. Our keys
(event ids, device ids) are written while processing their own partition but may be deleted
later from elsewhere (another partition's event, or the timer), so each value carries the
partition it was written for, and deletes go to that partition explicitly.
"""

from collections.abc import Iterator, MutableMapping
from typing import Any

import faust


class TableMapping(MutableMapping[str, str]):
    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> str:
        stored = self.table.data.get(key)
        if stored is None:
            raise KeyError(key)
        return str(stored).split("|", 1)[1]

    def __setitem__(self, key: str, value: str) -> None:
        event = faust.current_event()
        if event is None:  # outside a stream (the timer): kept locally only
            self.table.data[key] = f"-1|{value}"
            return
        partition = event.message.partition
        stored = f"{partition}|{value}"
        self.table.data[key] = stored
        self.table.send_changelog(partition, key, stored)

    def __delitem__(self, key: str) -> None:
        stored = self.table.data.pop(key)
        partition = int(str(stored).split("|", 1)[0])
        if partition >= 0:
            self.table.send_changelog(partition, key, None, value_serializer="raw")

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.table.data.keys()))

    def __len__(self) -> int:
        return len(self.table.data)


class IntMapping(MutableMapping[str, int]):
    """A TableMapping of integers (a device's last seq)."""

    def __init__(self, inner: TableMapping) -> None:
        self.inner = inner

    def __getitem__(self, key: str) -> int:
        return int(self.inner[key])

    def __setitem__(self, key: str, value: int) -> None:
        self.inner[key] = str(value)

    def __delitem__(self, key: str) -> None:
        del self.inner[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)
