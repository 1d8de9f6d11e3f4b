"""Pruning: the publisher's operator releases older versions of a dataset published here.

A replica releases versions beyond the voted `keep_versions` by itself (retention.py, `retired`); the
publisher's own node keeps every version of its own datasets, because it may be the last node holding
them, until its operator asks. `communs prune ID [--keep N]` (`POST /api/v1/datasets/{id}/prune`) is
that request: the pure `retention.prune_own` decides which versions go, this service marks them
`not-wanted` with the reason in one catalog transaction and hands them to the datasets service's
`on_unwanted` hooks, the path every release takes (replication stops any fetch and collects the chunks
no kept manifest uses; a crash in between is finished at the next start by the same collection).

It changes this node only: nothing is signed or sent. Peers keep or release those versions under their
own voted policy, and the manifests stay known everywhere (a replica may still serve them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from communs.node.services.datasets import DatasetsService
from communs.node.services.retention import OwnVersion, Pruning, prune_own
from communs.node.services.storage import StorageService
from communs.protocol import ids, keys
from communs.storage.states import State

log = logging.getLogger("communs.prune")


@dataclass(frozen=True)
class Pruned:
    """What a prune did: the decision, the dataset, and the bytes the store holds after it."""

    dataset: bytes
    pruning: Pruning
    store_bytes: int


class PruneService:
    def __init__(self, storage: StorageService, datasets: DatasetsService, key: keys.SigningKey) -> None:
        self.storage = storage
        self.datasets = datasets
        self.key = key

    async def prune(self, dataset: bytes, keep: int | None) -> Pruned:
        """Release the versions of `dataset` (published here) older than the latest `keep` (None: the policy's
        keep_versions); retention.PruneRefused with one sentence when it cannot be done."""
        catalog = self.storage.catalog
        infos = await catalog.list_manifests(dataset=dataset)
        pruning = prune_own([OwnVersion(i.id, i.version, i.own and i.publisher == self.key.public, i.state)
                             for i in infos], keep, self.datasets.policy().keep_versions)
        if pruning.release:
            await catalog.set_states([(mid, State.NOT_WANTED, why) for mid, why in pruning.release.items()])
            log.info("dataset %s: %d older version(s) released at the operator's request (keeping the latest %d)",
                     ids.cid_str(dataset), len(pruning.release), pruning.keep)
            for cb in self.datasets.on_unwanted:
                await cb(list(pruning.release))
        return Pruned(dataset, pruning, await catalog.used_bytes())
