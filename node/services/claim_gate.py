"""What of an incoming batch of holding claims to take, and how many challenges to answer: pure, bounded state.

Kept apart from the service so that the rules a hostile peer meets (replays, floods, too many challenges)
are unit-tested without a network: the service only feeds it bytes and the time.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable

from communs.protocol import encoding, holding
from communs.protocol.errors import DecodeError
from communs.protocol.holding import HoldingClaim
from communs.protocol.libp2p.gossipguard import TokenBucket

MAX_CLAIMS_PER_MESSAGE = 64
MAX_GOSSIP_BYTES = MAX_CLAIMS_PER_MESSAGE * holding.MAX_CLAIM_BYTES + 64
CLAIM_RATE = 50.0  # claims per second taken from one claimer (burst CLAIM_BURST)
CLAIM_BURST = 2000.0
NEWEST_KEPT = 200_000  # (node, manifest) -> newest issued, remembered for the replay check
ANSWERS_PER_PEER_MINUTE = 30  # challenges answered per peer (burst ANSWER_BURST)
ANSWER_BURST = 10.0


class ClaimGate:
    """Checks batches of claims: every claim valid or the whole batch refused; replays and claims over their
    claimer's rate left out (counted in `counts`). Used from libp2p's thread (the gossip validator) and the
    event loop (claims sync, own claims): the bookkeeping is done under a lock."""

    def __init__(self, rate: float = CLAIM_RATE, burst: float = CLAIM_BURST, kept: int = NEWEST_KEPT) -> None:
        self.rate, self.burst, self.kept = rate, burst, kept
        self._newest: collections.OrderedDict[tuple[bytes, bytes], int] = collections.OrderedDict()
        self._buckets: collections.OrderedDict[bytes, TokenBucket] = collections.OrderedDict()
        self.counts: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def remember(self, claims: Iterable[HoldingClaim]) -> None:
        with self._lock:
            self._remember(claims)

    def _remember(self, claims: Iterable[HoldingClaim]) -> None:
        for claim in claims:
            key = (claim.node, claim.manifest)
            self._newest[key] = max(claim.issued, self._newest.get(key, 0))
            self._newest.move_to_end(key)
        while len(self._newest) > self.kept:
            self._newest.popitem(last=False)

    def admit(self, data: bytes, now: float) -> list[HoldingClaim]:
        """The claims of one message (a msgpack array of encoded claims) to take in; RecordError if any is
        invalid. The claims returned are remembered: the same ones again are replays."""
        if len(data) > MAX_GOSSIP_BYTES:
            raise DecodeError(f"claims message is {len(data)} bytes, over {MAX_GOSSIP_BYTES}")
        value = encoding.decode(data, max_bytes=MAX_GOSSIP_BYTES)
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_CLAIMS_PER_MESSAGE:
            raise DecodeError(f"a claims message must be a list of 1 to {MAX_CLAIMS_PER_MESSAGE} claims")
        claims = []
        for raw in value:
            if type(raw) is not bytes:
                raise DecodeError("a claims message must hold encoded claims")
            claim = HoldingClaim.decode(raw)
            holding.check_claim(claim, int(now))
            claims.append(claim)
        with self._lock:
            return self._fresh(claims, now)

    def _fresh(self, claims: list[HoldingClaim], now: float) -> list[HoldingClaim]:
        fresh = []
        for claim in claims:
            if not holding.supersedes(claim, self._newest.get((claim.node, claim.manifest))):
                self.counts["replayed"] += 1
                continue
            bucket = self._buckets.get(claim.node)
            if bucket is None:
                bucket = self._buckets[claim.node] = TokenBucket(self.rate, self.burst)
                while len(self._buckets) > 10_000:
                    self._buckets.popitem(last=False)
            if not bucket.take(now):
                self.counts["over_rate"] += 1
                continue
            fresh.append(claim)
        self._remember(fresh)
        return fresh


class AnswerGate:
    """At most ANSWERS_PER_PEER_MINUTE challenges answered per peer (burst ANSWER_BURST)."""

    def __init__(self, per_minute: float = ANSWERS_PER_PEER_MINUTE, burst: float = ANSWER_BURST) -> None:
        self.per_minute, self.burst = per_minute, burst
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()

    def allow(self, peer: str, now: float) -> bool:
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = self._buckets[peer] = TokenBucket(self.per_minute / 60.0, self.burst)
            while len(self._buckets) > 4096:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(peer)
        return bucket.take(now)
