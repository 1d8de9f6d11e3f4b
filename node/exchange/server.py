"""The server side of /communs/manifest/1, /communs/chunks/1 and /communs/sync/1.

Each stream is a loop of request -> answer until the client half-closes (protocol/README.md 5.2).
Everything a peer sends is untrusted: a bad frame gets a `bad-request` answer and the stream is
closed, a peer over its concurrency limit gets `busy`, a deadline missed resets the stream, and no
exception ever leaves a handler (the adapter would reset the stream, but the node would lose the
count). Every request ends in exactly one count of `stream_requests{protocol, outcome}`.

A chunk is read from the store with its hash checked (in a thread: it may be 8 MiB), so a chunk
that rotted on disk is quarantined and answered `not-found`, never sent.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from communs.node.exchange.streamio import FrameTimeout, next_event
from communs.protocol import wire
from communs.protocol.errors import DecodeError
from communs.protocol.ids import cid_str
from communs.storage.errors import ChunkCorrupt, ChunkMissing, StorageError

log = logging.getLogger("communs.exchange")

# Fault injection for tests only: serve chunks without checking them, as a lying peer would, so that
# the receiving side's detection is exercised (tests/integration/test_faults.py). Never set it otherwise.
_FAULT_SERVE_UNVERIFIED = os.environ.get("COMMUNS_FAULT_SERVE_UNVERIFIED") == "1"

READ_AHEAD = 3  # chunks read from disk (and hashed) ahead of the one being sent
_WRITE_BATCH = 256 * 1024  # small frames are joined into writes of about this size

# (manifest id) -> wait until an announced manifest being fetched here arrives; True if it did.
InflightWait = Callable[[bytes], Awaitable[bool]]


class StreamServer:
    """Answers the three Communs stream protocols from the catalog and the chunk store.

    `catalog` is a storage.catalog.Catalog, `chunks` a storage.chunkstore.ChunkStore, `metrics`
    the node's Metrics. `wait_inflight` lets a manifest request for a record this node accepted an
    announcement of, and is fetching right now, wait a moment for it instead of answering
    not-found: the peer that relayed the announcement to the asker is exactly this node.
    """

    def __init__(self, catalog: Any, chunks: Any, metrics: Any, *,
                 wait_inflight: InflightWait | None = None,
                 upload: Callable[[int], Awaitable[None]] | None = None,
                 max_streams_per_peer: int = wire.MAX_STREAMS_PER_PEER,
                 request_timeout: float = wire.REQUEST_TIMEOUT,
                 stream_idle_timeout: float = wire.STREAM_IDLE_TIMEOUT) -> None:
        self.catalog = catalog
        self.chunks = chunks
        self.metrics = metrics
        self.wait_inflight = wait_inflight
        self.upload = upload  # waits as the upload limit says before n chunk bytes go out (bandwidth.py)
        self.max_streams_per_peer = max_streams_per_peer
        self.request_timeout = request_timeout
        self.stream_idle_timeout = stream_idle_timeout
        self._active: collections.Counter[tuple[str, str]] = collections.Counter()

    def register(self, overlay: Any) -> None:
        for protocol in wire.PROTOCOLS:
            overlay.serve(protocol, self.handle)

    def active_streams(self) -> int:
        return sum(self._active.values())

    # ---- one stream --------------------------------------------------------------------------------

    async def handle(self, stream: Any) -> None:
        protocol, peer = stream.protocol, stream.peer_id
        key = (protocol, peer)
        if self._active[key] >= self.max_streams_per_peer:
            self._count(protocol, "busy")
            await self._send_error_and_close(stream, "busy", f"more than {self.max_streams_per_peer} "
                                             f"concurrent {protocol} streams from one peer")
            return
        self._active[key] += 1
        try:
            await self._serve(stream, protocol, peer)
        except Exception as exc:  # a failed stream (reset by the peer...) must never reach the adapter
            log.debug("%s stream from %s failed: %s", protocol, peer, exc)
            self._count(protocol, "failed")
            await stream.reset()
        finally:
            self._active[key] -= 1
            if self._active[key] <= 0:
                del self._active[key]

    async def _serve(self, stream: Any, protocol: str, peer: str) -> None:
        reader = wire.FrameReader(protocol, "request")
        idle = self.request_timeout  # the first request must come at once; later ones may wait longer
        while True:
            try:
                request = await next_event(stream, reader, idle_timeout=idle, frame_timeout=self.request_timeout)
            except DecodeError as exc:
                log.debug("bad %s request from %s: %s", protocol, peer, exc)
                self._count(protocol, "bad-request")
                await self._send_error_and_close(stream, "bad-request", str(exc))
                return
            except FrameTimeout:
                if reader.buffered or idle == self.request_timeout:
                    self._count(protocol, "timeout")
                    await stream.reset()
                else:
                    await stream.close()  # idle between requests: a normal end
                return
            if request is None:
                await stream.close()
                return
            outcome = await self._answer(stream, protocol, request)
            self._count(protocol, outcome)
            if outcome in ("bad-request", "too-large"):
                await stream.close()
                return
            idle = self.stream_idle_timeout

    async def _answer(self, stream: Any, protocol: str, request: wire.Event) -> str:
        if isinstance(request, wire.ChunksGet):
            return await self._chunks(stream, request.ids)
        if isinstance(request, wire.ManifestGet):
            return await self._manifests(stream, request.ids)
        if isinstance(request, wire.HeadsRequest):
            return await self._heads(stream)
        if isinstance(request, wire.RangeRequest):
            return await self._range(stream, request)
        if isinstance(request, wire.RetractionsRequest):
            return await self._retractions(stream, request)
        await self._write(stream, wire.ErrorAnswer("bad-request", "unexpected message").encode())
        return "bad-request"

    # ---- /communs/manifest/1 -----------------------------------------------------------------------

    async def _manifests(self, stream: Any, ids: tuple[bytes, ...]) -> str:
        out = bytearray()
        missing = 0
        for mid in ids:
            raw = await self._manifest_raw(mid)
            if raw is None:
                missing += 1
                frame = wire.ErrorAnswer("not-found", f"manifest {cid_str(mid)} is not held here", mid).encode()
            else:
                frame = wire.ManifestRecord(mid, raw).encode()
            out += frame
            if len(out) >= _WRITE_BATCH:
                await self._write(stream, bytes(out))
                out.clear()
        if out:
            await self._write(stream, bytes(out))
        return "ok" if not missing else "not-found"

    async def _manifest_raw(self, mid: bytes) -> bytes | None:
        info = await self.catalog.get_manifest(mid)
        if info is None and self.wait_inflight is not None and await self.wait_inflight(mid):
            info = await self.catalog.get_manifest(mid)
        return None if info is None else bytes(info.raw)

    # ---- /communs/chunks/1 -------------------------------------------------------------------------

    async def _chunks(self, stream: Any, ids: tuple[bytes, ...]) -> str:
        missing = 0
        loop = asyncio.get_running_loop()
        # Read the next chunks from disk (and hash them) while the current one is being written: a chunk
        # published here was written past the page cache (O_DIRECT), so each read goes to the disk.
        reads: collections.deque[asyncio.Future[tuple[bytes | None, bool]]] = collections.deque(
            loop.run_in_executor(None, self._read_chunk, cid) for cid in ids[:READ_AHEAD])
        try:
            for i, cid in enumerate(ids):
                data, corrupt = await reads.popleft()
                if i + READ_AHEAD < len(ids):
                    reads.append(loop.run_in_executor(None, self._read_chunk, ids[i + READ_AHEAD]))
                if corrupt:
                    await self._forget_chunk(cid)
                if data is None:
                    missing += 1
                    await self._write(stream, wire.ErrorAnswer("not-found", f"chunk {cid_str(cid)} is not held here",
                                                        cid).encode())
                    continue
                # Header and body as one piece of the stream (written apart, the header went out as a Yamux
                # frame and a Noise message of its own before every chunk), without copying the body.
                header = wire.chunk_frames(cid, data)[0]
                if self.upload is not None:
                    await self.upload(len(data))
                await self._within_idle(stream, stream.write_joined(header, data))
                self.metrics.bytes_out.inc(len(data))
        finally:
            for read in reads:
                read.cancel()
        await self._write(stream, wire.End().encode())
        return "ok" if not missing else "not-found"

    def _read_chunk(self, cid: bytes) -> tuple[bytes | None, bool]:
        """The verified bytes of a chunk or None (missing, corrupt and now quarantined, unreadable), and
        whether it was found corrupt."""
        try:
            return bytes(self.chunks.get(cid, verify=not _FAULT_SERVE_UNVERIFIED)), False
        except ChunkMissing:
            return None, False
        except ChunkCorrupt as exc:
            log.warning("%s; answering not-found instead of serving it", exc)
            return None, True
        except StorageError as exc:
            log.warning("could not read chunk %s to serve it: %s", cid_str(cid), exc)
            return None, False

    async def _forget_chunk(self, cid: bytes) -> None:
        """Record in the catalog that a chunk found corrupt (and quarantined by the store) is gone."""
        try:
            await self.catalog.mark_chunks_gone([cid])
        except Exception as exc:
            log.warning("could not record quarantined chunk %s as gone: %s", cid_str(cid), exc)

    # ---- /communs/sync/1 ---------------------------------------------------------------------------

    async def _heads(self, stream: Any) -> str:
        heads = await self.catalog.contiguous_heads()
        if len(heads) > wire.MAX_HEADS:
            heads = dict(sorted(heads.items())[: wire.MAX_HEADS])
        await self._write(stream, wire.Heads.of(heads).encode())
        return "ok"

    async def _range(self, stream: Any, request: wire.RangeRequest) -> str:
        head = await self.catalog.contiguous_head(request.publisher)
        last = min(request.last, head)
        raws: list[bytes] = []
        if last >= request.first:
            rows = await self.catalog.manifests_range(request.publisher, request.first, last)
            expected = request.first
            for row in rows:  # stop at any gap (there is none below the contiguous head, but be sure)
                if row.seq != expected:
                    break
                raws.append(bytes(row.raw))
                expected += 1
        raws = list(wire.within_answer_budget(raws))
        out = bytearray()
        for frame in wire.records_frames(raws):
            out += frame
            if len(out) >= _WRITE_BATCH:
                await self._write(stream, bytes(out))
                out.clear()
        if out:
            await self._write(stream, bytes(out))
        return "ok"

    async def _retractions(self, stream: Any, request: wire.RetractionsRequest) -> str:
        held = await self.catalog.retractions_after(request.after, wire.MAX_RETRACTIONS)
        await self._write(stream, b"".join(wire.records_frames([raw for _, raw in held])))  # ends with "end"
        return "ok"

    # ---- helpers -----------------------------------------------------------------------------------

    async def _write(self, stream: Any, data: bytes | memoryview) -> None:
        await self._within_idle(stream, stream.write(data))

    @staticmethod
    async def _within_idle(stream: Any, write: Awaitable[None]) -> None:
        """A write that a client not reading its answer cannot hold up for more than IDLE_TIMEOUT."""
        try:
            async with asyncio.timeout(wire.IDLE_TIMEOUT):
                await write
        except TimeoutError:
            raise ConnectionError(f"peer {stream.peer_id} did not read its answer for {wire.IDLE_TIMEOUT:.0f} s") \
                from None

    async def _send_error_and_close(self, stream: Any, code: str, msg: str) -> None:
        try:
            await self._write(stream, wire.ErrorAnswer(code, msg[: wire.MAX_ERROR_CHARS]).encode())
            await stream.close()
        except Exception:
            await stream.reset()

    def _count(self, protocol: str, outcome: str) -> None:
        self.metrics.stream_requests.labels(protocol, outcome).inc()
