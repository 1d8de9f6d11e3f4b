"""The SQLite catalog, on real files: schema and migrations, manifests and logs, forks, chunks, governance."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from communs.protocol import keys, records
from communs.protocol.ids import digest
from communs.storage import catalog as catalog_mod
from communs.storage import schema
from communs.storage.catalog import (
    KEPT_STATES,
    Catalog,
    ManifestConflict,
    ManifestRow,
    PutOutcome,
)
from communs.storage.errors import CatalogError

PUB_A = b"A" * 32
PUB_B = b"B" * 32


def row(publisher: bytes, seq: int, *, tag: str = "", state: str = "in-progress",
        chunks: list[tuple[bytes, int]] | None = None, dataset: bytes | None = None,
        version: int = 1, created: int | None = None) -> ManifestRow:
    mid = digest(publisher + seq.to_bytes(8, "big") + tag.encode())
    return ManifestRow(
        id=mid, dataset=dataset or digest(b"ds" + mid), version=version, publisher=publisher, seq=seq,
        log_prev=None if seq == 1 else digest(b"prev" + mid), raw=b"raw:" + mid, title=f"t{seq}{tag}",
        licence="CC-BY-4.0", size=sum(s for _, s in chunks or []), created=created or 1000 + seq,
        received_at=2000, state=state, chunks=chunks or [])


def chunk(n: int, size: int = 100) -> tuple[bytes, int]:
    return digest(b"chunk%d" % n), size


@pytest.fixture
async def cat(tmp_path: Path) -> AsyncIterator[Catalog]:
    c = await Catalog.open(tmp_path / "catalog.sqlite")
    yield c
    await c.close()


# -- opening ---------------------------------------------------------------------------------------------

async def test_fresh_catalog_gets_the_whole_schema_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    c = await Catalog.open(path)
    await c.close()
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        assert raw.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        raw.close()
    assert {"manifests", "manifest_chunks", "chunks", "forks", "gov_log", "replication", "sources",
            "kv"} <= tables


async def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    async with await Catalog.open(path) as c:
        assert await c.put_manifest(row(PUB_A, 1, chunks=[chunk(1)]))
        await c.kv_set("name", b"coop")
    async with await Catalog.open(path) as c:
        assert [m.seq for m in await c.list_manifests()] == [1]
        assert await c.kv_get("name") == b"coop"
        assert await c.manifest_chunks(row(PUB_A, 1).id) == [chunk(1)]


async def test_foreign_keys_are_enforced(cat: Catalog) -> None:
    with pytest.raises(CatalogError, match="FOREIGN KEY"):
        async with cat.transaction() as db:
            await db.execute("INSERT INTO manifest_chunks (manifest, digest) VALUES (?, ?)", (b"x", b"y"))


async def test_a_file_that_is_not_sqlite_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    path.write_bytes(b"this is not a database at all, just some text " * 100)
    with pytest.raises(CatalogError, match="is not a Communs catalog"):
        await Catalog.open(path)
    assert path.read_bytes().startswith(b"this is not")  # left untouched


def _overwrite_header(path: Path) -> None:
    for leftover in path.parent.glob(path.name + "-*"):
        leftover.unlink()
    data = bytearray(path.read_bytes())
    data[0:16] = b"garbage garbage!"
    path.write_bytes(bytes(data))


async def test_a_catalog_with_a_damaged_header_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    async with await Catalog.open(path) as c:
        await c.put_manifest(row(PUB_A, 1))
    _overwrite_header(path)
    with pytest.raises(CatalogError, match="is not a Communs catalog"):
        await Catalog.open(path)


async def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE songs (title TEXT)")
    raw.commit()
    raw.close()
    with pytest.raises(CatalogError, match="another application"):
        await Catalog.open(path)


async def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not a file"):
        await Catalog.open(tmp_path)
    with pytest.raises(CatalogError, match="cannot open"):
        await Catalog.open(tmp_path / "missing" / "catalog.sqlite")


def test_a_catalog_that_cannot_be_opened_leaves_no_thread_behind(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """aiosqlite stops the worker thread of a connection that failed to open without waiting for it; the
    thread then reported to the event loop after asyncio.run had closed it: "RuntimeError: Event loop is
    closed" from the thread, a traceback after `communs` said the catalog cannot be opened (and a
    PytestUnhandledThreadExceptionWarning when a test's loop closed first). Catalog.open waits for it."""
    from_threads: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: from_threads.append(args.exc_value))
    before = set(threading.enumerate())
    left: list[set[threading.Thread]] = []

    async def attempt() -> None:
        with pytest.raises(CatalogError, match="cannot open"):
            await Catalog.open(tmp_path / "missing" / "catalog.sqlite")
        left.append({t for t in set(threading.enumerate()) - before if "_connection_worker_thread" in t.name})

    for _ in range(30):  # before the fix, about one attempt in two
        asyncio.run(attempt())
    for thread in set(threading.enumerate()) - before:
        thread.join(10)
    assert from_threads == []
    assert all(not s for s in left), left


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    await (await Catalog.open(path)).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    with pytest.raises(CatalogError, match="newer Communs"):
        await Catalog.open(path)


