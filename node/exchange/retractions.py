"""Retractions that arrive from peers (on gossip, or in a catalog sync session), handed to the retraction
service; counted for the exchange's status."""

from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING

from communs.protocol.errors import RecordError
from communs.protocol.retraction import Retraction, UnknownDataset

if TYPE_CHECKING:
    from communs.node.services.retraction import RetractionService
    from communs.node.services.storage import StorageService

log = logging.getLogger("communs.exchange")


class RetractionIntake:
    def __init__(self, storage: StorageService, retractions: RetractionService,
                 counts: collections.Counter[str]) -> None:
        self.storage = storage
        self.retractions = retractions
        self.counts = counts

    async def received(self, raw: bytes, peer: str) -> bool:
        """Apply one retraction from a peer (`peer` says how: gossip or sync, and from whom); False when it
        does not apply here."""
        retractions = self.retractions
        try:
            held = await self.storage.catalog.retraction(Retraction.decode(raw, verify=False).dataset)
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
