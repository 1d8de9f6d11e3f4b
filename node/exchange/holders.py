"""Who holds a manifest's chunks: peers that announced holding them, DHT provider records (those this node
puts for what it holds, and those it looks up), and connected Communs peers as a last resort.

DHT keys are `dhtkeys.provider_key(manifest id)`. Providing is paced (PROVIDE_RATE) and done again for the
most recent held manifests after a restart (py-libp2p keeps no provider records across runs).
"""

from __future__ import annotations

import asyncio
import collections
from typing import TYPE_CHECKING

from communs.node.exchange.dhtkeys import provider_key
from communs.protocol import wire
from communs.protocol.records import Manifest
from communs.storage.states import HELD

if TYPE_CHECKING:
    from communs.node.context import NodeContext
    from communs.node.services.storage import StorageService

PROVIDE_AT_START = 256  # most recent held manifests provided again at start (py-libp2p keeps none)
PROVIDE_RATE = 20.0  # DHT provides per second at most


class Holders:
    def __init__(self, ctx: NodeContext, storage: StorageService, counts: collections.Counter[str]) -> None:
        self.ctx = ctx
        self.storage = storage
        self.counts = counts
        self._sources: dict[bytes, set[str]] = collections.defaultdict(set)
        self._provide_queue: asyncio.Queue[bytes] = asyncio.Queue()

    def announced(self, manifest_id: bytes, peer: str) -> None:
        """`peer` said (on gossip) that it holds this manifest's chunks."""
        self._sources[manifest_id].add(peer)

    def sources_of(self, manifest_id: bytes) -> set[str]:
        """Peers that announced holding every chunk of this manifest (its publisher, completed replicas)."""
        return set(self._sources.get(manifest_id, ()))

    def provide(self, manifest_id: bytes) -> None:
        """Provide this manifest's key on the DHT (queued: see `run_provider`)."""
        self._provide_queue.put_nowait(manifest_id)

    async def run_provider(self) -> None:
        """Provides one key at a time, at most PROVIDE_RATE per second: each is a DHT lookup plus messages
        to the closest peers, and a burst of publishes must not flood the DHT or this node's loop."""
        while True:
            manifest_id = await self._provide_queue.get()
            ok = await self.ctx.overlay.provide(provider_key(manifest_id))
            self.counts["provided" if ok else "provide_failed"] += 1
            await asyncio.sleep(1.0 / PROVIDE_RATE)

    async def provide_held(self) -> None:
        """Provide again, after a restart, the manifests whose chunks this node holds."""
        if not self.ctx.config.dht:
            return
        await asyncio.sleep(2.0)
        catalog = self.storage.catalog
        held = [m for state in HELD for m in await catalog.list_manifests(state=state)]
        held.sort(key=lambda m: m.received_at, reverse=True)
        for info in held[:PROVIDE_AT_START]:
            self._provide_queue.put_nowait(info.id)

    async def find_sources(self, manifest: Manifest | bytes, *, dht_timeout: float = 10.0) -> list[str]:
        """Peers to fetch a manifest's chunks from, most likely first: those that announced holding it,
        then DHT providers, then connected Communs peers (who may hold it without having said so)."""
        manifest_id = manifest.id if isinstance(manifest, Manifest) else manifest
        me = self.ctx.peer_id
        out = list(self._sources.get(manifest_id, ()))
        if self.ctx.config.dht:
            for info in await self.ctx.overlay.find_providers(provider_key(manifest_id), timeout=dht_timeout):
                if info.peer_id != me:
                    out.append(info.peer_id)
                    self._sources[manifest_id].add(info.peer_id)
        for peer in self.ctx.overlay.peers():
            if wire.CHUNKS_PROTOCOL in peer.protocols:
                out.append(peer.peer_id)
        return [p for p in dict.fromkeys(out) if p != me]
