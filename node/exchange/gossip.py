"""Gossip: announcements and retractions on the federation's topic (the fast path).

A publishing node signs an Announcement and publishes it on the federation's topic. Every node's topic
validator decodes it, checks its signature and freshness, and only then lets gossipsub deliver and relay
it, so a forged or stale one dies at the first hop. A node that accepts one for a manifest it does not
hold fetches the manifest over /communs/manifest/1 from the peer that relayed it (which accepted it just
before, and is fetching it too: its server waits a moment for that fetch instead of answering not-found,
see `inflight.py`). Gossip can lose messages; catalog sync (`sync.py`) cannot miss a record a peer holds.
The decisions are in `gossiprules.py`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from communs.node.exchange import gossiprules as rules
from communs.node.exchange.client import ManifestClient
from communs.node.exchange.facts import record_facts
from communs.node.exchange.streamio import ExchangeError
from communs.protocol import wire
from communs.protocol.errors import DecodeError, RecordError
from communs.protocol.ids import cid_str
from communs.protocol.records import ANNOUNCE_MAX_AGE, AnnounceKind, Announcement, Manifest
from communs.protocol.retraction import Retraction, decode_gossip

if TYPE_CHECKING:
    from communs.node.context import NodeContext
    from communs.node.exchange.holders import Holders
    from communs.node.exchange.inflight import Inflight
    from communs.node.exchange.retractions import RetractionIntake
    from communs.node.services.datasets import DatasetsService
    from communs.node.services.storage import StorageService
    from communs.protocol.net import Message
    from communs.storage.catalog import Catalog

log = logging.getLogger("communs.exchange")

# Called when a peer that may hold wanted data appears, with the manifest it announced holding (or None for
# a new peer); the composition root wires replication here.
NewSource = Callable[[bytes | None], None]


@dataclass
class _Fetch:
    """A manifest announced on gossip that this node does not hold yet."""

    ann: Announcement
    peers: list[str]  # whom to ask, in order: the relaying peer, then the announcing node
    attempt: int = 0
    tried: set[str] = field(default_factory=set)


class Gossip:
    def __init__(self, ctx: NodeContext, storage: StorageService, datasets: DatasetsService, holders: Holders,
                 inflight: Inflight, intake: RetractionIntake, counts: collections.Counter[str],
                 on_new_source: list[NewSource]) -> None:
        self.ctx = ctx
        self.storage = storage
        self.datasets = datasets
        self.holders = holders
        self.inflight = inflight
        self.intake = intake
        self.counts = counts
        self.on_new_source = on_new_source
        self.manifest_client = ManifestClient(ctx.overlay)
        self._seen: dict[bytes, float] = {}  # announcement id -> when accepted (replay window)
        self._decoded: collections.OrderedDict[bytes, Announcement | Retraction] = collections.OrderedDict()
        self._warned: dict[str, rules.Warned] = {}
        self._fetch_queue: asyncio.Queue[_Fetch] = asyncio.Queue()
        self._fetching: set[bytes] = set()
        self._outbox: asyncio.Queue[tuple[AnnounceKind, Manifest]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that the validator (in libp2p's thread) hands accepted announcements to."""
        self._loop = loop

    # ---- the validator (runs inside libp2p, for every message, relayed or not) ---------------------

    def validate(self, data: bytes, sender: str) -> str | None:
        """The gossip topic validator. It runs in libp2p's thread (see protocol/libp2p/overlay.py): it owns
        `_seen`, `_decoded` and `_warned`, bumps its own counters, and hands the rest to the loop."""
        own = sender == self.ctx.peer_id
        now = time.time()
        try:
            ann = rules.check_message(data, now)
        except Exception as exc:  # never let a validator bug take libp2p's task down
            reason, detail = rules.rejection(exc, len(data))
        else:
            if rules.is_replay(self._seen.get(ann.id), now):
                # A replay of an announcement already delivered (gossip itself never delivers one message
                # twice). py-libp2p has no "ignore" verdict: it is dropped as rejected, counted apart.
                self.counts["duplicate"] += 1
                self.ctx.metrics.messages.labels("duplicate", "replay").inc()
                return "replayed announcement"
            self._seen[ann.id] = now
            if len(self._seen) > 100_000:
                self._prune_seen(now)
            self._decoded[data] = ann
            while len(self._decoded) > 10_000:
                self._decoded.popitem(last=False)
            if not own:
                self.counts["accepted"] += 1
                self.ctx.metrics.messages.labels("accepted", "").inc()
                if self._loop is not None and isinstance(ann, Announcement):
                    self._loop.call_soon_threadsafe(self.inflight.expect, ann.manifest)
            return None
        self.counts["rejected"] += 1
        self.ctx.metrics.messages.labels("rejected", reason).inc()
        log.debug("rejected gossip message from %s: %s (%s)", sender, reason, detail)
        self._warn_rejected(sender, reason, detail)
        return reason

    def _prune_seen(self, now: float) -> None:
        self._seen = {k: t for k, t in self._seen.items() if now - t < ANNOUNCE_MAX_AGE}

    def _warn_rejected(self, peer: str, reason: str, detail: str) -> None:
        count, self._warned[peer] = rules.warn_step(self._warned.get(peer), time.monotonic(), reason)
        if count is not None:
            log.warning("peer %s sent %d invalid announcement(s) (last: %s: %s)", peer, count, reason, detail)

    # ---- what to do with an accepted message ---------------------------------------------------------

    async def consume(self, subscription: AsyncIterator[Message]) -> None:
        catalog = self.storage.catalog
        me = self.ctx.peer_id
        async for msg in subscription:
            try:
                await self._accepted(msg, catalog, me)
            except Exception as exc:  # one bad step must not stop the gossip consumer
                log.error("handling an announcement failed: %s", exc, exc_info=exc)

    async def _accepted(self, msg: Message, catalog: Catalog, me: str) -> None:
        """One announcement the validator accepted: note its holder, fetch its manifest if unknown."""
        try:
            ann = self._decoded.pop(msg.data, None) or decode_gossip(msg.data)
        except RecordError:
            return
        if isinstance(ann, Retraction):
            await self.intake.received(msg.data, f"gossip from {msg.sender}")
            return
        node_peer = ann.node_peer_id
        if node_peer == me:
            return
        self.holders.announced(ann.manifest, node_peer)
        try:
            known = await catalog.get_manifest(ann.manifest) is not None
        except Exception as exc:
            log.warning("catalog lookup failed for an announced manifest: %s", exc)
            known = False
        if known or ann.manifest in self._fetching:
            if known:
                self.inflight.resolve(ann.manifest)
                if ann.kind == "hold":
                    for poke in self.on_new_source:  # a new holder: a waiting replication may proceed
                        poke(ann.manifest)
            return
        peers = rules.fetch_peers(msg.sender, node_peer, msg.origin, me)
        self._fetching.add(ann.manifest)
        self._fetch_queue.put_nowait(_Fetch(ann, peers))

    # ---- fetching announced manifests --------------------------------------------------------------------

    async def run_fetcher(self) -> None:
        """Fetch announced manifests, batching those relayed by the same peer into one request."""
        while True:
            jobs = [await self._fetch_queue.get()]
            while not self._fetch_queue.empty() and len(jobs) < 4 * wire.MAX_MANIFEST_IDS:
                jobs.append(self._fetch_queue.get_nowait())
            by_peer: dict[str, list[_Fetch]] = collections.defaultdict(list)
            for job in jobs:
                peer = self._next_peer(job)
                if peer is None:
                    self._give_up(job)
                else:
                    by_peer[peer].append(job)
            results = await asyncio.gather(*(self._fetch_from(peer, group) for peer, group in by_peer.items()),
                                           return_exceptions=True)
            for (peer, group), result in zip(by_peer.items(), results, strict=True):
                if isinstance(result, Exception):
                    log.error("fetching announced manifests from %s failed: %s", peer, result, exc_info=result)
                    for job in group:
                        self._give_up(job)

    def _next_peer(self, job: _Fetch) -> str | None:
        peer, again = rules.next_fetch_peer(job.peers, job.tried, self.ctx.overlay.is_connected)
        if again:
            job.tried.clear()
        return peer

    def _give_up(self, job: _Fetch) -> None:
        self._fetching.discard(job.ann.manifest)
        self.inflight.resolve(job.ann.manifest)
        log.debug("gave up fetching announced manifest %s; catalog sync will bring it",
                  cid_str(job.ann.manifest))

    async def _fetch_from(self, peer: str, jobs: list[_Fetch]) -> None:
        for job in jobs:
            job.tried.add(peer)
        try:
            found = await self.manifest_client.fetch(peer, [j.ann.manifest for j in jobs])
        except ExchangeError as exc:
            log.debug("fetching %d announced manifest(s) from %s failed: %s", len(jobs), peer, exc)
            found = {}
        accepted: list[tuple[_Fetch, bytes]] = []
        for job in jobs:
            raw = found.get(job.ann.manifest)
            if raw is None:
                self._retry(job)
                continue
            try:
                if not rules.matches(record_facts(raw), job.ann):
                    raise DecodeError("manifest does not match the facts of its announcement")
            except DecodeError as exc:
                log.info("announced manifest %s from %s refused: %s", cid_str(job.ann.manifest), peer, exc)
                self._give_up(job)
                continue
            accepted.append((job, raw))
        if not accepted:
            return
        try:
            outcomes = await self.datasets.ingest_manifests([raw for _, raw in accepted], source=peer)
        except Exception as exc:
            log.warning("storing %d announced manifest(s) failed: %s", len(accepted), exc)
            outcomes = []
        for (job, _), outcome in zip(accepted, outcomes, strict=False):
            if outcome.status == "new":
                self.counts["gossip_fetched"] += 1
            elif outcome.status == "rejected":
                log.info("announced manifest %s from %s rejected: %s", cid_str(job.ann.manifest), peer,
                         outcome.reason)
        for job, _ in accepted:
            self._fetching.discard(job.ann.manifest)
            self.inflight.resolve(job.ann.manifest)

    def _retry(self, job: _Fetch) -> None:
        delay = rules.retry_delay(job.attempt)
        if delay is None:
            self._give_up(job)
            return
        job.attempt += 1
        assert self._loop is not None
        self._loop.call_later(delay, self._fetch_queue.put_nowait, job)

    def peer_gone(self, peer: str) -> None:
        """A peer disconnected: its kept manifest stream is closed."""
        self.manifest_client.drop(peer)

    # ---- announcing --------------------------------------------------------------------------------

    async def published(self, manifest: Manifest) -> None:
        self._outbox.put_nowait(("publish", manifest))
        self.holders.provide(manifest.id)

    async def completed(self, manifest: Manifest) -> None:
        if not isinstance(manifest, Manifest):
            return
        self._outbox.put_nowait(("hold", manifest))
        self.holders.provide(manifest.id)

    async def announce(self, kind: AnnounceKind, manifest: Manifest) -> None:
        """Sign and publish one announcement now (paced by the adapter)."""
        ann = Announcement.create(self.ctx.key, kind=kind, manifest=manifest, ts=int(time.time()))
        await self.ctx.overlay.publish(self.ctx.config.topic, ann.encode())

    async def retracted_here(self, record: Retraction) -> None:
        """Gossip a retraction made here (catalog sync carries it to the nodes that miss it)."""
        try:
            await self.ctx.overlay.publish(self.ctx.config.topic, record.encode())
            self.counts["announced_retract"] += 1
        except Exception as exc:  # noqa: BLE001 - best effort: sync carries it
            log.warning("could not gossip the retraction of %s: %s (catalog sync will carry it)",
                        cid_str(record.dataset), exc)

    async def run_announcer(self) -> None:
        """Publishes queued announcements in order; the adapter paces them so a burst is not dropped."""
        while True:
            kind, manifest = await self._outbox.get()
            try:
                await self.announce(kind, manifest)
                self.counts[f"announced_{kind}"] += 1
            except Exception as exc:
                log.warning("could not announce %s: %s (catalog sync will carry it)", manifest.cid, exc)
