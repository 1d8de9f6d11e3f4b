"""Files the node or the CLI write whole (config, node.json, `communs get`'s output) survive a power cut:
the file is fsynced before its rename and its folder after it (issue 12, item 11)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from communs.node import config


def test_write_atomic_fsyncs_the_file_then_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(config.os, "fsync", fsync)
    monkeypatch.setattr(config.os, "replace", replace)
    target = tmp_path / "node.json"
    config.write_atomic(target, "{}")
    assert target.read_text() == "{}"
    assert [e[0] for e in events] == ["fsync", "rename", "fsync"]
    assert events[1] == ("rename", str(target)) and events[2] == ("fsync", str(tmp_path))


def test_write_private_fsyncs_the_file_then_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(config.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                       real_fsync(fd)))
    config.write_private(tmp_path / "node.key", "secret")
    assert synced == [str(tmp_path / "node.key"), str(tmp_path)]
    assert (tmp_path / "node.key").stat().st_mode & 0o777 == 0o600


async def test_get_fsyncs_the_files_and_every_folder_it_adds_to(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from communs.node.services import localstore
    from communs.protocol import ids, keys
    from communs.protocol.records import FileEntry, Manifest, new_dataset_id
    from communs.storage.catalog import Catalog, ManifestRow
    from communs.storage.chunkstore import FsChunkStore

    root = tmp_path / "node"
    root.mkdir()
    (root / config.CONFIG_FILE).write_text("")
    body = os.urandom(5000)
    d = ids.digest(body)
    with FsChunkStore(root / "store", direct=False) as store:
        store.put(d, body)
    key = keys.SigningKey.generate()
    manifest = Manifest.create(key, dataset=new_dataset_id(key.public, b"n" * 16), version=1, prev=None, seq=1,
                               log_prev=None, title="t", licence="CC0-1.0", created=1,
                               files=[FileEntry.of("sub/deeper/a.bin", [(d, len(body))])])
    cat = await Catalog.open(root / config.CATALOG_FILE)
    try:
        await cat.mark_chunks_stored([(d, len(body))])
        await cat.put_manifest(ManifestRow.from_manifest(manifest, manifest.encode(), received_at=1, state="own",
                                                         own=True))
    finally:
        await cat.close()

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    dest = tmp_path / "out" / "here"  # neither folder exists yet
    await localstore.export_dataset(root, manifest.cid, dest)
    target = dest / "sub" / "deeper" / "a.bin"
    assert target.read_bytes() == body
    # the file's data, then the folders whose entries it created: the rename's, and each new folder's parent
    for folder in (target.parent, target.parent.parent, dest, dest.parent, tmp_path):
        assert str(folder) in synced, (folder, synced)
