"""Bandwidth limits an operator sets: `[limits] upload_bytes_per_s`, `download_bytes_per_s` (0: none).

A cooperative on ADSL or a shared office link must be able to say how much of it Communs may use. The
limit is a token bucket over chunk bytes, the only bulk traffic (gossip, sync and governance are small):
served chunk bytes draw from the upload bucket before they are written (node/exchange/server.py), and
fetched chunk bytes from the download bucket as they are received (the replication fetch path); a
receiver that waits stops reading, so Yamux flow control slows the sender.

`TokenBucket` is the pure decision, clocked by the caller's `now`: a request for n bytes is always
granted and answered with how long to wait first, so a chunk larger than the burst (8 MiB chunks, a
1 MB/s limit) is simply paid for by waiting, and concurrent takers queue in order of asking. The
bucket starts full and holds at most `BURST_S` of the rate, so that an idle link gives at most a quarter
second at full speed before the limit holds again. `Bandwidth` holds the two buckets for a node and
sleeps on asyncio; limits can change while the node runs (`PUT /api/v1/limits`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

BURST_S = 0.25  # the bucket holds this many seconds of the rate
MIN_BURST = 64 * 1024  # ... and at least this many bytes, so that a tiny limit still moves whole frames
MAX_RATE = 1 << 40  # bytes per second; anything beyond is a typo, not a link


class LimitError(ValueError):
    """A limit that is not a whole number of bytes per second from 0 (none) to MAX_RATE."""


def check_rate(value: object, what: str) -> int:
    """`value` as a rate in bytes per second (0: unlimited), or LimitError saying why not."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LimitError(f"{what} must be a whole number of bytes per second (0 for no limit)")
    if not 0 <= value <= MAX_RATE:
        raise LimitError(f"{what} must be from 0 (no limit) to {MAX_RATE} bytes per second, not {value}")
    return value


@dataclass
class TokenBucket:
    """Bytes per second with a burst of `BURST_S` seconds; rate 0 means unlimited. Pure: every call takes
    the caller's monotonic `now`."""

    rate: int = 0
    tokens: float = 0.0
    stamp: float = 0.0

    @classmethod
    def full(cls, rate: int, now: float) -> TokenBucket:
        bucket = cls(rate=rate, stamp=now)
        bucket.tokens = bucket.capacity
        return bucket

    @property
    def capacity(self) -> float:
        return max(self.rate * BURST_S, MIN_BURST) if self.rate else 0.0

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, n: int, now: float) -> float:
        """Spend n bytes; the seconds to wait before sending (or after receiving) them. The tokens may
        go below zero: the debt is what the next takers wait for."""
        if not self.rate or n <= 0:
            return 0.0
        self._refill(now)
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def set_rate(self, rate: int, now: float) -> None:
        """Change the rate from `now` on: bytes already owed stay owed (paid at the new rate); an
        unlimited bucket that becomes limited starts full."""
        self._refill(now)
        was = self.rate
        self.rate = rate
        self.stamp = now
        self.tokens = self.capacity if not was else min(self.tokens, self.capacity)


class Bandwidth:
    """The node's upload and download buckets; `await upload(n)` / `await download(n)` wait as needed."""

    def __init__(self, upload_bytes_per_s: int = 0, download_bytes_per_s: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        now = clock()
        self._up = TokenBucket.full(check_rate(upload_bytes_per_s, "upload_bytes_per_s"), now)
        self._down = TokenBucket.full(check_rate(download_bytes_per_s, "download_bytes_per_s"), now)

    def limits(self) -> dict[str, int]:
        return {"upload_bytes_per_s": self._up.rate, "download_bytes_per_s": self._down.rate}

    def set_limits(self, upload_bytes_per_s: int | None = None, download_bytes_per_s: int | None = None) -> None:
        """Change either limit (None: leave it); both are checked before either changes."""
        up = None if upload_bytes_per_s is None else check_rate(upload_bytes_per_s, "upload_bytes_per_s")
        down = None if download_bytes_per_s is None else check_rate(download_bytes_per_s, "download_bytes_per_s")
        now = self._clock()
        if up is not None:
            self._up.set_rate(up, now)
        if down is not None:
            self._down.set_rate(down, now)

    async def upload(self, n: int) -> None:
        delay = self._up.take(n, self._clock())
        if delay > 0:
            await asyncio.sleep(delay)

    async def download(self, n: int) -> None:
        delay = self._down.take(n, self._clock())
        if delay > 0:
            await asyncio.sleep(delay)
