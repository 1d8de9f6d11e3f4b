"""Issue 18, peers: `communs peers add` dials and keeps the address; a node restarted on a new port finds its
peers again through the addresses it kept of them, within 10 s."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

from tests.nodes import cli, cli_json, wait_for


def peer_ids(node) -> set[str]:  # type: ignore[no-untyped-def]
    return {p["peer_id"] for p in node.get("/api/v1/peers")}


def test_peers_add_keeps_it_and_a_moved_node_rejoins(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    b = make_node("b")
    out = cli(b.data, "peers", "add", a.addr)
    assert a.peer_id in out.stdout and "kept" in out.stdout
    doc = tomllib.loads((b.data / "config.toml").read_text())
    assert doc["node"]["bootstrap"] == [a.addr] and doc["node"]["name"] == "b"
    assert a.peer_id in peer_ids(b)
    # a bad address is one sentence, and nothing is kept
    bad = cli(b.data, "peers", "add", "/ip4/127.0.0.1/tcp/1", check=False)
    assert bad.returncode != 0 and "communs: error:" in bad.stderr
    assert tomllib.loads((b.data / "config.toml").read_text())["node"]["bootstrap"] == [a.addr]
    # a remembers b (its peer book), so that it can find b again from a new address
    wait_for(lambda: b.peer_id in (a.data / "peers.json").read_text() if (a.data / "peers.json").exists() else False,
             timeout=30, what="a's peer book to hold b")
    old_addr = a.addr
    assert a.stop() == 0
    a.start()  # listen port 0: a new port
    assert a.addr != old_addr
    t0 = time.monotonic()
    wait_for(lambda: a.peer_id in peer_ids(b), timeout=10, what="b to see a at its new address")
    assert time.monotonic() - t0 <= 10
    assert cli_json(b.data, "peers")
