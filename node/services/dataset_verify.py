"""Verifying one dataset version's stored chunks on the running node (`POST /api/v1/datasets/{id}/verification`,
the dashboard's Verify button): `communs verify` for one dataset, without stopping anything.

It re-hashes, with the node's own chunk store, every chunk of the version that the catalog says is stored here,
as `communs verify` (services/localstore.py) does for the whole store: a chunk that does not hash to its name is
quarantined by the store, and a chunk the catalog calls stored but the store lacks is missing. Both are then
recorded as gone in the catalog and replication is woken, so the node fetches them again from peers (a complete
replica goes back to in-progress, an own dataset is repaired from the replicas, as after `communs verify`).
Chunks not stored here yet (a copy in progress) are counted, not checked.

A verification runs as a node task, so it ends even if the caller hangs up, and a second request for the same
version while one runs waits for that one instead of starting another. Its progress is readable while it runs
(`jobs`, which the dashboard's live feed carries). `verdict` is the result in one sentence, pure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from communs.node.jsondoc import JsonDict
from communs.node.runtime.faults import pause_point
from communs.node.services.storage import StorageService, UsesStorage
from communs.protocol import ids
from communs.protocol.records import FileEntry, Manifest
from communs.storage.errors import ChunkCorrupt, ChunkMissing, StorageError

if TYPE_CHECKING:
    from communs.node.context import NodeContext

log = logging.getLogger("communs.verify")

KEEP_FINISHED = 16  # finished verifications kept for the page (the newest)


@dataclass
class VerifyJob:
    """One verification, running or finished; `to_json` is its API form."""

    id: str  # the manifest id (CIDv1 text)
    dataset: str
    version: int
    title: str
    state: str  # the dataset's state here when the verification started
    chunks_total: int  # the version's distinct chunks
    bytes_total: int  # bytes of those stored here (what is re-hashed)
    started: float
    chunks_done: int = 0
    bytes_done: int = 0
    not_here: int = 0  # chunks not stored here yet: not checked
    bad: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    files: list[dict[str, str]] = field(default_factory=list)  # {"path", "chunk", "problem"} of each finding
    finished: float | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.finished is None

    def to_json(self) -> JsonDict:
        return {
            "id": self.id, "dataset": self.dataset, "version": self.version, "title": self.title,
            "state": self.state, "running": self.running,
            "chunks_total": self.chunks_total, "chunks_done": self.chunks_done, "not_here": self.not_here,
            "bytes_total": self.bytes_total, "bytes_done": self.bytes_done,
            "bad": list(self.bad), "missing": list(self.missing), "files": [dict(f) for f in self.files],
            "ok": self.finished is not None and self.error is None and not self.bad and not self.missing,
            "error": self.error, "started": self.started, "finished": self.finished,
            "seconds": round((self.finished or time.time()) - self.started, 3),
            "summary": verdict(self),
        }


def verdict(job: VerifyJob) -> str:
    """The verification's result (or progress) in one sentence, for the page and the CLI."""
    if job.error is not None:
        return f"The verification stopped: {job.error}."
    if job.finished is None:
        return f"Verifying: {job.chunks_done} of {job.chunks_total - job.not_here} stored chunks re-hashed so far."
    checked = job.chunks_total - job.not_here
    if checked == 0:
        return "No chunk of this version is stored here, so there was nothing to verify."
    partial = f" ({job.not_here} not stored here now, so not checked)" if job.not_here else ""
    if not job.bad and not job.missing:
        return f"All {checked} stored chunks verified: every one hashes to its name{partial}."
    parts = []
    if job.bad:
        parts.append(f"{len(job.bad)} corrupt (quarantined)")
    if job.missing:
        parts.append(f"{len(job.missing)} missing")
    them = "it" if len(job.bad) + len(job.missing) == 1 else "them"
    return (f"{' and '.join(parts)} of {checked} stored chunks{partial}; "
            f"the node fetches {them} again from peers that hold this dataset.")


def findings_by_file(files: Iterable[FileEntry], problems: dict[bytes, str]) -> list[dict[str, str]]:
    """Which file each bad or missing chunk belongs to (a chunk shared by several files is named once per
    file), in manifest order: what an operator looks for first."""
    out: list[dict[str, str]] = []
    for entry in files:
        seen: set[bytes] = set()
        for ref in entry.chunks:
            problem = problems.get(ref.digest)
            if problem is not None and ref.digest not in seen:
                seen.add(ref.digest)
                out.append({"path": entry.path, "chunk": ids.cid_str(ref.digest), "problem": problem})
    return out


