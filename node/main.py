"""The composition root: which services a node runs, what each is given, and how they hear of each other.

Every service gets its collaborators, typed, in its constructor; a service that must hear of something a
later one does (replication, when a peer that may hold wanted data appears) is told through a typed
callback wired here. So this function is the only dependency graph to read, and the order of `Services`
is the start order (stop runs it backwards).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from communs.node.context import NodeContext
from communs.node.exchange.service import ExchangeService
from communs.node.jsondoc import JsonDict
from communs.node.services.copies import CopiesService
from communs.node.services.dataset_verify import Verifications
from communs.node.services.datasets import DatasetsService
from communs.node.services.gov_submit import Submissions
from communs.node.services.governance import GovernanceService
from communs.node.services.prune import PruneService
from communs.node.services.replication import ReplicationService
from communs.node.services.retraction import RetractionService
from communs.node.services.storage import StorageService

if TYPE_CHECKING:
    from communs.node.node import Node


class Service(Protocol):
    """What the node's lifecycle calls on every service."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class Services:
    """The node's services, in start order."""

    storage: StorageService      # catalog + chunk store
    governance: GovernanceService  # roster, proposals, policy in force
    datasets: DatasetsService    # publish, list, get, verify, states
    retractions: RetractionService  # withdrawing own datasets, applying others' withdrawals
    exchange: ExchangeService    # gossip announcements, stream protocols, catalog sync
    replication: ReplicationService  # fetch what the policy wants
    copies: CopiesService  # holding claims, proof of holding, min_copies
    prune: PruneService  # the operator releases older versions of own datasets (no lifecycle of its own)
    verifications: Verifications  # re-hashing one dataset's stored chunks on request (no start or stop)

    def in_start_order(self) -> list[Service]:
        return [self.storage, self.governance, self.datasets, self.retractions, self.exchange, self.replication,
                self.copies]

    async def overlay_ready(self) -> None:
        """libp2p listens: serve the stream protocols, then start fetching."""
        await self.exchange.overlay_ready()
        await self.replication.overlay_ready()
        await self.copies.overlay_ready()

    async def status(self) -> JsonDict:
        """What each service adds to /api/v1/status."""
        doc: JsonDict = {}
        for part in (self.storage.status, self.governance.status, self.datasets.status, self.exchange.status,
                     self.replication.status, self.copies.status):
            doc.update(await part())
        return doc

    async def refresh_metrics(self) -> None:
        await self.datasets.refresh_metrics()
        await self.copies.refresh_metrics()


def context_of(node: Node) -> NodeContext:
    """What the services may use of the running node (its overlay is built, not yet started)."""
    return NodeContext(root=node.root, key=node.key, config=node.config, metrics=node.metrics, overlay=node.overlay,
                       spawn=node.spawn, bandwidth=node.bandwidth)


def build_services(node: Node) -> Services:
    ctx = context_of(node)  # the only thing of the node the services get
    storage = StorageService(ctx)
    governance = GovernanceService(ctx, storage)
    governance.submissions = Submissions(governance)  # members' signed records by any route, with receipts
    datasets = DatasetsService(ctx, storage, governance)
    retractions = RetractionService(storage, datasets, ctx.key)  # before the exchange, which gossips them
    exchange = ExchangeService(ctx, storage, governance, datasets, retractions)
    replication = ReplicationService(ctx, storage, datasets, exchange)
    exchange.on_new_source.append(replication.poke)
    copies = CopiesService(ctx, storage, governance, datasets, replication, exchange.catalog_synced)
    prune = PruneService(storage, datasets, ctx.key)
    verifications = Verifications(ctx, storage, replication.poke)
    return Services(storage, governance, datasets, retractions, exchange, replication, copies, prune,
                    verifications)
