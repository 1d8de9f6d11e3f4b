"""Datasets: publishing local files, taking in manifests from peers, and each manifest's state.

Every manifest, whether published here or received, goes through this one service, so that the
rules that keep the catalog consistent live in one place: a record is verified before it is stored,
its place in its publisher's log is checked (a contradiction is kept as fork evidence), and its
`state`/`reason` is decided by the policy in force. The replication service then acts on the states.

Publishing writes chunks first (each durable before it is visible) and the manifest last, in one
catalog transaction with the chunks' marks: a publish killed half-way leaves only chunk files the
catalog does not know, named in its publish journal (publish_journal.py), which the next start
deletes. An `Idempotency-Key` makes a retried publish return the first one's result instead of
signing a second dataset (the key is stored in the publish's own transaction).

Manifest states follow the policy in force: at each enactment, and at start when the states were last
decided under another policy version (a node killed between an enactment and its re-evaluation).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from communs.governance import policy as policy_mod
from communs.governance.errors import GovernanceError
from communs.governance.licences import check_expression
from communs.node.jsondoc import JsonDict
from communs.node.runtime.faults import crash_point, pause_point
from communs.node.runtime.gctune import GC_THRESHOLDS
from communs.node.services import folderscan, retention
from communs.node.services import ingest_quota as quota
from communs.node.services.ingest import FORK_OUTCOME, Outcome, plan_ingest, views_wanted
from communs.node.services.publish_journal import PublishJournal
from communs.node.services.publish_report import Stored, same_content, stored_report
from communs.node.services.repair import REPAIR_PENDING_KEY
from communs.node.services.storage import UsesStorage
from communs.protocol import ids, keys
from communs.protocol.errors import RecordError
from communs.protocol.records import FileEntry, Manifest, decode_manifests, new_dataset_id
from communs.storage.catalog import LogView, ManifestInfo, ManifestRow, PutOutcome
from communs.storage.errors import StorageError, StorageFull
from communs.storage.states import State

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

    from communs.node.context import NodeContext
    from communs.node.services.governance import GovernanceService
    from communs.node.services.storage import StorageService

_T = TypeVar("_T")
log = logging.getLogger("communs.datasets")

OWN, COMPLETE, IN_PROGRESS, NOT_WANTED = State.OWN, State.COMPLETE, State.IN_PROGRESS, State.NOT_WANTED
RETRACTED = State.RETRACTED  # withdrawn by its publisher (node/services/retraction.py)
PROCESS_BATCH = 200  # manifests at once above which verification runs in worker processes
PROCESS_BATCH_BYTES = 1024 * 1024  # ... or bytes of manifests at once (a few large ones hold the loop as long)
DECODE_WORKERS = 1  # measured: a second worker loses to the node and its peer on a 2-core machine
STATES = tuple(State)


class PublishError(Exception):
    """The path or the request cannot be published; one sentence says why. Nothing was published."""


class IdempotencyConflict(PublishError):
    """The idempotency key was already used for a different publish request: HTTP 422."""


class PublishHeld(PublishError):
    """`communs repair` could not read every manifest: own ones may still be coming back from peers, and a
    publish now could sign a second record at a place of this node's log already used. HTTP 409."""


class PublishCancelled(PublishError):
    """The publish was cancelled (`DELETE /api/v1/publishing/{job}`, Ctrl-C in the CLI) before its manifest
    was recorded: nothing of it is kept. HTTP 409."""


class DuplicatePublish(PublishError):
    """The files are exactly those of the latest version of a dataset published here under the same title
    (or of the dataset named): nothing was published; `force` publishes anyway. HTTP 409."""


class DiskFull(PublishError):
    """The node's disk filled up while publishing; nothing was published, and the chunks already written
    stay (unreferenced) for the next try to reuse once space is freed. Not the caller's mistake: HTTP 507."""


async def _journal(write: Callable[[_T], None], arg: _T) -> None:
    """One fsynced journal line (publish_journal.py); a full disk is DiskFull, as for the chunks."""
    try:
        await asyncio.to_thread(write, arg)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull("the disk is full: the publish journal could not be written; free some space on the "
                           "node's disk and publish again") from None
        raise PublishError(f"cannot write the publish journal: {exc.strerror}") from None


def _storage_failure(prefix: str, exc: StorageError) -> PublishError:
    if isinstance(exc, StorageFull):
        return DiskFull(f"{prefix}: {exc}; free some space on the node's disk and publish again")
    return PublishError(f"{prefix}: {exc}")


