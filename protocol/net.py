"""The overlay's types, as the rest of the node sees them: nothing here imports trio or libp2p.

The py-libp2p adapter (`protocol/libp2p/overlay.py`) produces these values and raises this error; the
node's services and HTTP layer import them from here, so that only the adapter depends on py-libp2p.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class OverlayError(Exception):
    """A network operation failed; the message says which and why, in one sentence."""


@dataclass(frozen=True)
class PeerInfo:
    """A peer as the overlay knows it: its id, the addresses it is reached at, the protocols it speaks."""

    peer_id: str
    addrs: list[str]
    protocols: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Message:
    """A gossip message that passed the topic validator."""

    topic: str
    data: bytes
    sender: str  # the peer that forwarded it to us (ourselves for our own publishes)
    origin: str = ""  # the peer that first published it (the libp2p `from` field)


class ByteStream(Protocol):
    """What a service needs of one overlay stream (the adapter's `Stream` is one): typed, so that the
    services that speak a protocol of their own are checked without naming the adapter."""

    peer_id: str

    async def read(self, max_bytes: int = 65536, min_bytes: int = 0) -> bytes: ...

    async def write(self, data: bytes | memoryview) -> None: ...

    async def close_write(self) -> None: ...

    async def close(self) -> None: ...

    async def reset(self) -> None: ...


# A topic validator: synchronous; returns None to accept or a short reason to reject. It runs in libp2p's
# thread, not the loop's: it may keep state of its own, but must hand anything else to the loop
# (`loop.call_soon_threadsafe`).
Validator = Callable[[bytes, str], str | None]
