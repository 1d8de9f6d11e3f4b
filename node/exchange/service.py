"""Exchange: how a manifest reaches every node, wired from its parts.

- `gossip.py`: announcements and retractions on the federation's topic, the topic validator, fetching
  announced manifests (the fast path);
- `sync.py`: catalog sync on every new connection and every `SYNC_INTERVAL` seconds (the guarantee);
- `holders.py`: who holds a manifest's chunks (announced holders, DHT provider records);
- `discovery.py`: dialling peers learned from identify and the DHT;
- `server.py` / `client.py`: the stream protocols; `inflight.py`: manifests being fetched here, which the
  server makes askers wait for; `retractions.py`: retractions from peers.

`ExchangeService` builds them, starts their loops when libp2p listens, and is what the rest of the node
calls (status, finding sources, announcing). Each part's decisions are pure functions in `gossiprules.py`,
`syncplan.py`, `dialplan.py`, `dhtkeys.py` and `facts.py`.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from communs.node.exchange.client import fetch_chunks, fetch_manifests
from communs.node.exchange.discovery import Discovery
from communs.node.exchange.gossip import Gossip, NewSource
from communs.node.exchange.govserver import GovernanceServer
from communs.node.exchange.holders import Holders
from communs.node.exchange.inflight import Inflight
from communs.node.exchange.retractions import RetractionIntake
from communs.node.exchange.server import StreamServer
from communs.node.exchange.sync import CatalogSync
from communs.node.jsondoc import JsonDict
from communs.protocol import keys
from communs.protocol.govwire import PeerRate
from communs.protocol.records import AnnounceKind, Manifest

if TYPE_CHECKING:
    from communs.node.context import NodeContext
    from communs.node.services.datasets import DatasetsService
    from communs.node.services.governance import GovernanceService
    from communs.node.services.retraction import RetractionService
    from communs.node.services.storage import StorageService


class ExchangeService:
    def __init__(self, ctx: NodeContext, storage: StorageService, governance: GovernanceService,
                 datasets: DatasetsService, retractions: RetractionService) -> None:
        self.ctx = ctx
        self.storage = storage
        self.governance = governance
        self.datasets = datasets
        self.retractions = retractions
        # Called when a peer that may hold wanted data appears, with the manifest it announced holding (or None
        # for a new peer); the composition root wires replication here.
        self.on_new_source: list[NewSource] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.inflight = Inflight()
        self.holders = Holders(ctx, storage, self.counts)
        intake = RetractionIntake(storage, retractions, self.counts)
        self.gossip = Gossip(ctx, storage, datasets, self.holders, self.inflight, intake, self.counts,
                             self.on_new_source)
        self.sync = CatalogSync(ctx, storage, datasets, self.inflight, intake, self.counts, self.on_new_source)
        self.discovery = Discovery(ctx)
        self.server: StreamServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.gossip.bind(self._loop)
        self.datasets.on_published.append(self.gossip.published)
        self.datasets.on_complete.append(self.gossip.completed)
        self.retractions.on_retracted.append(self.gossip.retracted_here)

    async def overlay_ready(self) -> None:
        ctx, overlay = self.ctx, self.ctx.overlay
        storage = self.storage
        self.server = StreamServer(storage.catalog, storage.chunks, ctx.metrics, wait_inflight=self.inflight.wait,
                                   upload=ctx.bandwidth.upload)
        self.server.register(overlay)
        # members' /communs/governance/1 (exchange/govserver.py)
        rate = PeerRate(ctx.config.gov_reads_per_minute, ctx.config.gov_submits_per_minute)
        GovernanceServer(self.governance, ctx.metrics, rate=rate).register(overlay)
        overlay.on_connect = self._on_connect
        overlay.on_disconnect = self._on_disconnect
        subscription = await overlay.subscribe(ctx.config.topic, self.gossip.validate)
        await overlay.push_identify()
        self._started = True
        ctx.spawn(self.gossip.consume(subscription), "exchange-gossip")
        ctx.spawn(self.gossip.run_fetcher(), "exchange-fetch")
        ctx.spawn(self.gossip.run_announcer(), "exchange-announce")
        ctx.spawn(self.holders.run_provider(), "exchange-provide")
        ctx.spawn(self.sync.run_periodic(), "exchange-sync")
        ctx.spawn(self.discovery.run(), "exchange-discovery")
        ctx.spawn(self.holders.provide_held(), "exchange-provide-held")

    async def stop(self) -> None:
        self._started = False
        if self.ctx.overlay is not None:
            self.ctx.overlay.on_connect = None
            self.ctx.overlay.on_disconnect = None

    # ---- connections (libp2p's notifier calls these in its thread) ------------------------------------

    def _on_connect(self, peer: str) -> None:
        """From libp2p's connection notifier: sync with the new peer (scheduled, never awaited here)."""
        if not self._started or self._loop is None:
            return
        self._loop.call_soon(self._spawn_connect, peer)

    def _on_disconnect(self, peer: str) -> None:
        if self._loop is not None:
            self._loop.call_soon(self.gossip.peer_gone, peer)

    def _spawn_connect(self, peer: str) -> None:
        if self._started:
            self.ctx.spawn(self.sync.connected(peer), f"exchange-connect-{peer[-8:]}")

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

    # ---- what the rest of the node asks of the exchange -------------------------------------------------

    def sources_of(self, manifest_id: bytes) -> set[str]:
        """Peers that announced holding every chunk of this manifest (its publisher, completed replicas)."""
        return self.holders.sources_of(manifest_id)

    async def find_sources(self, manifest: Manifest | bytes, *, dht_timeout: float = 10.0) -> list[str]:
        """Peers to fetch a manifest's chunks from, most likely first (`Holders.find_sources`)."""
        return await self.holders.find_sources(manifest, dht_timeout=dht_timeout)

    async def announce(self, kind: AnnounceKind, manifest: Manifest) -> None:
        """Sign and publish one announcement now (paced by the adapter)."""
        await self.gossip.announce(kind, manifest)

    def catalog_synced(self, peer: str) -> bool:
        """A catalog sync with `peer` has ended and none runs now (`CatalogSync.synced_once`)."""
        return self.sync.synced_once(peer)

    async def sync_with(self, peer: str) -> int:
        """One catalog sync session with `peer` (`CatalogSync.sync_with`); how many records were new."""
        return await self.sync.sync_with(peer)

    async def fetch_manifests(self, peer: str, manifest_ids: Sequence[bytes]) -> list[bytes]:
        """The records `peer` holds among `manifest_ids` (each hashing to its id), in the order asked."""
        found = await fetch_manifests(self.ctx.overlay, peer, manifest_ids)
        return [found[m] for m in dict.fromkeys(manifest_ids) if m in found]

    def fetch_chunks(self, peer: str, chunk_ids: Sequence[bytes]) -> AsyncIterator[tuple[bytes, bytes | None]]:
        """Stream chunks from `peer`: `(id, verified bytes)` or `(id, None)` if it does not hold it.
        Raises ProtocolViolation (drop the peer as a source) or PeerUnavailable/PeerBusy (try later)."""
        return self._counted_chunks(peer, chunk_ids)

    async def _counted_chunks(self, peer: str, chunk_ids: Sequence[bytes]) \
            -> AsyncIterator[tuple[bytes, bytes | None]]:
        metrics = self.ctx.metrics
        async for cid, data in fetch_chunks(self.ctx.overlay, peer, chunk_ids):
            if data is not None:
                metrics.bytes_in.inc(len(data))
            yield cid, data
