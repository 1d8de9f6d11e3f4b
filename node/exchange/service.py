"""Exchange: gossip announcements, the stream protocols, catalog sync and peer discovery.

How a manifest reaches every node:
- *Gossip* (fast path). A publishing node signs an Announcement and publishes it on the
  federation's topic. Every node's topic validator decodes it, checks its signature and freshness,
  and only then lets gossipsub deliver and relay it, so a forged or stale one dies at the first
  hop. A node that accepts one for a manifest it does not hold fetches the manifest over
  /communs/manifest/1 from the peer that relayed it (which accepted it just before, and is fetching
  it too: its server waits a moment for that fetch instead of answering not-found).
- *Catalog sync* (the guarantee). On every new connection, and every `SYNC_INTERVAL` seconds with
  a few connected peers in turn (syncpick.py), a node compares per-publisher contiguous log heads over
  /communs/sync/1 and fetches the missing ranges. Gossip can lose messages; sync cannot miss a record a peer holds.

DHT provider records: a node that holds every chunk of a manifest (its own, or a completed
replica) provides the key `provider_key(manifest_id)`: the CIDv1 (raw codec, sha2-256) of the
ASCII text of the manifest's CID. A sha2-256 CID rather than the BLAKE3 one so that any libp2p
implementation and tool can look it up (js-libp2p's and py-libp2p's helpers build sha2-256 CIDs
from text); hashing the manifest's text id keeps it one key per dataset version, computable by
anyone who has seen the id.

Discovery: besides bootstrap peers (kept by the node) and mDNS (in the adapter), peers learned from
identify and the DHT (`overlay.known_peers()`) are dialled in the background until the node has
`TARGET_PEERS` connections.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgpack
from communs.node.exchange.client import ManifestClient, SyncSession, fetch_chunks, fetch_manifests
from communs.node.exchange.server import StreamServer
from communs.node.exchange.streamio import ExchangeError, PeerUnavailable, ProtocolViolation
from communs.node.exchange.syncpick import pick_sync_peers
from communs.node.jsondoc import JsonDict
from communs.node.services import ingest_quota
from communs.protocol import keys, wire
from communs.protocol import publog as plog
from communs.protocol.errors import DecodeError, RecordError, SignatureError
from communs.protocol.ids import cid_str, digest
from communs.protocol.records import (
    ANNOUNCE_MAX_AGE,
    MAX_ANNOUNCE_BYTES,
    AnnounceKind,
    Announcement,
    Manifest,
    StaleError,
    check_fresh,
)
from communs.protocol.retraction import Retraction, UnknownDataset, check_fresh_retraction, decode_gossip
from communs.storage.states import HELD

if TYPE_CHECKING:
    from communs.node.node import Node
    from communs.node.services.datasets import DatasetsService
    from communs.node.services.ingest import Outcome
    from communs.node.services.retraction import RetractionService
    from communs.node.services.storage import StorageService
    from communs.protocol.net import Message, PeerInfo
    from communs.storage.catalog import Catalog

log = logging.getLogger("communs.exchange")

SYNC_INTERVAL = 45.0  # seconds between periodic catalog syncs with each connected peer (jittered)
SYNC_RETRY = (1.0, 3.0, 10.0)  # after a failed sync on connect
SYNC_AHEAD = 2  # ranges read ahead, and ranges being verified and stored, at once
SYNC_SESSION_BYTES = 256 * 1024 * 1024  # record bytes read from one peer in one session; the rest waits
SYNC_SHORT_ANSWERS = 16  # ranges answered with less than the peer advertised before a session ends
SYNC_SESSIONS_IN_A_ROW = 8  # sessions run back to back while the last one was cut by a cap and brought news
TARGET_PEERS = 8  # discovery dials known peers until this many are connected
DISCOVERY_INTERVAL = 5.0
DIAL_BACKOFF_MIN, DIAL_BACKOFF_MAX = 30.0, 1800.0
FETCH_RETRY_DELAYS = (0.1, 0.3, 1.0, 3.0)  # a manifest announced but not found at the relaying peer yet
INFLIGHT_WAIT = 3.0  # a manifest request for a record being fetched here waits at most this long
REJECT_WARN_INTERVAL = 60.0  # at most one warning per misbehaving peer per this many seconds
NOT_COMMUNS_TTL = 600.0  # a peer without /communs/sync/1 is not asked again for this long
PROVIDE_AT_START = 256  # most recent held manifests provided again at start (py-libp2p keeps none)
PROVIDE_RATE = 20.0  # DHT provides per second at most
RETRACTION_PAGES = 10  # pages of retractions asked for per sync session (wire.MAX_RETRACTIONS each)


def provider_key(manifest_id: bytes) -> str:
    """The DHT key under which holders of a manifest's chunks are provided: CIDv1(raw, sha2-256(CID text))."""
    mh = bytes([0x12, 0x20]) + hashlib.sha256(cid_str(manifest_id).encode("ascii")).digest()
    return "b" + base64.b32encode(bytes([0x01, 0x55]) + mh).decode("ascii").lower().rstrip("=")


