"""The libp2p overlay adapter: the one module that imports trio and libp2p.

py-libp2p is written for trio; the node runs on asyncio (uvloop). trio runs in a thread of its own
(`trio.run` in the "libp2p" thread), so Noise and Yamux get a core of their own while the loop
verifies, hashes and stores. It began as a trio *guest* of the asyncio loop, in the loop's thread;
measured on 1 GiB replicated between two nodes, the own thread took replication from 86-89 to 106-112
MB/s (py-libp2p's per-frame work and the node's work no longer take turns on one thread).

Nothing else crosses the threads; four primitives do:

* `_to_trio(fn, *args)`: from the loop, run a trio coroutine in the adapter's nursery and await its
  result (cancelling the asyncio side cancels the trio task);
* `_to_asyncio(coro)`: from trio, run an asyncio coroutine in the loop and await its result
  (cancelling the trio side cancels the asyncio task);
* `_in_loop(fn, *args)` and `_in_trio(fn, *args)`: call a plain function soon in the other thread.

trio's objects are touched only in trio's thread and the node's only in the loop's, with two exceptions,
both read-only or self-contained: the synchronous reads of libp2p's tables (`peers()`, `known_peers()`...,
see `_snapshot`), and the gossip topic validator, which py-libp2p calls synchronously in trio's thread.

Everything else in the node sees only asyncio objects: `Overlay`, `Stream`, `PeerInfo`,
`Message`. No libp2p or trio object leaves this module.

This module is also the one place that adjusts py-libp2p (pinned, 0.8.1) for bulk transfers: queue sizes
and Yamux settings, and four internals replaced by equivalents without their extra copies and look-ups
(`_read_exactly`, the secure session's buffer, PY_YAMUX_* read once, TCP read ahead; see each, and
tests/unit/protocol/libp2p/test_overlay.py). `apply_patches()` installs them, once, when the first
`Overlay` is built, and refuses a py-libp2p version they were not written for; importing changes nothing.

It also bounds what a peer can hold (decisions in connlimits.py, see SECURITY.md "Connection and memory
limits"): the swarm's inbound handler (slots released on close, per address, handshake deadline), and in
Yamux the receive window (enforced; grown only for a reader), reset streams' data (dropped), and
py-libp2p's per-frame warnings (budgeted). Per host, it also replaces py-libp2p's
stream accounting (one shared pool) by per-peer, per-direction and per-protocol budgets with idle
timeouts (`_limit_streams`, decisions in streamlimits.py), and gossipsub's read loop by one that checks
and scores each RPC before it costs anything (`_read_gossip`, decisions in gossipguard.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import importlib.metadata
import logging
import math
import os
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import multiaddr
import outcome
import trio
from communs.protocol.net import Message, OverlayError, PeerInfo, Validator
from libp2p import new_host
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import X25519PrivateKey
from libp2p.custom_types import TProtocol
from libp2p.io import msgio as msgio_mod
from libp2p.io import utils as io_utils
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
from libp2p.io.trio import TrioTCPStream
from libp2p.network.config import ConnectionConfig
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub import gossipsub as gossipsub_mod
from libp2p.pubsub import pubsub as pubsub_mod
from libp2p.pubsub import rpc_queue as rpc_queue_mod
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.utils import maybe_consume_signed_record
from libp2p.pubsub.validators import signature_validator
from libp2p.rcmgr import Direction
from libp2p.security.noise import io as noise_io
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.yamux import yamux as yamux_mod
from libp2p.stream_muxer.yamux.yamux import MAX_WINDOW_SIZE as YAMUX_MAX_WINDOW
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import read_varint_prefixed_bytes_limited

from . import gossipguard, streamlimits
from .connlimits import ConnLimits, InboundSlots, LogBudget, reachability_problem, window_exceeded
from .gossipguard import GossipLimits, ScoreNumbers, UnknownOriginGate
from .streamlimits import StreamBudget, StreamLimits

log = logging.getLogger("communs.overlay")

T = TypeVar("T")

GOSSIP_PROTOCOLS = [
    gossipsub_mod.PROTOCOL_ID_V12,
    gossipsub_mod.PROTOCOL_ID_V11,
    gossipsub_mod.PROTOCOL_ID,
]


# py-libp2p 0.8.1 keeps 32 RPCs per peer outbound and 32 messages per subscription, and drops
# the rest silently: a node announcing a few hundred datasets at once would lose most of them
# (see ../shared/interop/README.md). Larger queues, plus pacing in `publish`, keep every one.
_QUEUE_SIZE = 4096


class _LargeRpcQueue(rpc_queue_mod.RpcQueue):
    def __init__(self, max_size: int = _QUEUE_SIZE, **kwargs: Any) -> None:
        super().__init__(max_size=max_size, **kwargs)



# py-libp2p's Yamux sends a WINDOW_UPDATE frame after every read by default (PY_YAMUX_RELEASE_ON_READ=1),
# which on a bulk transfer is one extra encrypted frame and syscall per read on the receiving side. With it
# off, credit is returned in batches (half the window, go-yamux's rule): measured here, a 1 GiB replication
# went from 67 to 89 MB/s. Read at call time by py-libp2p; an operator's own setting wins.
# py-libp2p's Yamux sends DATA frames of 64 KiB including its 12-byte header, and Noise carries at most
# 65,519 bytes of plaintext per message: every full frame went out as two Noise messages, the second of
# 17 bytes, each with its own length prefix, MAC and decryption on the other side. Frames that fit one
# Noise message halve that work for every peer we send to (any Yamux peer accepts smaller frames).
_FRAME_PAYLOAD = noise_io.MAX_PLAINTEXT_LENGTH - yamux_mod.HEADER_SIZE  # data bytes in one full Yamux frame


# py-libp2p reads each Noise message, and each Yamux header and frame body out of it, with `read_exactly`,
# which copies what it read into a bytearray and then into new bytes even when the first read returned all
# of it, as it nearly always does: two copies of every byte received. The same function, without them when
# one read suffices (short reads go on as py-libp2p's do, with the same error at the end).
async def _read_exactly(reader: Any, n: int, retry_count: int = io_utils.DEFAULT_RETRY_READ_COUNT) -> bytes:
    data = await reader.read(n)
    if len(data) == n:
        return data if type(data) is bytes else bytes(data)
    buffer = bytearray(data)
    for _ in range(retry_count):
        if len(buffer) >= n:
            return bytes(buffer)
        buffer.extend(await reader.read(n - len(buffer)))
    if len(buffer) >= n:
        return bytes(buffer)
    raise IncompleteReadError(f"Connection closed during read operation: expected {n} bytes but received "
                              f"{len(buffer)} bytes", expected_bytes=n, received_bytes=len(buffer))


# py-libp2p's Yamux reads its PY_YAMUX_* settings from the environment on every frame and read (a data-frame
# timeout, the credit rules): the environment is read once per setting instead. Together with the above,
# measured on 1 GiB replicated: libp2p's thread 2.65-2.69 -> 2.29-2.50 s of CPU, 5.9 -> 5.65 s.


# py-libp2p's secure session keeps the rest of a decrypted Noise message (a Yamux frame's body, once its
# 12-byte header was read) by writing it into a BytesIO, and hands it out as a copy of a view of that: two
# more copies of every byte. Kept as the bytes object it already is, it is handed out whole, uncopied.
def _session_reset(self: SecureSession) -> None:
    self.buf = b""  # type: ignore[assignment]
    self.low_watermark = 0
    self.high_watermark = 0


def _session_fill(self: SecureSession, msg: bytes) -> None:
    self.buf = msg if type(msg) is bytes else bytes(msg)  # type: ignore[assignment]
    self.low_watermark = 0
    self.high_watermark = len(msg)


def _session_drain(self: SecureSession, n: int | None) -> bytes:
    low, high = self.low_watermark, self.high_watermark
    if low == high:
        return b""
    end = high if n is None or n >= high - low else low + n
    buf: bytes = self.buf  # type: ignore[assignment]
    result = buf if low == 0 and end == len(buf) else buf[low:end]
    if end == high:
        _session_reset(self)
    else:
        self.low_watermark = end
    return result




# py-libp2p reads TCP exactly as its callers ask: each Noise message costs a 2-byte read for its length,
# then one or more reads for its body, each a trio receive and a system call. Reading ahead into a buffer
# of up to `_TCP_READ` serves the length prefixes and most bodies without either (1 GiB replicated: 5.5 ->
# 5.3 s). The same method otherwise, errors included, under the same lock (so that no two readers can ever
# interleave what was read ahead).
_TCP_READ = 256 * 1024


async def _tcp_read(self: TrioTCPStream, n: int | None = None) -> bytes:
    if n == 0:
        return b""
    async with self.read_lock:
        ahead: bytes = self.__dict__.get("_communs_ahead", b"")
        if not ahead:
            try:
                ahead = await self.stream.receive_some(_TCP_READ if n is None else max(n, _TCP_READ))
            except trio.BrokenResourceError as error:
                raise ConnectionClosedError(f"TCP connection reset by remote peer: {error}",
                                            transport="tcp") from error
            except trio.ClosedResourceError:
                return b""  # closed here: end of stream, as py-libp2p answers
        if n is None or n >= len(ahead):
            self._communs_ahead = b""  # type: ignore[attr-defined]
            return ahead
        self._communs_ahead = ahead[n:]  # type: ignore[attr-defined]
        return ahead[:n]




# ---- connection and memory limits (decisions in connlimits.py; issue 12, items 2 and 3) -------------------

# py-libp2p's swarm takes one of its 300 inbound slots for each accepted socket and, once the connection
# is up, waits for the *swarm* to finish before giving it back: after 300 connections in its lifetime a
# node refused every new one (MultiselectClientError) until restarted. The same handler, for TCP (the only
# transport the node listens on), that gives the slot back when the connection closes, counts slots per
# address too (`InboundSlots`), and closes a socket that has not finished Noise and Yamux within
# `ConnLimits.handshake_s`.
async def _handle_inbound(self: Swarm, read_write_closer: Any, maddr: Any) -> None:
    slots: InboundSlots | None = self.__dict__.get("_communs_slots")
    if slots is None:
        slots = self._communs_slots = InboundSlots()  # type: ignore[attr-defined]
    ip = _remote_ip(read_write_closer)
    refusal = slots.admit(ip)
    if refusal is not None:
        log.debug("refused an inbound connection from %s: %s", ip, refusal)
        with contextlib.suppress(Exception):
            await read_write_closer.close()
        return
    raw_conn: RawConnection | None = None
    try:
        raw_conn = RawConnection(read_write_closer, False)
        with trio.fail_after(slots.limits.handshake_s + 1.0):  # py-libp2p applies handshake_s inside
            muxed = await self.upgrade_inbound_raw_conn(raw_conn, maddr)
        closed = getattr(muxed, "event_closed", None)
        await (closed.wait() if closed is not None else self.manager.wait_finished())
    except Exception as exc:  # noqa: BLE001 - any failure ends this one connection, as in py-libp2p
        log.debug("inbound connection from %s ended: %s", ip, exc or type(exc).__name__)
        with contextlib.suppress(Exception):
            await (raw_conn.close() if raw_conn is not None else read_write_closer.close())
    finally:
        slots.release(ip)


def _remote_ip(conn: Any) -> str:
    try:
        return str(conn.get_remote_address()[0])
    except Exception:  # noqa: BLE001 - no address: counted under one shared key
        return "unknown"




# py-libp2p's Yamux keeps each stream's receive window (`recv_window`, the credit the sender was given)
# but only logs when a peer sends past it, once per frame, and buffers the data anyway. Enforced here as
# go-yamux does, but per stream: a DATA frame beyond the window is read off the connection and dropped,
# and the stream is reset. The frame's header is kept when read (`_yamux_read_exactly`) so that the body
# reader knows which stream it is for.
async def _yamux_read_exactly(reader: Any, n: int, retry_count: int = io_utils.DEFAULT_RETRY_READ_COUNT) -> bytes:
    data = await _read_exactly(reader, n, retry_count)
    if n == yamux_mod.HEADER_SIZE:
        reader._communs_yamux_header = data
    return data


_yamux_read_body = Yamux._read_data_body


async def _read_data_body(self: Yamux, length: int) -> bytes:
    header = self.secured_conn.__dict__.get("_communs_yamux_header")
    if header is not None:
        _, typ, flags, sid, announced = struct.unpack(yamux_mod.YAMUX_HEADER_FORMAT, header)
        stream = self.streams.get(sid)
        window = (stream.recv_window if stream is not None
                  else yamux_mod.DEFAULT_WINDOW_SIZE if flags & yamux_mod.FLAG_SYN else None)
        if (typ == yamux_mod.TYPE_DATA and announced == length and window is not None
                and window_exceeded(length, window)):
            await _discard(self, length)
            log.warning("peer %s sent %d bytes on stream %d past its receive window of %d; stream reset",
                        self.peer_id, length, sid, window)
            await _reset_stream(self, sid, stream)
            if stream is None:  # a new stream: py-libp2p opens it closed, empty, on this error
                raise IncompleteReadError("DATA frame past the receive window", expected_bytes=length,
                                          received_bytes=length)
            return b""
    return await _yamux_read_body(self, length)


async def _discard(conn: Yamux, length: int) -> None:
    """Read `length` bytes of the connection and drop them, in pieces (a frame may announce 16 MiB)."""
    with trio.fail_after(yamux_mod._yamux_data_read_timeout()):
        while length > 0:
            piece = await conn.secured_conn.read(min(length, 1 << 16))
            if not piece:
                raise IncompleteReadError("connection closed inside a DATA frame", expected_bytes=length)
            length -= len(piece)


async def _reset_stream(conn: Yamux, sid: int, stream: YamuxStream | None) -> None:
    """Reset a stream as if its peer had: data dropped, readers and writers told; then tell the peer."""
    if stream is not None:
        async with conn.streams_lock:
            buffer = conn.stream_buffers.get(sid)
            if buffer is not None:
                buffer.clear()
            stream.closed = stream.send_closed = stream.reset_received = True
            event = conn.stream_events.get(sid)
            if event is not None:
                event.set()
    rst = struct.pack(yamux_mod.YAMUX_HEADER_FORMAT, 0, yamux_mod.TYPE_WINDOW_UPDATE, yamux_mod.FLAG_RST, sid, 0)
    with contextlib.suppress(Exception):
        await conn._write_frame(rst)


# A reset stream's unread data can never be read (readers are told "reset"), but py-libp2p kept it for
# a 60 s grace period after the stream closed, plus up to 30 s until its sweeper ran: 100 streams of
# 4 MiB each stayed in memory. Dropped at once instead.
_yamux_finalize = Yamux._finalize_stream_locked


def _finalize_stream_locked(self: Yamux, stream: YamuxStream, *, fully_closed: bool) -> None:
    if stream.reset_received:
        buffer = self.stream_buffers.get(stream.stream_id)
        if buffer:
            buffer.clear()
    _yamux_finalize(self, stream, fully_closed=fully_closed)


# py-libp2p doubles a stream's receive window (up to 16 MiB) whenever it returns credit twice within 4 RTT,
# even for a few bytes read: the protocol negotiation alone grew a stream that is never read again (an
# identify stream, say) to a 4 MiB window, which a peer could then fill. As in go-yamux, the window grows
# only for a reader that has taken at least half of it since it last grew.
_yamux_auto_tune = YamuxStream._auto_tune_and_send_window_update
_yamux_grow_epoch = YamuxStream._apply_autotune_epoch


async def _auto_tune(self: YamuxStream, *, bytes_read: int = 0) -> None:
    self._communs_taken = self.__dict__.get("_communs_taken", 0) + bytes_read  # type: ignore[attr-defined]
    await _yamux_auto_tune(self, bytes_read=bytes_read)


def _grow_epoch(self: YamuxStream, buffered: int) -> int:
    if self.__dict__.get("_communs_taken", 0) < self.target_recv_window // 2:
        return 0
    self._communs_taken = 0  # type: ignore[attr-defined]
    return _yamux_grow_epoch(self, buffered)




SUPPORTED_LIBP2P = "0.8.1"
_patched = False


def apply_patches() -> None:
    """Install this module's adjustments of py-libp2p's internals (each explained where it is defined).

    Called once, explicitly, before the first host is built (`Overlay.__init__`); importing this module
    changes nothing in py-libp2p. Every replacement was written against py-libp2p 0.8.1's own code, so any
    other installed version is refused with one sentence rather than patched blindly.
    """
    global _patched
    if _patched:
        return
    try:
        installed = importlib.metadata.version("libp2p")
    except importlib.metadata.PackageNotFoundError:
        installed = "none"
    if installed != SUPPORTED_LIBP2P:
        raise OverlayError(
            f"py-libp2p {installed} is installed, but this node adjusts py-libp2p's internals as written for "
            f"version {SUPPORTED_LIBP2P}; install libp2p=={SUPPORTED_LIBP2P} (pip install -e . does)")
    # queues (pubsub)
    pubsub_mod.SUBSCRIPTION_CHANNEL_SIZE = _QUEUE_SIZE
    pubsub_mod.RpcQueue = _LargeRpcQueue  # type: ignore[misc,assignment]
    # Yamux credit in batches, frames that fit one Noise message, settings read once
    os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")
    yamux_mod.MAX_MESSAGE_SIZE = noise_io.MAX_PLAINTEXT_LENGTH
    msgio_mod.read_exactly = _read_exactly
    yamux_mod._py_yamux_env = functools.lru_cache(maxsize=None)(yamux_mod._py_yamux_env)
    yamux_mod._py_yamux_env_set = functools.lru_cache(maxsize=None)(yamux_mod._py_yamux_env_set)
    # the secure session's buffer, TCP read ahead
    SecureSession._reset_internal_buffer = _session_reset  # type: ignore[method-assign]
    SecureSession._fill = _session_fill  # type: ignore[method-assign]
    SecureSession._drain = _session_drain  # type: ignore[method-assign]
    TrioTCPStream.read = _tcp_read  # type: ignore[method-assign]
    # connection and memory limits: inbound slots, the Yamux receive window, reset streams' data
    Swarm._handle_inbound_connection = _handle_inbound  # type: ignore[method-assign]
    yamux_mod.read_exactly = _yamux_read_exactly  # _read_exactly, keeping each frame header for the window check
    Yamux._read_data_body = _read_data_body  # type: ignore[method-assign]
    Yamux._finalize_stream_locked = _finalize_stream_locked  # type: ignore[method-assign]
    YamuxStream._auto_tune_and_send_window_update = _auto_tune  # type: ignore[method-assign]
    YamuxStream._apply_autotune_epoch = _grow_epoch  # type: ignore[method-assign]
    _patched = True


class _LogBudgetFilter(logging.Filter):
    """py-libp2p logs some peer-caused events once per frame or per connection (a window overrun, an
    incomplete read, a reset): at most `LogBudget.burst` records per logger and level per period, and
    then one saying how many were dropped."""

    def __init__(self) -> None:
        super().__init__()
        self._budget = LogBudget()
        self._lock = threading.Lock()  # py-libp2p logs from trio's thread, the node from the loop's

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or (record.name == "root" and "libp2p" not in record.pathname):
            return True
        with self._lock:
            ok, dropped = self._budget.allow(f"{record.name}:{record.levelno}", time.monotonic())
        if ok and dropped:
            record.msg = f"{record.getMessage()} ({dropped} similar messages dropped)"
            record.args = None
        return ok


def _budget_libp2p_logs() -> None:
    """Attach one `_LogBudgetFilter` to every py-libp2p logger (filters are not inherited) and to the root
    logger, which some py-libp2p modules log to directly."""
    flt = _LogBudgetFilter()
    names = [n for n in logging.Logger.manager.loggerDict if n == "libp2p" or n.startswith("libp2p.")]
    for lg in [logging.getLogger(n) for n in names] + [log, logging.getLogger()]:
        if not any(isinstance(f, _LogBudgetFilter) for f in lg.filters):
            lg.addFilter(flt)

PUBLISH_RATE = 200.0  # messages per second, per node; a burst beyond is queued, not dropped
_FORWARDERS_KEPT = _QUEUE_SIZE


def _score_params(limits: GossipLimits, numbers: ScoreNumbers | None = None) -> Any:
    """Peer scoring that acts on misbehaviour (py-libp2p's defaults weigh nothing and gate nothing).

    Each message a topic validator rejects, or whose libp2p signature or size is wrong, costs its forwarder
    one point (P4), decaying by 5% per 1 s heartbeat; an honest peer relays only what it validated and never
    loses any. An oversize RPC, or one with too many messages, costs behaviour points (py-libp2p's P5, the
    spec's P7); more than `colocation_threshold` peers behind one IP address cost each of them (py-libp2p's
    P7, the spec's P6; loopback exempt, see gossipguard). Below -50 the peer's messages are dropped before
    validation (a flood stops costing CPU); below -100 it is graylisted and its RPCs are ignored whole.
    So a peer can send about 2.5 invalid messages per second, sustained, before it is ignored.
    """
    from libp2p.pubsub.score import ScoreParams, TopicScoreParams

    n = numbers or ScoreNumbers()
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=n.invalid_weight, cap=n.invalid_cap, decay=n.invalid_decay),
        p5_behavior_penalty_weight=n.behaviour_weight, p5_behavior_penalty_decay=n.behaviour_decay,
        p5_behavior_penalty_threshold=n.behaviour_threshold,
        p7_ip_colocation_weight=limits.colocation_weight, p7_ip_colocation_threshold=limits.colocation_threshold,
        publish_threshold=n.publish_threshold, gossip_threshold=n.gossip_threshold,
        graylist_threshold=n.graylist_threshold,
    )


StreamHandler = Callable[["Stream"], Coroutine[Any, Any, None]]


# How many bytes a stream's writer may have queued but not yet handed to the muxer before write() waits.
# Writing behind the caller keeps trio's thread sending while the loop prepares the next piece (a chunk
# server reading the next chunk from disk, say), instead of idling for a round trip after every write.
WRITE_BEHIND = 2 << 20
# How long a read with `min_bytes` may wait for them once the stream has data (see `Stream.read`): long
# enough to gather a chunk on any link, short enough that a reader's stall timeouts still see a slow but
# steady sender as alive.
GATHER_S = 1.0


class Stream:
    """An asyncio view of one libp2p stream. Reads are proxied into trio; writes are queued to a trio task.

    Each read is one round trip to trio's thread and takes whatever the muxer holds (up to `max_bytes`).
    Measured: a trio task reading ahead into the loop's side made replication slower (87 against 108 MB/s),
    as trio then reads the muxer in many small pieces; pulling lets data accumulate between reads.
    """

    def __init__(self, overlay: Overlay, inner: Any, peer_id: str, protocol: str) -> None:
        self._overlay = overlay
        self._inner = inner
        self.peer_id = peer_id
        self.protocol = protocol
        self._buffer = bytearray()
        self._eof = False
        # writing: the loop's side
        self._queued = 0  # bytes given to write()
        self._sent = 0  # bytes the muxer has taken
        self._drained: asyncio.Event | None = None
        self._write_error: OverlayError | None = None
        # writing: trio's side
        self._pending: collections.deque[tuple[bytes | memoryview, ...]] = collections.deque()
        self._writer_done: trio.Event | None = None

    async def read(self, max_bytes: int = 65536, min_bytes: int = 0) -> bytes:
        """Up to `max_bytes`; b"" at end of stream (py-libp2p signals it with StreamEOF).

        `min_bytes`: how many the caller needs before it can do anything with them (the rest of a frame,
        say). The read then waits, for at most `GATHER_S`, until the muxer holds that many and takes them
        in one piece: one round trip between the threads per chunk rather than per 64 KiB frame, and one
        Yamux read and credit update. Fewer may come back (end of stream, or a slow sender).
        """
        if self._buffer:
            out = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return out
        if self._eof:
            return b""
        data: bytes = await self._overlay._to_trio(self._read_trio, max_bytes, min_bytes)
        if not data:
            self._eof = True
        return data

    async def _read_trio(self, max_bytes: int, min_bytes: int) -> bytes:
        if min_bytes > 1:
            await _wait_buffered(self._inner, min(min_bytes, max_bytes))
        try:
            data = await self._inner.read(max_bytes)
        except Exception as exc:  # StreamEOF, StreamReset, closed: all are "no more data"
            if type(exc).__name__ in ("StreamEOF", "StreamClosed"):
                return b""
            raise OverlayError(f"stream from {self.peer_id} failed: {exc or type(exc).__name__}") from exc
        return bytes(data or b"")

    async def read_exactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = await self.read(min(n - len(out), 1 << 20))
            if not chunk:
                raise OverlayError(f"stream from {self.peer_id} ended early")
            out += chunk
        return bytes(out)

    def unread(self, data: bytes) -> None:
        """Give back bytes read past a frame boundary."""
        self._buffer[:0] = data

    # ---- writing: behind the caller, in order, by one trio task ------------------------------------

    async def write(self, data: bytes | memoryview) -> None:
        """Queue `data` for sending and return, unless `WRITE_BEHIND` bytes already wait: then wait until
        they are down to that. A failure is raised by the next write (or lost if none follows: close()
        then finds the stream broken, as it would have anyway)."""
        if not isinstance(data, bytes) and not (isinstance(data, memoryview) and isinstance(data.obj, bytes)):
            data = bytes(data)  # the caller may reuse its buffer once we return (bytes cannot change)
        await self._write_parts((data,), len(data))

    async def write_joined(self, head: bytes, body: bytes) -> None:
        """Write `head + body` without copying `body` into the join: only the part of it that fills the
        first Yamux frame behind `head` is copied (a chunk answer is a ~50-byte header then up to 8 MiB;
        written apart, the header would go out as a frame and a Noise message of its own)."""
        first = max(_FRAME_PAYLOAD - len(head), 0)
        parts: tuple[bytes | memoryview, ...] = (head + body[:first],)
        if len(body) > first:
            parts += (memoryview(body)[first:],)
        await self._write_parts(parts, len(head) + len(body))

    async def _write_parts(self, parts: tuple[bytes | memoryview, ...], size: int) -> None:
        """Queue `parts` (immutable) as one item: written in order, one notice back when all are sent."""
        if self._write_error is not None:
            raise self._write_error
        self._queued += size
        if not self._overlay._in_trio(self._enqueue, parts):
            raise OverlayError(f"stream to {self.peer_id} failed: the overlay is not running")
        while self._queued - self._sent > WRITE_BEHIND and self._write_error is None:
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            await self._drained.wait()
        if self._write_error is not None:
            raise self._write_error

    def _enqueue(self, parts: tuple[bytes | memoryview, ...]) -> None:  # in trio's thread
        self._pending.append(parts)
        if self._writer_done is None:
            nursery = self._overlay._nursery
            if nursery is None:
                self._overlay._in_loop(self._on_write_error, OverlayError("the overlay is stopping"))
                return
            self._writer_done = trio.Event()
            nursery.start_soon(self._write_pending)

    async def _write_pending(self) -> None:  # in trio's thread: one at a time per stream
        try:
            while self._pending:
                parts = self._pending.popleft()
                try:
                    for part in parts:
                        # A view: py-libp2p's Yamux slices what it is given into frames, and slices of a
                        # view are not copies.
                        await self._inner.write(memoryview(part))
                except Exception as exc:
                    self._pending.clear()
                    err = OverlayError(f"stream to {self.peer_id} failed: {exc or type(exc).__name__}")
                    self._overlay._in_loop(self._on_write_error, err)
                    return
                self._overlay._in_loop(self._on_sent, sum(len(part) for part in parts))
        finally:
            done, self._writer_done = self._writer_done, None
            if done is not None:
                done.set()

    async def _flush_trio(self) -> None:
        while self._writer_done is not None:
            await self._writer_done.wait()

    def _on_sent(self, n: int) -> None:  # in the loop's thread
        self._sent += n
        if self._drained is not None:
            self._drained.set()

    def _on_write_error(self, err: OverlayError) -> None:  # in the loop's thread
        if self._write_error is None:
            self._write_error = err
        if self._drained is not None:
            self._drained.set()

    async def close_write(self) -> None:
        """Half-close, after what was written: tell the remote we are done writing."""
        async def close_write() -> None:
            await self._flush_trio()
            await (self._inner.close_write() if hasattr(self._inner, "close_write") else self._inner.close())

        with contextlib.suppress(Exception):
            await self._overlay._to_trio(close_write)

    async def close(self) -> None:
        async def close() -> None:
            await self._flush_trio()
            await self._inner.close()

        with contextlib.suppress(Exception):
            await self._overlay._to_trio(close)

    async def reset(self) -> None:
        async def reset() -> None:
            self._pending.clear()
            await self._inner.reset()

        with contextlib.suppress(Exception):
            await self._overlay._to_trio(reset)


def _key_pair(seed: bytes) -> KeyPair:
    private = Ed25519PrivateKey.from_bytes(seed)
    return KeyPair(private, private.get_public_key())


class Overlay:
    """A libp2p host (TCP + Noise + Yamux, identify, ping, gossipsub, Kademlia) for asyncio code.

    Lifecycle: `await start()` (returns when listening), `await stop()`.
    """

    def __init__(
        self,
        seed: bytes,
        listen: list[str],
        *,
        enable_dht: bool = True,
        enable_mdns: bool = False,
        connect_timeout: float = 10.0,
        conn_limits: ConnLimits | None = None,
        stream_limits: StreamLimits | None = None,
        gossip_limits: GossipLimits | None = None,
    ) -> None:
        apply_patches()  # py-libp2p as this module adjusts it, checked to be the version it was written for
        self._seed = seed
        self._slots = InboundSlots(conn_limits)
        self._listen = [multiaddr.Multiaddr(a) for a in listen]
        self._enable_dht = enable_dht
        self._enable_mdns = enable_mdns
        self._connect_timeout = connect_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: Any = None
        self._nursery: trio.Nursery | None = None
        self._host: Any = None
        self._pubsub: Any = None
        self._gossip: Any = None
        self._dht: Any = None
        self._stop_event: trio.Event | None = None
        self._ready: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._handlers: dict[str, StreamHandler] = {}
        self._subscriptions: dict[str, asyncio.Queue[Message]] = {}
        self._validators: dict[str, Validator] = {}
        self.on_connect: Callable[[str], None] | None = None
        self.on_disconnect: Callable[[str], None] | None = None
        self.on_reject: Callable[[str, str, str], None] | None = None  # topic, peer, reason
        self.peer_id: str = ""
        self._next_publish = 0.0
        # Who forwarded each accepted message, keyed by (from, seqno): the validator sees the forwarder,
        # the subscription only the origin, and a fetch after an announcement must ask a connected peer.
        self._forwarders: collections.OrderedDict[tuple[bytes, bytes], str] = collections.OrderedDict()
        # Per-peer limits (protocol/streamlimits.py, protocol/gossipguard.py): used in trio's thread only.
        self._stream_budget = StreamBudget(stream_limits)
        self._gossip_limits = gossip_limits or GossipLimits()
        self._origin_gate = UnknownOriginGate(self._gossip_limits)
        self._gossip_refused: dict[str, int] = {}

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ready = self._loop.create_future()
        self._done = self._loop.create_future()
        loop = self._loop

        def finish(result: outcome.Outcome[None]) -> None:
            done, ready = self._done, self._ready
            assert done is not None and ready is not None
            if done.done():
                return
            try:
                result.unwrap()
            except BaseException as exc:
                err = exc if isinstance(exc, Exception) else OverlayError(repr(exc))
                done.set_exception(err)
                if not ready.done():
                    ready.set_exception(err)
            else:
                done.set_result(None)
                if not ready.done():
                    ready.set_exception(OverlayError("the overlay stopped before it was ready"))

        def run() -> None:
            result = outcome.capture(trio.run, self._trio_main)
            with contextlib.suppress(RuntimeError):  # the loop closed first: nobody waits any more
                loop.call_soon_threadsafe(finish, result)

        threading.Thread(target=run, name="libp2p", daemon=True).start()
        await self._ready

    async def stop(self) -> None:
        if self._done is None or self._done.done():
            return
        if self._stop_event is not None:
            self._in_trio(self._stop_event.set)
        try:
            await asyncio.wait_for(asyncio.shield(self._done), 4.0)
        except TimeoutError:
            log.warning("libp2p did not stop within 4 s; cancelling it")
        except Exception as exc:
            log.debug("libp2p stopped with %r", exc)

    async def _trio_main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop_event = trio.Event()
        key_pair = _key_pair(self._seed)
        noise_key = X25519PrivateKey.new()
        host = new_host(
            key_pair=key_pair,
            sec_opt={NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=noise_key)},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            listen_addrs=self._listen,
            enable_mDNS=self._enable_mdns,
            addrs_factory=_advertised_addrs_factory(),  # never /ip4/0.0.0.0: see addrs.py
            # One connection per peer also removes py-libp2p's fixed 250 ms dial delay. The watermarks
            # only bound the pruner here: py-libp2p's auto-connector is switched off (`_no_auto_connect`).
            connection_config=ConnectionConfig(max_connections_per_peer=1, dial_timeout=self._connect_timeout,
                                               min_connections=0, low_watermark=0, high_watermark=200,
                                               max_connections=max(300, self._slots.limits.max_inbound),
                                               inbound_upgrade_timeout=self._slots.limits.handshake_s),
        )
        host.get_network()._communs_slots = self._slots  # type: ignore[attr-defined]  # see _handle_inbound
        self._host = host
        self.peer_id = host.get_id().to_base58()
        _limit_streams(host, self._stream_budget)
        _no_auto_connect(host)
        gossip = gossipsub_mod.GossipSub(
            protocols=GOSSIP_PROTOCOLS,
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_initial_delay=0.1,
            heartbeat_interval=1,
            # py-libp2p's default of 10 msg/s per topic also throttles our own publishes; the
            # application paces and validates instead.
            max_messages_per_topic_per_second=1000.0,
            max_pending_messages_per_peer=1000,
            score_params=_score_params(self._gossip_limits),
        )
        pubsub = Pubsub(host, gossip, strict_signing=True, max_concurrent_validator_count=64,
                        max_inbound_rpc_size=self._gossip_limits.max_rpc_bytes)
        _guard_gossip(self, pubsub, gossip)
        # py-libp2p seeds message seqnos with int(time.time()) and adds 1 per publish: a node that published
        # N messages and restarts within N seconds re-uses seqnos, and peers drop its new messages as already
        # seen (message id = from + seqno). Nanoseconds keep seqnos increasing across restarts.
        pubsub.counter = time.time_ns()
        self._pubsub, self._gossip = pubsub, gossip
        try:
            async with host.run(listen_addrs=self._listen), trio.open_nursery() as nursery:
                self._nursery = nursery
                host.get_network().register_notifee(_Notifee(self))  # type: ignore[arg-type]
                async with background_trio_service(pubsub), background_trio_service(gossip):
                    await pubsub.wait_until_ready()
                    if self._enable_dht:
                        from libp2p.kad_dht.kad_dht import DHTMode, KadDHT

                        self._dht = KadDHT(host, DHTMode.SERVER, enable_random_walk=True)
                        # py-libp2p serves at most 12 kad streams at once, node-wide, for as long as each stays
                        # open: 12 idle ones from one peer locked the DHT out. Each peer now has 4, reset when
                        # idle for 10 s (streamlimits.py); 64 keeps a few busy peers from filling it.
                        self._dht._inbound_limiter = trio.CapacityLimiter(64)
                        async with background_trio_service(self._dht):
                            await self._serve_until_stopped()
                    else:
                        await self._serve_until_stopped()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None

    async def _serve_until_stopped(self) -> None:
        assert self._ready is not None and self._stop_event is not None
        bound = self._host.get_transport_addrs()
        if len(bound) < len(self._listen):
            # py-libp2p logs a failed listen and carries on; a node that cannot be dialled must not.
            raise OverlayError(f"could only listen on {len(bound)} of {len(self._listen)} addresses "
                               "(address in use or not available)")
        _budget_libp2p_logs()  # every py-libp2p module the node uses is imported by now
        ready = self._ready
        self._in_loop(lambda: None if ready.done() else ready.set_result(None))
        await self._stop_event.wait()

    # ---- the two bridge primitives -------------------------------------------------------------

    def _in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """From the trio side: run `fn(*args)` in the asyncio loop's thread, soon."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: the node is gone
            self._loop.call_soon_threadsafe(fn, *args)

    def _in_trio(self, fn: Callable[..., Any], *args: Any) -> bool:
        """From the asyncio side: run `fn(*args)` in trio's thread, soon. False if trio has finished."""
        if self._token is None:
            return False
        try:
            self._token.run_sync_soon(fn, *args)
        except (trio.RunFinishedError, RuntimeError):
            return False
        return True

    def _to_trio(self, fn: Callable[..., Awaitable[T]], *args: Any) -> asyncio.Future[T]:
        """Run `fn(*args)` as a trio task; the returned asyncio future carries its result."""
        assert self._loop is not None
        fut: asyncio.Future[T] = self._loop.create_future()
        if self._nursery is None or self._token is None:
            fut.set_exception(OverlayError("the overlay is not running"))
            return fut
        scope = trio.CancelScope()

        def settle(result: outcome.Outcome[T] | None) -> None:  # in the loop's thread
            if fut.done():
                return
            if result is None:
                fut.cancel()
            elif isinstance(result, outcome.Value):
                fut.set_result(result.value)
            else:
                fut.set_exception(result.error)

        async def runner() -> None:
            result: outcome.Outcome[T] | None = None  # None: cancelled
            try:
                with scope:
                    try:
                        result = outcome.Value(await fn(*args))
                    except Exception as exc:
                        result = outcome.Error(exc)
            finally:
                self._in_loop(settle, result)

        def cancel_if_abandoned(f: asyncio.Future[T]) -> None:
            if f.cancelled():
                self._in_trio(scope.cancel)

        fut.add_done_callback(cancel_if_abandoned)
        nursery = self._nursery

        def spawn() -> None:
            try:
                nursery.start_soon(runner)
            except RuntimeError:
                self._in_loop(settle, outcome.Error(OverlayError("the overlay is stopping")))

        if not self._in_trio(spawn):
            fut.set_exception(OverlayError("the overlay is not running"))
        return fut

    async def _to_asyncio(self, coro: Coroutine[Any, Any, T]) -> T:
        """From trio: run an asyncio coroutine in the loop and wait for it."""
        assert self._loop is not None and self._token is not None
        done = trio.Event()
        box: list[asyncio.Task[T]] = []
        token = self._token

        def wake(_: asyncio.Task[T]) -> None:
            with contextlib.suppress(trio.RunFinishedError, RuntimeError):
                token.run_sync_soon(done.set)

        def start() -> None:  # in the loop's thread
            task = asyncio.ensure_future(coro)
            box.append(task)
            task.add_done_callback(wake)

        self._in_loop(start)
        try:
            await done.wait()
        except trio.Cancelled:
            self._in_loop(lambda: box and box[0].cancel())
            raise
        return box[0].result()

    # ---- peers and connections -----------------------------------------------------------------

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs, with /p2p/<peer id>, on which this node can be dialled."""
        host = self._host
        if host is None:
            return []
        out = []
        addrs: list[Any] = _snapshot(lambda: list(host.get_addrs()), [])
        for addr in addrs:
            text = str(addr)
            if "/p2p/" not in text:
                text = f"{text}/p2p/{self.peer_id}"
            out.append(text)
        return out

    async def connect(self, addr: str, *, keep_known: bool = False) -> str:
        """Dial a full multiaddr (with /p2p/<id>); returns the peer id. Unless `keep_known`, the addresses
        libp2p holds for that peer are forgotten first: the address given is the one to use (a peer that
        moved is otherwise dialled at its stale addresses too, each until it times out)."""
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:
            raise OverlayError(f"'{addr}' is not a dialable multiaddr with /p2p/<peer id>: {exc}") from exc

        async def dial() -> str:
            # The caller runs its own backoff; py-libp2p's 60 s negative cache would defeat it.
            with contextlib.suppress(Exception):
                self._host.get_network().unblock_peer(info.peer_id)
            if not keep_known and info.peer_id not in self._host.get_network().connections:
                with contextlib.suppress(Exception):
                    self._host.get_peerstore().clear_addrs(info.peer_id)
            with trio.fail_after(self._connect_timeout):
                await self._host.connect(info)
            return str(info.peer_id.to_base58())

        try:
            return await self._to_trio(dial)
        except trio.TooSlowError as exc:
            raise OverlayError(f"dialling {addr} timed out") from exc
        except OverlayError:
            raise
        except Exception as exc:
            raise OverlayError(f"could not connect to {addr}: {exc or type(exc).__name__}") from exc

    def reachability(self) -> str | None:
        """Why no new peer can connect now, in one sentence, or None if one can (for /healthz)."""
        host = self._host
        if host is None or self._nursery is None:
            return "the libp2p host is not running"

        def listening() -> bool:
            return any(getattr(listener, "_nursery", True) is not None
                       for listener in host.get_network().listeners.values())

        return reachability_problem(_snapshot(listening, False), self._slots.in_use,
                                    self._slots.limits.max_inbound)

    def inbound(self) -> dict[str, int]:
        """Inbound connections held now (handshaking or open), the cap, and sockets refused since start."""
        return {"open": self._slots.in_use, "capacity": self._slots.limits.max_inbound,
                "refused": self._slots.refused}

    async def disconnect(self, peer_id: str) -> None:
        async def close() -> None:
            await self._host.disconnect(ID.from_base58(peer_id))

        with contextlib.suppress(Exception):
            await self._to_trio(close)

    def peers(self) -> list[PeerInfo]:
        """Connected peers with their known addresses and protocols."""
        return _snapshot(self._peers, [])

    def _peers(self) -> list[PeerInfo]:
        if self._host is None:
            return []
        store = self._host.get_peerstore()
        out = []
        for pid in self._host.get_connected_peers():
            try:
                addrs = [str(a) for a in store.addrs(pid)]
            except Exception:
                addrs = []
            try:
                protos = sorted(str(p) for p in store.get_protocols(pid))
            except Exception:
                protos = []
            out.append(PeerInfo(pid.to_base58(), addrs, protos))
        return out

    def peer_ids(self) -> list[str]:
        """Connected peers' ids only. `peers()` formats every address of every peer (multiaddr to text,
        base58): polled every second it cost a node more CPU the more peers it had."""
        if self._host is None:
            return []
        return _snapshot(lambda: [pid.to_base58() for pid in self._host.get_connected_peers()], [])

    def protocols_of(self, peer_id: str) -> list[str]:
        """The protocols one peer announced (identify), without reading every other peer's."""
        if self._host is None:
            return []
        try:
            pid = ID.from_base58(peer_id)
        except Exception:
            return []

        def read() -> list[str]:
            try:
                return sorted(str(p) for p in self._host.get_peerstore().get_protocols(pid))
            except Exception:
                return []

        return _snapshot(read, [])

    def is_connected(self, peer_id: str) -> bool:
        if self._host is None:
            return False
        try:
            pid = ID.from_base58(peer_id)
        except Exception:
            return False
        return _snapshot(lambda: pid in set(self._host.get_connected_peers()), False)

    async def ping(self, peer_id: str, timeout: float = 5.0) -> float:
        """Round-trip time in seconds over /ipfs/ping/1.0.0."""
        from libp2p.host.ping import PingService

        async def do_ping() -> float:
            # py-libp2p reports whole milliseconds (0 on loopback); time the round trip ourselves.
            with trio.fail_after(timeout):
                t0 = time.monotonic()
                rtts = await PingService(self._host).ping(ID.from_base58(peer_id), ping_amt=1)
                elapsed = time.monotonic() - t0
            return elapsed if rtts else math.nan

        try:
            return await self._to_trio(do_ping)
        except Exception as exc:
            raise OverlayError(f"ping to {peer_id} failed: {exc or type(exc).__name__}") from exc

    # ---- streams -------------------------------------------------------------------------------

    def serve(self, protocol: str, handler: StreamHandler) -> None:
        """Answer incoming streams of `protocol` with an asyncio handler."""
        self._handlers[protocol] = handler

        async def trio_handler(inner: Any) -> None:
            try:
                peer = inner.muxed_conn.peer_id.to_base58()
            except Exception:
                peer = "unknown"
            stream = Stream(self, inner, peer, protocol)
            try:
                await self._to_asyncio(handler(stream))
            except Exception as exc:
                log.debug("handler for %s from %s failed: %s", protocol, peer, exc)
                with contextlib.suppress(Exception):
                    await inner.reset()
                return
            with contextlib.suppress(Exception):
                await stream._flush_trio()  # what the handler wrote last may still be queued
                await inner.close()

        def register() -> None:
            self._host.set_stream_handler(TProtocol(protocol), trio_handler)

        if not self._in_trio(register):
            raise OverlayError("the overlay is not running")

    async def open_stream(self, peer_id: str, protocols: list[str], timeout: float = 10.0,
                          receive_window: int = 0) -> Stream:
        """A new stream to `peer_id` speaking the first of `protocols` it accepts.

        `receive_window`: for a stream that will carry bulk data towards us, the Yamux receive window to
        offer the sender at once (one WINDOW_UPDATE), instead of the 256 KiB that py-libp2p starts with and
        seldom grows on a fast link. A sender that runs out of window polls every 10 ms in py-libp2p, so the
        default window caps a stream whose reader is ever a little late. That much may be buffered here.
        """
        async def open_() -> Stream:
            with trio.fail_after(timeout):
                inner = await self._host.new_stream(ID.from_base58(peer_id),
                                                    [TProtocol(p) for p in protocols])
                if receive_window:
                    await _grow_receive_window(inner, receive_window)
            return Stream(self, inner, peer_id, str(inner.get_protocol()))

        try:
            return await self._to_trio(open_)
        except trio.TooSlowError as exc:
            raise OverlayError(f"opening a stream to {peer_id} timed out") from exc
        except OverlayError:
            raise
        except Exception as exc:
            raise OverlayError(f"could not open {protocols[0]} to {peer_id}: {exc or type(exc).__name__}") \
                from exc

    async def push_identify(self) -> None:
        """Tell connected peers about newly registered protocols (py-libp2p only pushes on address change)."""
        async def push() -> None:
            with contextlib.suppress(Exception):
                await self._host._push_identify_to_all_peers()

        with contextlib.suppress(Exception):
            await self._to_trio(push)

    # ---- gossip --------------------------------------------------------------------------------

    async def subscribe(self, topic: str, validator: Validator) -> AsyncIterator[Message]:
        """Subscribe; `validator` runs on every message before it is accepted or relayed."""
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=10000)
        self._subscriptions[topic] = queue
        self._validators[topic] = validator

        def trio_validator(forwarder: Any, msg: Any) -> bool:
            # Synchronous, in trio's thread: py-libp2p checks "seen" before validating and marks it after, so
            # only a synchronous validator sees each gossip message once (an await in between would let a
            # second copy from another forwarder be validated too, and look like a replay).
            sender = forwarder.to_base58() if hasattr(forwarder, "to_base58") else str(forwarder)
            try:
                reason = validator(bytes(msg.data), sender)
            except Exception as exc:
                reason = f"validator error: {exc}"
            if reason is not None:
                if self.on_reject is not None:
                    self._in_loop(self.on_reject, topic, sender, reason)
                return False
            self._origin_gate.learn(bytes(msg.from_id))
            forwarders = self._forwarders
            forwarders[(bytes(msg.from_id), bytes(msg.seqno))] = sender
            while len(forwarders) > _FORWARDERS_KEPT:
                forwarders.popitem(last=False)
            return True

        async def sub() -> None:
            self._pubsub.set_topic_validator(topic, trio_validator, False)
            subscription = await self._pubsub.subscribe(topic)
            assert self._nursery is not None
            self._nursery.start_soon(self._pump, topic, subscription, queue)

        await self._to_trio(sub)
        return self._iterate(queue)

    async def _pump(self, topic: str, subscription: Any, queue: asyncio.Queue[Message]) -> None:
        while True:
            msg = await subscription.get()
            try:
                origin = ID(msg.from_id).to_base58()
            except Exception:
                origin = "unknown"
            sender = self._forwarders.pop((bytes(msg.from_id), bytes(msg.seqno)), origin)
            self._in_loop(self._deliver, queue, Message(topic, bytes(msg.data), sender, origin))

    @staticmethod
    def _deliver(queue: asyncio.Queue[Message], message: Message) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(message)

    @staticmethod
    async def _iterate(queue: asyncio.Queue[Message]) -> AsyncIterator[Message]:
        while True:
            yield await queue.get()

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish, paced to `PUBLISH_RATE` so bursts queue here instead of being dropped below."""
        now = time.monotonic()
        slot = max(now, self._next_publish)
        self._next_publish = slot + 1.0 / PUBLISH_RATE
        if slot > now:
            await asyncio.sleep(slot - now)

        async def pub() -> None:
            await self._pubsub.publish(topic, data)

        await self._to_trio(pub)

    def topic_peers(self, topic: str) -> list[str]:
        pubsub = self._pubsub
        if pubsub is None:
            return []
        return _snapshot(lambda: [p.to_base58() for p in pubsub.peer_topics.get(topic, set())], [])

    def limit_counts(self) -> dict[str, int]:
        """What the per-peer limits refused so far, by reason (streams and gossip), for the metrics."""
        def read() -> dict[str, int]:
            out = {f"stream:{k}": v for k, v in self._stream_budget.refused.items()}
            out.update({f"gossip:{k}": v for k, v in self._gossip_refused.items()})
            return out

        return _snapshot(read, {})

    # ---- DHT -----------------------------------------------------------------------------------

    async def provide(self, key: str) -> bool:
        if self._dht is None:
            return False

        async def prov() -> bool:
            with trio.move_on_after(30):
                return bool(await self._dht.provide(key))
            return False

        try:
            return await self._to_trio(prov)
        except Exception as exc:
            log.debug("provide %s failed: %s", key, exc)
            return False

    async def find_providers(self, key: str, count: int = 20, timeout: float = 15.0) -> list[PeerInfo]:
        if self._dht is None:
            return []

        async def find() -> list[PeerInfo]:
            with trio.move_on_after(timeout):
                found = await self._dht.find_providers(key, count)
                return [PeerInfo(p.peer_id.to_base58(), [str(a) for a in p.addrs]) for p in found]
            return []

        try:
            return await self._to_trio(find)
        except Exception as exc:
            log.debug("find_providers %s failed: %s", key, exc)
            return []

    async def add_dht_peer(self, peer_id: str) -> None:
        if self._dht is None:
            return

        async def add() -> None:
            with contextlib.suppress(Exception):
                await self._dht.add_peer(ID.from_base58(peer_id))

        with contextlib.suppress(Exception):
            await self._to_trio(add)

    def known_peers(self) -> list[PeerInfo]:
        """Every peer in the peerstore with addresses (learned from identify, the DHT, mDNS)."""
        return _snapshot(self._known_peers, [])

    def _known_peers(self) -> list[PeerInfo]:
        if self._host is None:
            return []
        store = self._host.get_peerstore()
        out = []
        for pid in store.peers_with_addrs():
            if pid == self._host.get_id():
                continue
            try:
                out.append(PeerInfo(pid.to_base58(), [str(a) for a in store.addrs(pid)]))
            except Exception:
                continue
        return out


async def _grow_receive_window(inner: Any, size: int) -> None:
    """Raise a Yamux stream's receive window to `size` and tell the sender (a standard WINDOW_UPDATE)."""
    muxed = getattr(inner, "muxed_stream", None)
    if not isinstance(muxed, YamuxStream):
        return
    size = min(size, YAMUX_MAX_WINDOW)
    async with muxed.window_lock:
        increment = size - muxed.recv_window
        if increment <= 0:
            return
        muxed.recv_window += increment
        muxed.target_recv_window = max(muxed.target_recv_window, size)
    await muxed.send_window_update(increment)


