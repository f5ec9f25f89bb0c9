"""Rate limits of the regulators' API: a token bucket per principal, and one per address for calls
that name no principal (no token, or an unknown one). In memory, in the API process.

A call over its limit is refused with 429 before it reaches a route, and is not recorded on its
own: the refusals are tallied by who made them, and the tally goes into the audit log as one
query record per window (``Tally``), so a flood costs the log a leaf a minute, not one a call.
"""

import ipaddress
import math
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_BUCKETS = 100_000  # keys remembered at most; the least recently used is forgotten first
MAX_TALLIED = 100  # keys a window's record names at most (the rest are summed as "others")


@dataclass(frozen=True)
class Rate:
    per_second: float  # sustained calls a second
    burst: int  # calls at once, after a pause


PRINCIPAL_RATE = Rate(20.0, 200)  # a principal's, by default (FRTWATCH_API_RATE, FRTWATCH_API_BURST)
ADDRESS_RATE = Rate(1.0, 30)  # an address's, for calls without a known token


@dataclass
class _Bucket:
    tokens: float
    at: float


class Buckets:
    """Token buckets by key, all of one rate."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        if rate.per_second <= 0 or rate.burst < 1:
            raise ValueError("a rate needs calls a second above 0 and a burst of at least 1")
        self.rate = rate
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one call for ``key``: 0 if it may go on, else the seconds until it may."""
        now = self.clock()
        with self._lock:
            bucket = self._buckets.pop(key, None) or _Bucket(float(self.rate.burst), now)
            bucket.tokens = min(self.rate.burst, bucket.tokens + (now - bucket.at) * self.rate.per_second)
            bucket.at = now
            self._buckets[key] = bucket  # the most recently used last
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate.per_second


def retry_after(seconds: float) -> str:
    """The Retry-After header: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))


def address_key(host: str | None) -> str:
    """An address's bucket: an IPv6 client is limited by its /64, which one subscriber holds."""
    if not host:
        return "address unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"address {host[:64]}"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"address {address.ipv4_mapped}"
        return f"address {ipaddress.ip_network(f'{address}/64', strict=False)}"
    return f"address {address}"


class Tally:
    """Calls refused over their limit, by key, since the last record of them."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._counts: Counter[str] = Counter()
        self._since = clock()
        self._lock = threading.Lock()

    def add(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def take(self) -> tuple[float, dict[str, int]] | None:
        """The window's start and its refusals by key (the most refused first, the rest as
        "others"), and start a new window; None if nothing was refused."""
        with self._lock:
            if not self._counts:
                self._since = self.clock()
                return None
            counts, since = self._counts, self._since
            self._counts, self._since = Counter(), self.clock()
        named = dict(counts.most_common(MAX_TALLIED))
        others = sum(counts.values()) - sum(named.values())
        return since, named | ({"others": others} if others else {})

    def give_back(self, since: float, refused: dict[str, int]) -> None:
        """A window's tally that could not be recorded joins the next one."""
        with self._lock:
            self._counts.update(refused)
            self._since = min(self._since, since)