@dataclass
class PublishJob:
    id: int
    path: str
    bytes_total: int = 0
    bytes_done: int = 0
    files_total: int = 0
    files_done: int = 0
    state: str = "scanning"
    started: float = field(default_factory=time.time)
    created: list[bytes] = field(default_factory=list)  # chunk files this publish wrote anew
    # how the folder is read (folderscan.py), set by the caller; and what was left out of it, listed
    refuse_special: bool = False
    skip_case_collisions: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)
    key: str | None = None  # the Idempotency-Key it runs under: how the CLI finds its job to cancel it
    cancel_requested: bool = False  # set by `cancel`; the publish stops at its next chunk, before its manifest
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # set once it is done, failed or cancelled
    stored: Stored | None = None  # what it stored, once done
    manifest: bytes | None = None  # the manifest it made, once done

    def to_json(self) -> JsonDict:
        return {"id": self.id, "path": self.path, "state": self.state, "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total, "files_done": self.files_done, "files_total": self.files_total,
                "key": self.key, "stored": self.stored.to_json() if self.stored is not None else None}

    def check_cancelled(self) -> None:
        """PublishCancelled once a cancel was asked for (called between chunks, files and before signing)."""
        if self.cancel_requested:
            raise PublishCancelled("the publish was cancelled; nothing of it was kept")


Callback = Callable[[Manifest], Awaitable[None]]


