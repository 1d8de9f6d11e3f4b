"""Work on a node's stored data directly from its folder: `communs get` and `communs verify`.

These run in the CLI process, with or without the node running (SQLite in WAL mode takes a
concurrent reader, and chunk files are immutable once visible), so an operator can restore a
dataset or check a disk while the node is stopped.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from communs.node.config import CATALOG_FILE, ConfigError, fsync_dir, load_config
from communs.node.services.idresolve import IdError, resolve
from communs.node.services.storage_config import open_chunk_store
from communs.protocol import ids, paths
from communs.protocol.errors import RecordError
from communs.protocol.records import Manifest
from communs.storage.catalog import Catalog
from communs.storage.chunkstore import ChunkStore
from communs.storage.errors import ChunkCorrupt, ChunkMissing, StorageError
from communs.storage.states import HELD, State

Progress = Callable[[int, int], None]


class LocalError(Exception):
    """One sentence for the operator."""


async def _open(root: Path) -> tuple[Catalog, ChunkStore]:
    cfg = load_config(root)  # a clear error when DIR is not a node folder
    try:
        catalog = await Catalog.open(root / CATALOG_FILE)
    except StorageError as exc:
        raise LocalError(str(exc)) from None
    try:
        store = open_chunk_store(root, dataclasses.replace(cfg.storage, direct_io=False))  # reads only: no probe
    except StorageError as exc:
        await catalog.close()
        raise LocalError(str(exc)) from None
    return catalog, store


async def export_dataset(root: Path, id_text: str, dest: Path, *, force: bool = False,
                         progress: Progress | None = None) -> dict[str, object]:
    """Write a complete dataset version's files into `dest`, verifying every chunk; never outside `dest`.
    From a v2 manifest, also its empty folders, each file's executable bit and modification time.
    `id_text` names a manifest, or a dataset (its latest complete version here), or a unique prefix."""
    catalog, store = await _open(root)
    try:
        try:
            chosen = await resolve(catalog, id_text, "complete")
        except IdError as exc:
            raise LocalError(str(exc)) from None
        mid = chosen.manifest
        assert mid is not None  # "complete" always names a manifest or fails
        info = await catalog.get_manifest(mid)
        if info is None or info.raw is None:
            raise LocalError("no manifest with that id is known to this node")
        manifest = Manifest.decode(info.raw)
        missing = await catalog.missing_chunks(mid)
        if info.state == State.RETRACTED and not force:
            raise LocalError(f"this dataset was retracted by its publisher ({info.reason}); use --force to "
                             "write it anyway where its chunks are still kept")
        if missing or info.state not in HELD | {State.RETRACTED}:
            raise LocalError(f"the dataset is not complete here (state {info.state}, "
                             f"{len(missing)} chunk(s) missing)")
        folders: set[Path] = set()  # folders that gained an entry here: fsynced before returning
        _make_folders(dest, folders)
        targets = []
        for entry in manifest.files:
            try:
                target = paths.safe_join(dest, entry.path)
            except RecordError as exc:
                raise LocalError(f"refusing to write {entry.path!r}: {exc}") from None
            if target.exists() and not force:
                raise LocalError(f"{target} already exists; use --force to overwrite")
            targets.append((entry, target))
        done, total = 0, manifest.size
        for entry, target in targets:
            _make_folders(target.parent, folders)
            tmp = target.with_name(f".{target.name}.communs-tmp")
            try:
                with open(tmp, "wb") as out:
                    for ref in entry.chunks:
                        try:
                            data = store.get(ref.digest, verify=True, quarantine_bad=False)
                        except ChunkCorrupt:
                            raise LocalError(f"chunk {ids.cid_str(ref.digest)} of {entry.path} is corrupt on disk; "
                                             "run 'communs verify'") from None
                        except ChunkMissing:
                            raise LocalError(f"chunk {ids.cid_str(ref.digest)} of {entry.path} is missing; "
                                             "run 'communs verify'") from None
                        out.write(data)
                        done += len(data)
                        if progress is not None:
                            progress(done, total)
                    out.flush()
                    if entry.executable:  # execute permission wherever reading is allowed, as `chmod +x` would
                        mode = os.fstat(out.fileno()).st_mode & 0o777
                        os.fchmod(out.fileno(), mode | ((mode & 0o444) >> 2))
                    os.fsync(out.fileno())
                if entry.mtime_ns is not None:
                    os.utime(tmp, ns=(time.time_ns(), entry.mtime_ns))
                os.replace(tmp, target)
                folders.add(target.parent)
            finally:
                tmp.unlink(missing_ok=True)
        for rel in manifest.empty_folders:  # schema v2 records them; files imply every other folder
            try:
                _make_folders(paths.safe_join(dest, rel), folders)
            except RecordError as exc:
                raise LocalError(f"refusing to make the folder {rel!r}: {exc}") from None
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            fsync_dir(folder)  # the renames and new folders survive a power cut once this returns
        return {"id": ids.cid_str(mid), "dataset": ids.cid_str(manifest.dataset), "version": manifest.version,
                "dest": str(dest), "files": len(targets), "folders": len(manifest.empty_folders), "bytes": total}
    finally:
        store.close()
        await catalog.close()


def _make_folders(folder: Path, created_in: set[Path]) -> None:
    """Create `folder` and its missing parents, noting every folder that gained an entry (to fsync)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        created_in.add(new.parent)


@dataclass
class VerifyReport:
    checked: int
    bad: list[str]
    missing: list[str]


async def verify_store(root: Path, progress: Progress | None = None) -> VerifyReport:
    """Re-hash every stored chunk; quarantine the bad ones and record them as gone in the catalog,
    so that replication fetches them again.

    A running node may be fetching while this runs: the chunks it writes after the store was listed are
    not in the listing. So the chunks that must be here are read from the catalog *before* the listing
    (those of own and complete versions, marked stored: never those of a replication in progress), and a
    chunk missing from the listing is checked once more on disk before it is called missing; only what is
    still absent, or corrupt, is recorded as gone (which makes the node fetch it again)."""
    catalog, store = await _open(root)
    try:
        expected = await held_chunks(catalog)
        digests = list(store.iter_digests())
        bad: list[bytes] = []
        for i, d in enumerate(digests, 1):
            try:
                store.get(d, verify=True, quarantine_bad=True)
            except ChunkCorrupt:
                bad.append(d)
            except ChunkMissing:
                pass
            if progress is not None:
                progress(i, len(digests))
        on_disk = set(digests) - set(bad)
        missing = [d for d in expected - on_disk - set(bad) if not store.has(d)]
        gone = bad + missing
        if gone:
            await catalog.mark_chunks_gone(gone)
        return VerifyReport(len(digests), [ids.cid_str(d) for d in bad],
                            sorted({ids.cid_str(d) for d in missing}))
    finally:
        store.close()
        await catalog.close()


async def held_chunks(catalog: Catalog) -> set[bytes]:
    """The chunks that must be here: those of own and complete versions (never those of a version being
    fetched, which are not all here yet by definition)."""
    out: set[bytes] = set()
    for info in await catalog.list_manifests():
        if info.state in ("own", "complete"):
            out.update(d for d, _size in await catalog.manifest_chunks(info.id))
    return out


__all__ = ["ConfigError", "LocalError", "VerifyReport", "export_dataset", "held_chunks", "verify_store"]
