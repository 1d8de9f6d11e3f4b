"""Retractions: withdrawing a dataset published here, and applying the retractions of other publishers.

A retraction (protocol/retraction.py) is verified, checked against the publisher the dataset is bound
to here, stored and applied in one catalog transaction (every held version becomes `retracted`), then
the chunks no kept dataset uses are released, unless the policy in force says `keep_retracted = true`
(replication's garbage collection keeps the chunks of retracted versions then). Manifests of a
retracted dataset that arrive later are stored `retracted` at once (datasets.py).

Retractions made here are handed to `on_retracted` (the exchange gossips them); those of other
publishers arrive from the exchange (gossip, and the `retractions` request of catalog sync).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from communs.node.services.datasets import DatasetsService
from communs.node.services.storage import StorageService
from communs.protocol import ids, keys
from communs.protocol.errors import RecordError
from communs.protocol.retraction import MAX_REASON_CHARS, Retraction, check_applies
from communs.protocol.signed import check_line
from communs.storage.catalog import RETRACTED

log = logging.getLogger("communs.retraction")


class RetractError(Exception):
    """The retraction asked for here cannot be made; one sentence says why. `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Applied:
    """What a retraction did here: the manifests it marked retracted (none when it was already applied)."""

    retraction: Retraction
    retracted: tuple[bytes, ...]


class RetractionService:
    def __init__(self, storage: StorageService, datasets: DatasetsService, key: keys.SigningKey) -> None:
        self.storage = storage
        self.datasets = datasets
        self.key = key
        self.on_retracted: list[Callable[[Retraction], Awaitable[None]]] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def retract(self, any_id: bytes, reason: str = "") -> Applied:
        """Withdraw the dataset `any_id` names (a dataset id, or the manifest id of one of its versions).
        Only this node's own datasets can be withdrawn here."""
        try:
            check_line("retraction", "reason", reason, 0, MAX_REASON_CHARS)
        except RecordError as exc:
            raise RetractError(str(exc)) from None
        catalog = self.storage.catalog
        info = await catalog.get_manifest(any_id)
        dataset = info.dataset if info is not None else any_id
        latest = await catalog.latest_version(dataset)
        if latest is None:
            raise RetractError("no dataset or manifest with that id is known here", 404)
        if latest.publisher != self.key.public:
            raise RetractError("that dataset was published by another node; only its publisher can retract it",
                               403)
        held = await catalog.retraction(dataset)
        if held is not None:
            return Applied(Retraction.decode(held, verify=False), ())
        try:
            record = Retraction.create(self.key, dataset=dataset, reason=reason, created=int(time.time()))
        except RecordError as exc:
            raise RetractError(str(exc)) from None
        applied = await self._apply(record)
        for cb in self.on_retracted:
            try:
                await cb(record)
            except Exception as exc:  # noqa: BLE001 - gossip is best effort; catalog sync carries it too
                log.warning("after retracting %s: %s", ids.cid_str(dataset), exc)
        return applied

    async def receive(self, raw: bytes, source: str | None) -> Applied:
        """A retraction from a peer: RecordError (with its reason) unless it is valid and applies here
        (UnknownDataset when its dataset is not held here). The signature is checked last: most retractions
        a sync brings are of datasets this node does not hold."""
        claimed = Retraction.decode(raw, verify=False)
        owners = dict(await self.storage.catalog.dataset_publishers([claimed.dataset]))
        check_applies(claimed, owners.get(claimed.dataset))
        record = Retraction.decode(raw)
        applied = await self._apply(record)
        if applied.retracted:
            log.info("dataset %s retracted by its publisher %s (by %s): %d version(s)",
                     ids.cid_str(record.dataset), keys.peer_id(record.publisher), source or "here",
                     len(applied.retracted))
        return applied

    async def _apply(self, record: Retraction) -> Applied:
        reason = "retracted by its publisher" + (f": {record.reason}" if record.reason else "")
        changed = await self.storage.catalog.put_retraction(record.dataset, record.publisher, record.encode(),
                                                            reason)
        if changed:
            # Fetches of these versions stop, and their chunks go unless the policy keeps retracted data.
            for cb in self.datasets.on_unwanted:
                await cb(changed)
        return Applied(record, tuple(changed))


__all__ = ["RETRACTED", "Applied", "RetractError", "RetractionService"]