def text_key(text: str) -> str:
    """CIDv1(raw, sha2-256(text)): the key js-libp2p tools build for `!provide TEXT`."""
    mh = bytes([0x12, 0x20]) + hashlib.sha256(text.encode()).digest()
    return "b" + base64.b32encode(bytes([0x01, 0x55]) + mh).decode("ascii").lower().rstrip("=")


@dataclass(frozen=True)
class RecordFacts:
    """What catalog sync and announcement checks need of a record, read without verifying it (the
    datasets service verifies everything before storing)."""

    id: bytes
    publisher: bytes
    seq: int
    log_prev: bytes | None
    dataset: bytes
    size: int


def record_facts(raw: bytes) -> RecordFacts:
    """Cheap structural read of a manifest record; DecodeError if it is not even shaped like one."""
    try:
        m = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:
        raise DecodeError(f"record is not msgpack: {exc}") from None
    if not isinstance(m, dict):
        raise DecodeError("record is not a map")
    pub, seq, prev, ds, size = (m.get(k) for k in ("publisher", "seq", "log_prev", "dataset", "size"))
    if type(pub) is not bytes or len(pub) != 32 or type(seq) is not int or seq < 1 \
            or not (prev is None or (type(prev) is bytes and len(prev) == 32)) \
            or type(ds) is not bytes or len(ds) != 32 or type(size) is not int:
        raise DecodeError("record lacks a valid publisher, seq, log_prev, dataset or size")
    return RecordFacts(digest(raw), pub, seq, prev, ds, size)


def _own_key(peer: str) -> tuple[bytes, ...]:
    """The publisher key of a peer (its own records are asked for first), if its id is an Ed25519 key."""
    try:
        return (keys.public_from_peer_id(peer),)
    except Exception:  # noqa: BLE001 - another key type: no own records to put first
        return ()


def sync_limits_sentence(peer: str, plan: plog.SyncPlan, cut: Sequence[str], refused: collections.Counter[str],
                         refused_publishers: int) -> str:
    """One sentence saying what a catalog sync session left out or refused, and why."""
    parts = []
    if refused:
        reason, _ = refused.most_common(1)[0]
        parts.append(f"refused {sum(refused.values())} valid record(s) of {refused_publishers} publisher(s) "
                     f"over an ingest quota ({reason})")
    if cut:
        parts.append(f"stopped reading because {cut[0]}")
    if not plan.complete:
        parts.append(f"left {plan.deferred_records} advertised record(s) of {plan.deferred_publishers} "
                     f"publisher(s) for a later session (at most {plog.MAX_SESSION_RECORDS} records, "
                     f"{plog.MAX_SESSION_RECORDS_PER_PUBLISHER} per publisher, {plog.MAX_SESSION_RANGES} "
                     "ranges per session)")
    return f"catalog sync with {peer}: " + "; ".join(parts) + "."


@dataclass
class _Fetch:
    """A manifest announced on gossip that this node does not hold yet."""

    ann: Announcement
    peers: list[str]  # whom to ask, in order: the relaying peer, then the announcing node
    attempt: int = 0
    tried: set[str] = field(default_factory=set)


