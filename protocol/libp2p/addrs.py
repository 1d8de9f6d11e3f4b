"""Multiaddr parsing for the rest of the node, so that only the adapter imports the multiaddr library."""

from __future__ import annotations


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
