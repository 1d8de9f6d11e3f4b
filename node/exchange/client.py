"""The client side of /communs/manifest/1, /communs/chunks/1 and /communs/sync/1.

Every answer is checked before it is returned: each id is the one asked for, in order, and each
chunk's or record's bytes hash to its id. Anything else raises ProtocolViolation (drop that peer as
a source); a peer that cannot be reached, is busy or stalls raises PeerUnavailable (try later or
elsewhere). Records are handed back as raw bytes: decoding and signature checks belong to the
caller that stores them (`DatasetsService.ingest_manifests`), except for catalog sync, which checks
a range as a chain (`protocol.log.verify_range`) and so decodes here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from communs.node.exchange.streamio import FrameTimeout, PeerBusy, PeerUnavailable, ProtocolViolation, next_event
from communs.protocol import ids as ids_mod
from communs.protocol import wire
from communs.protocol.errors import DecodeError

HASH_IN_THREAD = 2 << 20  # larger chunks are hashed off the event loop (BLAKE3 does ~1 MiB in 0.15 ms here)

# The Yamux receive window offered on a chunk stream: enough that the sender never waits for credit while
# the node stores what came before (py-libp2p's 256 KiB default made it stall), bounded per stream.
CHUNK_STREAM_WINDOW = 8 << 20


async def open_stream(overlay: Any, peer: str, protocol: str) -> Any:
    from communs.protocol.net import OverlayError

    try:
        return await overlay.open_stream(peer, [protocol], timeout=wire.OPEN_TIMEOUT,
                                         receive_window=CHUNK_STREAM_WINDOW if protocol == wire.CHUNKS_PROTOCOL else 0)
    except OverlayError as exc:
        raise PeerUnavailable(str(exc), peer) from None


class Conversation:
    """One client stream: send requests, read their answers, with the client's deadlines."""

    def __init__(self, stream: Any, peer: str, protocol: str, *, assemble: bool = False) -> None:
        self.stream = stream
        self.peer = peer
        self.protocol = protocol
        self.reader = wire.FrameReader(protocol, "response", assemble=assemble)

    @classmethod
    async def open(cls, overlay: Any, peer: str, protocol: str, *, assemble: bool = False) -> Conversation:
        return cls(await open_stream(overlay, peer, protocol), peer, protocol, assemble=assemble)

    async def send(self, message: wire.Message) -> None:
        from communs.protocol.net import OverlayError

        try:
            await self.stream.write(message.encode())
        except OverlayError as exc:
            raise PeerUnavailable(str(exc), self.peer) from None

    async def receive(self, first: bool) -> wire.Event:
        """The next event of the current answer; the end of the stream here is a violation."""
        from communs.protocol.net import OverlayError

        try:
            event = await next_event(
                self.stream, self.reader,
                idle_timeout=wire.REQUEST_TIMEOUT if first else wire.IDLE_TIMEOUT,
                frame_timeout=wire.IDLE_TIMEOUT, stall_timeout=wire.IDLE_TIMEOUT)
        except DecodeError as exc:
            raise ProtocolViolation(f"peer {self.peer} sent a bad {self.protocol} answer: {exc}", self.peer) \
                from None
        except FrameTimeout:
            raise PeerUnavailable(f"peer {self.peer} did not answer on {self.protocol} in time", self.peer) \
                from None
        except OverlayError as exc:
            raise PeerUnavailable(str(exc), self.peer) from None
        if event is None:
            raise PeerUnavailable(f"peer {self.peer} closed the {self.protocol} stream before the end of "
                                  "its answer", self.peer)
        if isinstance(event, wire.ErrorAnswer) and event.id is None:
            if event.code == "busy":
                raise PeerBusy(f"peer {self.peer} is busy: {event.msg}", self.peer)
            raise ProtocolViolation(f"peer {self.peer} answered {event.code}: {event.msg}", self.peer)
        return event

    async def close(self) -> None:
        await self.stream.close_write()
        await self.stream.close()

    async def abort(self) -> None:
        await self.stream.reset()


def _violation(peer: str, what: str) -> ProtocolViolation:
    return ProtocolViolation(f"peer {peer} {what}", peer)


# ---- /communs/manifest/1 ---------------------------------------------------------------------------


async def fetch_manifests(overlay: Any, peer: str, manifest_ids: Sequence[bytes]) -> dict[bytes, bytes]:
    """The records `peer` holds among `manifest_ids` (id -> raw bytes, each hashing to its id); ids it
    does not hold are left out. Asks in requests of at most 256 ids on one stream."""
    wanted = list(dict.fromkeys(manifest_ids))
    if not wanted:
        return {}
    conv = await Conversation.open(overlay, peer, wire.MANIFEST_PROTOCOL)
    try:
        found = await _ask_manifests(conv, peer, wanted)
        await conv.close()
    except BaseException:
        await conv.abort()
        raise
    return found


