"""Which connected peers a node syncs its catalog with on each periodic round (pure).

Catalog sync is the guarantee behind gossip: a record any peer holds reaches this node at the latest on
a later round. Syncing with *every* connected peer each round made the cost per node grow with its
connections, and in a federation where the DHT's lookups leave every node connected to most others,
with the size of the federation (a 50-node federation: 49 syncs initiated and 49 served per node every
45 s). Anti-entropy does not need that: syncing with a few peers each round, those synced longest ago
first, still reaches every peer in turn and spreads a record through the federation in a few rounds
(each round multiplies the nodes holding it), while the work per node stays bounded. New connections
are still synced at once (ExchangeService._connected), so a joining node catches up in its first seconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

PEERS_PER_ROUND = 4  # periodic syncs a node starts per round, whatever its number of connections


def pick_sync_peers(peers: Sequence[str], last_sync: Mapping[str, float], now: float, min_gap: float,
                    limit: int = PEERS_PER_ROUND) -> list[str]:
    """At most `limit` of `peers` to sync with now: never one synced less than `min_gap` seconds ago,
    never-synced peers first, then the longest ago; ties keep the order of `peers` (the caller shuffles it
    if it wants no preference)."""
    due = [p for p in dict.fromkeys(peers) if p not in last_sync or now - last_sync[p] >= min_gap]
    due.sort(key=lambda p: last_sync.get(p, float("-inf")))
    return due[:max(0, limit)]