async def test_a_failed_migration_leaves_the_old_schema_intact(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "catalog.sqlite"
    await (await Catalog.open(path)).close()
    broken = [*schema.MIGRATIONS, ["CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"]]
    monkeypatch.setattr(catalog_mod, "MIGRATIONS", broken)
    monkeypatch.setattr(catalog_mod, "SCHEMA_VERSION", len(broken))
    with pytest.raises(CatalogError, match="migrating the catalog"):
        await Catalog.open(path)
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone()[0] == 0
    finally:
        raw.close()
    monkeypatch.undo()
    await (await Catalog.open(path)).close()


async def test_a_pending_migration_runs_at_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "catalog.sqlite"
    async with await Catalog.open(path) as c:
        await c.put_manifest(row(PUB_A, 1))
    upgraded = [*schema.MIGRATIONS, ["ALTER TABLE manifests ADD COLUMN note TEXT NOT NULL DEFAULT 'n'"]]
    monkeypatch.setattr(catalog_mod, "MIGRATIONS", upgraded)
    monkeypatch.setattr(catalog_mod, "SCHEMA_VERSION", len(upgraded))
    async with await Catalog.open(path) as c:
        assert len(await c.list_manifests()) == 1
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(upgraded)
        assert raw.execute("SELECT note FROM manifests").fetchone()[0] == "n"
    finally:
        raw.close()


# -- manifests and logs ----------------------------------------------------------------------------------

async def test_put_manifest_is_idempotent_and_refuses_a_second_record_at_the_same_seq(cat: Catalog) -> None:
    first = row(PUB_A, 1, chunks=[chunk(1), chunk(2)])
    assert await cat.put_manifest(first) is True
    assert await cat.put_manifest(first) is False
    with pytest.raises(ManifestConflict) as info:
        await cat.put_manifest(row(PUB_A, 1, tag="other"))
    assert info.value.existing == first.id
    got = await cat.get_manifest(first.id)
    assert got is not None and got.raw == first.raw and got.state == "in-progress" and not got.own
    assert (await cat.manifest_at(PUB_A, 1)) == got
    assert await cat.get_manifest(b"\0" * 32) is None
    assert len(await cat.list_manifests()) == 1


async def test_batch_insert_reports_each_outcome(cat: Catalog) -> None:
    await cat.put_manifest(row(PUB_A, 1))
    batch = [row(PUB_A, 1), row(PUB_A, 2), row(PUB_A, 2), row(PUB_A, 2, tag="fork"), row(PUB_A, 1, tag="x"),
             row(PUB_B, 1)]
    outcomes = await cat.put_manifests_batch(batch)
    assert outcomes == [PutOutcome.KNOWN, PutOutcome.INSERTED, PutOutcome.KNOWN, PutOutcome.CONFLICT,
                        PutOutcome.CONFLICT, PutOutcome.INSERTED]
    assert await cat.heads() == {PUB_A: 2, PUB_B: 1}
    assert await cat.put_manifests_batch([]) == []


async def test_ten_thousand_manifests_in_one_batch(cat: Catalog) -> None:
    rows = [row(bytes([i % 50]) * 32, i // 50 + 1, chunks=[chunk(i)]) for i in range(10_000)]
    start = time.perf_counter()
    outcomes = await cat.put_manifests_batch(rows)
    elapsed = time.perf_counter() - start
    assert outcomes.count(PutOutcome.INSERTED) == 10_000
    assert len(await cat.heads()) == 50
    assert set((await cat.contiguous_heads()).values()) == {200}
    print(f"10,000 manifests stored in {elapsed:.2f} s ({10_000 / elapsed:,.0f}/s)")


async def test_heads_and_contiguous_heads_with_gaps(cat: Catalog) -> None:
    await cat.put_manifests_batch([row(PUB_A, s) for s in (1, 2, 3, 5, 6)] + [row(PUB_B, s) for s in (2, 3)])
    assert await cat.heads() == {PUB_A: 6, PUB_B: 3}
    assert await cat.contiguous_heads() == {PUB_A: 3}
    assert await cat.contiguous_head(PUB_A) == 3
    assert await cat.contiguous_head(PUB_B) == 0
    assert await cat.contiguous_head(b"C" * 32) == 0
    await cat.put_manifest(row(PUB_A, 4))
    assert await cat.contiguous_head(PUB_A) == 6
    await cat.put_manifest(row(PUB_B, 1))
    assert await cat.contiguous_heads() == {PUB_A: 6, PUB_B: 3}


async def test_ranges_and_log_view(cat: Catalog) -> None:
    await cat.put_manifests_batch([row(PUB_A, s) for s in (1, 2, 3, 5)] + [row(PUB_B, 1)])
    got = await cat.manifests_range(PUB_A, 2, 5)
    assert [m.seq for m in got] == [2, 3, 5]
    assert all(m.raw == row(PUB_A, m.seq).raw for m in got)
    assert [m.seq for m in await cat.manifests_range(PUB_A, 1, 100, limit=2)] == [1, 2]
    assert await cat.manifests_range(PUB_A, 6, 9) == []
    view = await cat.log_view(PUB_A, 4)
    assert view.head == 5
    assert view.at_seq is None
    assert view.before is not None and view.before.seq == 3 and view.before.id == row(PUB_A, 3).id
    assert view.after is not None and view.after.log_prev == row(PUB_A, 5).log_prev
    empty = await cat.log_view(b"C" * 32, 1)
    assert (empty.head, empty.at_seq, empty.before, empty.after) == (0, None, None, None)


async def test_states_and_listing(cat: Catalog) -> None:
    ds = digest(b"dataset")
    await cat.put_manifests_batch([row(PUB_A, 1, dataset=ds, version=1, created=10),
                                   row(PUB_A, 2, dataset=ds, version=2, created=20),
                                   row(PUB_B, 1, created=15)])
    await cat.set_state(row(PUB_A, 1).id, "not-wanted", "licence CC-BY-4.0 is not accepted")
    m = await cat.get_manifest(row(PUB_A, 1).id)
    assert m is not None and (m.state, m.reason) == ("not-wanted", "licence CC-BY-4.0 is not accepted")
    with pytest.raises(CatalogError, match="no such manifest"):
        await cat.set_state(b"\1" * 32, "complete")
    await cat.set_states([(row(PUB_A, 2).id, "complete", ""), (row(PUB_B, 1).id, "wanted", "queued")])
    assert [x.seq for x in await cat.list_manifests(dataset=ds)] == [2, 1]
    assert [x.title for x in await cat.list_manifests()] == ["t2", "t1", "t1"]
    assert [x.publisher for x in await cat.list_manifests(state="wanted")] == [PUB_B]
    assert all(x.raw is None for x in await cat.list_manifests())
    assert all(x.raw is not None for x in await cat.list_manifests(with_raw=True))
    latest = await cat.latest_version(ds)
    assert latest is not None and latest.version == 2


async def test_row_from_a_real_signed_manifest(cat: Catalog) -> None:
    key = keys.SigningKey.generate()
    c1, c2 = chunk(1, 300), chunk(2, 200)
    files = [records.FileEntry.of("a.csv", [c1, c2]), records.FileEntry.of("b/c.csv", [c1])]
    m = records.Manifest.create(key, dataset=records.new_dataset_id(key.public, b"n" * 16), version=1,
                                prev=None, seq=1, log_prev=None, title="Trees", licence="ODbL-1.0",
                                created=123, files=files)
    r = ManifestRow.from_manifest(m, m.encode(), received_at=456, state="own", own=True)
    assert sorted(r.chunks) == sorted([c1, c2])
    assert await cat.put_manifest(r)
    got = await cat.get_manifest(m.id)
    assert got is not None and got.own and got.size == 800 and got.publisher == key.public
    assert got.raw is not None and records.Manifest.decode(got.raw).id == m.id
    assert sorted(await cat.manifest_chunks(m.id)) == sorted([c1, c2])


# -- forks -----------------------------------------------------------------------------------------------

async def test_forks_are_recorded_once_in_either_order(cat: Catalog) -> None:
    a, b = row(PUB_A, 3), row(PUB_A, 3, tag="fork")
    assert await cat.record_fork(PUB_A, 3, a.id, a.raw, b.id, b.raw, detected_at=99, reason="two at seq 3")
    assert not await cat.record_fork(PUB_A, 3, b.id, b.raw, a.id, a.raw, detected_at=100)
    [fork] = await cat.forks()
    assert {fork.id_a, fork.id_b} == {a.id, b.id}
    assert fork.id_a < fork.id_b
    assert {fork.id_a: fork.raw_a, fork.id_b: fork.raw_b} == {a.id: a.raw, b.id: b.raw}
    assert fork.reason == "two at seq 3" and fork.detected_at == 99
    assert await cat.forked_publishers() == {PUB_A}
    assert await cat.forks(PUB_B) == []
    with pytest.raises(CatalogError, match="two different"):
        await cat.record_fork(PUB_A, 3, a.id, a.raw, a.id, a.raw, detected_at=1)


# -- chunks ----------------------------------------------------------------------------------------------

async def test_chunk_accounting_and_unreferenced_chunks(cat: Catalog) -> None:
    kept = row(PUB_A, 1, state="complete", chunks=[chunk(1), chunk(2)])
    released = row(PUB_A, 2, state="in-progress", chunks=[chunk(2, 100), chunk(3, 50)])
    other = row(PUB_B, 1, state="wanted", chunks=[chunk(4, 10)])
    await cat.put_manifests_batch([kept, released, other])
    assert sorted(await cat.missing_chunks(released.id)) == sorted([chunk(2), chunk(3, 50)])
    await cat.mark_chunks_stored([chunk(1), chunk(2), chunk(3, 50)])
    assert await cat.is_chunk_stored(chunk(3)[0])
    assert not await cat.is_chunk_stored(chunk(4)[0])
    assert await cat.missing_chunks(released.id) == []
    assert await cat.missing_chunks(other.id) == [chunk(4, 10)]
    assert await cat.progress(released.id) == (150, 150)
    assert await cat.progress(other.id) == (0, 10)
    assert await cat.missing_bytes(other.id) == 10
    assert await cat.used_bytes() == 250
    assert await cat.stored_digests() == {chunk(i)[0] for i in (1, 2, 3)}
    assert await cat.unreferenced_chunks() == []
    assert await cat.chunks_in_use() == {chunk(i)[0] for i in (1, 2, 3, 4)}
    # A policy no longer wants `released`: only the chunk no kept dataset shares becomes collectable.
    await cat.set_state(released.id, "not-wanted", "licence refused")
    assert await cat.unreferenced_chunks() == [chunk(3, 50)]
    await cat.mark_chunks_gone([chunk(3)[0]])
    assert await cat.unreferenced_chunks() == []
    assert await cat.used_bytes() == 200
    assert await cat.progress(released.id) == (100, 150)
    # A chunk stored but used by no manifest at all is collectable too, and forgotten once deleted.
    await cat.mark_chunk_stored(*chunk(9, 7))
    assert await cat.unreferenced_chunks() == [chunk(9, 7)]
    await cat.mark_chunks_gone([chunk(9)[0]])
    assert await cat._one("SELECT count(*) FROM chunks WHERE digest = ?", (chunk(9)[0],)) == (0,)
    assert KEPT_STATES == {"own", "complete", "in-progress", "wanted"}


async def test_chunk_rows_exist_only_for_kept_manifests_and_appear_when_one_becomes_kept(cat: Catalog) -> None:
    """A manifest learned but not wanted costs one row; the state change that keeps it writes its chunk rows
    in the same transaction, so nothing about kept data (progress, collection) ever misses a chunk."""
    shared = chunk(20, 70)
    kept = row(PUB_A, 1, state="complete", chunks=[chunk(21), shared])
    ignored = row(PUB_B, 1, state="not-wanted", chunks=[chunk(22, 30), shared])
    later = row(PUB_B, 2, state="not-wanted", chunks=[chunk(23, 40)])
    finished = row(PUB_B, 3, state="not-wanted", chunks=[chunk(24, 5)])
    await cat.put_manifests_batch([kept, ignored, later, finished])
    count = "SELECT count(*) FROM manifest_chunks WHERE manifest = ?"
    assert await cat._one(count, (ignored.id,)) == (0,)
    assert await cat._one("SELECT count(*) FROM chunks WHERE digest = ?", (chunk(22)[0],)) == (0,)
    assert await cat.progress(kept.id) == (0, 170)
    await cat.mark_chunks_stored([chunk(21), shared, chunk(22, 30)])
    # chunk 22 is stored but used by no kept manifest: collectable, until `ignored` becomes wanted
    assert await cat.unreferenced_chunks() == [chunk(22, 30)]
    await cat.set_state(ignored.id, "in-progress", "policy accepts it")
    assert await cat.unreferenced_chunks() == []
    assert sorted(await cat.manifest_chunks(ignored.id)) == sorted([chunk(22, 30), shared])
    assert await cat.progress(ignored.id) == (100, 100)
    # the same through a policy enactment's batch of changes, and through the end of a replication
    await cat.set_states([(later.id, "in-progress", "wanted"), (kept.id, "complete", "kept")])
    assert await cat.missing_chunks(later.id) == [chunk(23, 40)]
    assert await cat._one(count, (kept.id,)) == (2,)  # rows already there are left as they are
    await cat.replication_finish(finished.id, state="complete")
    assert await cat.manifest_chunks(finished.id) == [chunk(24, 5)]
    # releasing keeps the rows (harmless) and makes what no kept manifest uses collectable again
    await cat.set_state(ignored.id, "not-wanted", "policy refuses it")
    assert await cat.unreferenced_chunks() == [chunk(22, 30)]


async def test_a_version_1_catalog_is_upgraded_and_keeps_its_chunk_rows(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    raw = sqlite3.connect(path)
    try:
        for statement in schema.MIGRATIONS[0]:
            raw.execute(statement)
        raw.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
        raw.execute("PRAGMA user_version = 1")
        old = row(PUB_A, 1, state="not-wanted", chunks=[chunk(30, 9)])
        raw.execute("INSERT INTO manifests (id, dataset, version, publisher, seq, log_prev, raw, title, licence, "
                    "size, created, received_at, own, state, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0,?,'')",
                    (old.id, old.dataset, 1, PUB_A, 1, None, old.raw, old.title, old.licence, 9, 1, 2, old.state))
        raw.execute("INSERT INTO chunks (digest, size) VALUES (?, 9)", (chunk(30)[0],))
        raw.execute("INSERT INTO manifest_chunks (manifest, digest) VALUES (?, ?)", (old.id, chunk(30)[0]))
        raw.commit()
    finally:
        raw.close()
    async with await Catalog.open(path) as c:
        await c.set_state(old.id, "in-progress", "wanted now")  # a NULL chunk list: its old rows stand
        assert await c.missing_chunks(old.id) == [chunk(30, 9)]
        await c.put_manifest(row(PUB_A, 2, state="not-wanted", chunks=[chunk(31, 4)]))
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    finally:
        raw.close()


# -- governance log --------------------------------------------------------------------------------------

async def test_governance_log_appends_in_chain_only(cat: Catalog) -> None:
    h0, h1 = digest(b"e0"), digest(b"e1")
    await cat.gov_append(0, h0, None, "genesis", b"entry0", 10)
    with pytest.raises(CatalogError, match="expected entry 1"):
        await cat.gov_append(2, h1, h0, "proposal", b"entry2", 11)
    with pytest.raises(CatalogError, match="does not link"):
        await cat.gov_append(1, h1, digest(b"wrong"), "proposal", b"entry1", 11)
    await cat.gov_append(1, h1, h0, "proposal", b"entry1", 11)
    entries = await cat.gov_entries()
    assert [(e.seq, e.kind, e.raw) for e in entries] == [(0, "genesis", b"entry0"), (1, "proposal", b"entry1")]
    assert [e.seq for e in await cat.gov_entries(from_seq=1)] == [1]
    head = await cat.gov_head()
    assert head is not None and head.hash == h1


async def test_governance_log_refuses_update_and_delete(cat: Catalog, tmp_path: Path) -> None:
    await cat.gov_append(0, digest(b"e0"), None, "genesis", b"entry0", 10)
    with pytest.raises(CatalogError, match="append-only"):
        async with cat.transaction() as db:
            await db.execute("UPDATE gov_log SET raw = x'00' WHERE seq = 0")
    with pytest.raises(CatalogError, match="append-only"):
        async with cat.transaction() as db:
            await db.execute("DELETE FROM gov_log")
    await cat.close()
    # Even another program writing to the file directly is refused by the database itself.
    raw = sqlite3.connect(tmp_path / "catalog.sqlite")
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM gov_log")
        assert raw.execute("SELECT raw FROM gov_log").fetchall() == [(b"entry0",)]
    finally:
        raw.close()


async def test_a_failed_transaction_leaves_nothing(cat: Catalog) -> None:
    with pytest.raises(RuntimeError):
        async with cat.transaction() as db:
            await db.execute("INSERT INTO kv (key, value) VALUES ('k', x'01')")
            raise RuntimeError("crash in the middle of a step")
    assert await cat.kv_get("k") is None


# -- replication -----------------------------------------------------------------------------------------

async def test_replication_progress_and_sources(cat: Catalog) -> None:
    m = row(PUB_A, 1, state="in-progress", chunks=[chunk(1, 400), chunk(2, 600)])
    await cat.put_manifest(m)
    await cat.replication_start(m.id, 1000, now=5)
    await cat.mark_chunk_stored(*chunk(1, 400))
    await cat.replication_update(m.id, now=6, error="peer X timed out")
    [rep] = await cat.replications()
    assert (rep.manifest, rep.bytes_done, rep.bytes_total, rep.started_at, rep.updated_at, rep.last_error) == (
        m.id, 400, 1000, 5, 6, "peer X timed out")
    await cat.source_seen(m.id, "peerA", now=5)
    await cat.source_seen(m.id, "peerB", now=6)
    await cat.source_failed(m.id, "peerB", now=7, ban=True, reason="sent a chunk that does not match its hash")
    await cat.source_failed(m.id, "peerB", now=8)
    srcs = {s.peer: s for s in await cat.sources(m.id)}
    assert not srcs["peerA"].banned and srcs["peerA"].failures == 0
    assert srcs["peerB"].banned and srcs["peerB"].failures == 2
    assert srcs["peerB"].ban_reason == "sent a chunk that does not match its hash"
    await cat.replication_finish(m.id, state="complete")
    assert await cat.replications() == []
    assert await cat.sources(m.id) == []
    got = await cat.get_manifest(m.id)
    assert got is not None and got.state == "complete"


async def test_kv(cat: Catalog) -> None:
    assert await cat.kv_get("x") is None
    await cat.kv_set("x", b"1")
    await cat.kv_set("x", b"2")
    assert await cat.kv_get("x") == b"2"
    await cat.kv_delete("x")
    assert await cat.kv_get("x") is None


async def test_known_chunks_are_the_stored_and_the_referenced_ones(cat: Catalog) -> None:
    await cat.put_manifest(row(PUB_A, 1, chunks=[chunk(1)], state="in-progress"))
    await cat.put_manifest(row(PUB_A, 2, chunks=[chunk(3)], state="not-wanted"))  # its chunks are not awaited
    await cat.mark_chunks_stored([chunk(2)])
    many = [chunk(i)[0] for i in range(3, 1200)]
    assert await cat.known_chunks([chunk(1)[0], chunk(2)[0], *many]) == {chunk(1)[0], chunk(2)[0]}
    assert await cat.known_chunks([]) == set()


async def test_publisher_usage_and_catalog_bytes_for_quotas(cat: Catalog) -> None:
    """Issue 12: what each publisher holds here (for the ingest quotas) and what the catalog itself takes on
    disk (counted with the chunks against the storage quota)."""
    before = await cat.catalog_bytes()
    pages = (await cat._one("PRAGMA page_count"))[0] * (await cat._one("PRAGMA page_size"))[0]
    wal = Path(f"{cat.path}-wal")
    assert before == pages + (wal.stat().st_size if wal.exists() else 0) > 0  # pages and the write-ahead log
    rows = [row(PUB_A, 1, chunks=[chunk(1), chunk(2)]), row(PUB_A, 2, chunks=[chunk(3)]), row(PUB_B, 1)]
    await cat.put_manifests_batch(rows)
    usage = await cat.publisher_usage([PUB_A, PUB_B, b"C" * 32, PUB_A])
    assert usage == {PUB_A: (2, len(rows[0].raw) + len(rows[1].raw), 3), PUB_B: (1, len(rows[2].raw), 0)}
    # a catalog grows with what it holds, and quota_used_bytes counts it with the stored chunks
    await cat.put_manifests_batch([row(PUB_B, s, chunks=[chunk(1000 + s)]) for s in range(2, 400)])
    grown = await cat.catalog_bytes()
    assert grown > before
    await cat.mark_chunks_stored([chunk(1)])
    assert await cat.quota_used_bytes() == 100 + await cat.catalog_bytes()


async def test_a_retraction_marks_the_publishers_versions_and_is_kept_once(cat: Catalog) -> None:
    ds = digest(b"dataset")
    v1 = row(PUB_A, 1, dataset=ds, state="complete", chunks=[chunk(1)])
    v2 = row(PUB_A, 2, dataset=ds, version=2, state="in-progress", chunks=[chunk(2)])
    other = row(PUB_B, 1, state="complete", chunks=[chunk(3)])
    await cat.put_manifests_batch([v1, v2, other])
    await cat.mark_chunks_stored([chunk(1), chunk(2), chunk(3)])
    changed = await cat.put_retraction(ds, PUB_A, b"first", "retracted by its publisher")
    assert sorted(changed) == sorted([v1.id, v2.id])
    assert {i.id: i.state for i in await cat.list_manifests()} == {v1.id: "retracted", v2.id: "retracted",
                                                                    other.id: "complete"}
    assert await cat.put_retraction(ds, PUB_A, b"second", "again") == []  # final: nothing changes
    assert await cat.retraction(ds) == b"first"
    assert await cat.retracted_datasets([ds, other.dataset]) == {ds}
    # released unless kept
    assert sorted(await cat.unreferenced_chunks()) == sorted([chunk(1), chunk(2)])
    assert await cat.unreferenced_chunks(keep=("retracted",)) == []


async def test_retractions_are_paged_by_dataset_id(cat: Catalog) -> None:
    datasets = sorted(digest(b"d%d" % i) for i in range(5))
    for d in datasets:
        await cat.put_retraction(d, PUB_A, b"r" + d, "")
    await cat.kv_set("zzz-other", b"x")
    first = await cat.retractions_after(None, 3)
    assert [d for d, _ in first] == datasets[:3] and first[0][1] == b"r" + datasets[0]
    rest = await cat.retractions_after(first[-1][0], 3)
    assert [d for d, _ in rest] == datasets[3:]


async def test_no_state_change_undoes_a_retraction(cat: Catalog) -> None:
    ds = digest(b"gone")
    v = row(PUB_A, 1, dataset=ds, state="in-progress", chunks=[chunk(1)])
    await cat.put_manifests_batch([v])
    await cat.put_retraction(ds, PUB_A, b"r", "retracted by its publisher")
    await cat.set_state(v.id, "in-progress", "fetching")  # a fetch that was running when it came
    await cat.set_states([(v.id, "complete", "x")])
    await cat.replication_finish(v.id, state="complete", reason="complete")
    [info] = await cat.list_manifests()
    assert (info.state, info.reason) == ("retracted", "retracted by its publisher")
    with pytest.raises(CatalogError):
        await cat.set_state(digest(b"unknown"), "complete")


# -- holding claims --------------------------------------------------------------------------------------

async def test_claims_keep_the_newest_per_node_and_manifest_and_count_live_ones(cat: Catalog) -> None:
    m1, m2 = digest(b"m1"), digest(b"m2")
    n1, n2 = b"1" * 32, b"2" * 32
    assert await cat.put_claims([(n1, m1, 10, 1, 500, False, b"c1"), (n2, m1, 10, 1, 500, False, b"c2"),
                                 (n1, m2, 10, 1, 150, False, b"c3")]) == 3
    assert await cat.claim_counts(100) == {m1: 2, m2: 1}
    assert await cat.claim_counts(200, [m1, m2]) == {m1: 2}  # m2's claim expired
    await cat.claim_checked(n1, m1, 120, True)
    assert await cat.put_claims([(n1, m1, 9, 1, 900, False, b"old")]) == 0  # a replay of an older claim
    assert await cat.put_claims([(n1, m1, 11, 1, 600, False, b"refresh")]) == 1
    rows = await cat.live_claims(100, m1)
    assert [(r.node, r.raw, r.verified_at) for r in rows] == [(n1, b"refresh", 120), (n2, b"c2", None)]
    assert await cat.put_claims([(n2, m1, 12, 1, 900, True, b"withdrawn")]) == 1
    assert await cat.put_claims([(n2, m1, 10, 1, 500, False, b"c2")]) == 0  # replay after withdrawal
    assert await cat.claim_counts(100) == {m1: 1, m2: 1}
    assert await cat.claim_issued([(n2, m1), (n1, m2)]) == {(n2, m1): 12, (n1, m2): 10}
    assert len(await cat.live_claims(100, include_withdrawn=True)) == 3
    assert await cat.drop_expired_claims(200) == 1
    assert await cat.claims_by_node(n1, 100) == 1


async def test_a_failed_challenge_stops_counting_a_claim_until_one_passes(cat: Catalog) -> None:
    m, n1, n2 = digest(b"m"), b"1" * 32, b"2" * 32
    await cat.put_claims([(n1, m, 10, 1, 500, False, b"a"), (n2, m, 10, 1, 500, False, b"b")])
    await cat.claim_checked(n2, m, 100, False)
    assert await cat.claim_counts(150) == {m: 1}
    await cat.put_claims([(n2, m, 11, 1, 600, False, b"b2")])  # a refresh does not wash the failure
    assert await cat.claim_counts(150, [m]) == {m: 1}
    await cat.claim_checked(n2, m, 120, True)
    assert await cat.claim_counts(150) == {m: 2}


async def test_claims_since_pages_by_the_order_stored_here(cat: Catalog) -> None:
    m, n1, n2 = digest(b"m"), b"1" * 32, b"2" * 32
    await cat.put_claims([(n1, m, 10, 1, 500, False, b"a"), (n2, m, 10, 1, 500, False, b"b")])
    first = await cat.claims_since(0, 100, 1)
    assert [r for _, r in first] == [b"a"]
    rest = await cat.claims_since(first[-1][0], 100, 10)
    assert [r for _, r in rest] == [b"b"]
    await cat.put_claims([(n1, m, 11, 1, 500, True, b"a-withdrawn")])
    assert [r for _, r in await cat.claims_since(rest[-1][0], 100, 10)] == [b"a-withdrawn"]
    assert await cat.claims_since(0, 600, 10) == []


async def test_file_sha256_is_kept_once_per_file_key(cat: Catalog) -> None:
    a, b = digest(b"file a"), digest(b"file b")
    assert await cat.file_sha256([a, b]) == {}
    await cat.put_file_sha256(a, b"\x11" * 32, 10, 1000)
    await cat.put_file_sha256(a, b"\x22" * 32, 10, 2000)  # a file's bytes never change: the first stays
    assert await cat.file_sha256([a, b]) == {a: b"\x11" * 32}
    assert await cat.file_sha256([digest(b"%d" % n) for n in range(1200)] + [a]) == {a: b"\x11" * 32}  # batched
    with pytest.raises(CatalogError):
        await cat.put_file_sha256(b, b"short", 10, 1000)  # the schema refuses what is no SHA-256
    assert await cat.file_sha256([b]) == {}
# -- what survives a restart beside the signed records (schema 5) ---------------------------------------

async def test_governance_routes_survive_reopening_and_the_first_one_stays(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    r1, r2 = digest(b"ballot"), digest(b"proposal")
    async with await Catalog.open(path) as c:
        await c.put_gov_route(r1, "libp2p", "12D3KooWpeer", 10)
        await c.put_gov_route(r2, "admin API", None, 11)
        await c.put_gov_route(r1, "admin API", None, 12)  # the same record again: its route is known already
    async with await Catalog.open(path) as c:
        assert await c.gov_routes() == {r1: ("libp2p", "12D3KooWpeer"), r2: ("admin API", None)}
        assert await c.gov_routes(limit=1) == {r2: ("admin API", None)}  # the newest first
    assert catalog_mod.read_gov_routes_readonly(path) == {r1: ("libp2p", "12D3KooWpeer"), r2: ("admin API", None)}


def test_a_catalog_from_before_schema_4_has_no_routes_to_read(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE gov_log (seq INTEGER)")
    raw.close()
    assert catalog_mod.read_gov_routes_readonly(path) == {}


async def test_release_graces_are_stored_updated_and_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    m1, m2 = digest(b"m1"), digest(b"m2")
    async with await Catalog.open(path) as c:
        await c.save_release_graces({m1: (5, 100), m2: (0, 100)})
        await c.save_release_graces({m1: (9, 104)})
        await c.save_release_graces({})
    async with await Catalog.open(path) as c:
        assert await c.release_graces() == {m1: (9, 104), m2: (0, 100)}
        await c.save_release_graces({m2: None, m1: (12, 107)})
        assert await c.release_graces() == {m1: (12, 107)}
        with pytest.raises(CatalogError):  # a negative time is refused by the schema, nothing changes
            await c.save_release_graces({m1: (-1, 108)})
        assert await c.release_graces() == {m1: (12, 107)}


async def test_claims_on_states_answers_what_live_claims_answers_per_manifest(cat: Catalog) -> None:
    rows = [row(PUB_A, i, state=s) for i, s in enumerate(["complete", "not-wanted", "in-progress", "complete",
                                                          "retracted", "not-wanted"], start=1)]
    rows.append(row(PUB_B, 1, state="complete"))
    for r in rows:
        await cat.put_manifest(r)
    await cat.set_state(rows[-1].id, "own")  # published here: not a replica
    async with cat.transaction() as db:
        await db.execute("UPDATE manifests SET own = 1 WHERE id = ?", (rows[-1].id,))
    claims = []
    for k, r in enumerate(rows):
        for node in (b"1" * 32, b"2" * 32, b"3" * 32)[: 1 + k % 3]:
            claims.append((node, r.id, 10, 1, 500 if k != 3 else 50, node == b"3" * 32, b"c"))
    claims.append((b"9" * 32, digest(b"a manifest not here"), 10, 1, 500, False, b"c"))
    await cat.put_claims(claims)
    await cat.claim_checked(b"2" * 32, rows[0].id, 90, False)
    got = await cat.claims_on_states(100, ["complete", "not-wanted"])
    want = {}
    for r in rows:
        info = await cat.get_manifest(r.id)
        assert info is not None
        if not info.own and info.state in ("complete", "not-wanted") and (live := await cat.live_claims(100, r.id)):
            want[r.id] = live
    assert got == want and len(want) >= 2
    assert rows[-1].id not in got and rows[3].id not in got  # own; every claim expired
