"""Issue 2: our node and the official js-libp2p peer connect both ways; identify and ping work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.jspeer import JsPeer
from tests.nodes import NodeProc, wait_for

pytestmark = pytest.mark.interop


def test_our_node_dials_js_and_js_dials_us(tmp_path: Path, js_peer_dir: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    js = JsPeer(js_peer_dir, "probe", "--no-dht")
    try:
        # 1. our node dials js (bootstrap)
        ours = NodeProc.init(tmp_path, "ours", "--bootstrap", js.addrs[0])
        nodes.append(ours)
        ours.start()
        conn = js.wait(lambda e: e.get("event") == "connection:open" and e["peer"] == ours.peer_id, 20,
                       "js to see our connection")
        assert conn["encryption"] == "/noise" and conn["multiplexer"] == "/yamux/1.0.0"
        assert conn["direction"] == "inbound"
        ident = js.wait(lambda e: e.get("event") == "identify" and e.get("peer") == ours.peer_id, 20,
                        "js to identify us")
        assert "/ipfs/ping/1.0.0" in ident["protocols"] and "/ipfs/id/1.0.0" in ident["protocols"]
        # our side identified js: its protocols are in our peer list
        peer = wait_for(lambda: [p for p in ours.get("/api/v1/peers") if p["peer_id"] == js.peer_id
                                 and "/ipfs/ping/1.0.0" in p["protocols"]], 20, what="our identify of js")
        assert peer[0]["addrs"]
        # ping both ways
        status, body = ours.api("POST", f"/api/v1/peers/{js.peer_id}/ping", body={})
        assert status == 200 and body["rtt_ms"] >= 0, body
        pong = js.ask("ping", ours.peer_id, "ping")
        assert pong["ok"] is True, pong

        # 2. js dials a second node of ours
        other = NodeProc.init(tmp_path, "other")
        nodes.append(other)
        other.start()
        dial = js.ask("dial", other.addr, "dial")
        assert dial["ok"] is True, dial
        assert dial["encryption"] == "/noise" and dial["multiplexer"] == "/yamux/1.0.0"
        wait_for(lambda: any(p["peer_id"] == js.peer_id for p in other.get("/api/v1/peers")), 20,
                 what="the second node to list js")
        pong = js.ask("ping", other.addr, "ping")
        assert pong["ok"] is True, pong
        status, body = other.api("POST", f"/api/v1/peers/{js.peer_id}/ping", body={})
        assert status == 200, body
        assert ours.stop() == 0 and other.stop() == 0
    finally:
        js.close()