class DatasetsService(UsesStorage):
    def __init__(self, ctx: NodeContext, storage: StorageService, governance: GovernanceService) -> None:
        self.ctx = ctx
        self.storage = storage
        self.governance = governance
        self.on_published: list[Callback] = []
        self.on_complete: list[Callback] = []  # a replicated dataset became complete here
        self.on_wanted: list[Callable[[list[bytes]], Awaitable[None]]] = []
        self.on_unwanted: list[Callable[[list[bytes]], Awaitable[None]]] = []
        self.jobs: dict[int, PublishJob] = {}
        self._job_ids = 0
        self._publish_lock = asyncio.Lock()
        # Held while a publish records its chunks and while a release unmarks and deletes chunks, so that a
        # chunk a publish found already on disk is never deleted between its check and its commit.
        self.store_lock = self._publish_lock
        self._ingest_lock = asyncio.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._pool_ready: asyncio.Future[list[Manifest | str]] | None = None
        self._thread_decoding = False
        self._pool_broken = False
        self._idempotent: dict[str, asyncio.Future[Manifest]] = {}  # key -> publish running under it
        self._peer_ledger = quota.PeerLedger()  # what each peer brought into the catalog lately

    async def start(self) -> None:
        self.governance.on_policy_change.append(self._policy_changed)
        await self.reevaluate_if_behind()

    def policy_version(self) -> int:
        return self.governance.state.policy_version

    async def reevaluate_if_behind(self) -> bool:
        """Re-evaluate every manifest if its state was decided under another policy version than the one in
        force (the node died after an enactment committed and before its re-evaluation, or an enactment was
        recorded while starting). Idempotent: True when it re-evaluated."""
        evaluated = await self.catalog.states_policy_version()
        version = self.policy_version()
        if evaluated == version:
            return False
        if evaluated is not None:
            log.warning("dataset states were decided under licence policy version %d, version %d is in force: "
                        "re-evaluating them", evaluated, version)
        await self.reevaluate()
        return True

    async def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._pool_ready = None

    # ---- policy ----------------------------------------------------------------------------------

    def policy(self) -> policy_mod.Policy:
        return self.governance.policy

    def decide(self, *, licence: str, size: int, publisher: bytes, forked: bool) -> tuple[bool, str]:
        """(wanted, reason) for a manifest not published here."""
        if forked:
            return False, "its publisher's key signed two different histories (fork); it is distrusted"
        d = policy_mod.evaluate(self.policy(), licence=licence, size=size,
                                publisher_peer_id=keys.peer_id(publisher), own=False)
        return d.wanted, d.reason

    async def _policy_changed(self, _policy: policy_mod.Policy) -> None:
        await self.reevaluate()

    async def reevaluate(self) -> None:
        """Apply the policy in force to every manifest not published here (at each enactment)."""
        forked = await self.catalog.forked_publishers()
        changes: list[tuple[bytes, str, str]] = []
        wanted: list[bytes] = []
        unwanted: list[bytes] = []
        infos = await self.catalog.list_manifests()
        version = self.policy_version()  # read with the policy: no await between here and the decisions
        decided = {info.id: self.decide(licence=info.licence, size=info.size, publisher=info.publisher,
                                        forked=info.publisher in forked)
                   for info in infos if not info.own and info.state != RETRACTED}
        retire = self._retired(infos, decided)
        for info in infos:
            if info.own or info.state == RETRACTED:  # a retraction is final, whatever the policy
                continue
            want, reason = decided[info.id]
            if want and info.id in retire:
                want, reason = False, retire[info.id]
            if want:
                state = COMPLETE if info.state == COMPLETE else IN_PROGRESS
                if state == IN_PROGRESS:
                    wanted.append(info.id)
            else:
                state = NOT_WANTED
                if info.state != NOT_WANTED:
                    unwanted.append(info.id)
            if (state, reason) != (info.state, info.reason):
                changes.append((info.id, state, reason))
        await self.catalog.set_states(changes, policy_version=version)
        if changes:
            log.info("policy re-applied: %d manifest state(s) changed (%d wanted, %d no longer wanted)",
                     len(changes), len(wanted), len(unwanted))
        for cb in self.on_unwanted:
            await cb(unwanted)
        for cb in self.on_wanted:
            await cb(wanted)

    def _retired(self, infos: Sequence[ManifestInfo], decided: dict[bytes, tuple[bool, str]]) -> dict[bytes, str]:
        """The versions among `infos` that `keep_versions` releases here (retention.py), with the reason;
        `decided` holds the policy's other decision for each one not published here."""
        keep = self.policy().keep_versions
        if keep is None:
            return {}
        return retention.retired([retention.Version(i.id, i.dataset, i.version, i.own,
                                                    i.own or decided.get(i.id, (False, ""))[0])
                                  for i in infos if i.state != RETRACTED], keep)

    async def apply_retention(self, datasets: set[bytes]) -> None:
        """After new versions of `datasets` arrived: release the older versions `keep_versions` no longer keeps."""
        if self.policy().keep_versions is None or not datasets:
            return
        forked = await self.catalog.forked_publishers()
        infos = [i for d in datasets for i in await self.catalog.list_manifests(dataset=d)]
        decided = {i.id: self.decide(licence=i.licence, size=i.size, publisher=i.publisher,
                                     forked=i.publisher in forked)
                   for i in infos if not i.own and i.state != RETRACTED}
        retire = self._retired(infos, decided)
        changes = [(i.id, NOT_WANTED, retire[i.id]) for i in infos
                   if i.id in retire and (i.state, i.reason) != (NOT_WANTED, retire[i.id])]
        if not changes:
            return
        await self.catalog.set_states(changes)
        log.info("%d older version(s) released here under keep_versions", len(changes))
        for cb in self.on_unwanted:
            await cb([i for i, _, _ in changes])

    # ---- publishing ------------------------------------------------------------------------------

    def new_job(self, path: str, key: str | None = None) -> PublishJob:
        self._job_ids += 1
        job = PublishJob(self._job_ids, path, key=key)
        self.jobs[job.id] = job
        # keep the last few finished jobs for progress readers, drop older ones
        for old in sorted(self.jobs)[:-20]:
            if self.jobs[old].state in ("done", "failed", "cancelled"):
                del self.jobs[old]
        return job

    async def cancel(self, job: PublishJob, wait: float = 30.0) -> str:
        """Stop a running publish before its manifest is recorded, keeping nothing of it; the job's state
        after (`cancelled`, or `done` when it was recorded first, or `failed`). Waits at most `wait` s."""
        if not job.finished.is_set():
            job.cancel_requested = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.finished.wait(), wait)
        return job.state

    async def publish(self, path: Path, *, title: str, licence: str, description: str = "",
                      keywords: Sequence[str] = (), dataset: bytes | None = None,
                      job: PublishJob | None = None, idempotency_key: str | None = None,
                      force: bool = False) -> Manifest:
        """Publish `path`. With `idempotency_key`, a request repeated with the same key and the same fields
        returns the manifest of the first (whether it is still running or committed long ago) instead of
        publishing again; the same key with other fields is refused (IdempotencyConflict). Files identical
        to the latest version of the same title (or of `dataset`) are refused (DuplicatePublish) unless
        `force`."""
        if job is None:
            job = self.new_job(str(path))
        try:
            return await self._publish_job(path, title=title, licence=licence, description=description,
                                           keywords=keywords, dataset=dataset, job=job,
                                           idempotency_key=idempotency_key, force=force)
        finally:
            job.finished.set()

    async def _publish_job(self, path: Path, *, title: str, licence: str, description: str,
                           keywords: Sequence[str], dataset: bytes | None, job: PublishJob,
                           idempotency_key: str | None, force: bool) -> Manifest:
        idem: tuple[str, str] | None = None
        mine: asyncio.Future[Manifest] | None = None
        if idempotency_key is not None:
            request = request_fingerprint(path=str(path), title=title, licence=licence, description=description,
                                          keywords=keywords, dataset=dataset)
            idem = (idempotency_key, request)
            earlier, mine = await self._earlier_publish(idempotency_key, request)
            if earlier is not None:
                job.state = "done"
                return earlier
        try:
            manifest = await self._publish(path, title=title, licence=licence, description=description,
                                           keywords=keywords, dataset=dataset, job=job, idem=idem, force=force)
        except BaseException as exc:
            job.state = "cancelled" if isinstance(exc, PublishCancelled | asyncio.CancelledError) else "failed"
            if isinstance(exc, Exception):
                await self._drop_leftovers(job)
            raise
        finally:
            job.created = []
            if idem is not None and self._idempotent.get(idem[0]) is mine:
                del self._idempotent[idem[0]]
        job.state = "done"
        return manifest

    async def _drop_leftovers(self, job: PublishJob) -> None:
        """Delete the chunk files a failed publish wrote and nothing else uses, at once: after a full disk
        they would otherwise keep the disk full until the next start (which deletes unknown chunk files).

        Only chunks this publish created (the file was not there before), that the catalog does not know
        (none is marked stored, no manifest that is or may be fetched uses them: replication only writes
        chunks of such manifests), and only while no other publish runs (it may be about to use the same chunk).
        """
        if not job.created or any(j is not job and not j.finished.is_set() for j in self.jobs.values()):
            return
        try:
            known = await self.catalog.known_chunks(job.created)
            leftovers = [d for d in job.created if d not in known]
            await asyncio.to_thread(lambda: [self.chunks.delete(d) for d in leftovers])
        except StorageError as exc:
            log.warning("could not remove the chunks of a failed publish (the next start does): %s", exc)
            return
        if leftovers:
            log.info("removed %d chunk file(s) written by the failed publish of %s", len(leftovers), job.path)

    async def _earlier_publish(self, key: str, request: str) \
            -> tuple[Manifest | None, asyncio.Future[Manifest] | None]:
        """The manifest an earlier request with this key published (awaiting it if it still runs); or None
        and the future registered for this request, now the one running under the key."""
        running = self._idempotent.get(key)
        while running is not None and not running.done():
            try:
                await asyncio.shield(running)
            except Exception:  # noqa: BLE001, S110 - the first attempt failed: this one may try again
                pass
            running = self._idempotent.get(key)
        # Claim the key before the next await, so that a request arriving meanwhile waits for this one.
        fut: asyncio.Future[Manifest] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, never "never retrieved"
        self._idempotent[key] = fut
        try:
            earlier = await self._stored_publish(key, request)
        except BaseException as exc:
            fut.set_exception(exc if isinstance(exc, Exception) else PublishError("interrupted"))
            del self._idempotent[key]
            raise
        if earlier is not None:
            fut.set_result(earlier)
            del self._idempotent[key]
            return earlier, None
        return None, fut

    async def _stored_publish(self, key: str, request: str) -> Manifest | None:
        """The manifest a committed publish under this key made; IdempotencyConflict for another request."""
        stored = await self.catalog.kv_get(IDEMPOTENCY_PREFIX + key)
        if stored is None:
            return None
        doc = json.loads(stored)
        if doc.get("request") != request:
            raise IdempotencyConflict("this Idempotency-Key was already used for a different publish request; "
                                      "use a new key for a new publish")
        info = await self.catalog.get_manifest(bytes.fromhex(doc["id"]))
        return None if info is None or info.raw is None else Manifest.decode(info.raw, verify=False)

    async def _publish(self, path: Path, *, title: str, licence: str, description: str,
                       keywords: Sequence[str], dataset: bytes | None, job: PublishJob,
                       idem: tuple[str, str] | None = None, force: bool = False) -> Manifest:
        running = self._idempotent.get(idem[0]) if idem is not None else None
        journal = PublishJournal(self.ctx.root)
        try:
            manifest = await self._publish_journaled(
                path, title=title, licence=licence, description=description, keywords=keywords,
                dataset=dataset, job=job, idem=idem, journal=journal, force=force)
        except BaseException as exc:
            if running is not None and not running.done():
                running.set_exception(exc if isinstance(exc, Exception) else PublishError("interrupted"))
            # The journal stays: the chunks written so far are deleted at the next start.
            await asyncio.to_thread(journal.close)
            raise
        if running is not None and not running.done():
            running.set_result(manifest)
        await asyncio.to_thread(journal.finish)
        return manifest

    async def _publish_journaled(self, path: Path, *, title: str, licence: str, description: str,
                                 keywords: Sequence[str], dataset: bytes | None, job: PublishJob,
                                 idem: tuple[str, str] | None, journal: PublishJournal,
                                 force: bool = False) -> Manifest:
        try:
            licence = check_expression(licence)
        except GovernanceError as exc:
            raise PublishError(str(exc)) from None
        try:
            scanned = await asyncio.to_thread(folderscan.scan, path, refuse_special=job.refuse_special,
                                              skip_case_collisions=job.skip_case_collisions)
        except folderscan.ScanError as exc:
            raise PublishError(str(exc)) from None
        job.skipped = scanned.skipped
        if scanned.skipped:
            log.warning("publishing %s: %d entr(ies) left out: %s", path, len(scanned.skipped),
                        "; ".join(f"{p} ({why})" for p, why in scanned.skipped[:20]))
        meta = {f.rel: f for f in scanned.files}
        files = [(f.rel, f.real, f.size) for f in scanned.files]
        await self.storage.reconciled.wait()  # chunk files are reconciled with the catalog at start
        job.files_total = len(files)
        job.bytes_total = sum(size for _, _, size in files)
        job.state = "chunking"
        entries: list[FileEntry] = []
        stored: dict[bytes, int] = {}
        for rel, real, _size in files:
            base = job.bytes_done

            def progress(done: int, _total: int, base: int = base) -> None:
                job.bytes_done = base + done
                pause_point("publish-chunk")
                job.check_cancelled()  # raised in the chunking thread: the store aborts the file cleanly

            await _journal(journal.file, real)
            try:
                chunk_list = await asyncio.to_thread(self.chunks.ingest_file, real, progress, job.created)
            except StorageError as exc:
                raise _storage_failure(f"could not store {real}", exc) from None
            except OSError as exc:
                raise PublishError(f"cannot read {real}: {exc.strerror}") from None
            await _journal(journal.chunks, [d for d, _ in chunk_list])
            entries.append(FileEntry.of(rel, chunk_list, executable=meta[rel].executable,
                                        mtime_ns=meta[rel].mtime_ns))
            stored.update(chunk_list)
            job.files_done += 1
            job.bytes_done = base + sum(s for _, s in chunk_list)
            job.check_cancelled()
        if not force:
            await self._refuse_duplicate(entries, title=title, dataset=dataset)
        job.state = "signing"
        if await self.catalog.kv_get(REPAIR_PENDING_KEY) is not None:
            raise PublishHeld("the catalog was rebuilt by 'communs repair' and some manifests could not be read: "
                              "publishing waits until 'communs datasets' lists this node's own datasets again "
                              "(they come back from peers) and you run 'communs repair --confirm'")
        async with self._publish_lock:
            await self._rewrite_released(files, entries, stored)
            key = self.ctx.key
            prev_id: bytes | None = None
            version = 1
            if dataset is not None:
                latest = await self.catalog.latest_version(dataset)
                if latest is None:
                    raise PublishError("no dataset with that id is known here")
                if latest.publisher != key.public:
                    raise PublishError("that dataset was published by another node; only its publisher can "
                                       "add versions")
                if await self.catalog.retraction(dataset) is not None:
                    raise PublishError("that dataset was retracted; publish the files as a new dataset instead")
                prev_id, version = latest.id, latest.version + 1
            else:
                dataset = new_dataset_id(key.public, os.urandom(16))
            head = await self.catalog.contiguous_head(key.public)
            log_prev = None
            if head:
                at = await self.catalog.manifest_at(key.public, head)
                log_prev = at.id if at is not None else None
            try:
                manifest = Manifest.create(
                    key, dataset=dataset, version=version, prev=prev_id, seq=head + 1, log_prev=log_prev,
                    title=title, licence=licence, created=int(time.time()), files=entries,
                    description=description, keywords=tuple(keywords), folders=scanned.folders)
            except RecordError as exc:
                raise PublishError(str(exc)) from None
            raw = manifest.encode()
            row = ManifestRow.from_manifest(manifest, raw, received_at=int(time.time()), state=OWN,
                                            reason="published here", own=True)
            kv = None
            if idem is not None:
                kv = (IDEMPOTENCY_PREFIX + idem[0],
                      json.dumps({"request": idem[1], "id": manifest.id.hex()}).encode())
            crash_point("publish-chunks-written")
            job.check_cancelled()  # the last moment a cancel keeps nothing: the manifest is recorded next
            try:
                await self.catalog.put_published(row, list(stored.items()), kv=kv)
            except StorageError as exc:
                raise _storage_failure("could not record the dataset", exc) from None
        job.stored = stored_report(entries, stored, job.created)
        job.manifest = manifest.id
        log.info("published %s version %d (%s) as %s: %s", manifest.title, manifest.version, manifest.licence,
                 manifest.cid, job.stored.sentence())
        for cb in self.on_published:
            try:
                await cb(manifest)
            except Exception as exc:  # noqa: BLE001 - announcing is best effort; sync repairs it
                log.warning("after publishing %s: %s", manifest.cid, exc)
        return manifest

    async def _refuse_duplicate(self, entries: Sequence[FileEntry], *, title: str, dataset: bytes | None) -> None:
        """DuplicatePublish when `entries` are the files of the latest version of `dataset`, or of the latest
        version of a dataset published here under the same title."""
        datasets = [dataset] if dataset is not None else list(dict.fromkeys(
            i.dataset for i in await self.catalog.list_manifests() if i.own and i.title == title))
        for ds in datasets:
            latest = await self.catalog.latest_version(ds)
            if latest is None or latest.raw is None or latest.state == RETRACTED:
                continue
            if same_content(entries, Manifest.decode(latest.raw, verify=False).files):
                raise DuplicatePublish(
                    f"these files are exactly those of version {latest.version} of '{latest.title}' "
                    f"({ids.cid_str(latest.id)}), already published here; publish with --force (API: "
                    "\"force\": true) to publish them again")

    async def _rewrite_released(self, files: Sequence[tuple[str, Path, int]], entries: Sequence[FileEntry],
                                stored: dict[bytes, int]) -> None:
        """A release may have deleted chunks that this publish found already stored (same content in a
        dataset no longer wanted) before the publish took `store_lock`: write those files' chunks again."""
        gone = set(await asyncio.to_thread(lambda: [d for d in stored if not self.chunks.has(d)]))
        if not gone:
            return
        for (_rel, real, _size), entry in zip(files, entries, strict=True):
            if not any(c.digest in gone for c in entry.chunks):
                continue
            try:
                again = await asyncio.to_thread(self.chunks.ingest_file, real, None)
            except StorageError as exc:
                raise _storage_failure(f"could not store {real}", exc) from None
            except OSError as exc:
                raise PublishError(f"cannot read {real}: {exc.strerror}") from None
            if [d for d, _ in again] != [c.digest for c in entry.chunks]:
                raise PublishError(f"{real} changed while it was being published; publish it again")
        log.info("%d chunk(s) released while publishing were written again", len(gone))

    # ---- manifests from peers --------------------------------------------------------------------

    async def ingest_manifests(self, raws: Sequence[bytes], source: str | None) -> list[Outcome]:
        """Verify, place and store manifests received from `source`; one Outcome per record, in order."""
        if not raws:
            return []
        decoded = await self._decode_all(raws)
        async with self._ingest_lock:
            return await self._ingest(raws, decoded, source)

    async def _decode_all(self, raws: Sequence[bytes]) -> list[Manifest | str]:
        """Decode and verify; a large batch (catalog sync) goes to a worker process.

        Verification is Python-heavy (canonical checks, field rules) and holds the GIL, so in threads it
        starves the event loop and the catalog's thread: measured here, a 1,000-record range took 0.5 s to
        store beside a decoding thread against 0.1 s alone. A second process uses the second core instead.
        """
        if self._pool_broken or (len(raws) < PROCESS_BATCH and sum(map(len, raws)) < PROCESS_BATCH_BYTES):
            return decode_manifests(raws)
        loop = asyncio.get_running_loop()
        pool = self._start_pool()
        if self._pool_ready is not None and not self._pool_ready.done() and not self._thread_decoding:
            # The worker is still starting (about 0.2 s: a fresh interpreter importing the record code);
            # verifying one batch in a thread meanwhile beats waiting for it (two would fight over the GIL).
            self._thread_decoding = True
            try:
                return await asyncio.to_thread(decode_manifests, raws)
            finally:
                self._thread_decoding = False
        step = max(PROCESS_BATCH // 2, -(-len(raws) // DECODE_WORKERS))
        parts = [list(raws[i:i + step]) for i in range(0, len(raws), step)]
        try:
            results = await asyncio.gather(*(loop.run_in_executor(pool, decode_manifests, part) for part in parts))
            return [m for part in results for m in part]
        except Exception as exc:  # noqa: BLE001 - a broken pool must not stop sync: decode here instead
            log.warning("manifest verification worker failed (%s); verifying in the node process", exc)
            self._pool_broken = True
            return decode_manifests(raws)

    def warm_up(self, expected: int) -> None:
        """A catalog sync of `expected` records is about to start: start the verification worker now, so
        that it is ready when the second range arrives (the first is verified in a thread meanwhile)."""
        if expected >= PROCESS_BATCH and not self._pool_broken:
            self._start_pool()

    def _start_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # The worker imports only protocol.records (decode_manifests' module) and collects garbage as
            # rarely as the node does (node/gctune.py).
            from communs.node.runtime.childproc import init_worker

            # ... and dies with the node, even a SIGKILLed one (node/childproc.py)
            self._pool = ProcessPoolExecutor(max_workers=DECODE_WORKERS,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=init_worker, initargs=(os.getpid(), *GC_THRESHOLDS))
            self._pool_ready = asyncio.get_running_loop().run_in_executor(self._pool, decode_manifests, [])
            self._pool_ready.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, not lost
        return self._pool

    async def _ingest(self, raws: Sequence[bytes], decoded: list[Manifest | str],
                      source: str | None) -> list[Outcome]:
        cat = self.catalog
        me = self.ctx.key.public
        forked = await cat.forked_publishers()
        owners = await self._dataset_owners({m.dataset for m in decoded if isinstance(m, Manifest)})

        def decide(m: Manifest, is_forked: bool) -> tuple[bool, str]:
            return self.decide(licence=m.licence, size=m.size, publisher=m.publisher, forked=is_forked)

        retracted = await cat.retracted_datasets(owners)  # a retraction is only held for a dataset with an owner
        views: dict[tuple[bytes, int], LogView] = {}
        need = views_wanted(decoded)
        while True:  # one round, unless a rejected record changed which views the rest needs
            for pub, seq in sorted(need - views.keys()):
                views[(pub, seq)] = await cat.log_view(pub, seq)
            plan = plan_ingest(decoded, me=me, owners=owners, forked=forked, views=views, decide=decide,
                               retracted=retracted)
            if not plan.need:
                break
            need = plan.need
        outcomes: list[Outcome | None] = [None] * len(raws)
        for i, outcome in plan.outcomes.items():
            outcomes[i] = outcome
        forks = [(m, raws[f.index], f.conflict, f.reason) for f in plan.forks
                 if isinstance(m := decoded[f.index], Manifest)]
        now = int(time.time())
        rows: list[tuple[int, ManifestRow]] = []
        for a in plan.accepted:
            m = decoded[a.index]
            assert isinstance(m, Manifest)
            rows.append((a.index, ManifestRow.from_manifest(m, raws[a.index], received_at=now, state=a.state,
                                                              reason=a.reason, own=a.own)))
        rows = await self._within_quotas(rows, decoded, outcomes, source)
        if rows:
            results = await cat.put_manifests_batch([r for _, r in rows])
            for (i, row), result in zip(rows, results, strict=True):
                m = decoded[i]
                assert isinstance(m, Manifest)
                if result is PutOutcome.INSERTED:
                    outcomes[i] = Outcome("new", row.reason, m)
                    if source is not None:
                        self._peer_ledger.add(source, quota.Usage(1, len(row.raw), _refs(m)), time.monotonic())
                elif result is PutOutcome.KNOWN:
                    outcomes[i] = Outcome("known", "", m)
                else:
                    held = await cat.manifest_at(m.publisher, m.seq)
                    forks.append((m, raws[i], held.id if held else b"", "two records at the same seq"))
                    outcomes[i] = Outcome("fork", FORK_OUTCOME, m)
        for m, raw, other_id, why in forks:
            await self._record_fork(m, raw, other_id, why)
        new_wanted = [r.id for i, r in rows if r.state == IN_PROGRESS
                      and (o := outcomes[i]) is not None and o.status == "new"]
        await self.apply_retention({r.dataset for i, r in rows if r.state == IN_PROGRESS
                                    and (o := outcomes[i]) is not None and o.status == "new"})
        if new_wanted:
            for cb in self.on_wanted:
                await cb(new_wanted)
        if self.ctx.metrics is not None and source is not None:
            self.ctx.metrics.sync_records.inc(sum(1 for o in outcomes if o is not None and o.status == "new"))
        return [o if o is not None else Outcome("rejected", "not processed") for o in outcomes]

    def peer_over_quota(self, peer: str) -> str | None:
        """Why nothing more from `peer` can be stored now (its ingest quota for the window is used up), or None."""
        used = self._peer_ledger.usage(peer, time.monotonic()) + quota.Usage(1, 1, 1)
        over = quota.PEER_QUOTA.excess(used)
        return None if over is None else f"{quota.PEER_OVER} {over} per {quota.PEER_WINDOW / 3600:.0f} h"

    async def _within_quotas(self, rows: list[tuple[int, ManifestRow]], decoded: list[Manifest | str],
                             outcomes: list[Outcome | None], source: str | None) -> list[tuple[int, ManifestRow]]:
        """The rows that fit the ingest quotas (node/services/ingest_quota.py); the others get a "refused" outcome."""
        me = self.ctx.key.public
        foreign = [(i, r) for i, r in rows if r.publisher != me]
        if not foreign:
            return rows
        held = await self.catalog.publisher_usage({r.publisher for _, r in foreign})
        limit = self.policy().storage_quota_bytes
        left = None if limit is None else limit - await self.catalog.quota_used_bytes()
        peer = self._peer_ledger.usage(source, time.monotonic()) if source is not None else None
        candidates = []
        for i, r in rows:
            m = decoded[i]
            assert isinstance(m, Manifest)
            candidates.append(quota.Candidate(r.publisher, len(r.raw), _refs(m)))
        verdicts = quota.admit(candidates, publishers={p: quota.Usage(*u) for p, u in held.items()},
                               peer=peer, storage_left=left, exempt=me)
        kept = []
        for (i, r), why in zip(rows, verdicts, strict=True):
            if why is None:
                kept.append((i, r))
            else:
                m = decoded[i]
                outcomes[i] = Outcome("refused", why, m if isinstance(m, Manifest) else None)
        return kept

    async def _dataset_owners(self, datasets: set[bytes]) -> dict[bytes, bytes]:
        """Which publisher each dataset id is bound to here (the publisher of the first manifest held)."""
        return dict(await self.catalog.dataset_publishers(datasets)) if datasets else {}

    async def _record_fork(self, m: Manifest, raw: bytes, other_id: bytes, why: str) -> None:
        other = await self.catalog.get_manifest(other_id) if other_id else None
        if other is None or other.raw is None:
            other = await self.catalog.manifest_at(m.publisher, m.seq)
        if other is None or other.raw is None or other.id == m.id:
            return
        first = await self.catalog.forked_publishers()
        await self.catalog.record_fork(m.publisher, m.seq, m.id, raw, other.id, other.raw,
                                       detected_at=int(time.time()), reason=why)
        if m.publisher not in first:
            log.warning("publisher %s signed two different records for seq %d: fork kept as evidence, its "
                        "datasets are distrusted", keys.peer_id(m.publisher), m.seq)
            await self.reevaluate()

    # ---- reading ---------------------------------------------------------------------------------

    async def list(self) -> list[JsonDict]:
        forked = await self.catalog.forked_publishers()
        damaged = {mid for mid, _state in await self.catalog.damaged_manifests()}
        out = []
        for info in await self.catalog.list_manifests():
            doc = manifest_summary(info, info.publisher in forked)
            doc["damaged"] = info.id in damaged
            if doc["damaged"]:  # an own version missing chunks here (`communs verify` found them gone)
                doc["reason"] = (f"{info.reason}; DAMAGED: some of its chunks are missing here, being fetched "
                                 "back from the nodes that hold copies")
            out.append(doc)
        return out

    async def counts(self) -> dict[str, int]:
        out: dict[str, int] = {str(s): 0 for s in STATES}
        for info in await self.catalog.list_manifests():
            out[info.state] = out.get(info.state, 0) + 1
        return out

    async def status(self) -> JsonDict:
        return {"datasets": await self.counts(), "disk": await self.disk(),
                "publishing": [j.to_json() for j in self.jobs.values() if not j.finished.is_set()]}

    async def disk(self) -> dict[str, int | None]:
        """Bytes of the chunks stored here, bytes free where they are stored (None when the store cannot
        tell), and the storage quota of the policy in force (None when none)."""
        # On the loop, not in a worker thread: space() answers at once by contract, and the default executor
        # can be full of store operations waiting for an object store that does not answer, which would
        # leave /status (that says why it waits) waiting too.
        space = self.chunks.space()
        return {"store_bytes": await self.catalog.used_bytes(), "free_bytes": space[0] if space else None,
                "quota_bytes": self.policy().storage_quota_bytes}

    async def refresh_metrics(self) -> None:
        if self.ctx.metrics is None:
            return
        for state, n in (await self.counts()).items():
            self.ctx.metrics.datasets.labels(state).set(n)
        gauge = self.ctx.metrics.disk
        for what, value in (await self.disk()).items():
            label = what.removesuffix("_bytes")
            if value is not None:
                gauge.labels(label).set(value)
            else:
                with contextlib.suppress(KeyError):
                    gauge.remove(label)


IDEMPOTENCY_PREFIX = "publish-idempotency:"  # kv: Idempotency-Key -> the request and the manifest it made


def request_fingerprint(*, path: str, title: str, licence: str, description: str, keywords: Sequence[str],
                        dataset: bytes | None) -> str:
    """A digest of a publish request's fields: the same key must come with the same request."""
    doc = {"path": path, "title": title, "licence": licence, "description": description,
           "keywords": list(keywords), "dataset": dataset.hex() if dataset else None}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _refs(m: Manifest) -> int:
    """How many chunk references a manifest makes (what its chunk rows cost the catalog)."""
    return sum(len(e.chunks) for e in m.files)


def manifest_summary(info: ManifestInfo, forked: bool = False) -> JsonDict:
    return {
        "id": ids.cid_str(info.id),
        "dataset": ids.cid_str(info.dataset),
        "version": info.version,
        "title": info.title,
        "licence": info.licence,
        "publisher": keys.peer_id(info.publisher),
        "size": info.size,
        "state": info.state,
        "reason": info.reason,
        "created": info.created,
        "seq": info.seq,
        "publisher_forked": forked,
    }


def manifest_full(info: ManifestInfo, manifest: Manifest, forked: bool = False) -> JsonDict:
    doc = manifest_summary(info, forked)
    doc.update({
        "description": manifest.description,
        "keywords": list(manifest.keywords),
        "prev": ids.cid_str(manifest.prev) if manifest.prev else None,
        "log_prev": ids.cid_str(manifest.log_prev) if manifest.log_prev else None,
        "files": [{"path": f.path, "size": f.size, "chunks": [{"id": ids.cid_str(c.digest), "size": c.size}
                                                             for c in f.chunks],
                   **({} if f.executable is None else {"exec": f.executable, "mtime_ns": f.mtime_ns})}
                  for f in manifest.files],
        "folders": list(manifest.empty_folders),
        "schema": manifest.VERSION,
    })
    return doc


__all__ = ["DatasetsService", "DiskFull", "DuplicatePublish", "IdempotencyConflict", "Outcome", "PublishCancelled",
           "PublishError", "PublishHeld",
           "manifest_full",
           "manifest_summary"]
