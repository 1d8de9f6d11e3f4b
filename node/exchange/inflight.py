"""Manifests announced on gossip and being fetched here: a peer asking this node for one waits a moment.

A node that accepts an announcement relays it and then fetches the manifest; its neighbours, which got
the announcement from it, ask it for the manifest at once. So the stream server asks `wait` before it
answers not-found, and gossip (`expect`, when an announcement is accepted) and the fetchers and catalog
sync (`resolve`, when the manifest is stored or given up) keep the list. Loop thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

INFLIGHT_WAIT = 3.0  # a manifest request for a record being fetched here waits at most this long
INFLIGHT_MAX_AGE = 60.0  # an entry nobody resolved is dropped (and its waiters released) after this long


class Inflight:
    def __init__(self) -> None:
        self._inflight: dict[bytes, tuple[asyncio.Event, float]] = {}

    def expect(self, manifest_id: bytes) -> None:
        """Note that a fetch of this manifest will follow, so our server can make askers wait for it."""
        if manifest_id not in self._inflight:
            self._inflight[manifest_id] = (asyncio.Event(), time.monotonic())

    def resolve(self, manifest_id: bytes) -> None:
        entry = self._inflight.pop(manifest_id, None)
        if entry is not None:
            entry[0].set()

    async def wait(self, manifest_id: bytes) -> bool:
        entry = self._inflight.get(manifest_id)
        if entry is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(entry[0].wait(), INFLIGHT_WAIT)
            return True
        return False

    def prune(self) -> None:
        now = time.monotonic()
        for mid, (event, since) in list(self._inflight.items()):
            if now - since > INFLIGHT_MAX_AGE:
                event.set()
                del self._inflight[mid]
