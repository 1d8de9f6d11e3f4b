"""Computes the whole-file SHA-256 of public files in the background, once each (checksums.py says why).

The public listener runs one worker: at start, then whenever a request sees the public versions change
(and every `interval_s` anyway), it lists the files that have no checksum yet and hashes them one at a
time, smallest first, each chunk read back and verified by the chunk store in a worker thread. A result
is written to the catalog and only then stated in the export. A file that cannot be read whole and
verified (a chunk missing or damaged) is left without a checksum and tried again after `retry_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable

from communs.node.http.public import checksums
from communs.node.http.public.files import PublicFile, PublicVersion
from communs.storage.catalog import Catalog
from communs.storage.chunkstore import ChunkStore
from communs.storage.errors import StorageError

log = logging.getLogger("communs.public")


class _Stopped(Exception):
    pass


class ChecksumWorker:
    """The SHA-256 known for public files (`known`, by file key) and the task that computes the rest.

    `generation` grows with every checksum added, so cached export pages that depend on it are rebuilt."""

    def __init__(self, catalog: Catalog, chunks: ChunkStore, versions: Callable[[], Awaitable[list[PublicVersion]]],
                 *, interval_s: float = 60.0, retry_s: float = 600.0) -> None:
        self.catalog = catalog
        self.chunks = chunks
        self.versions = versions
        self.interval_s = interval_s
        self.retry_s = retry_s
        self.known: dict[bytes, bytes] = {}
        self.generation = 0
        self._asked: set[bytes] = set()  # keys already looked up in the catalog
        self._failed: dict[bytes, float] = {}  # key -> monotonic time of the last failure
        self._wake = asyncio.Event()
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None

    def lookup(self, entry: PublicFile) -> str | None:
        return checksums.lookup(entry, self.known)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="public-checksums")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def load(self, versions: list[PublicVersion]) -> None:
        """Read from the catalog the checksums of files not looked up before (once per file key)."""
        keys = {checksums.file_key(f.chunks) for v in versions for f in v.files if f.size}
        new = [k for k in keys if k not in self._asked and k not in self.known]
        if not new:
            return
        found = await self.catalog.file_sha256(new)
        self._asked.update(new)
        if found:
            self.known.update(found)
            self.generation += 1

    async def run_once(self) -> int:
        """Hash every public file still without a checksum (not failed within `retry_s`); how many were added."""
        versions = await self.versions()
        await self.load(versions)
        now = time.monotonic()
        for key, at in list(self._failed.items()):
            if now - at >= self.retry_s:
                del self._failed[key]
        added = 0
        for key, v, entry in checksums.pending(versions, self.known, self._failed):
            if self._stop.is_set():
                break
            try:
                digest = await asyncio.to_thread(checksums.sha256_of, entry, self._read)
            except _Stopped:
                break
            except (StorageError, checksums.NotVerified) as exc:
                self._failed[key] = time.monotonic()
                log.warning("no checksum for %s/%s yet: %s", v.id, entry.path, exc)
                continue
            await self.catalog.put_file_sha256(key, digest, entry.size, int(time.time()))
            self.known[key] = digest
            self.generation += 1
            added += 1
        return added

    def _read(self, digest: bytes) -> bytes:
        if self._stop.is_set():
            raise _Stopped
        return self.chunks.get(digest)  # verified against `digest`; a corrupt chunk raises (and is quarantined)

    async def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the round: a change seen during it wakes the next one
            try:
                await self.run_once()
            except StorageError as exc:  # the catalog itself: try again on the next round
                log.warning("public checksums: %s", exc)
            except Exception:  # a bug must not end the worker for the node's lifetime: logged, next round
                log.exception("public checksums: a round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)


__all__ = ["ChecksumWorker"]