class ExchangeService:
    def __init__(self, node: Node, storage: StorageService, datasets: DatasetsService,
                 retractions: RetractionService) -> None:
        self.node = node
        self.storage = storage
        self.datasets = datasets
        self.retractions = retractions
        # Called when a peer that may hold wanted data appears, with the manifest it announced holding (or None
        # for a new peer); the composition root wires replication here.
        self.on_new_source: list[Callable[[bytes | None], None]] = []
        self.server: StreamServer | None = None
        self.manifest_client: ManifestClient | None = None
        self._sources: dict[bytes, set[str]] = collections.defaultdict(set)
        self._seen: dict[bytes, float] = {}  # announcement id -> when accepted (replay window)
        self._decoded: collections.OrderedDict[bytes, Announcement | Retraction] = collections.OrderedDict()
        self._inflight: dict[bytes, tuple[asyncio.Event, float]] = {}
        self._fetch_queue: asyncio.Queue[_Fetch] = asyncio.Queue()
        self._fetching: set[bytes] = set()
        self._outbox: asyncio.Queue[tuple[AnnounceKind, Manifest]] = asyncio.Queue()
        self._provide_queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._syncing: set[str] = set()
        self._last_sync: dict[str, float] = {}
        self._more: dict[str, bool] = {}  # the last session with a peer left records for another one
        self._not_communs: dict[str, float] = {}
        self._dial_backoff: dict[str, tuple[float, float]] = {}  # peer -> (next try, backoff)
        self._warned: dict[str, tuple[float, int, str]] = {}  # peer -> (last warning, count since, reason)
        self.counts: collections.Counter[str] = collections.Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.datasets.on_published.append(self._published)
        self.datasets.on_complete.append(self._completed)
        self.retractions.on_retracted.append(self._retracted_here)

    async def overlay_ready(self) -> None:
        node, overlay = self.node, self.node.overlay
        storage = self.storage
        self.server = StreamServer(storage.catalog, storage.chunks, node.metrics, wait_inflight=self._wait_inflight,
                                   upload=node.bandwidth.upload)
        self.server.register(overlay)
        if node.governance is not None:  # members' /communs/governance/1 (exchange/govserver.py)
            from communs.node.exchange.govserver import GovernanceServer
            from communs.protocol.govwire import PeerRate

            rate = PeerRate(node.config.gov_reads_per_minute, node.config.gov_submits_per_minute)
            GovernanceServer(node.governance, node.metrics, rate=rate).register(overlay)
        self.manifest_client = ManifestClient(overlay)
        overlay.on_connect = self._on_connect
        overlay.on_disconnect = self._on_disconnect
        subscription = await overlay.subscribe(node.config.topic, self._validate)
        await overlay.push_identify()
        self._started = True
        node.spawn(self._consume(subscription), "exchange-gossip")
        node.spawn(self._fetcher(), "exchange-fetch")
        node.spawn(self._announcer(), "exchange-announce")
        node.spawn(self._provider(), "exchange-provide")
        node.spawn(self._periodic_sync(), "exchange-sync")
        node.spawn(self._discovery(), "exchange-discovery")
        node.spawn(self._provide_held(), "exchange-provide-held")

    async def stop(self) -> None:
        self._started = False
        if self.node.overlay is not None:
            self.node.overlay.on_connect = None
            self.node.overlay.on_disconnect = None

    # ---- status ------------------------------------------------------------------------------------

    async def status(self) -> JsonDict:
        forked = await self.storage.catalog.forked_publishers()
        c = self.counts
        return {
            "gossip": {"accepted": c["accepted"], "rejected": c["rejected"], "duplicate": c["duplicate"],
                       "fetched": c["gossip_fetched"]},
            "sync": {"runs": c["sync_runs"], "records": c["sync_records"], "failures": c["sync_failures"]},
            "retractions": {"applied": c["retractions_applied"], "refused": c["retractions_refused"],
                            "unknown_dataset": c["retractions_unknown"]},
            "forks": sorted(keys.peer_id(p) for p in forked),
        }

    def sources_of(self, manifest_id: bytes) -> set[str]:
        """Peers that announced holding every chunk of this manifest (its publisher, completed replicas)."""
        return set(self._sources.get(manifest_id, ()))

    # ---- announcements: the validator (runs inside libp2p, for every message, relayed or not) ----

    def _validate(self, data: bytes, sender: str) -> str | None:
        """The gossip topic validator. It runs in libp2p's thread (see protocol/overlay.py): it owns `_seen`,
        `_decoded` and `_warned`, bumps its own counters, and hands the rest to the loop."""
        own = sender == self.node.peer_id
        reason: str | None
        try:
            if len(data) > MAX_ANNOUNCE_BYTES:
                raise DecodeError(f"announcement is {len(data)} bytes, over {MAX_ANNOUNCE_BYTES}")
            ann = decode_gossip(data)  # an announcement or a retraction, by its type
            now = time.time()
            if isinstance(ann, Retraction):
                check_fresh_retraction(ann, int(now))
            else:
                check_fresh(ann, int(now))
        except SignatureError as exc:
            reason, detail = "bad-signature", str(exc)
        except StaleError as exc:
            reason, detail = "stale", str(exc)
        except RecordError as exc:
            reason, detail = ("too-large" if len(data) > MAX_ANNOUNCE_BYTES else "malformed"), str(exc)
        except Exception as exc:  # never let a validator bug take libp2p's task down
            reason, detail = "malformed", f"{type(exc).__name__}: {exc}"
        else:
            seen = self._seen.get(ann.id)
            if seen is not None and now - seen < ANNOUNCE_MAX_AGE:
                # A replay of an announcement already delivered (gossip itself never delivers one message
                # twice). py-libp2p has no "ignore" verdict: it is dropped as rejected, counted apart.
                self.counts["duplicate"] += 1
                self.node.metrics.messages.labels("duplicate", "replay").inc()
                return "replayed announcement"
            self._seen[ann.id] = now
            if len(self._seen) > 100_000:
                self._prune_seen(now)
            self._decoded[data] = ann
            while len(self._decoded) > 10_000:
                self._decoded.popitem(last=False)
            if not own:
                self.counts["accepted"] += 1
                self.node.metrics.messages.labels("accepted", "").inc()
                if self._loop is not None and isinstance(ann, Announcement):
                    self._loop.call_soon_threadsafe(self._expect, ann.manifest)
            return None
        self.counts["rejected"] += 1
        self.node.metrics.messages.labels("rejected", reason).inc()
        log.debug("rejected gossip message from %s: %s (%s)", sender, reason, detail)
        self._warn_rejected(sender, reason, detail)
        return reason

    def _prune_seen(self, now: float) -> None:
        self._seen = {k: t for k, t in self._seen.items() if now - t < ANNOUNCE_MAX_AGE}

    def _warn_rejected(self, peer: str, reason: str, detail: str) -> None:
        now = time.monotonic()
        last, count, _ = self._warned.get(peer, (0.0, 0, ""))
        count += 1
        if now - last >= REJECT_WARN_INTERVAL:
            log.warning("peer %s sent %d invalid announcement(s) (last: %s: %s)", peer, count, reason, detail)
            self._warned[peer] = (now, 0, reason)
        else:
            self._warned[peer] = (last, count, reason)

    # ---- announcements: what to do with an accepted one ---------------------------------------------

    def _expect(self, manifest_id: bytes) -> None:
        """Note that a fetch of this manifest will follow, so our server can make askers wait for it."""
        if manifest_id not in self._inflight:
            self._inflight[manifest_id] = (asyncio.Event(), time.monotonic())

    def _resolve(self, manifest_id: bytes) -> None:
        entry = self._inflight.pop(manifest_id, None)
        if entry is not None:
            entry[0].set()

    async def _wait_inflight(self, manifest_id: bytes) -> bool:
        entry = self._inflight.get(manifest_id)
        if entry is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(entry[0].wait(), INFLIGHT_WAIT)
            return True
        return False

    async def _consume(self, subscription: AsyncIterator[Message]) -> None:
        catalog = self.storage.catalog
        me = self.node.peer_id
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
            await self._retraction_received(msg.data, f"gossip from {msg.sender}")
            return
        node_peer = ann.node_peer_id
        if node_peer == me:
            return
        self._sources[ann.manifest].add(node_peer)
        try:
            known = await catalog.get_manifest(ann.manifest) is not None
        except Exception as exc:
            log.warning("catalog lookup failed for an announced manifest: %s", exc)
            known = False
        if known or ann.manifest in self._fetching:
            if known:
                self._resolve(ann.manifest)
                if ann.kind == "hold":
                    for poke in self.on_new_source:  # a new holder: a waiting replication may proceed
                        poke(ann.manifest)
            return
        peers = [p for p in dict.fromkeys([msg.sender, node_peer, msg.origin]) if p and p != me]
        self._fetching.add(ann.manifest)
        self._fetch_queue.put_nowait(_Fetch(ann, peers))

    async def _fetcher(self) -> None:
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
        overlay = self.node.overlay
        for peer in job.peers:
            if peer not in job.tried and overlay.is_connected(peer):
                return peer
        # every candidate tried once: start again from the first connected one
        for peer in job.peers:
            if overlay.is_connected(peer):
                job.tried.clear()
                return peer
        return None

    def _give_up(self, job: _Fetch) -> None:
        self._fetching.discard(job.ann.manifest)
        self._resolve(job.ann.manifest)
        log.debug("gave up fetching announced manifest %s; catalog sync will bring it",
                  cid_str(job.ann.manifest))

    async def _fetch_from(self, peer: str, jobs: list[_Fetch]) -> None:
        for job in jobs:
            job.tried.add(peer)
        try:
            assert self.manifest_client is not None
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
                facts = record_facts(raw)
                if (facts.dataset, facts.publisher, facts.seq, facts.size) != (
                        job.ann.dataset, job.ann.publisher, job.ann.seq, job.ann.size):
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
            self._resolve(job.ann.manifest)

    def _retry(self, job: _Fetch) -> None:
        if job.attempt >= len(FETCH_RETRY_DELAYS):
            self._give_up(job)
            return
        delay = FETCH_RETRY_DELAYS[job.attempt]
        job.attempt += 1
        assert self._loop is not None
        self._loop.call_later(delay, self._fetch_queue.put_nowait, job)

    # ---- announcing --------------------------------------------------------------------------------

    async def _published(self, manifest: Manifest) -> None:
        self._outbox.put_nowait(("publish", manifest))
        self._provide_queue.put_nowait(manifest.id)

    async def _completed(self, manifest: Manifest) -> None:
        if not isinstance(manifest, Manifest):
            return
        self._outbox.put_nowait(("hold", manifest))
        self._provide_queue.put_nowait(manifest.id)

    async def announce(self, kind: AnnounceKind, manifest: Manifest) -> None:
        """Sign and publish one announcement now (paced by the adapter)."""
        ann = Announcement.create(self.node.key, kind=kind, manifest=manifest, ts=int(time.time()))
        await self.node.overlay.publish(self.node.config.topic, ann.encode())

    async def _retracted_here(self, record: Retraction) -> None:
        """Gossip a retraction made here (catalog sync carries it to the nodes that miss it)."""
        try:
            await self.node.overlay.publish(self.node.config.topic, record.encode())
            self.counts["announced_retract"] += 1
        except Exception as exc:  # noqa: BLE001 - best effort: sync carries it
            log.warning("could not gossip the retraction of %s: %s (catalog sync will carry it)",
                        cid_str(record.dataset), exc)

    async def _retraction_received(self, raw: bytes, peer: str) -> bool:
        """Apply one retraction from a peer (`peer` says how: gossip or sync, and from whom); False when it
        does not apply here."""
        retractions = self.retractions
        try:
            held = await self.node.storage.catalog.retraction(Retraction.decode(raw, verify=False).dataset)
            if held == raw:
                return True  # already applied: no second signature check
            applied = await retractions.receive(raw, peer)
        except UnknownDataset:
            self.counts["retractions_unknown"] += 1  # not held here (yet): asked again at a later sync
            return False
        except RecordError as exc:
            log.info("retraction refused (%s): %s", peer, exc)
            self.counts["retractions_refused"] += 1
            return False
        if applied.retracted:
            self.counts["retractions_applied"] += 1
        return True

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
                await self._retraction_received(raw, f"catalog sync with {peer}")
            if len(raws) < wire.MAX_RETRACTIONS:
                return
            try:
                after = Retraction.decode(raws[-1], verify=False).dataset
            except RecordError as exc:
                raise ProtocolViolation(f"peer {peer} sent a malformed retraction: {exc}", peer) from None

    async def _announcer(self) -> None:
        """Publishes queued announcements in order; the adapter paces them so a burst is not dropped."""
        while True:
            kind, manifest = await self._outbox.get()
            try:
                await self.announce(kind, manifest)
                self.counts[f"announced_{kind}"] += 1
            except Exception as exc:
                log.warning("could not announce %s: %s (catalog sync will carry it)", manifest.cid, exc)

    async def _provider(self) -> None:
        """Provides one key at a time, at most PROVIDE_RATE per second: each is a DHT lookup plus messages
        to the closest peers, and a burst of publishes must not flood the DHT or this node's loop."""
        while True:
            manifest_id = await self._provide_queue.get()
            ok = await self.node.overlay.provide(provider_key(manifest_id))
            self.counts["provided" if ok else "provide_failed"] += 1
            await asyncio.sleep(1.0 / PROVIDE_RATE)

    async def _provide_held(self) -> None:
        """Provide again, after a restart, the manifests whose chunks this node holds."""
        if not self.node.config.dht:
            return
        await asyncio.sleep(2.0)
        catalog = self.storage.catalog
        held = [m for state in HELD for m in await catalog.list_manifests(state=state)]
        held.sort(key=lambda m: m.received_at, reverse=True)
        for info in held[:PROVIDE_AT_START]:
            self._provide_queue.put_nowait(info.id)

    # ---- finding holders -----------------------------------------------------------------------------

    async def find_sources(self, manifest: Manifest | bytes, *, dht_timeout: float = 10.0) -> list[str]:
        """Peers to fetch a manifest's chunks from, most likely first: those that announced holding it,
        then DHT providers, then connected Communs peers (who may hold it without having said so)."""
        manifest_id = manifest.id if isinstance(manifest, Manifest) else manifest
        me = self.node.peer_id
        out = list(self._sources.get(manifest_id, ()))
        if self.node.config.dht:
            for info in await self.node.overlay.find_providers(provider_key(manifest_id), timeout=dht_timeout):
                if info.peer_id != me:
                    out.append(info.peer_id)
                    self._sources[manifest_id].add(info.peer_id)
        for peer in self.node.overlay.peers():
            if wire.CHUNKS_PROTOCOL in peer.protocols:
                out.append(peer.peer_id)
        return [p for p in dict.fromkeys(out) if p != me]

    # ---- client API for the replication scheduler -------------------------------------------------

    async def fetch_manifests(self, peer: str, manifest_ids: Sequence[bytes]) -> list[bytes]:
        """The records `peer` holds among `manifest_ids` (each hashing to its id), in the order asked."""
        found = await fetch_manifests(self.node.overlay, peer, manifest_ids)
        return [found[m] for m in dict.fromkeys(manifest_ids) if m in found]

    def fetch_chunks(self, peer: str, chunk_ids: Sequence[bytes]) -> AsyncIterator[tuple[bytes, bytes | None]]:
        """Stream chunks from `peer`: `(id, verified bytes)` or `(id, None)` if it does not hold it.
        Raises ProtocolViolation (drop the peer as a source) or PeerUnavailable/PeerBusy (try later)."""
        return self._counted_chunks(peer, chunk_ids)

    async def _counted_chunks(self, peer: str, chunk_ids: Sequence[bytes]) \
            -> AsyncIterator[tuple[bytes, bytes | None]]:
        metrics = self.node.metrics
        async for cid, data in fetch_chunks(self.node.overlay, peer, chunk_ids):
            if data is not None:
                metrics.bytes_in.inc(len(data))
            yield cid, data

    # ---- catalog sync --------------------------------------------------------------------------------

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
        session = await SyncSession.open(self.node.overlay, peer)
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
            plan = plog.plan_session(local, remote, first=_own_key(peer), seed=os.urandom(8))
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
                        asked = r.last - r.first + 1
                        follow = None
                        if len(raws) < asked:
                            if raws and wire.answer_was_cut(got):  # the byte budget: ask on from there
                                follow = plog.SyncRange(r.publisher, r.first + len(raws), r.last)
                            else:  # the peer holds less than it advertised: go no further with it
                                stopped.add(r.publisher)
                                short += 1
                        if raws:
                            await queue.put((r if follow is None else
                                             plog.SyncRange(r.publisher, r.first, follow.first - 1), raws))
                        if short > SYNC_SHORT_ANSWERS:
                            cut.append(f"the peer served less than it advertised for {short} publishers")
                            await queue.put(None)
                            return
                        r = follow
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
                        self._resolve(facts_i.id)
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
                    sync_limits_sentence(peer, plan, cut, refused, len(refused_pubs)))
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

    async def _sync_guarded(self, peer: str, *, retries: Sequence[float] = ()) -> None:
        """One sync with `peer` at a time; failures are logged and retried on the given delays."""
        if peer in self._syncing:
            return
        self._syncing.add(peer)
        try:
            for delay in (0.0, *retries):
                if delay:
                    await asyncio.sleep(delay)
                if not self.node.overlay.is_connected(peer):
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

    def _protocols_of(self, peer: str) -> list[str]:
        return self.node.overlay.protocols_of(peer)

    def _on_connect(self, peer: str) -> None:
        """From libp2p's connection notifier: sync with the new peer (scheduled, never awaited here)."""
        if not self._started or self._loop is None:
            return
        self._loop.call_soon(self._spawn_connect, peer)

    def _on_disconnect(self, peer: str) -> None:
        if self.manifest_client is not None and self._loop is not None:
            self._loop.call_soon(self.manifest_client.drop, peer)

    def _spawn_connect(self, peer: str) -> None:
        if self._started:
            self.node.spawn(self._connected(peer), f"exchange-connect-{peer[-8:]}")

    async def _connected(self, peer: str) -> None:
        for _ in range(20):  # let identify tell us the peer's protocols and addresses (about 10 ms here)
            await asyncio.sleep(0.05)
            if self._protocols_of(peer):
                break
        await self.node.overlay.add_dht_peer(peer)
        if wire.CHUNKS_PROTOCOL in self._protocols_of(peer):
            for poke in self.on_new_source:  # a new Communs peer may hold what waits for a source
                poke(None)
        await self._sync_guarded(peer, retries=SYNC_RETRY)

    async def _periodic_sync(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL * random.uniform(0.8, 1.2))
            now = time.monotonic()
            candidates = []
            for peer in self.node.overlay.peer_ids():
                if now - self._not_communs.get(peer, -NOT_COMMUNS_TTL) < NOT_COMMUNS_TTL:
                    continue
                protocols = self._protocols_of(peer)
                if protocols and wire.SYNC_PROTOCOL not in protocols:
                    continue
                candidates.append(peer)
            random.shuffle(candidates)
            for peer in pick_sync_peers(candidates, self._last_sync, now, SYNC_INTERVAL / 2):
                await self._sync_guarded(peer)
            self._prune_inflight()

    def _prune_inflight(self) -> None:
        now = time.monotonic()
        for mid, (event, since) in list(self._inflight.items()):
            if now - since > 60.0:
                event.set()
                del self._inflight[mid]

    # ---- discovery -----------------------------------------------------------------------------------

    async def _discovery(self) -> None:
        """Dial peers learned from identify and the DHT until TARGET_PEERS are connected."""
        overlay = self.node.overlay
        me = self.node.peer_id
        while True:
            await asyncio.sleep(DISCOVERY_INTERVAL * random.uniform(0.8, 1.2))
            connected = {p.peer_id for p in overlay.peers()}
            if len(connected) >= TARGET_PEERS:
                continue
            now = time.monotonic()
            candidates = [p for p in overlay.known_peers()
                          if p.peer_id not in connected and p.peer_id != me
                          and self._dial_backoff.get(p.peer_id, (0.0, 0.0))[0] <= now]
            random.shuffle(candidates)
            for info in candidates[: max(0, min(2, TARGET_PEERS - len(connected)))]:
                await self._dial(info, now)

    async def _dial(self, info: PeerInfo, now: float) -> None:
        addrs = [a for a in info.addrs if "/tcp/" in a and not a.startswith("/ip4/0.0.0.0")]
        for addr in addrs:
            full = addr if "/p2p/" in addr else f"{addr}/p2p/{info.peer_id}"
            try:
                await self.node.overlay.connect(full)
            except Exception as exc:
                log.debug("discovery: could not dial %s: %s", full, exc)
                continue
            self._dial_backoff.pop(info.peer_id, None)
            log.info("discovery: connected to %s", info.peer_id)
            return
        _, backoff = self._dial_backoff.get(info.peer_id, (0.0, DIAL_BACKOFF_MIN / 2))
        backoff = min(backoff * 2, DIAL_BACKOFF_MAX)
        self._dial_backoff[info.peer_id] = (now + backoff * random.uniform(0.8, 1.2), backoff)
