"""Issue 4 with the official js-libp2p peer: announcements over gossipsub both ways, and DHT provider records.

- js subscribes to our federation topic and receives our announcements as bytes, which decode to the
  signed Announcement of the manifest we published;
- bytes js publishes on the topic that are not valid Communs records are rejected by our validator
  (js sees us as a recipient; our /metrics counts the rejection) and do no harm;
- provider records cross both ways: js finds our node as provider of a dataset we hold under the key
  `provider_key(manifest id)` = CIDv1(raw, sha2-256(manifest CID text)), which is exactly what
  js's `!findprovs <manifest CID text>` looks up; and our node's `find_sources` finds js after js's
  `!provide <manifest CID text>`.
"""

from __future__ import annotations

import asyncio
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from communs.protocol import ids, keys
from communs.protocol.records import Announcement

from tests.integration.test_overlay import exchange_status, metric, publish
from tests.interop.jspeer import JsPeer
from tests.nodes import NodeProc, cli, wait_for

pytestmark = pytest.mark.interop

TOPIC = "/communs/communs/announce/1"


def subscribed(js: JsPeer, peer_id: str) -> bool:
    ev = js.ask("subscribers", TOPIC, "subscribers", timeout=10)
    return peer_id in ev.get("subscribers", [])


def test_js_receives_our_announcements_and_its_garbage_is_rejected(tmp_path: Path, js_peer_dir: Path,
                                                                  nodes: list[NodeProc]) -> None:
    js = JsPeer(js_peer_dir, TOPIC, "--no-dht", max_seconds=90)
    try:
        ours = NodeProc.init(tmp_path, "ours", "--bootstrap", js.addrs[0])
        nodes.append(ours)
        ours.start()
        wait_for(lambda: subscribed(js, ours.peer_id), 20, interval=0.3, what="js to see us on the topic")
        time.sleep(1.5)  # both meshes form at their first heartbeats
        (tmp_path / "one.csv").write_text("a,b\n1,2\n")
        mid = publish(ours, tmp_path / "one.csv", "for js")
        msg = js.wait(lambda e: e.get("topic") == TOPIC and "from" in e and "event" not in e, 20,
                      "js to receive our announcement")
        assert msg["from"] == ours.peer_id
        ann = Announcement.decode(bytes.fromhex(msg["data_hex"]))
        assert ids.cid_str(ann.manifest) == mid
        assert ann.kind == "publish" and ann.node_peer_id == ours.peer_id and ann.seq == 1
        assert abs(ann.ts - time.time()) < 60

        # js publishes bytes that are not Communs records: delivered to us, rejected, counted, harmless
        key = keys.SigningKey.generate()
        forged = Announcement(**{**{f: getattr(ann, f) for f in ("kind", "manifest", "dataset", "seq", "size",
                                                                "ts")},
                                 "node": ann.node, "publisher": ann.publisher,
                                 "sig": key.sign("announce/1", b"not this")})
        for data in (os.urandom(80), b"\x00", forged.encode()):
            start = len(js.events)
            js.command(data.hex())
            pub = js.wait(partial(lambda start, e: e.get("event") == "published"
                                  and js.events.index(e) >= start, start), 15, "js to publish")
            assert ours.peer_id in pub["recipients"], pub
        wait_for(lambda: metric(ours, "communs_gossip_messages_total", outcome="rejected") >= 3, 15,
                 what="our node to count three rejections")
        assert metric(ours, "communs_gossip_messages_total", outcome="rejected", reason="bad-signature") >= 1
        assert metric(ours, "communs_gossip_messages_total", outcome="rejected", reason="malformed") >= 2
        assert exchange_status(ours)["gossip"]["accepted"] == 0
        assert [d["id"] for d in ours.get("/api/v1/datasets")] == [mid]
        # and the node goes on: a second announcement reaches js
        (tmp_path / "two.csv").write_text("c\n3\n")
        mid2 = publish(ours, tmp_path / "two.csv", "again")
        msg2 = js.wait(lambda e: "from" in e and "event" not in e and ids.cid_str(
            Announcement.decode(bytes.fromhex(e["data_hex"])).manifest) == mid2, 20, "js to receive the second")
        assert msg2["from"] == ours.peer_id
        assert ours.stop() == 0
        assert "Traceback" not in ours.log()
    finally:
        js.close()


def test_js_finds_our_provider_record(tmp_path: Path, js_peer_dir: Path, nodes: list[NodeProc]) -> None:
    js = JsPeer(js_peer_dir, TOPIC, max_seconds=90)
    try:
        ours = NodeProc.init(tmp_path, "ours", "--bootstrap", js.addrs[0])
        nodes.append(ours)
        ours.start()
        wait_for(lambda: js.ask("peerinfo", ours.peer_id, "peerinfo", timeout=10).get("protocols"), 20,
                 interval=0.3, what="js to identify us")
        (tmp_path / "held.csv").write_text("held\n")
        mid = publish(ours, tmp_path / "held.csv", "held here")  # a publisher holds its dataset: it provides it

        def js_finds_us() -> bool:
            ev = js.ask("findprovs", mid, "findprovs", timeout=25)
            return any(p["peer"] == ours.peer_id for p in ev.get("providers", []))

        wait_for(js_finds_us, 40, interval=1.0, what="js to find our provider record")
        assert ours.stop() == 0
    finally:
        js.close()


async def test_our_node_finds_js_provider_record(tmp_path: Path, js_peer_dir: Path) -> None:
    """An in-process node (the same Node the CLI runs), so the test can call `exchange.find_sources`."""
    from communs.node.node import Node

    js = await asyncio.to_thread(JsPeer, js_peer_dir, TOPIC, max_seconds=90)
    node: Any = None
    try:
        data = tmp_path / "ours"
        await asyncio.to_thread(cli, data, "init", "--name", "ours", "--listen", "/ip4/127.0.0.1/tcp/0",
                                "--admin", "127.0.0.1:0", "--bootstrap", js.addrs[0])
        node = Node(data)
        await node.start()
        manifest_id = os.urandom(32)  # any id: the key depends only on its text
        ev = await asyncio.to_thread(js.ask, "provide", ids.cid_str(manifest_id), "provide", 25)
        assert ev["ok"] is True, ev
        deadline = time.monotonic() + 40
        found: list[str] = []
        while time.monotonic() < deadline:
            found = await node.exchange.find_sources(manifest_id, dht_timeout=10)
            if js.peer_id in found:
                break
            await asyncio.sleep(1.0)
        assert js.peer_id in found, found
    finally:
        if node is not None:
            node.request_stop()
            await node._shutdown()
        await asyncio.to_thread(js.close)
