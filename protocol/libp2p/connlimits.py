"""Limits on what peers may hold of a node's connections, memory and log, as pure accounting.

py-libp2p 0.8.1 (pinned) enforces too little of this itself: its swarm kept each inbound connection's
slot until the node stopped, so 300 short-lived connections in a node's lifetime locked every new peer
out; its Yamux counted a stream's receive window but let a peer send past it (one stream carried
2.3 GiB into memory, logging a warning per frame) and kept the unread data of reset streams. The
decisions are here, over plain data and a caller's `now`, so that they are tested without a network;
protocol/overlay.py applies them to py-libp2p's swarm and Yamux.

Defaults follow go-libp2p's resource manager (see SECURITY.md, "Connection and memory limits"): at most
8 connections at once from one IPv4 address (one IPv6 /56), loopback exempt, as go-libp2p exempts
127.0.0.0/8 (so that several nodes and their tests can share one machine).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

# Inbound connections at once, handshaking or open (py-libp2p's own cap, max_connections - min_connections).
MAX_INBOUND = 300
# Inbound connections at once from one address (go-libp2p: 8 per IPv4 /32 and per IPv6 /56).
PER_IP = 8
# How long an inbound socket may take to finish Noise and Yamux before it is closed. A silent socket
# holds a slot for this long at most: go-libp2p allows 15 s for the whole upgrade.
HANDSHAKE_S = 10.0
# Networks not limited per address: loopback, as go-libp2p's DefaultNetworkPrefixLimitV4/V6 do.
EXEMPT = ("127.0.0.0/8", "::1/128")
_IPV6_PREFIX = 56


@dataclass(frozen=True)
class ConnLimits:
    """What a node accepts of inbound connections; see the module docstring for the defaults."""

    max_inbound: int = MAX_INBOUND
    per_ip: int = PER_IP
    handshake_s: float = HANDSHAKE_S
    exempt: tuple[str, ...] = EXEMPT

    def __post_init__(self) -> None:
        if self.max_inbound < 1 or self.per_ip < 1:
            raise ValueError("connection limits must be at least 1")
        if not self.handshake_s > 0:
            raise ValueError("the handshake deadline must be positive")
        for net in self.exempt:
            ipaddress.ip_network(net, strict=False)  # raises ValueError with the culprit named


def address_key(ip: str) -> str:
    """The unit that `per_ip` counts: the IPv4 address, or the IPv6 /56 it is in (one site's allocation,
    as go-libp2p counts it). An unparsable address counts as itself."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/{_IPV6_PREFIX}", strict=False))
    return str(addr)


def is_exempt(ip: str, exempt: Iterable[str]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in ipaddress.ip_network(net, strict=False) for net in exempt)


class InboundSlots:
    """Inbound connections held at once, in total and per address, from accept to close.

    `admit` when a socket is accepted (None, or the one sentence saying why it is refused); `release`
    exactly once for each admitted socket, when its connection ends, however it ends.
    """

    def __init__(self, limits: ConnLimits | None = None) -> None:
        self.limits = limits or ConnLimits()
        self._per_key: dict[str, int] = {}
        self._total = 0
        self.refused = 0  # sockets refused since start, for status and tests

    @property
    def in_use(self) -> int:
        return self._total

    def held_by(self, ip: str) -> int:
        return self._per_key.get(address_key(ip), 0)

    def admit(self, ip: str) -> str | None:
        limits = self.limits
        if self._total >= limits.max_inbound:
            self.refused += 1
            return f"all {limits.max_inbound} inbound connection slots are in use"
        key = address_key(ip)
        exempt = is_exempt(ip, limits.exempt)
        if not exempt and self._per_key.get(key, 0) >= limits.per_ip:
            self.refused += 1
            return f"{key} already holds {limits.per_ip} inbound connections (the limit per address)"
        self._total += 1
        self._per_key[key] = self._per_key.get(key, 0) + 1
        return None

    def release(self, ip: str) -> None:
        key = address_key(ip)
        held = self._per_key.get(key, 0)
        if held <= 0 or self._total <= 0:
            raise ValueError(f"released an inbound slot of {ip} that was never admitted")
        if held == 1:
            del self._per_key[key]
        else:
            self._per_key[key] = held - 1
        self._total -= 1


def reachability_problem(listening: bool, in_use: int, capacity: int) -> str | None:
    """Why the node cannot accept a new peer now, in one sentence, or None if it can."""
    if not listening:
        return "the node is not listening for peers"
    if in_use >= capacity:
        return f"all {capacity} inbound connection slots are in use: no new peer can connect"
    return None


def window_exceeded(length: int, recv_window: int) -> bool:
    """Whether a DATA frame of `length` bytes goes past the credit the receiver gave (`recv_window`):
    Yamux lets a sender send only what the receiver granted, so this is a protocol violation."""
    return length > max(recv_window, 0)


class LogBudget:
    """At most `burst` log records per key in any `period` seconds; the rest are counted and the count is
    told with the next record let through. A peer that makes a library log once per frame would
    otherwise fill the disk and spend a core on formatting."""

    def __init__(self, burst: int = 10, period: float = 10.0) -> None:
        if burst < 1 or period <= 0:
            raise ValueError("a log budget needs burst >= 1 and period > 0")
        self.burst = burst
        self.period = period
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (window start, let through, dropped)

    def allow(self, key: str, now: float) -> tuple[bool, int]:
        """(whether to log this record, how many of this key were dropped before it and not yet told)."""
        start, passed, dropped = self._windows.get(key, (now, 0, 0))
        if now - start >= self.period:
            start, passed = now, 0
        if passed >= self.burst:
            self._windows[key] = (start, passed, dropped + 1)
            return False, 0
        self._windows[key] = (start, passed + 1, 0)
        if len(self._windows) > 1024:  # keys are logger names and levels: a handful, but stay bounded
            self._windows.pop(next(iter(self._windows)))
        return True, dropped