class Verifications(UsesStorage):
    """The node's dataset verifications: running ones by manifest, and the last finished ones."""

    def __init__(self, ctx: NodeContext, storage: StorageService, on_chunks_gone: Callable[[bytes], None]) -> None:
        self.ctx = ctx
        self.storage = storage
        self.on_chunks_gone = on_chunks_gone  # replication.poke: fetch what was found gone
        self.jobs: dict[str, VerifyJob] = {}  # manifest id -> its newest verification
        self._running: dict[bytes, asyncio.Task[VerifyJob | None]] = {}

    def list(self) -> list[JsonDict]:
        return [j.to_json() for j in sorted(self.jobs.values(), key=lambda j: j.started)]

    async def verify(self, manifest_id: bytes) -> VerifyJob | None:
        """Verify a version's stored chunks (or wait for the verification of it already running); None if the
        catalog does not know that manifest."""
        task = self._running.get(manifest_id)
        if task is None:  # registered before any await: two requests at once share one verification
            task = self.ctx.spawn(self._verify(manifest_id), f"verify-{ids.cid_str(manifest_id)[-8:]}")
            self._running[manifest_id] = task
            task.add_done_callback(lambda _t: self._running.pop(manifest_id, None))
        return await asyncio.shield(task)

    async def _verify(self, manifest_id: bytes) -> VerifyJob | None:
        job = await self._new_job(manifest_id)
        return None if job is None else await self._run(manifest_id, job)

    async def _new_job(self, manifest_id: bytes) -> VerifyJob | None:
        info = await self.catalog.get_manifest(manifest_id)
        if info is None or info.raw is None:
            return None
        chunks = await self.catalog.manifest_chunks(manifest_id)
        not_here = {d for d, _ in await self.catalog.missing_chunks(manifest_id)}
        job = VerifyJob(id=ids.cid_str(manifest_id), dataset=ids.cid_str(info.dataset), version=info.version,
                        title=info.title, state=str(info.state), chunks_total=len(chunks),
                        bytes_total=sum(s for d, s in chunks if d not in not_here), started=time.time(),
                        not_here=len(not_here))
        self.jobs.pop(job.id, None)
        self.jobs[job.id] = job
        for old in [k for k, j in self.jobs.items() if not j.running][:-KEEP_FINISHED]:
            del self.jobs[old]
        return job

    async def _run(self, manifest_id: bytes, job: VerifyJob) -> VerifyJob:
        try:
            await self._check(manifest_id, job)
        except StorageError as exc:
            job.error = str(exc).rstrip(".")
        finally:
            job.finished = time.time()
        if job.bad or job.missing:
            log.warning("verification of %s: %s", job.id, verdict(job))
        else:
            log.info("verification of %s: %s", job.id, verdict(job))
        return job

    async def _check(self, manifest_id: bytes, job: VerifyJob) -> None:
        info = await self.catalog.get_manifest(manifest_id)
        assert info is not None and info.raw is not None  # checked by _new_job; manifests are never deleted
        manifest = Manifest.decode(info.raw, verify=False)
        not_here = {d for d, _ in await self.catalog.missing_chunks(manifest_id)}
        stored = [(d, s) for d, s in await self.catalog.manifest_chunks(manifest_id) if d not in not_here]
        store = self.chunks

        def rehash() -> tuple[list[bytes], list[bytes]]:
            bad: list[bytes] = []
            absent: list[bytes] = []
            for digest, size in stored:
                try:
                    store.get(digest, verify=True, quarantine_bad=True)
                except ChunkCorrupt:
                    bad.append(digest)
                except ChunkMissing:
                    absent.append(digest)
                pause_point("verify-chunk")
                job.chunks_done += 1  # plain int stores: the event loop reads them for progress
                job.bytes_done += size
            return bad, absent

        bad, absent = await asyncio.to_thread(rehash)
        # a chunk released meanwhile (the dataset stopped being wanted) is not missing: ask the catalog again
        missing = [d for d in absent if await self.catalog.is_chunk_stored(d) and not store.has(d)]
        job.bad = [ids.cid_str(d) for d in bad]
        job.missing = sorted(ids.cid_str(d) for d in missing)
        problems = {**{d: "missing" for d in missing}, **{d: "corrupt" for d in bad}}
        job.files = findings_by_file(manifest.files, problems)
        if problems:
            await self.catalog.mark_chunks_gone(list(problems))
            self.on_chunks_gone(manifest_id)


__all__ = ["Verifications", "VerifyJob", "findings_by_file", "verdict"]