async def _wait_buffered(inner: Any, n: int) -> None:
    """Wait (at most `GATHER_S`) until a Yamux stream's receive buffer holds `n` bytes or the stream ends.

    It only watches py-libp2p's buffer and the event its reader waits on, and takes nothing: cancelling it
    loses no data (cancelling a read in progress could, between py-libp2p taking the bytes and returning
    them). `n` is kept to a quarter of the stream's window: py-libp2p returns credit once less than half of
    the window is unread or unacknowledged, so a sender out of credit has always left more than half a
    window here, and the wait cannot hold up the bytes it waits for.
    """
    muxed = getattr(inner, "muxed_stream", None)
    if not isinstance(muxed, YamuxStream):
        return
    conn, sid = muxed.conn, muxed.stream_id
    n = min(n, muxed.target_recv_window // 4)
    with trio.move_on_after(GATHER_S):
        while True:
            buffer = conn.stream_buffers.get(sid)
            if (buffer is None or len(buffer) >= n or muxed.recv_closed or muxed.reset_received
                    or conn.event_shutting_down.is_set()):
                return
            event = conn.stream_events.get(sid)
            if event is None:
                return
            await event.wait()
            if conn.stream_events.get(sid) is event:  # py-libp2p's own reader re-arms it the same way
                conn.stream_events[sid] = trio.Event()


# ---- per-peer limits: streams (protocol/streamlimits.py) and gossip (protocol/gossipguard.py) ----------


def _no_auto_connect(host: Any) -> None:
    """Switch off py-libp2p's auto-connector; the node's own discovery (exchange `TARGET_PEERS`) dials.

    py-libp2p 0.8.1's auto-connector aims at the midpoint of the watermarks (here (0 + 200) / 2 = 100
    connections), not at `low_watermark`: every 30 s and after every disconnect it dialled every peer in
    the peerstore, and because fewer than 20 were left to dial it started a DHT routing-table refresh
    (one random walk per k-bucket) each time. Measured on one machine: every node connected to every
    other (19 of 19, 29 of 29) and a federation of 30 spent 5-6% of a core per node on DHT lookups and
    the connections they opened, twenty times an idle node alone; the cost per node grew with N, so
    50 nodes saturated 2 cores. With it off, a node keeps its bootstrap peers, those that dial it, and
    what discovery and the DHT's own lookups add."""
    connector = getattr(host.get_network(), "auto_connector", None)
    if connector is None:
        return

    async def maybe_connect() -> None:
        return None

    connector.maybe_connect = maybe_connect


def _limit_streams(host: Any, budget: StreamBudget) -> None:
    """Count py-libp2p's streams in `budget` instead of its one shared pool, and wrap every protocol handler
    (registered now or later) in the per-peer, per-protocol budget and idle timeout of `budget.limits`."""
    network = host.get_network()
    manager = getattr(network, "_resource_manager", None)
    if manager is None:
        log.warning("py-libp2p has no resource manager: per-peer stream limits are not applied")
    else:
        # Without the shared semaphore an outbound stream never waits behind inbound ones: each direction
        # has its own budget, refused at once when full.
        network.set_resource_manager(manager, enable_stream_semaphore=False)

        def acquire(peer_id: Any, direction: Any) -> bool:
            return budget.open(str(peer_id), direction == Direction.INBOUND) is None

        def release(peer_id: Any, direction: Any) -> None:
            budget.close(str(peer_id), direction == Direction.INBOUND)

        manager.acquire_stream = acquire
        manager.release_stream = release

    tokens = iter(range(1, 1 << 62))
    live: dict[int, Any] = {}

    def limited(protocol: str, handler: Any) -> Any:
        cls = streamlimits.protocol_class(protocol)
        timeout = budget.limits.idle_limit(cls)

        async def handle(stream: Any) -> None:
            try:
                peer = str(stream.muxed_conn.peer_id)
            except Exception:
                peer = "unknown"
            token = next(tokens)
            verdict = budget.enter(peer, protocol, token)
            if not verdict.admit:
                log.debug("refused a %s stream from %s: %s", protocol, peer, verdict.reason)
                with contextlib.suppress(Exception):
                    await stream.reset()
                return
            live[token] = stream  # before any await: the next stream may evict this one meanwhile
            try:
                if verdict.evict is not None:
                    old = live.pop(verdict.evict, None)
                    if old is not None:
                        with contextlib.suppress(Exception):
                            await old.reset()
                if token not in live:  # evicted while the one before was being reset
                    with contextlib.suppress(Exception):
                        await stream.reset()
                    return
                if timeout is None:
                    await handler(stream)
                else:
                    await _handle_with_idle_timeout(stream, handler, timeout)
            finally:
                live.pop(token, None)
                budget.leave(peer, protocol, token)

        handle._communs_limited = True  # type: ignore[attr-defined]
        return handle

    mux = host.get_mux()
    for protocol, handler in list(mux.handlers.items()):
        if protocol is not None and handler is not None and not getattr(handler, "_communs_limited", False):
            mux.handlers[protocol] = limited(str(protocol), handler)
    register = host.set_stream_handler

    def set_stream_handler(protocol_id: Any, handler: Any) -> None:
        register(protocol_id, limited(str(protocol_id), handler))

    host.set_stream_handler = set_stream_handler


async def _handle_with_idle_timeout(stream: Any, handler: Any, timeout: float) -> None:
    """Run `handler(stream)`; reset the stream once it has received nothing for `timeout` seconds."""
    last = [trio.current_time()]
    read = stream.read

    async def timed_read(n: int | None = None) -> bytes:
        data: bytes = await read(n)
        last[0] = trio.current_time()
        return data

    stream.read = timed_read

    async def watch() -> None:
        while True:
            now = trio.current_time()
            if streamlimits.idle_expired(last[0], now, timeout):
                log.debug("reset a %s stream idle for %.0f s", stream.get_protocol(), timeout)
                with contextlib.suppress(Exception):
                    await stream.reset()
                return
            await trio.sleep(last[0] + timeout - now)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        try:
            await handler(stream)
        finally:
            nursery.cancel_scope.cancel()


def _guard_gossip(overlay: Overlay, pubsub: Any, gossip: Any) -> None:
    """Replace py-libp2p's gossip read loop by `_read_gossip`; keep loopback out of IP colocation."""
    pubsub.continuously_read_stream = functools.partial(_read_gossip, overlay, pubsub)
    scorer = gossip.scorer
    exempt = overlay._gossip_limits.colocation_exempt
    if scorer is not None:
        add_peer_ip = scorer.add_peer_ip

        def add_counted(peer: Any, ip: str) -> None:
            if gossipguard.colocation_counted(ip, exempt):
                add_peer_ip(peer, ip)

        scorer.add_peer_ip = add_counted
    overlay._origin_gate.learn(overlay._host.get_id().to_bytes())


def _signature_ok(msg: Any) -> bool:
    try:
        return bool(signature_validator(msg))
    except Exception:  # py-libp2p raises on a key it cannot decode: as bad as a wrong signature
        return False


async def _read_gossip(overlay: Overlay, pubsub: Any, stream: Any) -> None:
    """py-libp2p's `Pubsub.continuously_read_stream`, checking each RPC and message as gossipguard says
    before anything is scheduled: a graylisted peer's RPCs are ignored, oversize RPCs and messages, bad
    signatures and surplus messages are scored, strangers' messages are rate-limited."""
    from libp2p.io.exceptions import IOException, MessageTooLarge
    from libp2p.network.connection.exceptions import RawConnError
    from libp2p.network.stream.exceptions import StreamEOF, StreamError

    peer_id = stream.muxed_conn.peer_id
    peer = str(peer_id)
    limits, gate, refused = overlay._gossip_limits, overlay._origin_gate, overlay._gossip_refused
    scorer = getattr(pubsub.router, "scorer", None)

    def refuse(reason: str, n: int = 1) -> None:
        refused[reason] = refused.get(reason, 0) + n

    def invalid(msg: Any, reason: str) -> None:
        refuse(reason)
        if scorer is not None:
            for topic in msg.topicIDs:
                scorer.on_invalid_message(peer_id, topic)

    try:
        while pubsub.manager.is_running:
            try:
                incoming = await read_varint_prefixed_bytes_limited(stream, limits.max_rpc_bytes)
            except MessageTooLarge:
                refuse("oversize-rpc")
                if scorer is not None:
                    scorer.penalize_behavior(peer_id, gossipguard.OVERSIZE_RPC_PENALTY)
                with contextlib.suppress(Exception):
                    await stream.reset()
                return
            topics = list(pubsub.topic_ids)
            if scorer is not None and topics and scorer.is_graylisted(peer_id, topics):
                refuse("graylisted")
                continue
            rpc = rpc_pb2.RPC()
            try:
                rpc.ParseFromString(incoming)
            except Exception:
                refuse("malformed-rpc")
                if scorer is not None:
                    scorer.penalize_behavior(peer_id, gossipguard.OVERSIZE_RPC_PENALTY)
                with contextlib.suppress(Exception):
                    await stream.reset()
                return
            if not maybe_consume_signed_record(rpc, pubsub.host, peer_id):
                refuse("bad-peer-record")
                continue
            if rpc.publish:
                count, penalty = gossipguard.messages_to_read(len(rpc.publish), limits)
                if penalty and scorer is not None:
                    scorer.penalize_behavior(peer_id, penalty)
                    refuse("too-many-messages", len(rpc.publish) - count)
                now = trio.current_time()
                for i, msg in enumerate(list(rpc.publish)[:count]):
                    if not pubsub._is_subscribed_to_msg(msg) or pubsub._is_msg_seen(msg):
                        continue
                    if scorer is not None and not scorer.allow_publish(peer_id, list(msg.topicIDs)):
                        refuse("below-publish-threshold", count - i)  # the rest of this RPC, unread
                        break
                    if len(msg.data) > limits.max_message_bytes:
                        invalid(msg, "oversize-message")
                        continue
                    if pubsub.strict_signing and not _signature_ok(msg):
                        invalid(msg, "bad-signature")
                        continue
                    if not gate.allow(bytes(msg.from_id), peer, now):
                        refuse("unknown-origin")
                        continue
                    if pubsub.manager.is_running:
                        pubsub.manager.run_task(pubsub.push_msg, peer_id, msg)
            if rpc.subscriptions:
                if len(rpc.subscriptions) > pubsub.max_subscriptions_per_rpc:
                    refuse("too-many-subscriptions")
                else:
                    for sub in rpc.subscriptions:
                        pubsub.handle_subscription(peer_id, sub)
            if rpc.HasField("control"):
                await pubsub.router.handle_rpc(rpc, peer_id)
    except (StreamEOF, StreamError, IOException, RawConnError) as exc:
        log.debug("gossip stream from %s ended: %s", peer, exc)

def _advertised_addrs_factory() -> Callable[[list[Any]], list[Any]]:
    """py-libp2p's addrs_factory: its candidates (listen and observed addresses) as `addrs.advertised`
    has them, with the interfaces' addresses read once, at start."""
    from libp2p.utils.address_validation import get_available_interfaces

    from .addrs import advertised

    ips = []
    with contextlib.suppress(Exception):  # no interface list: wildcards are then left out, not advertised
        ips = [str(a).split("/")[2] for a in get_available_interfaces(0)]

    def factory(candidates: list[Any]) -> list[Any]:
        return [multiaddr.Multiaddr(a) for a in advertised([str(c) for c in candidates], ips)]

    return factory


def _snapshot(read: Callable[[], T], default: T) -> T:
    """Read libp2p's state from the loop's thread. trio's thread may change a dict while we iterate it
    (Python then raises RuntimeError rather than return a torn view): read again."""
    for _ in range(10):
        try:
            return read()
        except RuntimeError:
            continue
    return default


class _Notifee:
    """Connection events from the swarm, forwarded to the overlay's callbacks."""

    def __init__(self, overlay: Overlay) -> None:
        self._overlay = overlay

    async def opened_stream(self, network: Any, stream: Any) -> None:
        pass

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def connected(self, network: Any, conn: Any) -> None:
        with contextlib.suppress(Exception):  # a peer we were connected to is no stranger as a publisher
            self._overlay._origin_gate.learn(conn.muxed_conn.peer_id.to_bytes())
        with contextlib.suppress(Exception):
            # py-libp2p looks the address up for IP colocation before the peer's gossip stream exists, and so
            # never finds it: given here, from the connection (loopback is left out, see `_guard_gossip`).
            address = conn.muxed_conn.get_remote_address()
            scorer = self._overlay._gossip.scorer
            if address and scorer is not None:
                scorer.add_peer_ip(conn.muxed_conn.peer_id, str(address[0]))
        cb = self._overlay.on_connect
        if cb is not None:
            with contextlib.suppress(Exception):
                self._overlay._in_loop(cb, conn.muxed_conn.peer_id.to_base58())

    async def disconnected(self, network: Any, conn: Any) -> None:
        with contextlib.suppress(Exception):
            peer_id = conn.muxed_conn.peer_id
            if not network.get_connections(peer_id):
                self._overlay._gossip.scorer.remove_peer_ip(peer_id)
        cb = self._overlay.on_disconnect
        if cb is not None:
            with contextlib.suppress(Exception):
                self._overlay._in_loop(cb, conn.muxed_conn.peer_id.to_base58())

    async def listen(self, network: Any, multiaddr: Any) -> None:
        pass

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        pass


def monotonic() -> float:
    return time.monotonic()
