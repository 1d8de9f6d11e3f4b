"""`communs storage migrate`: move a stopped node's chunks to another store (folder <-> S3) and switch to it.

Every chunk the catalog records as stored is read from the current store (hashed on read: a corrupt or
missing one stops the move with a sentence naming it, before anything is switched) and written to the new
one (hashed again before writing). A chunk already in the new store is skipped: both stores make a chunk
visible under its name only complete and hash-checked (a renamed fsynced file; a single PUT), so an
interrupted move resumes where it stopped. Only when every chunk is in the new store is config.toml
rewritten (atomically) to name it. The old store is left as it was, for the operator to delete once
satisfied (or to move back to).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from communs.node.config import CATALOG_FILE, CONFIG_FILE, ConfigError, load_config, write_atomic
from communs.node.datadir import RunLock
from communs.node.services.storage_config import StorageConfig, open_chunk_store
from communs.protocol.ids import cid_str
from communs.storage.catalog import Catalog
from communs.storage.chunkstore import ChunkStore
from communs.storage.errors import ChunkCorrupt, ChunkMissing, StorageError

Progress = Callable[[int, int, int], None]
"""Called as `progress(chunks_done, chunks_total, bytes_copied)`."""

PARALLEL = 8


class MigrateError(Exception):
    """One sentence for the operator; the node's config and both stores are left usable."""


@dataclass
class MigrateReport:
    chunks: int
    copied: int
    skipped: int
    bytes_copied: int
    backend: str


def describe(storage: StorageConfig) -> str:
    if storage.backend == "s3" and storage.s3 is not None:
        return f"s3 bucket '{storage.s3.bucket}' at {storage.s3.endpoint} (prefix '{storage.s3.prefix}')"
    return "the folder store"


def same_store(a: StorageConfig, b: StorageConfig) -> bool:
    if a.backend != b.backend:
        return False
    if a.backend == "fs":
        return True
    assert a.s3 is not None and b.s3 is not None
    return (a.s3.endpoint.rstrip("/"), a.s3.bucket, a.s3.prefix.strip("/")) == \
        (b.s3.endpoint.rstrip("/"), b.s3.bucket, b.s3.prefix.strip("/"))


def _copy(src: ChunkStore, dst: ChunkStore, d: bytes) -> int:
    """Copy one chunk unless the destination has it; the bytes copied."""
    if dst.has(d):
        return -1
    try:
        data = src.get(d, verify=True, quarantine_bad=False)
    except ChunkCorrupt:
        raise MigrateError(f"chunk {cid_str(d)} is corrupt in the current store; run 'communs verify' (with "
                           "the node running, to fetch it again from peers), then migrate again") from None
    except ChunkMissing:
        raise MigrateError(f"chunk {cid_str(d)} is missing from the current store; run 'communs verify' "
                           "(with the node running, to fetch it again from peers), then migrate again") from None
    dst.put(d, data)
    return len(data)


def migrate(root: Path, target: StorageConfig, progress: Progress | None = None) -> MigrateReport:
    """Copy every stored chunk of the node in `root` to `target`, then make `target` the node's store."""
    cfg = load_config(root)
    if same_store(cfg.storage, target):
        raise MigrateError(f"the node already keeps its chunks in {describe(target)}")
    if target.direct_io is None:
        target.direct_io = cfg.storage.direct_io
    lock = RunLock(root)
    try:
        lock.acquire()
    except ConfigError:
        raise MigrateError("the node is running; stop it before moving its chunks") from None
    try:
        digests = asyncio.run(_stored_digests(root))
        try:
            src = open_chunk_store(root, cfg.storage)
        except StorageError as exc:
            raise MigrateError(f"cannot open the current store: {exc}") from None
        try:
            try:
                dst = open_chunk_store(root, target)
            except StorageError as exc:
                raise MigrateError(f"cannot open the new store: {exc}") from None
            try:
                report = _copy_all(src, dst, digests, target.backend, progress)
                present = set(dst.iter_digests())
            except StorageError as exc:
                raise MigrateError(f"the move stopped ({exc}); run the same command again to resume") from None
            finally:
                dst.close()
        finally:
            src.close()
        lacking = [d for d in digests if d not in present]
        if lacking:
            raise MigrateError(f"{len(lacking)} chunk(s), e.g. {cid_str(lacking[0])}, are not listed in the new "
                               "store after the copy; the config was not switched")
        cfg.storage = target
        write_atomic(root / CONFIG_FILE, cfg.to_toml())
        return report
    finally:
        lock.release()


def _copy_all(src: ChunkStore, dst: ChunkStore, digests: list[bytes], backend: str,
              progress: Progress | None) -> MigrateReport:
    copied = skipped = nbytes = done = 0
    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="migrate") as pool:
        for start in range(0, len(digests), PARALLEL * 4):
            for n in pool.map(lambda d: _copy(src, dst, d), digests[start:start + PARALLEL * 4]):
                done += 1
                if n < 0:
                    skipped += 1
                else:
                    copied += 1
                    nbytes += n
            if progress is not None:
                progress(done, len(digests), nbytes)
    return MigrateReport(len(digests), copied, skipped, nbytes, backend)


async def _stored_digests(root: Path) -> list[bytes]:
    try:
        catalog = await Catalog.open(root / CATALOG_FILE)
    except StorageError as exc:
        raise MigrateError(str(exc)) from None
    try:
        return sorted(await catalog.stored_digests())
    finally:
        await catalog.close()
