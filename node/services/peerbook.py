"""Where peers are: bootstrap addresses an operator adds (kept in config.toml), and the peers this node was
connected to (kept in DIR/peers.json), so that a node whose own address changed finds its federation again.

A node restarted on a new port cannot be dialled at its old address, and peers that only know that one keep
failing; but it can dial them. So the node remembers, for each peer it was connected to, the addresses the
peer had then (as libp2p learned them: identify, the DHT, or a third node), and dials them at start. A peer's
newer addresses replace its older ones (stale ones dropped); a peer not seen for BOOK_MAX_AGE_S is forgotten.

The decisions (`with_bootstrap`, `merge_seen`, `due`) are pure; `add_bootstrap`, `load_book` and `save_book`
do the file I/O.
"""

from __future__ import annotations

import json
import threading
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import tomli_w
from communs.node.config import CONFIG_FILE, ConfigError, check_peer_multiaddr, write_atomic

BOOK_FILE = "peers.json"
BOOK_MAX_PEERS = 64
BOOK_MAX_AGE_S = 7 * 24 * 3600
BOOK_MAX_ADDRS = 8

Book = dict[str, dict[str, object]]  # peer id -> {"addrs": [full multiaddrs], "seen": unix seconds}


def peer_of(addr: str) -> str:
    return addr.rsplit("/p2p/", 1)[-1]


def with_bootstrap(bootstrap: Iterable[str], addr: str) -> list[str]:
    """The bootstrap list with `addr` kept: an address of the same peer is replaced (the peer moved), the same
    address is not repeated."""
    peer = peer_of(addr)
    return [a for a in bootstrap if peer_of(a) != peer] + [addr]


def merge_seen(book: Mapping[str, Mapping[str, object]], seen: Mapping[str, Iterable[str]], now: int) -> Book:
    """`book` updated with the peers connected now and their addresses (full multiaddrs ending in /p2p/<id>):
    a connected peer's addresses replace those kept for it; peers not seen for BOOK_MAX_AGE_S are dropped, and
    at most BOOK_MAX_PEERS are kept, the most recently seen."""
    out: Book = {}
    for peer, entry in book.items():
        seen_at = entry.get("seen")
        addrs = entry.get("addrs")
        if isinstance(seen_at, int) and isinstance(addrs, list) and now - seen_at <= BOOK_MAX_AGE_S:
            out[peer] = {"addrs": [str(a) for a in addrs][:BOOK_MAX_ADDRS], "seen": seen_at}
    for peer, addrs in seen.items():
        dialable = [a for a in dict.fromkeys(addrs) if peer_of(a) == peer and "/tcp/" in a]
        if dialable:
            out[peer] = {"addrs": dialable[:BOOK_MAX_ADDRS], "seen": now}
    kept = sorted(out.items(), key=lambda kv: (-int(kv[1]["seen"]), kv[0]))[:BOOK_MAX_PEERS]  # type: ignore[call-overload]
    return dict(kept)


def addresses(book: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    """The book without the times peers were seen: what changes when a peer or one of its addresses does."""
    return {peer: entry.get("addrs") for peer, entry in book.items()}


def dial_list(book: Mapping[str, Mapping[str, object]], connected: Iterable[str], own: str) -> list[list[str]]:
    """What to dial at start: for each peer not connected now (and not this node), its kept addresses, to try
    in turn until one answers."""
    skip = set(connected) | {own}
    out: list[list[str]] = []
    for peer, entry in book.items():
        addrs = entry.get("addrs")
        if peer not in skip and isinstance(addrs, list) and addrs:
            out.append([str(a) for a in addrs])
    return out


_config_lock = threading.Lock()  # several peers added at once: each read-modify-write of the file in turn


def add_bootstrap(root: Path, addr: str) -> list[str]:
    """Keep `addr` as a bootstrap address in DIR/config.toml (every other setting kept); the new list."""
    check_peer_multiaddr(addr)
    with _config_lock:
        return _add_bootstrap(root / CONFIG_FILE, addr)


def _add_bootstrap(path: Path, addr: str) -> list[str]:
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot update {path}: {exc}") from None
    node = doc.setdefault("node", {})
    if not isinstance(node, dict):
        raise ConfigError(f"cannot update {path}: [node] is not a table")
    node["bootstrap"] = with_bootstrap(node.get("bootstrap") or [], addr)
    write_atomic(path, "# Communs node configuration. See README.md, 'Operator's guide'.\n" + tomli_w.dumps(doc))
    return list(node["bootstrap"])


def load_book(root: Path) -> Book:
    """The kept peers; an absent or unreadable file is an empty book (it is only a hint)."""
    try:
        doc = json.loads((root / BOOK_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): v for k, v in doc.items() if isinstance(v, dict)} if isinstance(doc, dict) else {}


def save_book(root: Path, book: Book) -> None:
    write_atomic(root / BOOK_FILE, json.dumps(book, indent=1, sort_keys=True), mode=0o600)
