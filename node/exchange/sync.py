"""Catalog sync: the guarantee behind gossip.

On every new connection, and every `SYNC_INTERVAL` seconds with a few connected peers in turn
(syncpick.py), a node compares per-publisher contiguous log heads over /communs/sync/1 and fetches the
missing ranges, then the retractions the peer holds. Gossip can lose messages; sync cannot miss a record
a peer holds. The decisions are in `syncplan.py` and `protocol/publog.py`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from communs.node.exchange import syncplan
from communs.node.exchange.client import SyncSession
from communs.node.exchange.facts import RecordFacts, record_facts
from communs.node.exchange.streamio import ExchangeError, PeerUnavailable, ProtocolViolation
from communs.node.exchange.syncpick import pick_sync_peers
from communs.node.services import ingest_quota
from communs.protocol import keys, wire
from communs.protocol import publog as plog
from communs.protocol.errors import DecodeError, RecordError
from communs.protocol.retraction import Retraction

if TYPE_CHECKING:
    from communs.node.context import NodeContext
    from communs.node.exchange.gossip import NewSource
    from communs.node.exchange.inflight import Inflight
    from communs.node.exchange.retractions import RetractionIntake
    from communs.node.services.datasets import DatasetsService
    from communs.node.services.ingest import Outcome
    from communs.node.services.storage import StorageService

log = logging.getLogger("communs.exchange")

SYNC_INTERVAL = syncplan.SYNC_INTERVAL
SYNC_RETRY = (1.0, 3.0, 10.0)  # after a failed sync on connect
SYNC_AHEAD = 2  # ranges read ahead, and ranges being verified and stored, at once
SYNC_SESSION_BYTES = 256 * 1024 * 1024  # record bytes read from one peer in one session; the rest waits
SYNC_SHORT_ANSWERS = 16  # ranges answered with less than the peer advertised before a session ends
SYNC_SESSIONS_IN_A_ROW = 8  # sessions run back to back while the last one was cut by a cap and brought news
RETRACTION_PAGES = 10  # pages of retractions asked for per sync session (wire.MAX_RETRACTIONS each)


class CatalogSync:
    def __init__(self, ctx: NodeContext, storage: StorageService, datasets: DatasetsService, inflight: Inflight,
                 intake: RetractionIntake, counts: collections.Counter[str], on_new_source: list[NewSource]) -> None:
        self.ctx = ctx
        self.storage = storage
        self.datasets = datasets
        self.inflight = inflight
        self.intake = intake
        self.counts = counts
        self.on_new_source = on_new_source
        self._syncing: set[str] = set()
        self._last_sync: dict[str, float] = {}
        self._more: dict[str, bool] = {}  # the last session with a peer left records for another one
        self._not_communs: dict[str, float] = {}

    async def sync_with(self, peer: str) -> int:
        """Fetch what `peer` holds beyond our contiguous heads, within one session's caps; returns how many
        records were new. `self._more[peer]` says afterwards whether the caps left some for another session.

        One stream: the peer's heads, then ranges of at most 1000 records per publisher, the next range
        read while the last one is verified and stored. A range must be a chain (consecutive seqs of
        the asked publisher, each linked to the one before), else the peer broke the protocol; a range
        whose first record does not link to ours is handed to the datasets service, which keeps it as
        fork evidence.

        Everything the peer says is bounded before it costs anything: the plan (`protocol.log.plan_session`)
        asks for a capped number of ranges and records whatever heads it advertised, a range answer holds
        at most `wire.RANGE_ANSWER_BYTES` and one record, a session reads at most `SYNC_SESSION_BYTES`, a
        peer that answers short (it advertised records it does not serve) more than `SYNC_SHORT_ANSWERS`
        times is left, and the datasets service refuses records over the ingest quotas. What was left or
        refused is logged in one sentence at the end.
        """
        catalog = self.storage.catalog
        started = time.monotonic()
        over = self.datasets.peer_over_quota(peer)
        if over is not None:  # nothing it could send now would be stored: do not ask (said when it was reached)
            log.debug("catalog sync with %s skipped: %s", peer, over)
            self._last_sync[peer] = time.monotonic()
            self._more[peer] = False
            return 0
        session = await SyncSession.open(self.ctx.overlay, peer)
        new = 0
        ok = False
        waited = storing = 0.0  # time waiting for the peer's next range / in ingest (verify and store)
        refused: collections.Counter[str] = collections.Counter()  # reason -> records refused over a quota
        refused_pubs: set[bytes] = set()
        cut: list[str] = []  # why the session stopped before its plan's end
        over_quota: list[str] = []  # a refusal that applies to all the peer would send now
        try:
            remote = await session.heads()
            local = await catalog.contiguous_heads()
            plan = plog.plan_session(local, remote, first=syncplan.own_key(peer), seed=os.urandom(8))
            self.datasets.warm_up(plan.records)
            queue: asyncio.Queue[tuple[plog.SyncRange, list[bytes]] | None] = asyncio.Queue(maxsize=SYNC_AHEAD)

            async def reader() -> None:
                stopped: set[bytes] = set()
                received = short = 0
                for planned in plan.ranges:
                    r: plog.SyncRange | None = planned
                    while r is not None and r.publisher not in stopped:
                        if over_quota:
                            cut.append(f"{over_quota[0]} (what it sends now would be refused)")
                            await queue.put(None)
                            return
                        if received >= SYNC_SESSION_BYTES:
                            cut.append(f"{SYNC_SESSION_BYTES // (1 << 20)} MiB of records were read")
                            await queue.put(None)
                            return
                        raws = await session.range(r.publisher, r.first, r.last)
                        got = sum(map(len, raws))
                        received += got
                        answer = syncplan.read_answer(r, len(raws), got)
                        if answer.short:  # the peer holds less than it advertised: go no further with it
                            stopped.add(r.publisher)
                            short += 1
                        if answer.stored is not None:
                            await queue.put((answer.stored, raws))
                        if short > SYNC_SHORT_ANSWERS:
                            cut.append(f"the peer served less than it advertised for {short} publishers")
                            await queue.put(None)
                            return
                        r = answer.follow
                await queue.put(None)

            read_task = asyncio.ensure_future(reader())
            # Up to two ranges are in the datasets service at once, so that the next one is decoded and
            # verified (worker threads) while the last one is stored (the catalog's thread); their outcomes
            # are read in order.
            storing_tasks: collections.deque[
                tuple[plog.SyncRange, list[RecordFacts], asyncio.Future[list[Outcome]]]] = collections.deque()

            async def settle() -> None:
                nonlocal new, storing
                r, facts, task = storing_tasks.popleft()
                t_store = time.monotonic()
                outcomes = await task
                storing += time.monotonic() - t_store
                added = sum(1 for o in outcomes if o.status == "new")
                new += added
                self.counts["sync_records"] += added
                for facts_i, outcome in zip(facts, outcomes, strict=False):
                    if outcome.status in ("new", "known"):
                        self.inflight.resolve(facts_i.id)
                    elif outcome.status == "refused":
                        refused[outcome.reason] += 1
                        refused_pubs.add(facts_i.publisher)
                        if ingest_quota.ends_session(outcome.reason) and not over_quota:
                            over_quota.append(outcome.reason)
                if any(o.status in ("rejected", "fork", "refused") for o in outcomes):
                    broken.add(r.publisher)
                    rejected = [o.reason for o in outcomes if o.status == "rejected"]
                    if rejected:
                        log.info("sync with %s: %d record(s) of %s refused (%s)", peer, len(rejected),
                                 keys.peer_id(r.publisher), rejected[0])

            prev_ids: dict[bytes, bytes] = {}
            broken: set[bytes] = set()
            try:
                while True:
                    t_wait = time.monotonic()
                    item = await queue.get()
                    waited += time.monotonic() - t_wait
                    if item is None:
                        break
                    r, raws = item
                    if r.publisher in broken:
                        continue
                    facts = [self._facts(peer, raw) for raw in raws]
                    prev = prev_ids.get(r.publisher)
                    if prev is None and r.first > 1:
                        held = await catalog.manifest_at(r.publisher, r.first - 1)
                        prev = held.id if held is not None else None
                    try:
                        plog.verify_range(facts, publisher=r.publisher, first_seq=r.first,
                                          prev_id=facts[0].log_prev, last_seq=r.last)
                    except DecodeError as exc:
                        raise ProtocolViolation(f"peer {peer} sent a range that is not a chain: {exc}", peer) \
                            from None
                    if facts[0].log_prev != prev:
                        broken.add(r.publisher)  # contradicts our log: keep the first as evidence, stop there
                        raws, facts = raws[:1], facts[:1]
                    prev_ids[r.publisher] = facts[-1].id
                    ingesting = asyncio.ensure_future(self.datasets.ingest_manifests(raws, source=peer))
                    storing_tasks.append((r, facts, ingesting))
                    if len(storing_tasks) >= SYNC_AHEAD:
                        await settle()
                while storing_tasks:
                    await settle()
                await read_task
            finally:
                read_task.cancel()
                for _, _, task in storing_tasks:
                    task.cancel()
                with contextlib.suppress(BaseException):
                    await read_task
            # a peer that does not answer retractions (an older or hostile one) keeps the ranges stored above
            ok = await self._sync_retractions(session, peer)
        finally:
            if ok:
                await session.close()
            else:
                await session.abort()
        self.counts["sync_runs"] += 1
        self._last_sync[peer] = time.monotonic()
        self._more[peer] = not over_quota and (bool(cut) or not plan.complete)  # over quota: wait for the window
        if refused or cut or not plan.complete:  # a warning when the peer went over a limit, else news
            log.log(logging.WARNING if refused or cut else logging.INFO, "%s",
                    syncplan.sync_limits_sentence(peer, plan, cut, refused, len(refused_pubs)))
        if new:
            took = time.monotonic() - started
            log.info("catalog sync with %s: %d new manifest(s) in %.2f s (%.0f/s; %.2f s waiting for the peer, "
                     "%.2f s verifying and storing)", peer, new, took, new / took if took > 0 else 0.0, waited,
                     storing)
        return new

    @staticmethod
    def _facts(peer: str, raw: bytes) -> RecordFacts:
        try:
            return record_facts(raw)
        except DecodeError as exc:
            raise ProtocolViolation(f"peer {peer} sent a malformed record in a range: {exc}", peer) from None

    async def _sync_retractions(self, session: SyncSession, peer: str) -> bool:
        """Ask `peer` for the retractions it holds, a page of wire.MAX_RETRACTIONS at a time (at most
        RETRACTION_PAGES pages per session), and apply those that concern datasets held here. False when the
        peer did not answer properly (the stream is then aborted, and the session's ranges stay stored)."""
        try:
            await self._sync_retraction_pages(session, peer)
        except ExchangeError as exc:
            log.info("retractions not read from %s: %s", peer, exc)
            return False
        return True

    async def _sync_retraction_pages(self, session: SyncSession, peer: str) -> None:
        after: bytes | None = None
        for _ in range(RETRACTION_PAGES):
            raws = await session.retractions(after)
            for raw in raws:
                await self.intake.received(raw, f"catalog sync with {peer}")
            if len(raws) < wire.MAX_RETRACTIONS:
                return
            try:
                after = Retraction.decode(raws[-1], verify=False).dataset
            except RecordError as exc:
                raise ProtocolViolation(f"peer {peer} sent a malformed retraction: {exc}", peer) from None

    async def _sync_guarded(self, peer: str, *, retries: Sequence[float] = ()) -> None:
        """One sync with `peer` at a time; failures are logged and retried on the given delays."""
        if peer in self._syncing:
            return
        self._syncing.add(peer)
        try:
            for delay in (0.0, *retries):
                if delay:
                    await asyncio.sleep(delay)
                if not self.ctx.overlay.is_connected(peer):
                    return
                protocols = self._protocols_of(peer)
                if protocols and wire.SYNC_PROTOCOL not in protocols:
                    # identify says it is not a Communs node (a DHT-only peer, another application)
                    self._not_communs[peer] = time.monotonic()
                    return
                try:
                    for _ in range(SYNC_SESSIONS_IN_A_ROW):  # again at once while the caps cut and news came
                        if not await self.sync_with(peer) or not self._more.pop(peer, False):
                            break
                    return
                except PeerUnavailable as exc:
                    self.counts["sync_failures"] += 1
                    log.debug("catalog sync with %s failed: %s", peer, exc)
                except ExchangeError as exc:
                    self.counts["sync_failures"] += 1
                    log.warning("catalog sync with %s failed: %s", peer, exc)
                    return
                except Exception as exc:  # storing failed (disk, catalog): log it, keep the node going
                    self.counts["sync_failures"] += 1
                    log.error("catalog sync with %s failed while storing: %s", peer, exc, exc_info=exc)
                    return
        finally:
            self._syncing.discard(peer)

    def synced_once(self, peer: str) -> bool:
        """Whether a catalog sync with `peer` has ended since it connected (or was skipped as over quota) and
        none runs now: holding claims name manifests, so the copies service asks for them after this."""
        return peer in self._last_sync and peer not in self._syncing

    def _protocols_of(self, peer: str) -> list[str]:
        return self.ctx.overlay.protocols_of(peer)

    async def connected(self, peer: str) -> None:
        """A new connection: add the peer to the DHT, tell replication of a new Communs peer, and sync."""
        for _ in range(20):  # let identify tell us the peer's protocols and addresses (about 10 ms here)
            await asyncio.sleep(0.05)
            if self._protocols_of(peer):
                break
        await self.ctx.overlay.add_dht_peer(peer)
        if wire.CHUNKS_PROTOCOL in self._protocols_of(peer):
            for poke in self.on_new_source:  # a new Communs peer may hold what waits for a source
                poke(None)
        await self._sync_guarded(peer, retries=SYNC_RETRY)

    async def run_periodic(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL * random.uniform(0.8, 1.2))
            now = time.monotonic()
            candidates = [peer for peer in self.ctx.overlay.peer_ids()
                          if syncplan.speaks_sync(peer, self._protocols_of(peer), now, self._not_communs)]
            random.shuffle(candidates)
            # a few peers a round, those synced longest ago first (syncpick.py), not every connected one
            for peer in pick_sync_peers(candidates, self._last_sync, now, SYNC_INTERVAL / 2):
                await self._sync_guarded(peer)
            self.inflight.prune()
