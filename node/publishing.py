"""Datasets: publishing local files, taking in manifests from peers, and each manifest's state.

Every manifest, whether published here or received, goes through this one service, so that the
rules that keep the catalog consistent live in one place: a record is verified before it is stored,
its place in its publisher's log is checked (a contradiction is kept as fork evidence), and its
`state`/`reason` is decided by the policy in force. The replication service then acts on the states.

Publishing writes chunks first (each durable before it is visible) and the manifest last, in one
catalog transaction: a publish killed half-way leaves only unreferenced chunks, which a second
publish of the same files reuses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from communs.governance import policy as policy_mod
from communs.governance.errors import GovernanceError
from communs.governance.licences import check_expression
from communs.protocol import ids, keys, paths
from communs.protocol import log as plog
from communs.protocol.errors import RecordError
from communs.protocol.records import FileEntry, Manifest, decode_manifests, new_dataset_id
from communs.storage.catalog import ManifestInfo, ManifestRow, PutOutcome
from communs.storage.errors import StorageError, StorageFull

from .gctune import GC_THRESHOLDS
from .storage_service import UsesStorage

if TYPE_CHECKING:
    from .service import Node

log = logging.getLogger("communs.datasets")

OWN, COMPLETE, IN_PROGRESS, NOT_WANTED = "own", "complete", "in-progress", "not-wanted"
PROCESS_BATCH = 200  # manifests at once above which verification runs in worker processes
DECODE_WORKERS = 1  # measured: a second worker loses to the node and its peer on a 2-core machine
STATES = (OWN, COMPLETE, IN_PROGRESS, NOT_WANTED)


class PublishError(Exception):
    """The path or the request cannot be published; one sentence says why. Nothing was published."""


class DiskFull(PublishError):
    """The node's disk filled up while publishing; nothing was published, and the chunks already written
    stay (unreferenced) for the next try to reuse once space is freed. Not the caller's mistake: HTTP 507."""


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

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "state": self.state, "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total, "files_done": self.files_done, "files_total": self.files_total}


@dataclass(frozen=True)
class Outcome:
    """What happened to one manifest offered by a peer."""

    status: str  # "new", "known", "fork", "rejected"
    reason: str = ""
    manifest: Manifest | None = None


Callback = Callable[[Manifest], Awaitable[None]]


