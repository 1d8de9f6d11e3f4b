"""Issue 12, item 1: catalog sync must not trust the peer's numbers.

A raw hostile sync server (a real libp2p host on 127.0.0.1 answering /communs/sync/1 with frames it
builds itself) attacks a real node in two ways: a `heads` answer with publishers at seq 2**63 - 1 (it made
the old planner build range lists on the event loop until the node was killed), and many large valid
manifests from throwaway keys (100 of 1 MiB took the old node to 1.2 GB). Throughout, the victim's API
answers, its RSS stays under 300 MB, an honest node's datasets are still listed (one published during
the attack arrives too), and the victim says what it refused or left in one log sentence.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from communs.protocol import keys, wire
from communs.protocol.records import FileEntry, Manifest, new_dataset_id

from tests.integration.test_hostile_peer import rss_mb
from tests.integration.test_overlay import listed, publish, raw_peer, until
from tests.nodes import NodeProc

pytestmark = pytest.mark.slow

RSS_LIMIT_MB = 300
TOP = 2**63 - 1


async def sync_server(heads: Iterable[tuple[bytes, int]], records: dict[bytes, list[bytes]],
                      seed: bytes | None = None) -> Any:
    """A libp2p host (key `seed`) that answers /communs/sync/1 with `heads` and, for a range, the records it
    has of that publisher (a list indexed by seq - 1); it checks nothing beyond decoding the request frame."""
    host = await raw_peer(seed)
    answer = wire.Heads(tuple(sorted(heads))).encode()

    async def handle(stream: Any) -> None:
        reader = wire.FrameReader(wire.SYNC_PROTOCOL, "request")
        while True:
            data = await stream.read()
            if not data:
                return
            reader.feed(data)
            while (event := reader.next_event()) is not None:
                if isinstance(event, wire.HeadsRequest):
                    await stream.write(answer)
                elif isinstance(event, wire.RangeRequest):
                    held = records.get(event.publisher, [])
                    raws = held[event.first - 1:event.last] if event.first <= len(held) else []
                    for frame in wire.records_frames(raws):
                        await stream.write(frame)

    host.serve(wire.SYNC_PROTOCOL, handle)
    return host


def large_manifest(refs: int = 24_000) -> tuple[bytes, bytes]:
    """A valid, signed manifest of about 1 MiB from a fresh key: (publisher, encoded record)."""
    key = keys.SigningKey.generate()
    chunks = [(os.urandom(32), 1 << 20) for _ in range(refs)]
    m = Manifest.create(key, dataset=new_dataset_id(key.public, os.urandom(16)), version=1, prev=None, seq=1,
                        log_prev=None, title="junk", licence="CC0-1.0", created=int(time.time()),
                        files=[FileEntry.of("junk.bin", chunks)])
    return key.public, m.encode()


async def watch(victim: NodeProc, stop: asyncio.Event, peaks: list[float], api_times: list[float]) -> None:
    """Until `stop`: the victim's RSS, every 0.2 s (killed at once past the limit: a node that grows must
    not eat the shared machine), and how long its API takes to answer (a failed call counts as 30 s)."""
    assert victim.proc is not None
    pid = victim.proc.pid

    async def api() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                status, body = await asyncio.to_thread(victim.api, "GET", "/healthz", None, "")
                ok = status == 200 and body == {"ok": True}
            except Exception:  # noqa: BLE001 - a timeout or a refused connection is what is measured
                ok = False
            api_times.append(time.monotonic() - t0 if ok else 30.0)
            await asyncio.sleep(0.3)

    calls = asyncio.ensure_future(api())
    try:
        while not stop.is_set():
            peaks.append(rss_mb(pid))
            if peaks[-1] > RSS_LIMIT_MB:
                victim.kill()
                return
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await calls


async def honest_pair(tmp_path: Path, nodes: list[NodeProc]) -> tuple[NodeProc, NodeProc, str]:
    """An honest node `a` with a published dataset, and the victim `v` that knows it."""
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    await asyncio.to_thread(a.start)
    src = tmp_path / "honest"
    src.mkdir()
    (src / "data.csv").write_bytes(os.urandom(50_000))
    mid = await asyncio.to_thread(publish, a, src, "honest data")
    v = NodeProc.init(tmp_path, "v", "--bootstrap", a.addr)
    nodes.append(v)
    await asyncio.to_thread(v.start)
    await until(lambda: mid in listed(v), 30, "the victim to list the honest dataset")
    return a, v, mid


async def attack(tmp_path: Path, a: NodeProc, v: NodeProc, mid: str, hostile: Any,
                 done: Callable[[str], bool]) -> str:
    """Connect the hostile server to the victim, watch the victim until `done(log)` holds, publish a second
    honest dataset meanwhile, and check every promise; returns the victim's log."""
    stop = asyncio.Event()
    peaks: list[float] = []
    api_times: list[float] = []
    watcher = asyncio.ensure_future(watch(v, stop, peaks, api_times))
    try:
        await hostile.connect(v.addr)
        src = tmp_path / "honest2"
        src.mkdir()
        (src / "more.csv").write_bytes(os.urandom(20_000))
        mid2 = await asyncio.to_thread(publish, a, src, "honest data, published during the attack")

        await until(lambda: watcher.done() or done(v.log()), 180,
                    "the victim to finish its sync with the hostile peer")
        assert not watcher.done(), f"the victim's RSS went over {RSS_LIMIT_MB} MB ({max(peaks):.0f} MB): killed"
        await until(lambda: {mid, mid2} <= listed(v), 30, "the victim to list both honest datasets")
        await asyncio.sleep(2.0)  # and it stays well after the attack
    finally:
        stop.set()
        await asyncio.gather(watcher, return_exceptions=True)
    print(f"victim: RSS peak {max(peaks):.0f} MB, slowest API answer {max(api_times):.2f} s")
    assert peaks and max(peaks) < RSS_LIMIT_MB, f"the victim's RSS reached {max(peaks):.0f} MB"
    assert api_times and max(api_times) < 5.0, f"the victim's API took {max(api_times):.1f} s to answer"
    status, _ = await asyncio.to_thread(v.api, "GET", "/api/v1/status")
    assert status == 200
    text = v.log()
    assert "Traceback" not in text
    return text


