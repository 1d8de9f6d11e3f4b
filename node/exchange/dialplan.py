"""Discovery's decisions (pure): which known peers to dial, at which addresses, and how long to leave one
that could not be reached. `node/exchange/discovery.py` dials."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from communs.protocol.net import PeerInfo

TARGET_PEERS = 8  # discovery dials known peers until this many are connected
DIALS_PER_ROUND = 2
DIAL_BACKOFF_MIN, DIAL_BACKOFF_MAX = 30.0, 1800.0

Backoff = tuple[float, float]  # (monotonic time of the next try, the backoff that led to it)


def dials_wanted(connected: int) -> int:
    """How many peers to dial this round, with `connected` peers connected."""
    return max(0, min(DIALS_PER_ROUND, TARGET_PEERS - connected))


def dial_candidates(known: Iterable[PeerInfo], connected: set[str], me: str, backoff: Mapping[str, Backoff],
                    now: float) -> list[PeerInfo]:
    """Known peers worth a dial now: not connected, not this node, not backing off."""
    return [p for p in known
            if p.peer_id not in connected and p.peer_id != me and backoff.get(p.peer_id, (0.0, 0.0))[0] <= now]


def dial_addrs(info: PeerInfo) -> list[str]:
    """The addresses to dial a peer at, in order, with its peer id: TCP ones, and no wildcard."""
    addrs = [a for a in info.addrs if "/tcp/" in a and not a.startswith("/ip4/0.0.0.0")]
    return [addr if "/p2p/" in addr else f"{addr}/p2p/{info.peer_id}" for addr in addrs]


def after_failure(previous: Backoff | None, now: float, jitter: float) -> Backoff:
    """The backoff after a peer could not be reached at any address: doubled from the last one (from
    DIAL_BACKOFF_MIN at first), at most DIAL_BACKOFF_MAX; `jitter` (about 0.8 to 1.2) spreads the next try."""
    _, backoff = previous if previous is not None else (0.0, DIAL_BACKOFF_MIN / 2)
    backoff = min(backoff * 2, DIAL_BACKOFF_MAX)
    return now + backoff * jitter, backoff
