"""Issue 15, bad input: a hostile peer forges, stretches, replays and floods holding claims, claims what it does
not hold, and sends out-of-range and too many challenges, against a real node process."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from communs.protocol import encoding, holding, ids, keys
from communs.protocol.holding import HoldingClaim

from tests.integration.test_copies import fast_node, holders
from tests.integration.test_overlay import publish, raw_peer, until
from tests.nodes import NodeProc

CLAIMS_TOPIC = "/communs/communs/claims/1"


async def ask(peer: Any, target: str, message: dict[str, Any]) -> dict[str, Any]:
    stream = await peer.open_stream(target, [holding.CHALLENGE_PROTOCOL])
    await stream.write(holding.frame(message))
    await stream.close_write()
    buf = b""
    while True:
        value, _ = holding.unframe(buf, holding.MAX_MESSAGE_BYTES)
        if value is not None:
            return value
        data = await asyncio.wait_for(stream.read(65536), 15)
        assert data, "the node closed the stream without an answer"
        buf += data


async def test_hostile_claims_and_challenges(tmp_path: Path, nodes: list[NodeProc]) -> None:
    a = fast_node(tmp_path, "a", ttl=60)
    nodes.append(a)
    await asyncio.to_thread(a.start, True, 90.0)
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(3 << 20)
    (src / "data.bin").write_bytes(data)
    mid = await asyncio.to_thread(publish, a, src, "d")
    manifest = await asyncio.to_thread(a.get, f"/api/v1/datasets/{mid}")
    chunks, offset = [], 0
    for c in manifest["files"][0]["chunks"]:
        chunks.append(data[offset:offset + c["size"]])
        offset += c["size"]
    mid_raw = ids.parse_cid(mid)

    hostile = await raw_peer()
    try:
        await hostile.connect(a.addr)
        # challenges: a right answer, out-of-range positions refused, too many refused as busy
        nonce = os.urandom(32)
        answer = await ask(hostile, a.peer_id, {"nonce": nonce, "manifest": mid_raw, "positions": [0, len(chunks) - 1]})
        assert answer == {"proof": holding.proof(nonce, [chunks[0], chunks[-1]])}
        answer = await ask(hostile, a.peer_id, {"nonce": nonce, "manifest": mid_raw, "positions": [len(chunks)]})
        assert "out of range" in answer["error"]
        answer = await ask(hostile, a.peer_id, {"nonce": nonce, "manifest": mid_raw, "positions": list(range(9))})
        assert "malformed challenge" in answer["error"]
        answer = await ask(hostile, a.peer_id, {"nonce": nonce, "manifest": os.urandom(32), "positions": [0]})
        assert answer == {"error": "not held"}
        answers = [await ask(hostile, a.peer_id, {"nonce": nonce, "manifest": mid_raw, "positions": [0]})
                   for _ in range(12)]
        assert any(x.get("error", "").startswith("busy") for x in answers)

        # claims: wait until the hostile peer sees a on the claims topic
        await hostile.subscribe(CLAIMS_TOPIC, lambda _d, _s: None)
        await until(lambda: a.peer_id in hostile.topic_peers(CLAIMS_TOPIC), 20, "a on the claims topic")
        key = hostile.key
        me = hostile.key.public
        now_ms = int(time.time() * 1000)

        async def send(*claims: HoldingClaim) -> None:
            await hostile.publish(CLAIMS_TOPIC, encoding.encode([c.encode() for c in claims]))

        # absurd expiry and a forged claim (signed by another key) are refused, whole
        absurd = HoldingClaim.sign(key, node=me, manifest=mid_raw, since=now_ms // 1000, issued=now_ms,
                                   expires=now_ms // 1000 + 10 * 365 * 86400, withdrawn=False)
        await send(absurd)
        other = await raw_peer()
        forged_src = HoldingClaim.create(other.key, manifest=mid_raw, since=now_ms // 1000, issued_ms=now_ms)
        forged = HoldingClaim(node=me, manifest=mid_raw, since=forged_src.since, issued=forged_src.issued,
                              expires=forged_src.expires, withdrawn=False, sig=forged_src.sig)
        await other.stop()
        await send(forged)
        await asyncio.sleep(2)
        assert len(await asyncio.to_thread(holders, a, mid)) == 1

        # a well-formed claim for data it does not hold: counted at first, then caught by challenges (the
        # hostile peer does not answer /communs/challenge/1) and no longer counted
        hostile_id = keys.peer_id(me)
        claim = HoldingClaim.create(key, manifest=mid_raw, since=now_ms // 1000, issued_ms=now_ms)
        await send(claim)
        await until(lambda: hostile_id in holders(a, mid), 20, "a to take the hostile claim")
        await until(lambda: hostile_id not in holders(a, mid), 60, "a to stop counting the unproven claim")
        assert f"holder {hostile_id} did not answer" in a.log()

        # a withdrawal, then the old claim replayed: still not counted
        withdrawal = HoldingClaim.create(key, manifest=mid_raw, since=now_ms // 1000, issued_ms=now_ms + 5,
                                         withdrawn=True)
        await send(withdrawal)
        await asyncio.sleep(1.5)
        await send(claim)
        await asyncio.sleep(2)
        assert hostile_id not in await asyncio.to_thread(holders, a, mid)
        status = await asyncio.to_thread(a.get, "/api/v1/status")
        assert status["copies"]["claims"].get("rejected", 0) >= 2, status["copies"]
    finally:
        await hostile.stop()