def sentences_about(text: str, peer: str) -> list[str]:
    return [line for line in text.splitlines() if f"catalog sync with {peer}: " in line and "new manifest" not in line]


async def test_heads_at_2_63_do_not_freeze_the_node(tmp_path: Path, nodes: list[NodeProc]) -> None:
    a, v, mid = await honest_pair(tmp_path, nodes)
    own = keys.SigningKey.generate()
    fake = [keys.SigningKey.generate().public for _ in range(200)]
    # its own key at the largest seq the wire allows, 200 made-up publishers at seq 1000; it serves none
    hostile = await sync_server([(own.public, TOP)] + [(pk, 1000) for pk in fake], {}, own.seed)
    try:
        peer = hostile.peer_id
        text = await attack(tmp_path, a, v, mid, hostile, lambda log: bool(sentences_about(log, peer)))
    finally:
        await hostile.stop()
    lines = sentences_about(text, peer)
    assert len(lines) == 1, lines  # one sentence per session
    assert "WARNING" in lines[0]
    assert "stopped reading because the peer served less than it advertised for 17 publishers" in lines[0]
    # the plan took 50,000 of its own and 1,000 of each of 150 others; the rest is left for a later session
    assert f"left {TOP - 50_000 + 50 * 1000} advertised record(s) of 51 publisher(s) for a later session" \
        in lines[0]


async def test_large_valid_manifests_from_throwaway_keys_are_bounded(tmp_path: Path, nodes: list[NodeProc]) -> None:
    a, v, mid = await honest_pair(tmp_path, nodes)
    made = await asyncio.to_thread(lambda: [large_manifest() for _ in range(120)])  # about 120 MiB, 2.9 M refs
    records = {pk: [raw] for pk, raw in made}
    hostile = await sync_server([(pk, 1) for pk in records], records)
    try:
        peer = hostile.peer_id
        text = await attack(tmp_path, a, v, mid, hostile, lambda log: bool(sentences_about(log, peer)))
    finally:
        await hostile.stop()
    lines = sentences_about(text, peer)
    assert len(lines) == 1, lines
    assert "over an ingest quota (the peer reached its quota of 1000000 chunk references per 1 h)" in lines[0]
    held = sum(1 for d in v.get("/api/v1/datasets") if d["title"] == "junk")
    assert 1 <= held <= 1_000_000 // 24_000, held  # what the peer's quota lets in, no more


async def test_the_catalog_counts_against_the_storage_quota(tmp_path: Path, nodes: list[NodeProc]) -> None:
    """With a storage quota voted, valid manifests from a peer stop being stored once the catalog and the
    chunks held reach it: the catalog cannot grow without bound (the old node stored every one)."""
    from communs.node.config import CATALOG_FILE

    from tests.nodes import cli, cli_json

    quota = 20_000_000
    a, v, mid = await honest_pair(tmp_path, nodes)
    rules = tmp_path / "quota.toml"
    rules.write_text(f'accept_licences = ["CC0-1.0"]\nstorage_quota_bytes = {quota}\n')
    key = str(v.data / "operator.key")
    pid = (await asyncio.to_thread(cli_json, v.data, "propose", "--key", key, "--kind", "policy",
                                   "--file", str(rules)))["id"]
    await asyncio.to_thread(cli, v.data, "vote", pid, "yes", "--key", key)
    await until(lambda: v.get("/api/v1/policy")["policy"]["storage_quota_bytes"] == quota, 30, "the quota")
    made = await asyncio.to_thread(lambda: [large_manifest() for _ in range(30)])  # each about 4 MB in a catalog

    def catalog_size() -> int:
        return sum(p.stat().st_size for p in v.data.glob(CATALOG_FILE + "*"))  # with its WAL

    records = {pk: [raw] for pk, raw in made}
    hostile = await sync_server([(pk, 1) for pk in records], records)
    try:
        peer = hostile.peer_id
        text = await attack(tmp_path, a, v, mid, hostile,
                            lambda log: bool(sentences_about(log, peer)) or catalog_size() > 1.5 * quota)
    finally:
        await hostile.stop()
    # what is admitted is estimated before it is stored, so the catalog (with its write-ahead log, which holds
    # recent pages twice) may pass the quota by about one batch, never by much more
    size = catalog_size()
    assert size < 1.5 * quota, f"the catalog grew to {size} bytes, far over the quota of {quota}"
    lines = sentences_about(text, peer)
    assert len(lines) == 1 and "(the catalog and the chunks held reached the storage quota)" in lines[0], lines
    held = sum(1 for d in v.get("/api/v1/datasets") if d["title"] == "junk")
    assert 1 <= held < 5, held
