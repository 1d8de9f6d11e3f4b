"""Make the catalog and the chunk store agree again after a crash, before replication or a publish runs.

The catalog must never say more than the disk holds, and the node must never delete its own data on the
catalog's word alone:

1. Chunks marked stored whose files are gone (a release killed between deleting files and recording it,
   under older code; a disk that lost files) are marked gone, so a dataset is never called complete with
   chunks missing: `complete` ones go back to fetching, `own` ones are repaired from replicas. Only the
   file's existence is checked here (a listing of the store, no re-hash): `communs verify` re-hashes.
2. Chunks of kept datasets written before the crash but not yet marked are re-hashed and marked (a
   replication resumes without fetching them twice).
3. Chunk files the catalog does not know are deleted only when a publish journal says an unfinished
   publish wrote them; the others are kept (they may be this node's own data, after a catalog lost its
   last commits) and adopted as soon as a manifest that uses them is kept here again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from communs.node.services.publish_journal import interrupted_chunks
from communs.storage.catalog import Catalog
from communs.storage.chunkstore import ChunkStore
from communs.storage.errors import ChunkCorrupt, StorageError
from communs.storage.states import State

log = logging.getLogger("communs.replication")

KEPT_FOR_RESUME = (State.IN_PROGRESS, State.COMPLETE, State.OWN)


def intact(chunks: ChunkStore, d: bytes) -> bool:
    """The chunk is on disk and hashes to its name (a bad one is quarantined)."""
    try:
        chunks.get(d, verify=True, quarantine_bad=True)
    except (ChunkCorrupt, StorageError):
        return False
    return True


async def adopt_present(catalog: Catalog, chunks: ChunkStore, missing: Sequence[tuple[bytes, int]],
                        on_disk: set[bytes] | None = None) -> list[tuple[bytes, int]]:
    """Mark stored those of `missing` whose files are on disk and intact; returns them."""
    def check() -> list[tuple[bytes, int]]:
        return [(d, s) for d, s in missing
                if (d in on_disk if on_disk is not None else chunks.has(d)) and intact(chunks, d)]

    found = await asyncio.to_thread(check)
    if found:
        await catalog.mark_chunks_stored(found)
    return found


async def reconcile(catalog: Catalog, chunks: ChunkStore, root: Path) -> None:
    """Steps 1-3 of the module docstring."""
    on_disk = set(await asyncio.to_thread(lambda: list(chunks.iter_digests())))
    lost = await catalog.stored_digests() - on_disk
    if lost:
        await catalog.mark_chunks_gone(lost)
        log.warning("%d chunk(s) recorded as stored were not on disk; they will be fetched again", len(lost))
    found: list[tuple[bytes, int]] = []
    for state in KEPT_FOR_RESUME:  # only kept datasets: a catalog sync may be storing thousands of others now
        for info in await catalog.list_manifests(state=state):
            found += await adopt_present(catalog, chunks, await catalog.missing_chunks(info.id), on_disk)
    if found:
        log.info("resumed: %d chunk(s) written before the last stop were verified and kept", len(found))
    known = await catalog.stored_digests()
    unknown = on_disk - known
    journaled, journals = await asyncio.to_thread(interrupted_chunks, root)
    drop = unknown & journaled
    if drop:
        await asyncio.to_thread(lambda: [chunks.delete(d) for d in drop])
        log.info("removed %d chunk file(s) left by an interrupted publish", len(drop))
    for path in journals:
        path.unlink(missing_ok=True)
    kept = len(unknown - drop)
    if kept:
        log.warning("kept %d chunk file(s) that the catalog does not know and no interrupted publish wrote "
                    "(the catalog may have lost its last commits): they are adopted when a dataset that uses "
                    "them is known here again, and never deleted on the catalog's word alone", kept)


__all__ = ["adopt_present", "intact", "reconcile"]
