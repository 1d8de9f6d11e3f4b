"""Multiaddrs for the rest of the node: parsing (so that only the adapter imports the multiaddr library),
and which of a node's addresses are worth advertising.

A node listening on /ip4/0.0.0.0/tcp/7470 (the default, and what a container must do) is reachable on
each of its interfaces' addresses, never on 0.0.0.0: a peer that dials 0.0.0.0 reaches itself, or
nothing. py-libp2p 0.8.1 advertises its listen addresses as bound, so identify and the DHT would spread
the wildcard. `advertised` turns each wildcard address into one per interface address of its family and
drops any unspecified address left (an observed address is concrete and kept). Pure: plain strings in,
plain strings out; the interface addresses are given by the caller.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


class BadMultiaddr(ValueError):
    """Not a multiaddr; the message is the parser's reason."""


def components(addr: str) -> list[tuple[str, str]]:
    """The (protocol name, value) pairs of `addr` in order; the value is "" for protocols without one."""
    import multiaddr  # light, but the CLI's `--help` should not pay for it

    try:
        ma = multiaddr.Multiaddr(addr)
        out = []
        for proto in ma.protocols():
            try:
                value = ma.value_for_protocol(proto.code)
            except Exception:  # a protocol without a value
                value = None
            out.append((proto.name, "" if value is None else str(value)))
        return out
    except Exception as exc:  # multiaddr raises several unrelated types
        raise BadMultiaddr(str(exc)) from exc

_WILDCARDS = {"ip4": "0.0.0.0", "ip6": "::"}


def _ip_part(addr: str) -> tuple[str, str, str] | None:
    """(protocol, ip, rest) of a multiaddr string that starts with /ip4/ or /ip6/, else None."""
    parts = addr.split("/", 3)
    if len(parts) < 3 or parts[0] != "" or parts[1] not in _WILDCARDS:
        return None
    return parts[1], parts[2], "/" + parts[3] if len(parts) == 4 else ""


def _is_unspecified(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_unspecified
    except ValueError:
        return False


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def advertised(addrs: Iterable[str], interface_ips: Iterable[str]) -> list[str]:
    """`addrs` with each wildcard (0.0.0.0, ::) replaced by the interface addresses of its family, and
    no unspecified address left. Addresses other nodes can reach come first: loopback ones go last
    (they still serve nodes on the same host), link-local IPv6 ones (which need a zone) are left out.
    Order is otherwise kept, and each address appears once."""
    ips = [ip.split("%", 1)[0] for ip in interface_ips]
    by_family: dict[str, list[str]] = {"ip4": [], "ip6": []}
    for ip in ips:
        try:
            parsed = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if parsed.is_unspecified or (parsed.version == 6 and parsed.is_link_local):
            continue
        by_family["ip4" if parsed.version == 4 else "ip6"].append(str(parsed))
    out: list[str] = []
    for addr in addrs:
        part = _ip_part(addr)
        if part is None:
            out.append(addr)
            continue
        proto, ip, rest = part
        if _is_unspecified(ip):
            out.extend(f"/{proto}/{concrete}{rest}" for concrete in by_family[proto])
        else:
            out.append(addr)
    unique = list(dict.fromkeys(out))
    remote = [a for a in unique if not ((p := _ip_part(a)) and _is_loopback(p[1]))]
    return remote + [a for a in unique if a not in remote]
