"""Where peers are (pure decisions), and config.toml kept whole when a bootstrap address is added."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from communs.node.config import ConfigError
from communs.node.services import peerbook

P1 = "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
P2 = "12D3KooWH3uVF6wv47WnArKHk5p6cvgCJEb74UTmxztmQDc298L3"


def test_a_peer_that_moved_replaces_its_old_bootstrap_address() -> None:
    old = f"/ip4/127.0.0.1/tcp/1000/p2p/{P1}"
    other = f"/ip4/127.0.0.1/tcp/2000/p2p/{P2}"
    new = f"/ip4/127.0.0.1/tcp/1001/p2p/{P1}"
    assert peerbook.with_bootstrap([old, other], new) == [other, new]
    assert peerbook.with_bootstrap([other, new], new) == [other, new]


def test_the_book_keeps_current_addresses_drops_stale_and_old_peers() -> None:
    book = {P1: {"addrs": [f"/ip4/10.0.0.1/tcp/1/p2p/{P1}"], "seen": 100},
            P2: {"addrs": [f"/ip4/10.0.0.2/tcp/1/p2p/{P2}"], "seen": 100}}
    now = 100 + peerbook.BOOK_MAX_AGE_S + 1
    got = peerbook.merge_seen(book, {P1: [f"/ip4/10.0.0.1/tcp/2/p2p/{P1}", f"/ip4/10.0.0.1/tcp/2/p2p/{P1}",
                                          f"/ip4/10.0.0.9/udp/2/quic/p2p/{P1}", f"/ip4/1.1.1.1/tcp/3/p2p/{P2}"]}, now)
    assert got == {P1: {"addrs": [f"/ip4/10.0.0.1/tcp/2/p2p/{P1}"], "seen": now}}


def test_the_book_is_bounded_keeping_the_most_recently_seen() -> None:
    book = {f"peer{i}": {"addrs": [f"/ip4/10.0.0.1/tcp/{i}/p2p/peer{i}"], "seen": i} for i in range(100)}
    got = peerbook.merge_seen(book, {}, 100)
    assert len(got) == peerbook.BOOK_MAX_PEERS and "peer99" in got and "peer0" not in got


def test_dial_list_skips_connected_peers_and_this_node() -> None:
    book = {P1: {"addrs": ["a1", "a2"], "seen": 1}, P2: {"addrs": ["b1"], "seen": 1}, "me": {"addrs": ["m"], "seen": 1}}
    assert peerbook.dial_list(book, [P2], "me") == [["a1", "a2"]]
    assert peerbook.addresses(book) == {P1: ["a1", "a2"], P2: ["b1"], "me": ["m"]}


def test_add_bootstrap_keeps_every_other_setting(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[node]\nname = "n"\nbootstrap = []\n\n[publish]\nallowed_paths = ["/x"]\n')
    addr = f"/ip4/127.0.0.1/tcp/7470/p2p/{P1}"
    assert peerbook.add_bootstrap(tmp_path, addr) == [addr]
    doc = tomllib.loads((tmp_path / "config.toml").read_text())
    assert doc == {"node": {"name": "n", "bootstrap": [addr]}, "publish": {"allowed_paths": ["/x"]}}
    with pytest.raises(ConfigError):
        peerbook.add_bootstrap(tmp_path, "/ip4/127.0.0.1/tcp/7470")


def test_an_unreadable_book_is_empty(tmp_path: Path) -> None:
    (tmp_path / peerbook.BOOK_FILE).write_text("{not json")
    assert peerbook.load_book(tmp_path) == {}
    peerbook.save_book(tmp_path, {P1: {"addrs": ["x"], "seen": 1}})
    assert peerbook.load_book(tmp_path) == {P1: {"addrs": ["x"], "seen": 1}}
