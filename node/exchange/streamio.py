"""Reading Communs frames from an overlay stream with the protocol's timeouts, and the exchange errors.

The codecs in `protocol/wire.py` are sans-I/O; this is the one loop that feeds them from a stream,
shared by the server and the client side so both apply the same deadlines (protocol/README.md 5.2):
a whole frame must arrive within `frame_timeout` of its first byte, and the wait for the first byte
is bounded separately (`idle_timeout`: long between requests, short for an answer).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from communs.protocol import wire

# One read takes whatever the muxer holds, up to this: more than it ever holds for one stream (a chunk
# stream's window is 8 MiB), so that each read empties py-libp2p's buffer for the stream, which then
# starts again from nothing. (A bytearray read from the front while it fills copies its unread bytes as
# it grows: 1 GiB through one with 1-2 MiB left unread took 0.3-0.4 s of copying against 0.14 s kept
# empty, in isolation; within a whole replication the difference was below the noise.)
READ_SIZE = 16 << 20


class ExchangeError(Exception):
    """A request to a peer failed; the message is one sentence naming the peer and the reason."""

    def __init__(self, message: str, peer: str = "") -> None:
        super().__init__(message)
        self.peer = peer


class PeerUnavailable(ExchangeError):
    """The peer could not be reached, timed out or closed the stream: try it again later, or another one."""


class PeerBusy(PeerUnavailable):
    """The peer answered `busy` (too many streams from us now): retry later with backoff."""


class ProtocolViolation(ExchangeError):
    """The peer broke the protocol (malformed frame, unasked id, a chunk or record that does not match
    its id): drop it as a source."""


class FrameTimeout(Exception):
    """No frame (or no byte of one) within the deadline."""


async def next_event(stream: Any, reader: wire.FrameReader, *, idle_timeout: float,
                     frame_timeout: float, stall_timeout: float | None = None) -> wire.Event | None:
    """The next message (or chunk) from `stream`, or None at a clean end of stream.

    Waits at most `idle_timeout` for the first byte of the next frame; then the whole frame must
    arrive within `frame_timeout`, or, with `stall_timeout` (a client reading a large answer), the
    bytes must just keep coming: no gap longer than `stall_timeout`.
    Raises DecodeError when the bytes break the protocol (including a stream that ends inside a
    frame), FrameTimeout when a deadline passes, and whatever the stream raises when it fails.
    """
    frame_deadline: float | None = None
    idle_deadline = time.monotonic() + idle_timeout
    while True:
        event = reader.next_event()
        if event is not None:
            return event
        now = time.monotonic()
        if reader.buffered and frame_deadline is None:
            frame_deadline = now + frame_timeout
        deadline = frame_deadline if frame_deadline is not None else idle_deadline
        left = deadline - now
        if left <= 0:
            raise FrameTimeout("no whole frame within the time limit")
        # Wait for the rest of the frame when its size is known (a chunk's body: one round trip to
        # libp2p's thread per chunk, not per 64 KiB frame), and take whatever has come.
        try:
            async with asyncio.timeout(left):
                data = await stream.read(READ_SIZE, reader.needed())
        except TimeoutError:
            raise FrameTimeout("no whole frame within the time limit") from None
        if not data:
            reader.close()
            return None
        reader.feed(data)
        if stall_timeout is not None and frame_deadline is not None:
            frame_deadline = time.monotonic() + stall_timeout
