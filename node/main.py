"""Which services a node runs, in start order.

Each service has async `start()`/`stop()`, and may have `overlay_ready()` (called once libp2p
listens), `status() -> dict` (merged into `/api/v1/status`) and `refresh_metrics()`. Services
find each other through the node's attributes (`node.storage`, `node.governance`, ...), set in
their constructors, so the order here is the only dependency graph to read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from communs.node.node import Node


def build_services(node: Node) -> list[Any]:
    from communs.node.exchange.service import ExchangeService
    from communs.node.services.copies import CopiesService
    from communs.node.services.datasets import DatasetsService
    from communs.node.services.governance import GovernanceService
    from communs.node.services.replication import ReplicationService
    from communs.node.services.storage import StorageService

    return [
        StorageService(node),      # node.storage: catalog + chunk store
        GovernanceService(node),   # node.governance: roster, proposals, policy in force
        DatasetsService(node),     # node.datasets: publish, list, get, verify, states
        ExchangeService(node),     # node.exchange: gossip announcements, stream protocols, sync
        ReplicationService(node),  # node.replication: fetch what the policy wants
        CopiesService(node),       # node.copies: holding claims, proof of holding, min_copies
    ]
