"""Replication: fetch what the policy in force wants, from whoever holds it, verified to the byte.

The scheduler keeps every manifest in state `in-progress` moving towards `complete`:

* Order: newest versions first (the current data matters most), then smallest first (a small
  dataset completes quickly and becomes a source for others), as BitTorrent's and bitswap's
  operators tune them in practice.
* Swarming: one worker per source peer pulls batches of missing chunks from a shared queue, so
  several peers and several chunks are in flight at once, and a fast peer naturally takes more
  batches than a slow one (work stealing is how "prefer the fastest sources" falls out without
  a speed model to get wrong).
* Sources: chosen by node/sources.py, at random with announced holders first, never by peer id (ids
  can be ground to sort first); candidates beyond the first eight are spares that replace a source
  that lacks the chunks, fails or stalls. Each chunk has a throughput deadline: a source that drips
  its answer loses its chunks to the others; when it is the only one left, sources are looked for
  again, and it keeps its chance only if there is still no other.
* Verification: every chunk is hashed on receipt (exchange client) and again by the chunk store
  before it is written. A peer that sends a chunk that does not match is banned as a source for
  that dataset; its unfinished chunks go back in the queue for the others.
* Resume: progress is the set of chunks marked stored in the catalog. A chunk written but not yet
  marked when the process died is re-hashed on restart and marked, never fetched twice.
* Quota: the policy's storage quota is checked before a dataset starts (counting what is already
  reserved by running fetches); a dataset that does not fit waits, with that reason.
* Release: a manifest the policy no longer wants is dropped, and the chunks that no kept manifest
  uses are deleted. Own datasets are never released.
* Full disk: chunks are written only while min(64 MiB, 2% of the disk) stays free (room for the
  catalog to record what happened, as Syncthing's minDiskFree), so a full disk stops a fetch with
  its reason recorded; it is not retried until a chunk fits again (checked every few seconds), and
  it then resumes from the chunks already stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from communs.node.jsondoc import JsonDict
from communs.node.runtime.faults import crash_point, pause_point
from communs.node.services import schedule
from communs.node.services import sources as sources_mod
from communs.node.services.datasets import COMPLETE, IN_PROGRESS, OWN
from communs.node.services.publish_journal import PublishJournal
from communs.node.services.reconcile import adopt_present, reconcile
from communs.node.services.storage import UsesStorage
from communs.protocol import ids, keys
from communs.protocol.records import Manifest
from communs.storage.errors import ChunkCorrupt, StorageError, StorageFull

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from communs.node.context import NodeContext
    from communs.node.exchange.client import ChunkSession
    from communs.node.exchange.service import ExchangeService
    from communs.node.services.datasets import DatasetsService
    from communs.node.services.storage import StorageService
    from communs.storage.catalog import ManifestInfo

log = logging.getLogger("communs.replication")

MAX_ACTIVE_DATASETS = 2
MAX_SOURCES = sources_mod.MAX_SOURCES
BATCH_BYTES = 16 << 20
BATCH_CHUNKS = 32
SOURCE_RETRY_S = 10.0
STORE_GROUP_BYTES = 4 << 20
MARK_BYTES = 64 << 20
MARK_EVERY_S = 1.0
RETRY_WAITING_S = schedule.RETRY_WAITING_S
FULL_DISK_REASON = schedule.FULL_DISK_REASON


class SourceStalled(Exception):
    """A source missed a chunk's throughput deadline while another source could take its chunks."""

    def __init__(self, message: str, peer: str) -> None:
        super().__init__(message)
        self.peer = peer


