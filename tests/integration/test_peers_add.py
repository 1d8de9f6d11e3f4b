"""Issue 18, peers: `communs peers add` dials and keeps the address, and a bad one is one sentence that keeps
nothing. (A node restarted on a new port finding its peers again within 10 s is walked in
test_operators_day.py.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.nodes import cli, cli_json


def peer_ids(node) -> set[str]:  # type: ignore[no-untyped-def]
    return {p["peer_id"] for p in node.get("/api/v1/peers")}


def test_peers_add_dials_and_keeps_the_address(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
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
    peers = cli_json(b.data, "peers")
    assert a.peer_id in {p["peer_id"] for p in peers}
    # (a node restarted on a new port and found again within 10 s is a step of the operator's day,
    # test_operators_day.py)
