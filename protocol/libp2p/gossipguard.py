"""What one peer may make the node do with gossip: the decisions, without any I/O.

py-libp2p 0.8.1 reads each gossipsub RPC (up to 1 MiB) and starts one task per message in it before
checking anything; a message with a bad signature is dropped without scoring its forwarder; an RPC over
the size limit resets the stream, unscored; and its peer score, as configured before, weighed only
rejected messages (P4). Measured: 3,000 bad-signature messages per RPC kept the CPU busy enough that an
honest dataset was held 30 s late; validly signed junk from throwaway keys was accepted and relayed
(300/s in, 5,708 relayed).

So (applied in protocol/overlay.py, `_read_gossip`), as each RPC arrives from a peer:

* a graylisted peer's RPC is ignored whole (go-libp2p-pubsub's `AcceptFrom`), before any signature is
  checked: a flood stops costing CPU once the peer's score fell;
* an RPC over `max_rpc_bytes` resets the stream and costs the peer a behaviour penalty;
* at most `max_messages_per_rpc` messages of one RPC are looked at, the rest dropped (and a penalty);
* a message over `max_message_bytes`, or with a bad libp2p signature, counts as an invalid message of its
  forwarder (P4, as go-libp2p-pubsub counts `RejectInvalidSignature`), checked in the read loop itself so
  that the work stops as soon as the score says so;
* messages first published by an origin this node has never been connected to, nor accepted a message
  from, pass a token bucket per forwarder and one per node (`UnknownOriginGate`): beyond it they are
  ignored (neither delivered nor relayed nor scored: an honest relay of a busy stranger is not punished).

IP colocation (py-libp2p's P7, the spec's P6) penalises more than `colocation_threshold` peers behind one
IP address; addresses in `colocation_exempt` (loopback by default: every test, and a federation run on
one machine, has all its nodes on 127.0.0.1) are not counted.
"""

from __future__ import annotations

import collections
import ipaddress
from dataclasses import dataclass, field

# Penalties, in py-libp2p's behaviour-penalty points (weight 1, see `ScoreNumbers`).
OVERSIZE_RPC_PENALTY = 20.0
TOO_MANY_MESSAGES_PENALTY = 10.0


@dataclass(frozen=True)
class GossipLimits:
    max_rpc_bytes: int = 1 << 20  # go-libp2p-pubsub DefaultMaxMessageSize: 1 MiB per RPC
    max_messages_per_rpc: int = 512  # an IWANT answer of ~1 KiB announcements fills 1 MiB with ~700
    max_message_bytes: int = 64 << 10  # one message's data; Communs' announcements are at most 1 KiB
    unknown_rate: float = 20.0  # messages/s from unknown origins, per forwarder
    unknown_burst: float = 400.0
    unknown_node_rate: float = 100.0  # and for the whole node
    unknown_node_burst: float = 2000.0
    known_origins_kept: int = 100_000
    colocation_threshold: int = 10  # peers behind one IP before P7 applies (go-libp2p: 1..10 typical)
    colocation_weight: float = 5.0
    colocation_exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True)
class ScoreNumbers:
    """Peer-score parameters, in py-libp2p's terms (its P5 is the spec's P7 behaviour penalty, its P7 the
    spec's P6 IP colocation). One invalid message costs 1 point and decays 5 % per 1 s heartbeat; a
    behaviour penalty point decays 3 % per heartbeat. Below -50 a peer's messages are dropped unread,
    below -100 its RPCs are ignored whole."""

    invalid_weight: float = 1.0
    invalid_cap: float = 1000.0
    invalid_decay: float = 0.95
    behaviour_weight: float = 1.0
    behaviour_decay: float = 0.97
    behaviour_threshold: float = 0.0
    publish_threshold: float = -50.0
    gossip_threshold: float = -25.0
    graylist_threshold: float = -100.0


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float = field(default=-1.0)
    stamp: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:  # first use: full
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class UnknownOriginGate:
    """Rate limit for messages whose origin nobody here has seen: a bucket per forwarder and one per node.

    An origin is known once the node was connected to it, or accepted one of its messages (`learn`).
    Not thread-safe: used from trio's thread only.
    """

    def __init__(self, limits: GossipLimits | None = None) -> None:
        self.limits = limits or GossipLimits()
        self._known: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()
        self._node = TokenBucket(self.limits.unknown_node_rate, self.limits.unknown_node_burst)
        self.dropped = 0

    def learn(self, origin: bytes) -> None:
        known = self._known
        known[origin] = None
        known.move_to_end(origin)
        while len(known) > self.limits.known_origins_kept:
            known.popitem(last=False)

    def is_known(self, origin: bytes) -> bool:
        return origin in self._known

    def allow(self, origin: bytes, forwarder: str, now: float) -> bool:
        if origin in self._known:
            return True
        bucket = self._buckets.get(forwarder)
        if bucket is None:
            bucket = self._buckets[forwarder] = TokenBucket(self.limits.unknown_rate, self.limits.unknown_burst)
            while len(self._buckets) > 4096:
                self._buckets.popitem(last=False)
        if bucket.take(now) and self._node.take(now):
            return True
        self.dropped += 1
        return False


def colocation_counted(ip: str, exempt: tuple[str, ...]) -> bool:
    """Whether a peer at `ip` counts towards IP colocation (not if in one of the `exempt` networks)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return not any(addr in ipaddress.ip_network(net, strict=False) for net in exempt)


def messages_to_read(count: int, limits: GossipLimits) -> tuple[int, float]:
    """Of an RPC carrying `count` messages: how many to look at, and the behaviour penalty for the rest."""
    if count <= limits.max_messages_per_rpc:
        return count, 0.0
    return limits.max_messages_per_rpc, TOO_MANY_MESSAGES_PENALTY