class ManifestClient:
    """Manifest fetches that keep one open /communs/manifest/1 stream per peer.

    Gossip makes a node fetch one or a few manifests at a time from the same few neighbours; opening
    and negotiating a stream for each costs more than the request itself. The protocol allows any
    number of requests on one stream (one at a time), so each peer's stream is kept until it fails or
    the server closes it for idleness (60 s); a request that finds the kept stream dead is retried
    once on a new one.
    """

    def __init__(self, overlay: Any) -> None:
        self.overlay = overlay
        self._streams: dict[str, Conversation] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def fetch(self, peer: str, manifest_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        wanted = list(dict.fromkeys(manifest_ids))
        if not wanted:
            return {}
        lock = self._locks.setdefault(peer, asyncio.Lock())
        async with lock:
            conv = self._streams.pop(peer, None)
            if conv is not None:
                try:
                    found = await _ask_manifests(conv, peer, wanted)
                except PeerUnavailable:  # the kept stream died (idle close, reset): one more try, new stream
                    await conv.abort()
                except BaseException:
                    await conv.abort()
                    raise
                else:
                    self._streams[peer] = conv
                    return found
            conv = await Conversation.open(self.overlay, peer, wire.MANIFEST_PROTOCOL)
            try:
                found = await _ask_manifests(conv, peer, wanted)
            except BaseException:
                await conv.abort()
                raise
            self._streams[peer] = conv
            return found

    def drop(self, peer: str) -> None:
        """Forget the peer's stream without closing it (its connection is gone)."""
        self._streams.pop(peer, None)
        self._locks.pop(peer, None)

    async def forget(self, peer: str) -> None:
        conv = self._streams.pop(peer, None)
        if conv is not None:
            await conv.close()

    async def close(self) -> None:
        for peer in list(self._streams):
            await self.forget(peer)


async def _ask_manifests(conv: Conversation, peer: str, wanted: list[bytes]) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for start in range(0, len(wanted), wire.MAX_MANIFEST_IDS):
        batch = wanted[start:start + wire.MAX_MANIFEST_IDS]
        await conv.send(wire.ManifestGet(tuple(batch)))
        for i, mid in enumerate(batch):
            event = await conv.receive(first=i == 0)
            if isinstance(event, wire.ManifestRecord):
                if event.id != mid:
                    raise _violation(peer, "answered a manifest out of order")
                if ids_mod.digest(event.record) != mid:
                    raise _violation(peer, f"sent a record that does not hash to {ids_mod.cid_str(mid)}")
                found[mid] = event.record
            elif isinstance(event, wire.ErrorAnswer) and event.id == mid and event.code == "not-found":
                continue
            else:
                raise _violation(peer, f"sent an unexpected {type(event).__name__} in a manifest answer")
    return found


# ---- /communs/chunks/1 -----------------------------------------------------------------------------


class ChunkSession:
    """One /communs/chunks/1 stream to a peer, for many requests one after another: a replication worker
    keeps one per source rather than opening a stream (and negotiating it) for every batch."""

    def __init__(self, conv: Conversation, throttle: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.conv = conv
        self.peer = conv.peer
        self.broken = False
        self.throttle = throttle  # waits as the download limit says after n chunk bytes came in

    @classmethod
    async def open(cls, overlay: Any, peer: str,
                   throttle: Callable[[int], Awaitable[None]] | None = None) -> ChunkSession:
        return cls(await Conversation.open(overlay, peer, wire.CHUNKS_PROTOCOL, assemble=True), throttle)

    async def fetch(self, chunk_ids: Sequence[bytes]) -> AsyncGenerator[tuple[bytes, bytes | None], None]:
        """`(id, bytes)` for each of `chunk_ids` the peer holds, its BLAKE3 checked, `(id, None)` for each
        it does not, in the order asked. Requests of at most 1024 ids go one after another (the protocol
        allows no overlap). Raises ProtocolViolation on a chunk that does not match its id or any other
        breach, PeerUnavailable/PeerBusy otherwise; either way, or if the caller stops iterating early, the
        session is broken (the stream's place in its answer is lost) and `close()` resets the stream.
        """
        if self.broken:
            raise PeerUnavailable(f"the chunk stream to {self.peer} was abandoned", self.peer)
        wanted = list(dict.fromkeys(chunk_ids))
        conv, peer = self.conv, self.peer
        finished = False
        try:
            for start in range(0, len(wanted), wire.MAX_CHUNK_IDS):
                batch = wanted[start:start + wire.MAX_CHUNK_IDS]
                await conv.send(wire.ChunksGet(tuple(batch)))
                for i, cid in enumerate(batch):
                    event = await conv.receive(first=i == 0)
                    if isinstance(event, wire.Chunk):
                        if event.id != cid:
                            raise _violation(peer, "answered a chunk that was not the next one asked for")
                        data = event.data
                        if len(data) > HASH_IN_THREAD:
                            digest = await asyncio.to_thread(ids_mod.digest, data)
                        else:
                            digest = ids_mod.digest(data)
                        if digest != cid:
                            raise _violation(peer, f"sent a chunk that does not match its hash {ids_mod.cid_str(cid)}")
                        if self.throttle is not None:
                            await self.throttle(len(data))
                        yield cid, data
                    elif isinstance(event, wire.ErrorAnswer) and event.id == cid and event.code == "not-found":
                        yield cid, None
                    else:
                        raise _violation(peer, f"sent an unexpected {type(event).__name__} in a chunk answer")
                end = await conv.receive(first=False)
                if not isinstance(end, wire.End):
                    raise _violation(peer, "sent more than was asked in a chunk answer")
            finished = True
        finally:
            if not finished:
                self.broken = True

    async def close(self) -> None:
        """End the stream: cleanly after whole answers; reset when one was cut short, so that the peer
        does not go on streaming to nobody."""
        if self.broken:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.conv.abort())
        else:
            with contextlib.suppress(Exception):
                await self.conv.close()


async def fetch_chunks(overlay: Any, peer: str, chunk_ids: Sequence[bytes]) \
        -> AsyncIterator[tuple[bytes, bytes | None]]:
    """`ChunkSession.fetch` on a stream of its own, closed (or reset, after a failure) at the end."""
    if not list(chunk_ids):
        return
    session = await ChunkSession.open(overlay, peer)
    try:
        async with contextlib.aclosing(session.fetch(chunk_ids)) as items:  # closed first: marks it broken
            async for item in items:
                yield item
    finally:
        await session.close()


# ---- /communs/sync/1 -------------------------------------------------------------------------------


class SyncSession:
    """One /communs/sync/1 stream: the peer's heads, then ranges of a publisher's log."""

    def __init__(self, conv: Conversation) -> None:
        self.conv = conv
        self.peer = conv.peer

    @classmethod
    async def open(cls, overlay: Any, peer: str) -> SyncSession:
        return cls(await Conversation.open(overlay, peer, wire.SYNC_PROTOCOL))

    async def heads(self) -> tuple[tuple[bytes, int], ...]:
        await self.conv.send(wire.HeadsRequest())
        event = await self.conv.receive(first=True)
        if not isinstance(event, wire.Heads):
            raise _violation(self.peer, f"answered a heads request with {type(event).__name__}")
        return event.heads

    async def range(self, publisher: bytes, first: int, last: int) -> list[bytes]:
        """The raw records of `publisher` from seq `first` to at most `last`, as sent (unchecked).

        An answer may stop short at the byte budget (`wire.RANGE_ANSWER_BYTES`; see `wire.answer_was_cut`);
        one that goes past the budget by more than one record is a protocol violation, refused as soon as
        it is seen, so that a range never holds more than that in memory."""
        await self.conv.send(wire.RangeRequest(publisher, first, last))
        out: list[bytes] = []
        limit = last - first + 1
        received = 0
        first_frame = True
        while True:
            event = await self.conv.receive(first=first_frame)
            first_frame = False
            if isinstance(event, wire.End):
                return out
            if not isinstance(event, wire.Records):
                raise _violation(self.peer, f"sent an unexpected {type(event).__name__} in a range answer")
            for rec in event.records:
                if received >= wire.RANGE_ANSWER_BYTES:
                    raise _violation(self.peer, f"sent more than {wire.RANGE_ANSWER_BYTES} bytes of records in "
                                                "one range answer")
                received += len(rec)
                out.append(rec)
            if len(out) > limit:
                raise _violation(self.peer, "sent more records than the range asked for")

    async def retractions(self, after: bytes | None) -> list[bytes]:
        """The raw retractions the peer holds for dataset ids after `after` (at most wire.MAX_RETRACTIONS),
        as sent (unchecked)."""
        await self.conv.send(wire.RetractionsRequest(after))
        out: list[bytes] = []
        first_frame = True
        while True:
            event = await self.conv.receive(first=first_frame)
            first_frame = False
            if isinstance(event, wire.End):
                return out
            if not isinstance(event, wire.Records):
                raise _violation(self.peer, f"sent an unexpected {type(event).__name__} in a retractions answer")
            out.extend(event.records)
            if len(out) > wire.MAX_RETRACTIONS:
                raise _violation(self.peer, f"sent more than {wire.MAX_RETRACTIONS} retractions in one answer")

    async def close(self) -> None:
        await self.conv.close()

    async def abort(self) -> None:
        await self.conv.abort()
