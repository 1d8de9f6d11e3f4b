"""Per-client limits of the public face, decided over plain data with `now` passed in.

A public listener is reached by anyone, so what one address may take is bounded: a request rate (a
token bucket per address, refilled continuously) and a number of downloads running at once. The
tables themselves are bounded (`max_clients`, least recently seen dropped first), so a flood from
many addresses costs a fixed amount of memory, at worst forgetting some addresses' history.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """`per_minute` requests per address on average, with bursts up to `burst`."""

    def __init__(self, per_minute: int, *, burst: int | None = None, max_clients: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(10, per_minute // 6))
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, client: str, now: float) -> float:
        """0.0 when the request may go on, else the seconds to wait before the next one will."""
        b = self._buckets.pop(client, None)
        if b is None:
            b = _Bucket(self.burst, now)
        else:
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
        self._buckets[client] = b
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate if self.rate > 0 else 60.0


class DownloadSlots:
    """At most `per_client` downloads at once per address, `total` in all."""

    def __init__(self, per_client: int, total: int = 256) -> None:
        self.per_client = per_client
        self.total = total
        self.running: dict[str, int] = {}

    def take(self, client: str) -> str | None:
        """None when a slot was taken (give it back with `give`), else the sentence of the refusal."""
        if sum(self.running.values()) >= self.total:
            return "the node is serving as many downloads as it can; try again in a moment"
        if self.running.get(client, 0) >= self.per_client:
            return f"at most {self.per_client} downloads at once from one address; wait for one to finish"
        self.running[client] = self.running.get(client, 0) + 1
        return None

    def give(self, client: str) -> None:
        n = self.running.get(client, 0) - 1
        if n > 0:
            self.running[client] = n
        else:
            self.running.pop(client, None)


__all__ = ["DownloadSlots", "RateLimiter"]
