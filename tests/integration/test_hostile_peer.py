"""Issue 7: a hostile peer floods the topic, opens many streams at once, sends oversized frames and never
finishes its requests, all at once. The node keeps serving an honest peer and its admin API, its memory
stays bounded, and the hostile peer is penalised."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
from communs.protocol import wire
from communs.protocol.libp2p import overlay as overlay_mod

from tests.integration.test_overlay import TOPIC, metric, publish, raw_peer, until
from tests.integration.test_replication import enact_policy, same_tree
from tests.nodes import NodeProc, cli, wait_for

pytestmark = pytest.mark.slow

FLOOD = 2000
SLOW_STREAMS = 40


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_hostile_peer_cannot_starve_or_bloat_a_node(tmp_path: Path, nodes: list[NodeProc],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    await asyncio.to_thread(a.start)
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(8 << 20))
    mid = await asyncio.to_thread(publish, a, src, "honest data")
    assert a.proc is not None
    rss_before = rss_mb(a.proc.pid)

    # the hostile peer publishes as fast as its libp2p allows (no pacing)
    monkeypatch.setattr(overlay_mod, "PUBLISH_RATE", 100_000.0)
    hostile = await raw_peer()
    held: list[Any] = []
    try:
        await hostile.connect(a.addr)
        await until(lambda: a.peer_id in hostile.topic_peers(TOPIC), 15, "a to be seen on the topic")

        async def flood() -> None:
            for _ in range(FLOOD):
                await hostile.publish(TOPIC, os.urandom(200))

        async def slowloris() -> None:
            # streams that negotiate a protocol and then never send a whole request
            for i in range(SLOW_STREAMS):
                proto = (wire.CHUNKS_PROTOCOL, wire.MANIFEST_PROTOCOL, wire.SYNC_PROTOCOL)[i % 3]
                try:
                    s = await hostile.open_stream(a.peer_id, [proto], timeout=5)
                    await s.write(b"\x85")  # a varint that promises more bytes than ever come
                    held.append(s)
                except Exception:  # noqa: BLE001 - "busy" resets are the node defending itself
                    pass

        async def oversized() -> None:
            for proto in (wire.CHUNKS_PROTOCOL, wire.MANIFEST_PROTOCOL, wire.SYNC_PROTOCOL):
                try:
                    s = await hostile.open_stream(a.peer_id, [proto], timeout=5)
                    await s.write(wire.encode_varint(200 << 20) + os.urandom(64 << 10))
                    await s.close_write()
                    await asyncio.wait_for(s.read(), 15)
                    await s.close()
                except Exception:  # noqa: BLE001 - a reset is an acceptable answer
                    pass

        attack = asyncio.gather(flood(), slowloris(), oversized())

        # meanwhile an honest node joins, votes, and replicates a's dataset; the admin API answers throughout
        b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr)
        nodes.append(b)
        await asyncio.to_thread(b.start)
        await until(lambda: any(d["id"] == mid for d in b.get("/api/v1/datasets")), 30, "b to learn the dataset")
        for _ in range(5):
            t0 = time.monotonic()
            status, body = await asyncio.to_thread(a.api, "GET", "/healthz", None, "")
            assert status == 200 and body == {"ok": True}
            assert time.monotonic() - t0 < 5, "the admin API stalled under attack"
            await asyncio.sleep(0.2)
        await asyncio.to_thread(enact_policy, b, ["CC0-1.0"], tmp_path)
        await until(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 90,
                    "b to replicate under attack")
        await attack
    finally:
        for s in held:
            await s.reset()  # Stream.reset never raises
        await hostile.stop()
    out = tmp_path / "out"
    await asyncio.to_thread(cli, b.data, "get", mid, str(out))
    assert same_tree(src, out)
    # penalised: the garbage was rejected and counted, and scoring stopped reading it long before the end
    rejected = await asyncio.to_thread(metric, a, "communs_gossip_messages_total", outcome="rejected")
    assert 1 <= rejected < FLOOD, rejected
    # the half-open requests were refused or timed out, never served
    served_bad = await asyncio.to_thread(metric, a, "communs_stream_requests_total", outcome="bad-request")
    busy = await asyncio.to_thread(metric, a, "communs_stream_requests_total", outcome="busy")
    assert served_bad + busy >= 1
    # memory stayed bounded: no queue grew with the flood
    assert a.proc is not None
    grown = rss_mb(a.proc.pid) - rss_before
    assert grown < 80, f"a's RSS grew by {grown:.0f} MB under attack"
    assert "Traceback" not in a.log()
    wait_for(lambda: a.stop() == 0, 10, what="a to stop cleanly")
