"""Discovery: besides bootstrap peers (kept by the node) and mDNS (in the adapter), peers learned from
identify and the DHT (`overlay.known_peers()`) are dialled in the background until the node has
`TARGET_PEERS` connections. The decisions are in `dialplan.py`."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

from communs.node.exchange import dialplan

if TYPE_CHECKING:
    from communs.node.context import NodeContext
    from communs.protocol.net import PeerInfo

log = logging.getLogger("communs.exchange")

DISCOVERY_INTERVAL = 5.0


class Discovery:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self._dial_backoff: dict[str, dialplan.Backoff] = {}  # peer -> (next try, backoff)

    async def run(self) -> None:
        """Dial peers learned from identify and the DHT until TARGET_PEERS are connected."""
        overlay = self.ctx.overlay
        me = self.ctx.peer_id
        while True:
            await asyncio.sleep(DISCOVERY_INTERVAL * random.uniform(0.8, 1.2))
            connected = set(overlay.peer_ids())
            wanted = dialplan.dials_wanted(len(connected))
            if not wanted:
                continue
            now = time.monotonic()
            candidates = dialplan.dial_candidates(overlay.known_peers(), connected, me, self._dial_backoff, now)
            random.shuffle(candidates)
            for info in candidates[:wanted]:
                await self._dial(info, now)

    async def _dial(self, info: PeerInfo, now: float) -> None:
        for full in dialplan.dial_addrs(info):
            try:
                await self.ctx.overlay.connect(full)
            except Exception as exc:
                log.debug("discovery: could not dial %s: %s", full, exc)
                continue
            self._dial_backoff.pop(info.peer_id, None)
            log.info("discovery: connected to %s", info.peer_id)
            return
        self._dial_backoff[info.peer_id] = dialplan.after_failure(self._dial_backoff.get(info.peer_id), now,
                                                                  random.uniform(0.8, 1.2))
