"""How many libp2p streams each peer, and the node, may hold: the decisions, without any I/O.

py-libp2p 0.8.1 counts streams in one node-wide pool (10,000, inbound and outbound together, behind one
semaphore that an outbound stream *waits* on): one peer that opened 10,500 idle meshsub streams starved the
node's own outbound streams and replication stalled. Its DHT serves at most 12 inbound streams at once,
node-wide, for as long as each stays open: 12 idle kad streams from one peer locked the DHT out.

So, as go-libp2p's resource manager does, streams are counted per peer and node-wide, and inbound apart
from outbound, so that no inbound abuse can take a slot the node's own outbound streams need; some
protocols get a per-peer budget of their own (one inbound meshsub stream per peer: a newer one replaces the
older, as go-libp2p-pubsub does, so a peer that reconnects is never locked out by its own dead stream), and
streams of protocols that have no timeout of their own are reset when idle. Communs' own protocols keep
their own design (`busy` after 8 streams per peer and protocol, 10 s timeouts, length prefixes checked
first): their budget here is a backstop well above that, so theirs is the limit a peer meets.

`StreamBudget` is plain data and deterministic; protocol/overlay.py applies its verdicts to py-libp2p's
streams (see `_limit_streams` there). SECURITY.md has the table of these limits beside go-libp2p's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MESHSUB = "meshsub"
KAD = "kad"
COMMUNS = "communs"


def protocol_class(protocol: str) -> str:
    """The budget a protocol id counts against: every gossipsub version is one, Communs' protocols are one."""
    if protocol.startswith("/meshsub/") or protocol.startswith("/floodsub/"):
        return MESHSUB
    if protocol.startswith("/ipfs/kad/") or protocol.startswith("/ipfs/lan/kad/"):
        return KAD
    if protocol.startswith("/communs/"):
        return COMMUNS
    return protocol


@dataclass(frozen=True)
class StreamLimits:
    """Per-peer and node-wide stream budgets (go-libp2p's resource manager defaults in the comments)."""

    peer_inbound: int = 256  # go-libp2p: PeerBaseLimit.StreamsInbound 256
    peer_outbound: int = 512  # go-libp2p: PeerBaseLimit.StreamsOutbound 512
    node_inbound: int = 1024  # go-libp2p: SystemBaseLimit.StreamsInbound 64 * 16
    node_outbound: int = 2048  # go-libp2p: SystemBaseLimit.StreamsOutbound 128 * 16
    # Inbound streams per peer and protocol class, once the protocol is negotiated (go-libp2p:
    # ProtocolPeerBaseLimit.StreamsInbound 64; go-libp2p-pubsub: one inbound stream per peer).
    per_protocol: dict[str, int] = field(default_factory=lambda: {MESHSUB: 1, KAD: 4, COMMUNS: 64})
    protocol_default: int = 8
    # Classes where a stream over the budget replaces the peer's oldest instead of being refused.
    replace_oldest: frozenset[str] = frozenset({MESHSUB})
    # Seconds an inbound stream may go without receiving a byte before it is reset; None: never (meshsub
    # streams are long-lived by design and there is one per peer; Communs' protocols time out themselves).
    idle_timeout: dict[str, float | None] = field(default_factory=lambda: {MESHSUB: None, COMMUNS: None})
    idle_default: float = 10.0

    def protocol_limit(self, cls: str) -> int:
        return self.per_protocol.get(cls, self.protocol_default)

    def idle_limit(self, cls: str) -> float | None:
        return self.idle_timeout.get(cls, self.idle_default)


@dataclass(frozen=True)
class ProtocolVerdict:
    admit: bool
    evict: int | None = None  # the token of a stream to reset to make room (meshsub: the peer's oldest)
    reason: str = ""


class StreamBudget:
    """Counts open streams; `open`/`close` around each stream's life, `enter`/`leave` around its handler.

    Not thread-safe: py-libp2p calls it from trio's thread only.
    """

    def __init__(self, limits: StreamLimits | None = None) -> None:
        self.limits = limits or StreamLimits()
        self._peer: dict[tuple[str, bool], int] = {}
        self._node = {True: 0, False: 0}
        self._proto: dict[tuple[str, str], list[int]] = {}  # (peer, class) -> tokens, oldest first
        self.refused: dict[str, int] = {}  # reason -> count, for metrics

    def _refuse(self, reason: str) -> str:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return reason

    def open(self, peer: str, inbound: bool) -> str | None:
        """A new stream before its protocol is known: None if admitted (counted), else why not."""
        limits = self.limits
        node_cap = limits.node_inbound if inbound else limits.node_outbound
        peer_cap = limits.peer_inbound if inbound else limits.peer_outbound
        direction = "inbound" if inbound else "outbound"
        if self._node[inbound] >= node_cap:
            return self._refuse(f"node-{direction}")
        if self._peer.get((peer, inbound), 0) >= peer_cap:
            return self._refuse(f"peer-{direction}")
        self._node[inbound] += 1
        self._peer[(peer, inbound)] = self._peer.get((peer, inbound), 0) + 1
        return None

    def close(self, peer: str, inbound: bool) -> None:
        key = (peer, inbound)
        left = self._peer.get(key, 0) - 1
        if left > 0:
            self._peer[key] = left
        else:
            self._peer.pop(key, None)
        self._node[inbound] = max(0, self._node[inbound] - 1)

    def enter(self, peer: str, protocol: str, token: int) -> ProtocolVerdict:
        """An inbound stream whose protocol was negotiated, about to be handled."""
        cls = protocol_class(protocol)
        cap = self.limits.protocol_limit(cls)
        held = self._proto.setdefault((peer, cls), [])
        if len(held) < cap:
            held.append(token)
            return ProtocolVerdict(True)
        if cls in self.limits.replace_oldest and held:
            evicted = held.pop(0)
            held.append(token)
            self._refuse(f"{cls}-replaced")
            return ProtocolVerdict(True, evict=evicted, reason=f"{cls}-replaced")
        if not held:
            self._proto.pop((peer, cls), None)
        return ProtocolVerdict(False, reason=self._refuse(f"{cls}-per-peer"))

    def leave(self, peer: str, protocol: str, token: int) -> None:
        key = (peer, protocol_class(protocol))
        held = self._proto.get(key)
        if held is None:
            return
        if token in held:
            held.remove(token)
        if not held:
            del self._proto[key]

    def inbound(self, peer: str | None = None) -> int:
        return self._node[True] if peer is None else self._peer.get((peer, True), 0)

    def outbound(self, peer: str | None = None) -> int:
        return self._node[False] if peer is None else self._peer.get((peer, False), 0)

    def handled(self, peer: str, protocol: str) -> int:
        return len(self._proto.get((peer, protocol_class(protocol)), ()))


def idle_expired(last_activity: float, now: float, timeout: float | None) -> bool:
    """Whether a stream that last received data at `last_activity` has been idle too long at `now`."""
    return timeout is not None and now - last_activity >= timeout