@dataclass
class Fetch:
    """One dataset being fetched: the shared queue of missing chunks and who is sending what."""

    manifest: Manifest
    total: int
    done: int
    queue: deque[tuple[bytes, int]]
    in_flight: dict[bytes, str] = field(default_factory=dict)
    # peer -> "active" | "banned" | "failed" | "lacks" | "stalled"
    sources: dict[str, str] = field(default_factory=dict)
    spares: deque[str] = field(default_factory=deque)  # candidates not asked yet, to replace a lost source
    lacking: dict[str, set[bytes]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    bytes_fetched: int = 0
    unmarked: list[tuple[bytes, int]] = field(default_factory=list)  # stored, not yet marked in the catalog
    marked_at: float = field(default_factory=time.monotonic)
    seen: set[str] = field(default_factory=set)

    def to_json(self) -> JsonDict:
        return {
            "id": self.manifest.cid, "dataset": ids.cid_str(self.manifest.dataset), "title": self.manifest.title,
            "version": self.manifest.version, "bytes_done": self.done, "bytes_total": self.total,
            "chunks_left": len(self.queue) + len(self.in_flight),
            "sources": [{"peer_id": p, "state": s} for p, s in sorted(self.sources.items())],
            "elapsed_s": round(time.monotonic() - self.started, 3),
        }


class ReplicationService(UsesStorage):
    def __init__(self, ctx: NodeContext, storage: StorageService, datasets: DatasetsService,
                 exchange: ExchangeService) -> None:
        self.ctx = ctx
        self.storage = storage
        self.datasets = datasets
        self.exchange = exchange
        self.active: dict[bytes, Fetch] = {}
        self.waiting: dict[bytes, str] = {}  # manifest id -> reason it waits
        self._tasks: dict[bytes, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._reserved = 0
        self._fetches_ended = 0  # fetches that ended, for the scheduler: their bytes moved from reserved to used
        self._retry_at: dict[bytes, float] = {}  # manifest id -> monotonic time of its next attempt
        self._delay: dict[bytes, float] = {}
        self.repairing: set[bytes] = set()  # own datasets with chunks lost here, fetched back from replicas
        self._full_until = 0.0  # after a full disk, no fetch starts before this (monotonic) time
        self.rng = random.Random()  # source choice; tests may seed it
        self._history: dict[bytes, dict[str, sources_mod.Outcome]] = {}  # manifest -> peer -> last outcome
        # set by the copies service: drops what min_copies does not want and orders by fewest copies first
        self.prioritise: Callable[[list[ManifestInfo]], Awaitable[list[ManifestInfo]]] | None = None

    async def start(self) -> None:
        self.datasets.on_wanted.append(self._wanted)
        self.datasets.on_unwanted.append(self._unwanted)

    async def overlay_ready(self) -> None:
        self.ctx.spawn(self._loop(), "replication")

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=1.5)

    def poke(self, manifest_id: bytes | None = None) -> None:
        """Something changed (a new holder announced, a new policy): look at waiting datasets again now,
        without waiting out their backoff."""
        if manifest_id is None:
            self._retry_at.clear()
        else:
            self._retry_at.pop(manifest_id, None)
        self._wake.set()

    def _backoff(self, manifest_id: bytes, progressed: bool) -> None:
        """After a round that left chunks missing: wait before asking the same peers again (5 s doubling
        to 5 min; reset when a round made progress), so that a dataset nobody holds costs no traffic."""
        delay = schedule.next_delay(self._delay.get(manifest_id), progressed)
        self._delay[manifest_id] = delay
        self._retry_at[manifest_id] = time.monotonic() + delay

    async def _wanted(self, _ids: list[bytes]) -> None:
        self.poke()

    async def _unwanted(self, manifest_ids: list[bytes]) -> None:
        for mid in manifest_ids:
            task = self._tasks.pop(mid, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.active.pop(mid, None)
            self.waiting.pop(mid, None)
            self._history.pop(mid, None)
        await self.collect_garbage()

    # ---- the scheduler ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        await self._resume_written_chunks()
        while True:
            try:
                await self._schedule()
            except StorageError as exc:
                log.error("replication paused: %s", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RETRY_WAITING_S)

    async def _note(self, manifest_id: bytes, reason: str) -> None:
        """Record why a dataset is (still) in progress; an own dataset being repaired keeps state `own`."""
        if manifest_id not in self.repairing:
            await self.catalog.set_state(manifest_id, IN_PROGRESS, reason)

    async def _find_damaged(self) -> None:
        """Datasets kept here whose chunks went missing (`communs verify` quarantined them, or a disk lost
        them) are fetched again: a complete one goes back to in-progress; an own one is repaired from the
        peers that hold replicas, staying `own`."""
        for mid, state in await self.catalog.damaged_manifests():
            if state == COMPLETE:
                await self.catalog.set_state(mid, IN_PROGRESS, "wanted; some chunks must be fetched again")
                log.warning("dataset %s lost chunks here; fetching them again", ids.cid_str(mid))
            elif state == OWN and mid not in self.repairing:
                self.repairing.add(mid)
                log.warning("own dataset %s lost chunks here; fetching them back from replicas", ids.cid_str(mid))

    async def _candidates(self) -> list[ManifestInfo]:
        await self._find_damaged()
        rows = await self.catalog.list_manifests(state=IN_PROGRESS)
        for mid in list(self.repairing):
            info = await self.catalog.get_manifest(mid)
            if info is None:
                self.repairing.discard(mid)
            else:
                rows.append(info)
        # newest versions first, then smallest first
        rows.sort(key=lambda r: (-r.created, r.size))
        if self.prioritise is not None:
            rows = await self.prioritise(rows)
        return rows

    async def _schedule(self) -> None:
        if self.ctx.metrics is not None:
            self.ctx.metrics.replication_queue.set(len(await self.catalog.list_manifests(state=IN_PROGRESS)))
        # the bytes used, read when first needed and again only once a fetch ended (its bytes moved from
        # `reserved` to used): reading them for every candidate cost a round over thousands of waiting
        # datasets a query each
        used: int | None = None
        ended_then = self._fetches_ended
        for info in await self._candidates():
            if len(self.active) >= MAX_ACTIVE_DATASETS:
                return
            if info.id in self.active or time.monotonic() < self._retry_at.get(info.id, 0.0):
                continue
            missing = await self.catalog.missing_bytes(info.id)
            if missing == 0:
                await self._complete(info.id, info.raw)
                continue
            if used is None or self._fetches_ended != ended_then:
                used = await self.catalog.quota_used_bytes()  # chunks and the catalog
                ended_then = self._fetches_ended
            decision = schedule.admit(
                missing=missing, repairing=info.id in self.repairing, policy=self.datasets.policy(),
                used=used,
                reserved=self._reserved, space=self._disk_usage(), write_group=STORE_GROUP_BYTES,
                now=time.monotonic(), full_until=self._full_until)
            if isinstance(decision, schedule.Wait):
                if self.waiting.get(info.id) != decision.reason:
                    self.waiting[info.id] = decision.reason
                    await self._note(info.id, decision.reason)
                    log.info("%s waits: %s", info.title, decision.log)
                continue
            full = await self.catalog.get_manifest(info.id)
            if full is None or full.raw is None:
                continue
            manifest = Manifest.decode(full.raw, verify=False)
            sources = await self._sources(manifest)
            if not sources:
                self._backoff(info.id, progressed=False)
                reason = "waiting for a peer that holds it"
                if self.waiting.get(info.id) != reason:
                    self.waiting[info.id] = reason
                    await self._note(info.id, f"wanted; {reason}")
                continue
            self.waiting.pop(info.id, None)
            self._reserved += missing
            self._tasks[info.id] = self.ctx.spawn(self._run_fetch(manifest, sources, missing),
                                                  f"fetch {manifest.cid[:16]}")

    async def _sources(self, manifest: Manifest) -> list[str]:
        """The candidates for this round, in the order to ask them (node/sources.py): the first
        MAX_SOURCES are asked at once, the others replace those that lack, fail or stall."""
        banned = {s.peer for s in await self.catalog.sources(manifest.id) if s.banned}
        found: list[str] = []
        with contextlib.suppress(Exception):
            found = list(await self.exchange.find_sources(manifest))
        if not found:
            found = [p.peer_id for p in self.ctx.overlay.peers()]
        announced = set(self.exchange.sources_of(manifest.id))
        return sources_mod.choose_sources(announced, found, banned=banned, history=self._history.get(manifest.id),
                                          now=time.monotonic(), rng=self.rng, me=self.ctx.peer_id)

    def _remember(self, fetch: Fetch, peer: str, kind: str) -> None:
        sources_mod.remember(self._history.setdefault(fetch.manifest.id, {}), peer, kind, time.monotonic())

    # ---- one dataset -----------------------------------------------------------------------------

    async def _run_fetch(self, manifest: Manifest, sources: list[str], reserved: int) -> None:
        try:
            await self._fetch(manifest, sources)
        except asyncio.CancelledError:
            raise
        except StorageFull as exc:
            log.error("replication of %s stopped: %s", manifest.title, exc)
            self.waiting[manifest.id] = FULL_DISK_REASON
            self._full_until = time.monotonic() + RETRY_WAITING_S
            try:
                await self._note(manifest.id, FULL_DISK_REASON)
            except StorageError as again:  # the catalog's own writes fail too: the reason stays in memory
                log.warning("could not record why %s waits: %s", manifest.title, again)
        except Exception as exc:
            log.error("replication of %s failed: %s", manifest.title, exc, exc_info=True)
            await self.catalog.replication_update(manifest.id, int(time.time()), error=str(exc))
        finally:
            self._reserved -= reserved
            self._fetches_ended += 1
            self.active.pop(manifest.id, None)
            self._tasks.pop(manifest.id, None)
            self._wake.set()

    async def _fetch(self, manifest: Manifest, sources: list[str]) -> None:
        cat = self.catalog
        # chunks already on disk (kept after a catalog repair, shared with another copy) are adopted by hash
        await adopt_present(cat, self.chunks, await cat.missing_chunks(manifest.id))
        missing = await cat.missing_chunks(manifest.id)
        done, total = await cat.progress(manifest.id)
        fetch = Fetch(manifest, total, done, deque(sources_mod.fetch_order(missing, self.rng)),
                      spares=deque(sources[MAX_SOURCES:]))
        sources = sources[:MAX_SOURCES]
        self.active[manifest.id] = fetch
        now = int(time.time())
        await cat.replication_start(manifest.id, total, now)
        await self._note(manifest.id, f"fetching from {len(sources)} peer(s)")
        log.info("replicating %s (%s, %d bytes left of %d) from %d peer(s)", manifest.title, manifest.cid,
                 total - done, total, len(sources))
        workers = {asyncio.ensure_future(self._worker(fetch, peer)) for peer in sources}
        try:
            while workers:
                done_now, workers = await asyncio.wait(workers, return_when=asyncio.FIRST_COMPLETED)
                for w in done_now:
                    w.result()
                # a source that lacked the chunks, failed or stalled left work behind: a spare takes over
                while fetch.queue and fetch.spares and len(workers) < MAX_SOURCES:
                    peer = fetch.spares.popleft()
                    log.info("asking %s for %s in place of a lost source", peer, manifest.title)
                    workers.add(asyncio.ensure_future(self._worker(fetch, peer)))
        finally:
            for w in workers:
                w.cancel()
            await self._mark(fetch)
        left = await cat.missing_chunks(manifest.id)
        if left:
            self._backoff(manifest.id, progressed=fetch.bytes_fetched > 0)
            reason = "wanted; waiting for a peer that holds the missing chunks"
            self.waiting[manifest.id] = reason
            await self._note(manifest.id, f"{reason} ({len(left)} chunk(s) left)")
            await cat.replication_update(manifest.id, int(time.time()), error="no source had every chunk")
            return
        self._history.pop(manifest.id, None)
        await self._complete(manifest.id, manifest.encode())

    async def _worker(self, fetch: Fetch, peer: str) -> None:
        """Fetch batches from one source until nothing is left to take. One chunks stream carries the
        batches one after another; it is closed while the worker has nothing to ask (the peer would
        close an idle stream anyway) and after a failure."""
        from communs.node.exchange.client import ChunkSession

        fetch.sources[peer] = "active"
        session: ChunkSession | None = None
        lacked_since: float | None = None  # since when this source had none of the chunks still wanted
        try:
            while True:
                batch = self._take(fetch, fetch.lacking.setdefault(peer, set()))
                if not batch:
                    if session is not None:
                        await session.close()
                        session = None
                    if not fetch.in_flight and not fetch.queue:
                        return
                    if fetch.queue and not fetch.in_flight:  # what is left, this source lacked
                        now = time.monotonic()
                        lacked_since = now if lacked_since is None else lacked_since
                        if not sources_mod.keep_asking(lacked_since, now):
                            return
                        await asyncio.sleep(sources_mod.LACK_RETRY_S)  # it may be fetching them: ask again
                        fetch.lacking.pop(peer, None)
                        continue
                    await asyncio.sleep(0.05)  # others still work; take their chunks back if they fail
                    if not fetch.queue and not fetch.in_flight:
                        return
                    continue
                for d, _ in batch:  # before any await: the other workers must see these as taken
                    fetch.in_flight[d] = peer
                if session is None:
                    try:
                        session = await ChunkSession.open(self.ctx.overlay, peer, self.ctx.bandwidth.download)
                    except Exception as exc:
                        await self._source_failed(fetch, peer, dict(batch), exc, [], [])
                        return
                if not await self._fetch_batch(fetch, peer, session, batch):
                    if fetch.sources.get(peer) != "lacks":
                        return
                    now = time.monotonic()
                    lacked_since = now if lacked_since is None else lacked_since
                    if not sources_mod.keep_asking(lacked_since, now):
                        return
                    await asyncio.sleep(sources_mod.LACK_RETRY_S)  # it may be fetching them: ask again
                    fetch.lacking.pop(peer, None)
                    fetch.sources[peer] = "active"
                    continue
                lacked_since = None
                if session.broken:
                    await session.close()
                    session = None
        finally:
            if session is not None:
                await session.close()

    async def _fetch_batch(self, fetch: Fetch, peer: str, session: ChunkSession,
                           batch: list[tuple[bytes, int]]) -> bool:
        """One batch from `peer`; False when this source is done for this dataset (failed, banned, lacks)."""
        from communs.node.exchange.streamio import ExchangeError, PeerUnavailable, ProtocolViolation

        lacking = fetch.lacking.setdefault(peer, set())
        sizes = dict(batch)
        received: list[tuple[bytes, bytes]] = []
        # Writing to disk overlaps with reading the stream: up to two groups of chunks are being
        # stored (in a thread) while the next ones arrive.
        storing: list[asyncio.Future[None]] = []

        async def drain(limit: int) -> None:
            while len(storing) > limit:
                await storing.pop(0)

        try:
            async with contextlib.aclosing(session.fetch([d for d, _ in batch])) as items:
                # answered in the order asked, one event per chunk; the last step reads the answer's end
                for i in range(len(batch) + 1):
                    item = await self._next_chunk(fetch, peer, items, batch[i][1] if i < len(batch) else 0)
                    if item is None:
                        break
                    d, data = item
                    if data is None:
                        lacking.add(d)
                        fetch.in_flight.pop(d, None)
                        fetch.queue.append((d, sizes[d]))
                        continue
                    received.append((d, data))
                    if sum(len(x) for _, x in received) >= STORE_GROUP_BYTES:
                        storing.append(asyncio.ensure_future(self._store(fetch, received, peer)))
                        received = []
                        await drain(2)
            storing.append(asyncio.ensure_future(self._store(fetch, received, peer)))
            await drain(0)
        except ProtocolViolation as exc:
            await self._store(fetch, received, peer)
            await drain(0)
            self._requeue(fetch, peer, sizes)
            fetch.sources[peer] = "banned"
            self._remember(fetch, peer, sources_mod.FAILED)
            if self.ctx.metrics is not None:
                self.ctx.metrics.chunks_rejected.inc()
            log.warning("dropped %s as a source of %s: %s", peer, fetch.manifest.title, exc)
            await self.catalog.source_failed(fetch.manifest.id, peer, int(time.time()), ban=True,
                                             reason=str(exc))
            return False
        except SourceStalled as exc:
            await self._source_failed(fetch, peer, sizes, exc, received, storing, state="stalled")
            return False
        except (PeerUnavailable, ExchangeError) as exc:
            await self._source_failed(fetch, peer, sizes, exc, received, storing)
            return False
        except BaseException:
            for task in storing:
                task.cancel()
            self._requeue(fetch, peer, sizes)
            raise
        if lacking and all(d in lacking for d, _ in fetch.queue) and not fetch.in_flight:
            fetch.sources[peer] = "lacks"
            self._remember(fetch, peer, sources_mod.LACKED)
            return False
        return True

    async def _next_chunk(self, fetch: Fetch, peer: str, items: AsyncIterator[tuple[bytes, bytes | None]], size: int) \
            -> tuple[bytes, bytes | None] | None:
        """The next `(id, bytes or None)` of an answer, within the chunk's throughput deadline
        (node/sources.py); None at the end. A source that misses it raises SourceStalled while another
        source could take its chunks; the last source left keeps its chance (the stream's own idle
        timeouts still end a dead one)."""
        step = asyncio.ensure_future(items.__anext__())
        deadline = sources_mod.chunk_deadline(time.monotonic(), size)
        try:
            while True:
                await asyncio.wait({step}, timeout=max(0.0, deadline - time.monotonic()))
                if step.done():
                    try:
                        return step.result()
                    except StopAsyncIteration:
                        return None
                if not self._others_can_take(fetch, peer):
                    await self._find_spares(fetch)  # a holder that appeared since the fetch started may take over
                    if step.done():
                        continue
                if self._others_can_take(fetch, peer):
                    raise SourceStalled(f"source {peer} sent less than {sources_mod.MIN_RATE >> 10} KiB/s of a "
                                        f"{size}-byte chunk of {fetch.manifest.title}", peer)
                deadline = sources_mod.chunk_deadline(time.monotonic(), size)
        finally:
            if not step.done():
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await step

    async def _find_spares(self, fetch: Fetch) -> None:
        """Look for sources again (the last one is stalling): candidates not asked in this fetch become spares."""
        try:
            fresh = await self._sources(fetch.manifest)
        except Exception as exc:  # noqa: BLE001 - looking is best effort; the stalling source keeps its chance
            log.debug("could not look for more sources of %s: %s", fetch.manifest.title, exc)
            return
        fetch.spares.extend(p for p in fresh if p not in fetch.sources and p not in fetch.spares)

    @staticmethod
    def _others_can_take(fetch: Fetch, peer: str) -> bool:
        return sources_mod.can_hand_over(fetch.sources, len(fetch.spares), peer)

    async def _source_failed(self, fetch: Fetch, peer: str, sizes: dict[bytes, int], exc: Exception,
                             received: list[tuple[bytes, bytes]], storing: list[asyncio.Future[None]],
                             state: str = "failed") -> None:
        """A source could not be reached, stopped answering or stalled: keep what came, give its chunks
        back."""
        await self._store(fetch, received, peer)
        for task in storing:
            await task
        self._requeue(fetch, peer, sizes)
        fetch.sources[peer] = state
        self._remember(fetch, peer, sources_mod.STALLED if state == "stalled" else sources_mod.FAILED)
        log.info("source %s of %s %s: %s", peer, fetch.manifest.title,
                 "stalled" if state == "stalled" else "unavailable", exc)
        await self.catalog.source_failed(fetch.manifest.id, peer, int(time.time()))

    @staticmethod
    def _take(fetch: Fetch, lacking: set[bytes]) -> list[tuple[bytes, int]]:
        batch: list[tuple[bytes, int]] = []
        size = 0
        skipped: list[tuple[bytes, int]] = []
        while fetch.queue and len(batch) < BATCH_CHUNKS and size < BATCH_BYTES:
            item = fetch.queue.popleft()
            if item[0] in lacking:
                skipped.append(item)
                continue
            batch.append(item)
            size += item[1]
        fetch.queue.extendleft(reversed(skipped))
        return batch

    @staticmethod
    def _requeue(fetch: Fetch, peer: str, sizes: dict[bytes, int]) -> None:
        for d, who in list(fetch.in_flight.items()):
            if who == peer and d in sizes:
                del fetch.in_flight[d]
                fetch.queue.appendleft((d, sizes[d]))

    async def _store(self, fetch: Fetch, items: list[tuple[bytes, bytes]], peer: str) -> None:
        if not items:
            return

        def write() -> tuple[list[tuple[bytes, int]], StorageFull | None]:
            ok: list[tuple[bytes, int]] = []
            full: StorageFull | None = None
            for d, data in items:
                if not self._disk_has_room(len(data)):
                    full = StorageFull("the disk is full: storing one more chunk would leave less than "
                                       f"{self._reserve_bytes()} bytes free")
                    break
                pause_point("replication-chunk")
                try:
                    self.chunks.put(d, data, durable=False)
                except ChunkCorrupt:
                    continue  # the exchange client already checks; never store a bad chunk anyway
                except StorageFull as exc:
                    full = exc
                    break
                ok.append((d, len(data)))
            try:
                self.chunks.flush()
            except StorageFull as exc:
                ok, full = [], exc  # not durable: keep none of them as stored
            return ok, full

        stored, full = await asyncio.to_thread(write)
        fetch.unmarked.extend(stored)
        n = sum(s for _, s in stored)
        for d, _ in stored:
            fetch.in_flight.pop(d, None)
        fetch.done += n
        fetch.bytes_fetched += n
        if self.ctx.metrics is not None:
            self.ctx.metrics.bytes_in.inc(n)
        if peer not in fetch.seen:
            fetch.seen.add(peer)
            self._remember(fetch, peer, sources_mod.SENT)
            await self.catalog.source_seen(fetch.manifest.id, peer, int(time.time()))
        if sum(sz for _, sz in fetch.unmarked) >= MARK_BYTES or time.monotonic() - fetch.marked_at >= MARK_EVERY_S:
            await self._mark(fetch)
        if full is not None:
            await self._mark(fetch)
            raise full

    async def _mark(self, fetch: Fetch) -> None:
        """Record durably stored chunks in the catalog, in groups: each catalog commit costs an fsync, and
        a chunk written but not yet marked when the process dies is re-hashed and kept at restart, never
        fetched again (`_resume_written_chunks`), so marking less often loses nothing."""
        items, fetch.unmarked = fetch.unmarked, []
        fetch.marked_at = time.monotonic()
        if items:
            await self.catalog.mark_chunks_stored(items)

    # ---- free space ------------------------------------------------------------------------------

    def _disk_usage(self) -> tuple[int, int] | None:
        """(free, total) bytes of the filesystem holding the chunks; None when it cannot be known."""
        space: tuple[int, int] | None = self.chunks.space()
        return space

    def _reserve_bytes(self) -> int:
        usage = self._disk_usage()
        return schedule.reserve_bytes(usage[1] if usage else 0)

    def _disk_has_room(self, size: int) -> bool:
        """Whether `size` more bytes of chunks leave the reserve free (and no recent full disk says wait)."""
        return schedule.disk_has_room(size, self._disk_usage(), time.monotonic(), self._full_until)

    async def _complete(self, manifest_id: bytes, raw: bytes | None) -> None:
        if manifest_id in self.repairing:
            self.repairing.discard(manifest_id)
            await self.catalog.replication_finish(manifest_id)
            log.info("own dataset %s is whole again", ids.cid_str(manifest_id))
            return
        info = await self.catalog.get_manifest(manifest_id)
        if info is None or info.state not in (IN_PROGRESS,):
            return
        decision_reason = info.reason
        want, decision_reason = self.datasets.decide(
            licence=info.licence, size=info.size, publisher=info.publisher,
            forked=info.publisher in await self.catalog.forked_publishers())
        if not want:
            return
        await self.catalog.replication_finish(manifest_id, state=COMPLETE, reason=f"complete; {decision_reason}")
        self.waiting.pop(manifest_id, None)
        if self.ctx.metrics is not None:
            self.ctx.metrics.datasets_complete.inc()
        log.info("replicated %s (%s) completely", info.title, ids.cid_str(manifest_id))
        manifest = Manifest.decode(info.raw if info.raw is not None else raw or b"", verify=False)
        for cb in self.datasets.on_complete:
            try:
                await cb(manifest)
            except Exception as exc:  # noqa: BLE001 - announcing is best effort
                log.warning("after completing %s: %s", manifest.cid, exc)

    # ---- resume and release ----------------------------------------------------------------------

    async def _resume_written_chunks(self) -> None:
        """Make the catalog and the store agree after a crash (reconcile.py), then release what no kept
        dataset uses (a release or an enactment cut short by a crash). Publishes wait for `reconciled`,
        so none is writing chunks meanwhile."""
        await reconcile(self.catalog, self.chunks, self.ctx.root)
        await self.collect_garbage()
        self.storage.reconciled.set()

    async def collect_garbage(self) -> int:
        """Delete stored chunks that no kept manifest uses; returns bytes freed.

        The catalog stops calling them stored before any file goes, so a crash in between never leaves a
        chunk marked stored that is not on disk; the files it leaves are named in a journal and deleted at
        the next start (reconcile.py)."""
        lock = self.datasets.store_lock
        async with lock:
            return await self._collect_garbage()

    async def _collect_garbage(self) -> int:
        keep = ("retracted",) if self.datasets.policy().keep_retracted else ()
        gone = await self.catalog.unreferenced_chunks(keep=keep)
        if not gone:
            return 0
        # Journaled first (publish_journal.py), so that files left by a crash after the unmark are known
        # to be released ones and deleted at the next start, not kept as possibly-own data.
        written = PublishJournal(self.ctx.root)
        journal: PublishJournal | None = written
        try:
            await asyncio.to_thread(written.chunks, [d for d, _ in gone])
        except OSError as exc:
            # A full disk is when releasing matters most: go on without the journal (a crash before the
            # files are deleted then keeps them, unknown to the catalog, rather than risking own data).
            log.warning("releasing without a journal (%s)", exc.strerror)
            journal = None
        await self.catalog.mark_chunks_gone([d for d, _ in gone])
        crash_point("release-unmarked")

        def delete() -> None:
            for i, (d, _) in enumerate(gone):
                self.chunks.delete(d)
                if i == 0:
                    crash_point("release-deleting")
            if journal is not None:
                journal.finish()

        await asyncio.to_thread(delete)
        freed = sum(s for _, s in gone)
        log.info("released %d chunk(s), %d bytes, that no kept dataset uses", len(gone), freed)
        return freed

    # ---- reporting -------------------------------------------------------------------------------

    async def report(self) -> JsonDict:
        waiting = []
        for info in await self.catalog.list_manifests(state=IN_PROGRESS):
            if info.id in self.active:
                continue
            done, total = await self.catalog.progress(info.id)
            # a full disk may have kept the catalog from recording the reason; the one in memory is current
            reason = FULL_DISK_REASON if self.waiting.get(info.id) == FULL_DISK_REASON else info.reason
            waiting.append({"id": ids.cid_str(info.id), "title": info.title, "bytes_done": done,
                            "bytes_total": total, "reason": reason,
                            "publisher": keys.peer_id(info.publisher)})
        return {"active": [f.to_json() for f in self.active.values()], "waiting": waiting}

    async def status(self) -> JsonDict:
        r = await self.report()
        return {"replication": {"active": len(r["active"]), "waiting": len(r["waiting"])}}
