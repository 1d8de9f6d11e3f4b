"""The public app over a real catalog and chunk store: only allowed states are public, bytes are verified.

Real SQLite, real chunk files, real signed manifests, real HTTP (aiohttp's test server); no mocks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from communs.node.config import Config
from communs.node.http.public.app import ALLOWED_STATES, PublicData, PublicSite
from communs.protocol import ids, keys
from communs.protocol.records import ChunkRef, FileEntry, Manifest
from communs.storage.catalog import Catalog, ManifestRow
from communs.storage.chunkstore import FsChunkStore


def manifest(key: keys.SigningKey, n: int, payload: bytes, title: str) -> Manifest:
    d = ids.digest(payload)
    return Manifest.create(key, dataset=ids.digest(b"ds%d" % n), version=1, prev=None, seq=1, log_prev=None,
                           title=title, licence="CC0-1.0", created=int(time.time()),
                           files=[FileEntry("data.bin", len(payload), (ChunkRef(d, len(payload)),))])


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Catalog, FsChunkStore, dict[str, Manifest]]]:
    catalog = await Catalog.open(tmp_path / "catalog.sqlite")
    store = FsChunkStore(tmp_path / "store", direct=False)
    out = {}
    for n, state in enumerate(("own", "complete", "in-progress", "not-wanted", "retracted")):
        payload = f"bytes of {state} ".encode() * 100
        m = manifest(keys.SigningKey.generate(), n, payload, state)  # one publisher each: seq 1
        store.put(ids.digest(payload), payload)
        row = ManifestRow.from_manifest(m, m.encode(), received_at=0, state=state, own=state == "own")
        await catalog.put_manifest(row)
        await catalog.mark_chunk_stored(ids.digest(payload), len(payload))
        out[state] = m
    yield catalog, store, out
    store.close()
    await catalog.close()


@pytest.mark.parametrize("mode,expected", [("own", {"own"}), ("held", {"own", "complete"})])
async def test_only_allowed_states_are_public(world, mode: str, expected: set[str]) -> None:  # type: ignore[no-untyped-def]
    catalog, _store, _ms = world
    got = {v.title for v in await PublicData(catalog, ALLOWED_STATES[mode]).versions()}
    assert got == expected


async def test_a_version_leaving_the_allowed_states_disappears(world) -> None:  # type: ignore[no-untyped-def]
    catalog, _store, ms = world
    data = PublicData(catalog, ALLOWED_STATES["held"])
    assert len(await data.versions()) == 2
    await catalog.set_state(ms["complete"].id, "retracted", "withdrawn by its publisher")
    assert {v.title for v in await data.versions()} == {"own"}


async def test_http_non_public_versions_are_404_and_a_corrupt_chunk_is_never_sent(  # type: ignore[no-untyped-def]
        world, tmp_path: Path) -> None:
    catalog, store, ms = world
    cfg = Config(name="n", public_listen="127.0.0.1:0", public_datasets="held")
    site = PublicSite(catalog=catalog, chunks=store, config=cfg, peer_id="p")
    async with TestClient(TestServer(site.app())) as client:
        for state in ("in-progress", "not-wanted", "retracted"):
            mid = ids.cid_str(ms[state].id)
            for path in (f"/datasets/{mid}", f"/datasets/{mid}/files/data.bin"):
                resp = await client.get(path)
                assert resp.status == 404, (state, path)
                assert "no public dataset" in (await resp.json())["error"]
        ok = ids.cid_str(ms["complete"].id)
        resp = await client.get(f"/datasets/{ok}/files/data.bin")
        assert resp.status == 200 and (await resp.read()) == b"bytes of complete " * 100
        # a published file is never run as a page of this origin
        assert resp.headers["Content-Security-Policy"] == "sandbox"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        page = await client.get(f"/datasets/{ok}")
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        # damage the stored chunk: the gateway refuses to send it (verified before the first byte)
        digest = ms["complete"].files[0].chunks[0].digest
        path = store.path_of(digest)
        path.chmod(0o644)
        path.write_bytes(b"x" * 1800)
        resp = await client.get(f"/datasets/{ok}/files/data.bin")
        assert resp.status == 503
        assert b"x" * 100 not in await resp.read()
        resp = await client.post(f"/datasets/{ok}")
        assert resp.status == 405 and resp.headers["Allow"] == "GET, HEAD"


async def test_whole_version_as_one_tar(world) -> None:  # type: ignore[no-untyped-def]
    import io
    import tarfile

    catalog, store, ms = world
    cfg = Config(name="n", public_listen="127.0.0.1:0", public_datasets="own")
    site = PublicSite(catalog=catalog, chunks=store, config=cfg, peer_id="p")
    mid = ids.cid_str(ms["own"].id)
    async with TestClient(TestServer(site.app())) as client:
        head = await client.head(f"/datasets/{mid}/archive.tar")
        assert head.status == 200
        resp = await client.get(f"/datasets/{mid}/archive.tar")
        body = await resp.read()
        assert resp.status == 200 and int(head.headers["Content-Length"]) == len(body)
        assert resp.headers["ETag"] == head.headers["ETag"]
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as tar:
            fh = tar.extractfile("data.bin")
            assert fh is not None and fh.read() == b"bytes of own " * 100
        other = ids.cid_str(ms["complete"].id)  # not public with datasets = "own"
        assert (await client.get(f"/datasets/{other}/archive.tar")).status == 404


async def test_cached_catalog_pages_follow_the_catalog(world) -> None:  # type: ignore[no-untyped-def]
    from rdflib import Graph, Namespace
    from rdflib.namespace import RDF

    dcat_ns = Namespace("http://www.w3.org/ns/dcat#")
    catalog, store, ms = world
    cfg = Config(name="n", public_listen="127.0.0.1:0", public_datasets="held")
    site = PublicSite(catalog=catalog, chunks=store, config=cfg, peer_id="p")
    async with TestClient(TestServer(site.app())) as client:
        async def listed() -> int:
            resp = await client.get("/catalog.ttl")
            g = Graph().parse(data=await resp.read(), format="turtle")
            return len(set(g.subjects(RDF.type, dcat_ns.Dataset)))

        assert await listed() == 2
        assert await listed() == 2  # served from the cache
        await catalog.set_state(ms["complete"].id, "retracted", "withdrawn")
        assert await listed() == 1


async def _multi_chunk(catalog: Catalog, store: FsChunkStore, state: str = "own") -> tuple[Manifest, bytes]:
    parts = [bytes([n]) * (1000 + n) for n in range(5)]
    whole = b"".join(parts)
    refs = tuple(ChunkRef(ids.digest(p), len(p)) for p in parts)
    m = Manifest.create(keys.SigningKey.generate(), dataset=ids.digest(b"multi"), version=1, prev=None, seq=1,
                        log_prev=None, title="multi", licence="CC0-1.0", created=int(time.time()),
                        files=[FileEntry("multi.bin", len(whole), refs), FileEntry("empty.csv", 0, ())])
    for p in parts:
        store.put(ids.digest(p), p)
    await catalog.put_manifest(ManifestRow.from_manifest(m, m.encode(), received_at=0, state=state, own=True))
    await catalog.mark_chunks_stored([(r.digest, r.size) for r in refs])
    return m, whole


async def test_a_multi_chunk_file_gets_its_whole_sha256_once_and_the_catalog_keeps_it(  # type: ignore[no-untyped-def]
        world) -> None:
    import hashlib

    from rdflib import Graph, Literal, Namespace
    from rdflib.namespace import XSD

    spdx = Namespace("http://spdx.org/rdf/terms#")
    catalog, store, _ms = world
    m, whole = await _multi_chunk(catalog, store)
    mid = ids.cid_str(m.id)
    cfg = Config(name="n", public_listen="127.0.0.1:0", public_datasets="own")
    site = PublicSite(catalog=catalog, chunks=store, config=cfg, peer_id="p")
    async with TestClient(TestServer(site.app())) as client:
        doc = await (await client.get(f"/datasets/{mid}", headers={"Accept": "application/json"})).json()
        files = {f["path"]: f["sha256"] for f in doc["files"]}
        assert files == {"multi.bin": None, "empty.csv": hashlib.sha256(b"").hexdigest()}  # not computed yet
        assert await site.sums.run_once() == 2  # multi.bin and the "own" world file
        assert await site.sums.run_once() == 0  # once
        doc = await (await client.get(f"/datasets/{mid}", headers={"Accept": "application/json"})).json()
        assert {f["path"]: f["sha256"] for f in doc["files"]}["multi.bin"] == hashlib.sha256(whole).hexdigest()
        g = Graph().parse(data=await (await client.get("/catalog.ttl")).read(), format="turtle")
        values = set(g.objects(None, spdx.checksumValue))
        assert Literal(hashlib.sha256(whole).hexdigest(), datatype=XSD.hexBinary) in values
        assert set(g.objects(None, spdx.algorithm)) == {spdx.checksumAlgorithm_sha256}
        page = await (await client.get(f"/datasets/{mid}")).text()
        assert hashlib.sha256(whole).hexdigest() in page
    # a new listener (a restart) reads it back from the catalog instead of hashing again
    again = PublicSite(catalog=catalog, chunks=store, config=cfg, peer_id="p")
    await again.versions()
    key = next(k for k in again.sums.known if again.sums.known[k] == hashlib.sha256(whole).digest())
    assert await catalog.file_sha256([key]) == {key: hashlib.sha256(whole).digest()}
    assert await again.sums.run_once() == 0


async def test_a_damaged_chunk_gives_no_checksum(world) -> None:  # type: ignore[no-untyped-def]
    catalog, store, _ms = world
    m, _whole = await _multi_chunk(catalog, store)
    victim = next(f for f in m.files if f.path == "multi.bin").chunks[3].digest
    path = store.path_of(victim)
    path.chmod(0o644)
    path.write_bytes(b"y" * 1003)  # the right length, the wrong bytes
    cfg = Config(name="n", public_listen="127.0.0.1:0", public_datasets="own")
    site = PublicSite(catalog=catalog, chunks=store, config=cfg, peer_id="p")
    assert await site.sums.run_once() == 1  # only the world's own one-chunk file
    v = next(v for v in await site.versions() if v.id == ids.cid_str(m.id))
    entry = next(f for f in v.files if f.path == "multi.bin")
    assert site.sums.lookup(entry) is None
    from communs.node.http.public.checksums import file_key

    assert await catalog.file_sha256([file_key(entry.chunks)]) == {}
    assert await site.sums.run_once() == 0  # failed recently: not tried again at once


async def test_copies_on_the_pages_are_the_catalogs_claim_counts(world) -> None:  # type: ignore[no-untyped-def]
    from communs.protocol import holding

    catalog, store, ms = world
    mid = ms["own"].id
    now = int(time.time())
    holders = [keys.SigningKey.generate() for _ in range(3)]
    claims = [holding.HoldingClaim.create(k, manifest=mid, since=now, issued_ms=now * 1000) for k in holders]
    await catalog.put_claims([(c.node, c.manifest, c.issued, c.since, c.expires, c.withdrawn, c.encode())
                              for c in claims])
    await catalog.claim_checked(holders[0].public, mid, now, ok=False)  # refuted: not counted
    cfg = Config(name="n", public_listen="127.0.0.1:0", public_datasets="own")
    site = PublicSite(catalog=catalog, chunks=store, config=cfg, peer_id="p")
    assert (await catalog.claim_counts(now, [mid]))[mid] == 2
    async with TestClient(TestServer(site.app())) as client:
        index = await (await client.get("/")).text()
        assert "<th scope=col>Copies</th>" in index and "<td>2 copies</td>" in index
        doc = await (await client.get(f"/datasets/{ids.cid_str(mid)}", headers={"Accept": "application/json"})).json()
        assert doc["copies"] == 2
