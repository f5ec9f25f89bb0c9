"""A Bloom filter over every entry id in the audit log, in front of the exact check.

Most ids the sink sees are new: the filter says so for certain, and only its "maybe" answers
(repeats, and about 1 in 500 new ids) are asked of ClickHouse, whose index lookups grow slower
as the log grows. The filter grows in segments, each sized for the error rate when full.
"""

import hashlib
import math
import struct
from collections.abc import Iterable

ERROR = 0.002
_unpack = struct.Struct("<8I").unpack  # one 32-byte digest: eight 32-bit hashes, about optimal


def _hashes(entry_id: str) -> tuple[int, ...]:
    return _unpack(hashlib.blake2b(entry_id.encode(), digest_size=32).digest())


class IdFilter:
    def __init__(self, segment: int = 4_000_000) -> None:
        self.segment = segment
        self._bits = math.ceil(-segment * math.log(ERROR) / math.log(2) ** 2)
        self._segments: list[bytearray] = []
        self._in_last = segment  # ids in the newest segment (full: start one)

    def add(self, entry_ids: Iterable[str]) -> None:
        for entry_id in entry_ids:
            if self._in_last >= self.segment:
                self._segments.append(bytearray(self._bits // 8 + 1))
                self._in_last = 0
            bits = self._segments[-1]
            for h in _hashes(entry_id):
                p = h % self._bits
                bits[p >> 3] |= 1 << (p & 7)
            self._in_last += 1

    def maybe(self, entry_id: str) -> bool:
        """False: certainly not in the log. True: perhaps (ask the store)."""
        positions = [h % self._bits for h in _hashes(entry_id)]
        return any(all(bits[p >> 3] & (1 << (p & 7)) for p in positions) for bits in self._segments)
