"""Publishing's recovery paths on a real chunk store and real files: the publish journal (which chunk files
an interrupted publish may leave) and chunks released while a publish was under way."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

from communs.node.services.datasets import DatasetsService
from communs.node.services.publish_journal import PublishJournal, interrupted_chunks
from communs.protocol.records import FileEntry
from communs.storage.chunkstore import FsChunkStore


def _service(store: FsChunkStore) -> DatasetsService:
    storage = SimpleNamespace(chunks=store, catalog=None)
    return DatasetsService(SimpleNamespace(), storage, SimpleNamespace())  # type: ignore[arg-type]


async def test_chunks_released_meanwhile_are_written_again(tmp_path: Path) -> None:
    store = FsChunkStore(tmp_path / "store")
    try:
        real = tmp_path / "data.bin"
        real.write_bytes(os.urandom(3 << 20))
        chunk_list = store.ingest_file(real)
        assert len(chunk_list) >= 2
        entry = FileEntry.of("data.bin", chunk_list)
        store.delete(chunk_list[0][0])  # a release deleted it after the publish found it stored
        await _service(store)._rewrite_released([("data.bin", real, real.stat().st_size)], [entry],
                                                dict(chunk_list))
        assert all(store.has(d) for d, _ in chunk_list)
    finally:
        store.close()


def test_journal_names_the_chunks_of_an_unfinished_publish(tmp_path: Path) -> None:
    store = FsChunkStore(tmp_path / "store")
    try:
        done = tmp_path / "done.bin"
        done.write_bytes(os.urandom(2 << 20))
        cut = tmp_path / "cut.bin"
        cut.write_bytes(os.urandom(2 << 20))
        journal = PublishJournal(tmp_path)
        journal.file(done)
        first = store.ingest_file(done)
        journal.chunks([d for d, _ in first])
        journal.file(cut)  # the crash came while this file was being chunked: no chunks line for it
        second = store.ingest_file(cut)
        journal.close()
        named, journals = interrupted_chunks(tmp_path)
        assert {d for d, _ in first + second} <= named
        assert journals == [journal.path]
        journal.finish()  # a publish that commits leaves no journal
        assert interrupted_chunks(tmp_path) == (set(), [])
    finally:
        store.close()
