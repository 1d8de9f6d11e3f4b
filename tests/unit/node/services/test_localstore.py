"""`communs verify` while the node replicates: real catalog and chunk store in one node folder."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from communs.node.config import Config, load_config
from communs.node.datadir import init_folder
from communs.node.services.localstore import verify_store
from communs.node.services.storage_config import open_chunk_store
from communs.protocol.ids import digest
from communs.storage.catalog import Catalog, ManifestRow


def row(tag: bytes, state: str, chunks: list[tuple[bytes, int]], *, own: bool = False) -> ManifestRow:
    mid = digest(b"manifest" + tag)
    return ManifestRow(id=mid, dataset=digest(b"ds" + tag), version=1, publisher=digest(b"pub" + tag), seq=1,
                       log_prev=None, raw=b"raw", title=tag.decode(), licence="CC0-1.0",
                       size=sum(s for _, s in chunks), created=1, received_at=1, state=state, own=own,
                       chunks=chunks)


def test_a_replication_completing_during_verify_is_not_reported_missing(tmp_path: Path) -> None:
    root = tmp_path / "node"
    init_folder(root, Config(), None)
    old, new = b"stored before" * 100, b"written by the node during verify" * 100
    d_old, d_new = digest(old), digest(new)
    fetching = row(b"fetching", "in-progress", [(d_new, len(new))])

    async def setup() -> None:
        async with await Catalog.open(root / "catalog.sqlite") as cat:
            await cat.put_manifests_batch([row(b"mine", "own", [(d_old, len(old))], own=True), fetching])
            await cat.mark_chunks_stored([(d_old, len(old))])
    asyncio.run(setup())
    node_store = open_chunk_store(root, load_config(root).storage)
    node_store.put(d_old, old)
    done: list[bool] = []

    def node_completes_the_fetch(_done: int, _total: int) -> None:
        """The running node (another process in life) stores the last chunk and completes the version,
        after verify listed the store."""
        if done:
            return
        node_store.put(d_new, new)
        with sqlite3.connect(root / "catalog.sqlite") as db:
            db.execute("UPDATE chunks SET stored = 1 WHERE digest = ?", (d_new,))
            db.execute("UPDATE manifests SET state = 'complete' WHERE id = ?", (fetching.id,))
        done.append(True)

    report = asyncio.run(verify_store(root, node_completes_the_fetch))
    node_store.close()
    assert done and report.bad == [] and report.missing == [], report
    with sqlite3.connect(root / "catalog.sqlite") as db:
        assert db.execute("SELECT stored FROM chunks WHERE digest = ?", (d_new,)).fetchone() == (1,)


def test_a_chunk_really_lost_is_still_reported(tmp_path: Path) -> None:
    root = tmp_path / "node"
    init_folder(root, Config(), None)
    data = b"lost" * 1000

    async def setup() -> None:
        async with await Catalog.open(root / "catalog.sqlite") as cat:
            await cat.put_manifests_batch([row(b"done", "complete", [(digest(data), len(data))])])
            await cat.mark_chunks_stored([(digest(data), len(data))])
    asyncio.run(setup())
    report = asyncio.run(verify_store(root))
    assert len(report.missing) == 1