def scan_tree(root: Path) -> list[tuple[str, Path, int]]:
    """The files to publish under `root` (a file or a folder): (manifest path, real path, size).

    Refuses what cannot be published faithfully: symlinks that leave the folder, device files,
    sockets and pipes, unreadable files, and names a manifest cannot carry.
    """
    try:
        st = root.lstat()
    except FileNotFoundError:
        raise PublishError(f"{root} does not exist") from None
    except OSError as exc:
        raise PublishError(f"cannot read {root}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        root = root.resolve()
        st = root.stat()
    if stat.S_ISREG(st.st_mode):
        _check_readable(root)
        name = root.name
        try:
            paths.check_path(name)
        except RecordError as exc:
            raise PublishError(f"{root.name!r} cannot be published: {exc}") from None
        return [(name, root, st.st_size)]
    if not stat.S_ISDIR(st.st_mode):
        raise PublishError(f"{root} is neither a regular file nor a folder")
    base = root.resolve()
    out: list[tuple[str, Path, int]] = []
    for folder, dirnames, filenames in os.walk(base, onerror=_walk_error, followlinks=False):
        here = Path(folder)
        for name in sorted(dirnames):
            p = here / name
            if p.is_symlink():
                raise PublishError(f"{p} is a symbolic link to a folder; publish the folder itself instead")
        for name in sorted(filenames):
            p = here / name
            rel = p.relative_to(base).as_posix()
            lst = p.lstat()
            if stat.S_ISLNK(lst.st_mode):
                target = p.resolve()
                if not target.is_relative_to(base):
                    raise PublishError(f"{p} is a symbolic link leading outside {root}; refusing to publish it")
                lst = target.stat()
                real = target
            else:
                real = p
            if not stat.S_ISREG(lst.st_mode):
                raise PublishError(f"{p} is not a regular file (device, socket or pipe); refusing to publish it")
            _check_readable(real)
            try:
                paths.check_path(rel)
            except RecordError as exc:
                raise PublishError(f"{p} cannot be published: {exc}") from None
            out.append((rel, real, lst.st_size))
    try:
        paths.check_tree([rel for rel, _, _ in out])
    except RecordError as exc:
        raise PublishError(f"the folder cannot be published: {exc}") from None
    return out


def _walk_error(exc: OSError) -> None:
    raise PublishError(f"cannot read {exc.filename}: {exc.strerror}")


def _check_readable(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise PublishError(f"cannot read {path}: {exc.strerror}") from None


class DatasetsService(UsesStorage):
    def __init__(self, node: Node) -> None:
        self.node = node
        node.datasets = self
        self.on_published: list[Callback] = []
        self.on_complete: list[Callback] = []  # a replicated dataset became complete here
        self.on_wanted: list[Callable[[list[bytes]], Awaitable[None]]] = []
        self.on_unwanted: list[Callable[[list[bytes]], Awaitable[None]]] = []
        self.jobs: dict[int, PublishJob] = {}
        self._job_ids = 0
        self._publish_lock = asyncio.Lock()
        self._ingest_lock = asyncio.Lock()
        self._pool: Any = None
        self._pool_ready: asyncio.Future[Any] | None = None
        self._thread_decoding = False
        self._pool_broken = False

    async def start(self) -> None:
        gov = self.node.governance
        if gov is not None and hasattr(gov, "on_policy_change"):
            gov.on_policy_change.append(self._policy_changed)

    async def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._pool_ready = None

    # ---- policy ----------------------------------------------------------------------------------

    def policy(self) -> policy_mod.Policy:
        gov = self.node.governance
        current = getattr(gov, "policy", None) if gov is not None else None
        return current if isinstance(current, policy_mod.Policy) else policy_mod.DEFAULT_POLICY

    def decide(self, *, licence: str, size: int, publisher: bytes, forked: bool) -> tuple[bool, str]:
        """(wanted, reason) for a manifest not published here."""
        if forked:
            return False, "its publisher's key signed two different histories (fork); it is distrusted"
        d = policy_mod.evaluate(self.policy(), licence=licence, size=size,
                                publisher_peer_id=keys.peer_id(publisher), own=False)
        return d.wanted, d.reason

    async def _policy_changed(self, _policy: Any) -> None:
        await self.reevaluate()

    async def reevaluate(self) -> None:
        """Apply the policy in force to every manifest not published here (at each enactment)."""
        forked = await self.catalog.forked_publishers()
        changes: list[tuple[bytes, str, str]] = []
        wanted: list[bytes] = []
        unwanted: list[bytes] = []
        for info in await self.catalog.list_manifests():
            if info.own:
                continue
            want, reason = self.decide(licence=info.licence, size=info.size, publisher=info.publisher,
                                       forked=info.publisher in forked)
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
        if changes:
            await self.catalog.set_states(changes)
            log.info("policy re-applied: %d manifest state(s) changed (%d wanted, %d no longer wanted)",
                     len(changes), len(wanted), len(unwanted))
        for cb in self.on_unwanted:
            await cb(unwanted)
        for cb in self.on_wanted:
            await cb(wanted)

    # ---- publishing ------------------------------------------------------------------------------

    def new_job(self, path: str) -> PublishJob:
        self._job_ids += 1
        job = PublishJob(self._job_ids, path)
        self.jobs[job.id] = job
        # keep the last few finished jobs for progress readers, drop older ones
        for old in sorted(self.jobs)[:-20]:
            if self.jobs[old].state in ("done", "failed"):
                del self.jobs[old]
        return job

    async def publish(self, path: Path, *, title: str, licence: str, description: str = "",
                      keywords: Sequence[str] = (), dataset: bytes | None = None,
                      job: PublishJob | None = None) -> Manifest:
        if job is None:
            job = self.new_job(str(path))
        try:
            manifest = await self._publish(path, title=title, licence=licence, description=description,
                                           keywords=keywords, dataset=dataset, job=job)
        except BaseException:
            job.state = "failed"
            raise
        job.state = "done"
        return manifest

    async def _publish(self, path: Path, *, title: str, licence: str, description: str,
                       keywords: Sequence[str], dataset: bytes | None, job: PublishJob) -> Manifest:
        try:
            licence = check_expression(licence)
        except GovernanceError as exc:
            raise PublishError(str(exc)) from None
        files = await asyncio.to_thread(scan_tree, path)
        replication = self.node.replication
        if replication is not None and hasattr(replication, "reconciled"):
            await replication.reconciled.wait()  # chunk files are reconciled with the catalog at start
        job.files_total = len(files)
        job.bytes_total = sum(size for _, _, size in files)
        job.state = "chunking"
        entries: list[FileEntry] = []
        stored: dict[bytes, int] = {}
        for rel, real, _size in files:
            base = job.bytes_done

            def progress(done: int, _total: int, base: int = base) -> None:
                job.bytes_done = base + done

            try:
                chunk_list = await asyncio.to_thread(self.chunks.ingest_file, real, progress)
            except StorageError as exc:
                raise _storage_failure(f"could not store {real}", exc) from None
            except OSError as exc:
                raise PublishError(f"cannot read {real}: {exc.strerror}") from None
            entries.append(FileEntry.of(rel, chunk_list))
            stored.update(chunk_list)
            job.files_done += 1
            job.bytes_done = base + sum(s for _, s in chunk_list)
        job.state = "signing"
        async with self._publish_lock:
            key = self.node.key
            prev_id: bytes | None = None
            version = 1
            if dataset is not None:
                latest = await self.catalog.latest_version(dataset)
                if latest is None:
                    raise PublishError("no dataset with that id is known here")
                if latest.publisher != key.public:
                    raise PublishError("that dataset was published by another node; only its publisher can "
                                       "add versions")
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
                    description=description, keywords=tuple(keywords))
            except RecordError as exc:
                raise PublishError(str(exc)) from None
            raw = manifest.encode()
            row = ManifestRow.from_manifest(manifest, raw, received_at=int(time.time()), state=OWN,
                                            reason="published here", own=True)
            try:
                await self.catalog.mark_chunks_stored(list(stored.items()))
                await self.catalog.put_manifest(row)
            except StorageError as exc:
                raise _storage_failure("could not record the dataset", exc) from None
        log.info("published %s version %d (%s, %d files, %d bytes) as %s", manifest.title, manifest.version,
                 manifest.licence, len(manifest.files), manifest.size, manifest.cid)
        for cb in self.on_published:
            try:
                await cb(manifest)
            except Exception as exc:  # noqa: BLE001 - announcing is best effort; sync repairs it
                log.warning("after publishing %s: %s", manifest.cid, exc)
        return manifest

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
        if len(raws) < PROCESS_BATCH or self._pool_broken:
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

    def _start_pool(self) -> Any:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # The worker imports only protocol.records (decode_manifests' module) and collects garbage as
            # rarely as the node does (node/gctune.py).
            from .childproc import init_worker

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
        me = self.node.key.public
        outcomes: list[Outcome | None] = [None] * len(raws)
        forked = await cat.forked_publishers()
        by_pub: dict[bytes, list[int]] = {}
        for i, m in enumerate(decoded):
            if isinstance(m, str):
                outcomes[i] = Outcome("rejected", m)
            else:
                by_pub.setdefault(m.publisher, []).append(i)
        rows: list[tuple[int, ManifestRow]] = []
        forks: list[tuple[Manifest, bytes, bytes, str]] = []  # manifest, raw, conflicting id, reason
        now = int(time.time())
        owners = await self._dataset_owners({m.dataset for m in decoded if isinstance(m, Manifest)})
        for pub, idxs in by_pub.items():
            idxs.sort(key=lambda i: (decoded_seq(decoded[i]), i))
            prev: Manifest | None = None  # the record before this one in the batch, when accepted
            for n, i in enumerate(idxs):
                m = decoded[i]
                assert isinstance(m, Manifest)
                owner = owners.get(m.dataset)
                if owner is not None and owner != pub:
                    outcomes[i] = Outcome("rejected", "the dataset id belongs to another publisher", m)
                    continue
                if prev is not None and prev.id == m.id:
                    outcomes[i] = Outcome("known", "", m)
                    continue
                follows = prev is not None and prev.seq + 1 == m.seq
                if prev is not None and follows and m.log_prev != prev.id:
                    forks.append((m, raws[i], prev.id, "its log link contradicts the record before it"))
                    outcomes[i] = Outcome("fork", "contradicts another record of the same publisher", m)
                    continue
                last_of_run = n + 1 == len(idxs) or decoded_seq(decoded[idxs[n + 1]]) != m.seq + 1
                if not follows or last_of_run:
                    # Ask the catalog about the neighbours only at the ends of a run of consecutive records:
                    # inside a run the links were checked above, and put_manifests_batch catches same-seq ones.
                    view = await cat.log_view(pub, m.seq)
                    before = plog.entry_of(prev) if follows and prev is not None else view.before
                    placement = plog.place(m, head=view.head, at_seq=view.at_seq, before=before,
                                           after=view.after)
                    if placement.status is plog.LogStatus.KNOWN:
                        outcomes[i] = Outcome("known", "", m)
                        prev = m
                        continue
                    if placement.status is plog.LogStatus.FORK:
                        forks.append((m, raws[i], placement.conflict or b"", placement.reason))
                        outcomes[i] = Outcome("fork", "contradicts another record of the same publisher", m)
                        continue
                prev = m
                if m.publisher == me:
                    state, reason, own = OWN, "published here", True
                else:
                    want, reason = self.decide(licence=m.licence, size=m.size, publisher=pub,
                                               forked=pub in forked)
                    state, own = (IN_PROGRESS if want else NOT_WANTED), False
                rows.append((i, ManifestRow.from_manifest(m, raws[i], received_at=now, state=state,
                                                          reason=reason, own=own)))
                owners.setdefault(m.dataset, pub)
        if rows:
            results = await cat.put_manifests_batch([r for _, r in rows])
            for (i, row), result in zip(rows, results, strict=True):
                m = decoded[i]
                assert isinstance(m, Manifest)
                if result is PutOutcome.INSERTED:
                    outcomes[i] = Outcome("new", row.reason, m)
                elif result is PutOutcome.KNOWN:
                    outcomes[i] = Outcome("known", "", m)
                else:
                    held = await cat.manifest_at(m.publisher, m.seq)
                    forks.append((m, raws[i], held.id if held else b"", "two records at the same seq"))
                    outcomes[i] = Outcome("fork", "contradicts another record of the same publisher", m)
        for m, raw, other_id, why in forks:
            await self._record_fork(m, raw, other_id, why)
        new_wanted = [r.id for i, r in rows if r.state == IN_PROGRESS
                      and (o := outcomes[i]) is not None and o.status == "new"]
        if new_wanted:
            for cb in self.on_wanted:
                await cb(new_wanted)
        if self.node.metrics is not None and source is not None:
            self.node.metrics.sync_records.inc(sum(1 for o in outcomes if o is not None and o.status == "new"))
        return [o if o is not None else Outcome("rejected", "not processed") for o in outcomes]

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

    async def list(self) -> list[dict[str, Any]]:
        forked = await self.catalog.forked_publishers()
        return [manifest_summary(info, info.publisher in forked) for info in await self.catalog.list_manifests()]

    async def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for info in await self.catalog.list_manifests():
            out[info.state] = out.get(info.state, 0) + 1
        return out

    async def status(self) -> dict[str, Any]:
        return {"datasets": await self.counts(),
                "publishing": [j.to_json() for j in self.jobs.values() if j.state not in ("done", "failed")]}

    async def refresh_metrics(self) -> None:
        if self.node.metrics is None:
            return
        for state, n in (await self.counts()).items():
            self.node.metrics.datasets.labels(state).set(n)


def decoded_seq(m: Manifest | str) -> int:
    return m.seq if isinstance(m, Manifest) else 0


def manifest_summary(info: ManifestInfo, forked: bool = False) -> dict[str, Any]:
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


def manifest_full(info: ManifestInfo, manifest: Manifest, forked: bool = False) -> dict[str, Any]:
    doc = manifest_summary(info, forked)
    doc.update({
        "description": manifest.description,
        "keywords": list(manifest.keywords),
        "prev": ids.cid_str(manifest.prev) if manifest.prev else None,
        "log_prev": ids.cid_str(manifest.log_prev) if manifest.log_prev else None,
        "files": [{"path": f.path, "size": f.size, "chunks": [{"id": ids.cid_str(c.digest), "size": c.size}
                                                             for c in f.chunks]} for f in manifest.files],
    })
    return doc


__all__ = ["DatasetsService", "DiskFull", "Outcome", "PublishError", "manifest_full", "manifest_summary"]
