"""Quotas on what peers can make this node store in its catalog: pure decisions over plain numbers.

A valid manifest costs whoever stores it: its record (up to `records.MAX_MANIFEST_BYTES`), a packed
chunk list, and, when the policy wants the dataset, a row per chunk. Keys are free to make, so a peer can
sign as many valid manifests as it likes; issue 12 measured 100 manifests of 1 MiB taking a node to
1.2 GB of memory and a 1.38 GB catalog. Three bounds, each far above what an honest federation reaches
(100,000 manifests of 50 publishers, about 600 bytes and six chunk references each, see
scripts/bench/sync.py), apply to every manifest received from a peer (catalog sync and gossip fetches):

- per publisher key, in total: how many records, bytes of records and chunk references it may have here;
- per peer, over a sliding window: how much that peer may bring here, whoever signed it;
- per node: the catalog counts against the policy's storage quota, with the chunks held.

A refused record is not an offence: it is not stored, and catalog sync asks for it again later (when
the window has moved, or the quota was raised). The node's own records are never refused here.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from communs.protocol import keys

MiB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    """An amount of catalog content: records, bytes of records, chunk references."""

    records: int = 0
    bytes: int = 0
    chunk_refs: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.records + other.records, self.bytes + other.bytes, self.chunk_refs + other.chunk_refs)


@dataclass(frozen=True)
class Quota:
    """The most of each that one holder (a publisher key, or a peer within the window) may bring."""

    records: int
    bytes: int
    chunk_refs: int

    def excess(self, usage: Usage) -> str | None:
        """Which limit `usage` goes over, in words, or None."""
        if usage.records > self.records:
            return f"{self.records} records"
        if usage.bytes > self.bytes:
            return f"{self.bytes // MiB} MiB of records"
        if usage.chunk_refs > self.chunk_refs:
            return f"{self.chunk_refs} chunk references"
        return None


PUBLISHER_QUOTA = Quota(records=100_000, bytes=256 * MiB, chunk_refs=4_000_000)
PEER_QUOTA = Quota(records=200_000, bytes=128 * MiB, chunk_refs=1_000_000)
PEER_WINDOW = 3600.0  # seconds over which PEER_QUOTA applies
# Catalog bytes a chunk reference costs: 40 packed, and for a wanted dataset a chunk row and a manifest-chunk
# row with their indexes (measured: about 260 in all).
CATALOG_BYTES_PER_REF = 300


PEER_OVER = "the peer reached its quota of"
STORAGE_OVER = "the catalog and the chunks held reached the storage quota"


def ends_session(reason: str) -> bool:
    """Whether a refusal applies to everything else the peer could send now (its own quota, or the node's
    storage quota), so that a sync session should stop asking rather than fetch records to refuse."""
    return reason.startswith((PEER_OVER, STORAGE_OVER))


def catalog_cost(record_bytes: int, chunk_refs: int) -> int:
    """The catalog bytes one record is estimated to take, for the storage quota."""
    return record_bytes + chunk_refs * CATALOG_BYTES_PER_REF


@dataclass(frozen=True)
class Candidate:
    """A verified record offered by a peer, as the quotas see it."""

    publisher: bytes
    bytes: int
    chunk_refs: int

    @property
    def usage(self) -> Usage:
        return Usage(1, self.bytes, self.chunk_refs)


def admit(
    candidates: Sequence[Candidate],
    *,
    publishers: Mapping[bytes, Usage],
    peer: Usage | None,
    storage_left: int | None,
    exempt: bytes | None = None,
    publisher_quota: Quota = PUBLISHER_QUOTA,
    peer_quota: Quota = PEER_QUOTA,
) -> list[str | None]:
    """For each candidate, in order: None if it may be stored, else why not (one clause).

    `publishers` is what each publisher already has here, `peer` what the sending peer brought within the
    window (None: not from a peer), `storage_left` the bytes left under the storage quota (None: no
    quota). Admitted candidates count against the limits of those after them; records of `exempt` (this
    node's own key) are always admitted and count against nothing.
    """
    if _all_fit(candidates, publishers, peer, storage_left, exempt, publisher_quota, peer_quota):
        return [None] * len(candidates)  # the common case, decided on batch totals: no per-record objects
    used = dict(publishers)
    peer_used = peer
    left = storage_left
    refused: dict[bytes, str] = {}  # once a publisher's record is refused, its later ones are too (no gaps)
    out: list[str | None] = []
    for c in candidates:
        if c.publisher == exempt:
            out.append(None)
            continue
        why = refused.get(c.publisher)
        pub_next = used.get(c.publisher, Usage()) + c.usage
        peer_next = peer_used + c.usage if peer_used is not None else None
        cost = catalog_cost(c.bytes, c.chunk_refs)
        if why is None and (over := publisher_quota.excess(pub_next)) is not None:
            why = f"publisher {keys.peer_id(c.publisher)} reached its quota of {over} here"
        if why is None and peer_next is not None and (over := peer_quota.excess(peer_next)) is not None:
            why = f"{PEER_OVER} {over} per {PEER_WINDOW / 3600:.0f} h"
        if why is None and left is not None and cost > left:
            why = STORAGE_OVER
        if why is not None:
            refused[c.publisher] = why
            out.append(why)
            continue
        used[c.publisher] = pub_next
        peer_used = peer_next
        if left is not None:
            left -= cost
        out.append(None)
    return out


class PeerLedger:
    """What each peer brought into the catalog over the last `window` seconds, in `buckets` time slices.

    Memory is bounded: at most `max_peers` peers are remembered (the least recently active are forgotten
    first, which only lets a forgotten peer start a fresh window).
    """

    def __init__(self, window: float = PEER_WINDOW, buckets: int = 60, max_peers: int = 4096) -> None:
        if window <= 0 or buckets < 1 or max_peers < 1:
            raise ValueError("window, buckets and max_peers must be positive")
        self.slice = window / buckets
        self.buckets = buckets
        self.max_peers = max_peers
        self._peers: collections.OrderedDict[str, collections.deque[tuple[int, Usage]]] = collections.OrderedDict()

    def _prune(self, slices: collections.deque[tuple[int, Usage]], now: float) -> None:
        oldest = int(now // self.slice) - self.buckets + 1
        while slices and slices[0][0] < oldest:
            slices.popleft()

    def usage(self, peer: str, now: float) -> Usage:
        slices = self._peers.get(peer)
        if slices is None:
            return Usage()
        self._prune(slices, now)
        total = Usage()
        for _, u in slices:
            total = total + u
        return total

    def add(self, peer: str, usage: Usage, now: float) -> None:
        if usage == Usage():
            return
        slices = self._peers.pop(peer, None) or collections.deque()
        self._prune(slices, now)
        index = int(now // self.slice)
        if slices and slices[-1][0] == index:
            slices[-1] = (index, slices[-1][1] + usage)
        else:
            slices.append((index, usage))
        self._peers[peer] = slices
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)


def total(usages: Iterable[Usage]) -> Usage:
    out = Usage()
    for u in usages:
        out = out + u
    return out


def _all_fit(candidates: Sequence[Candidate], publishers: Mapping[bytes, Usage], peer: Usage | None,
             storage_left: int | None, exempt: bytes | None, publisher_quota: Quota, peer_quota: Quota) -> bool:
    """Whether the whole batch fits every limit at once; then each record, counted in any order, fits too."""
    per_pub: dict[bytes, list[int]] = {}
    records = size = refs = cost = 0
    for c in candidates:
        if c.publisher == exempt:
            continue
        acc = per_pub.setdefault(c.publisher, [0, 0, 0])
        acc[0] += 1
        acc[1] += c.bytes
        acc[2] += c.chunk_refs
        records, size, refs = records + 1, size + c.bytes, refs + c.chunk_refs
        cost += catalog_cost(c.bytes, c.chunk_refs)
    for pub, (n, b, r) in per_pub.items():
        if publisher_quota.excess(publishers.get(pub, Usage()) + Usage(n, b, r)) is not None:
            return False
    if peer is not None and peer_quota.excess(peer + Usage(records, size, refs)) is not None:
        return False
    return storage_left is None or cost <= storage_left
