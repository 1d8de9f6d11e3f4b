"""The content-addressed chunk store: an interface, and its local-filesystem implementation.

`ChunkStore` is small on purpose, so that an object store (S3-compatible) can implement it later: a chunk
is named by its BLAKE3-256 digest, written once, verified when read. The API is synchronous: the node calls
it from a thread pool, and every method is safe to call from several threads at once.

The crash story of `FsChunkStore` (principle 3 of design.md): a chunk is written to a temporary file in
`tmp/` on the same filesystem, fsynced, then renamed to its final name, so a file under a final name is
always complete and its bytes are on disk. The rename itself is made durable by fsyncing the folder that
holds it (and the parent of any folder created for it) before `put` returns, or at `flush()` / the end of a
batch for the batched paths; only after that may a caller record the chunk as stored in the catalog.
Temporary files left by a crash are deleted at the next open, when no other process has the store open.
"""

from __future__ import annotations

import abc
import errno
import fcntl
import itertools
import logging
import mmap
import os
import shutil
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Self, TypeVar

from communs.protocol.ids import DIGEST_SIZE, cid_str, digest

from . import chunker
from .errors import ChunkCorrupt, ChunkMissing, StorageError, StorageFull

log = logging.getLogger("communs.storage")

ProgressCallback = Callable[[int, int], None]
"""Called as `progress(bytes_done, bytes_total)` from the calling thread."""

Buffer = bytes | bytearray | memoryview

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_HEX_LEN = DIGEST_SIZE * 2
_T = TypeVar("_T")
_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
_ALIGN = 4096  # O_DIRECT alignment of buffer, offset and length: 4 KiB suits every common disk
_DIRECT_MIN = 64 * 1024  # smaller chunks go through the page cache: O_DIRECT buys nothing there


def _check_digest(d: bytes) -> None:
    if not isinstance(d, bytes) or len(d) != DIGEST_SIZE:
        raise ValueError("a chunk digest is 32 bytes")


def _os_error(exc: OSError, what: str) -> StorageError:
    """The storage error for an OS failure: a full disk is told apart because the node reacts to it."""
    if exc.errno in _FULL_ERRNOS:
        return StorageFull(f"the disk is full while {what}; nothing partial was kept")
    return StorageError(f"storage failure while {what}: {exc.strerror or exc}")


class TotalBytes:
    """The bytes a store holds: counted by one scan when first asked, then kept up to date by every write and
    delete (`account`). Thread-safe. Writes during the first scan may be counted twice or not at all; the
    node keeps its quota from the catalog and uses this figure for reports, so a rare drift until the store
    is opened again is fine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total: int | None = None

    def get(self, scan: Callable[[], int]) -> int:
        with self._lock:
            if self._total is not None:
                return self._total
        total = scan()
        with self._lock:
            if self._total is None:
                self._total = total
            return self._total

    def account(self, delta: int) -> None:
        with self._lock:
            if self._total is not None:
                self._total += delta

    def peek(self) -> int | None:
        """The figure if the first scan is done, else None (never scans: for callers that must not wait)."""
        with self._lock:
            return self._total


class ChunkStore(abc.ABC):
    """Where chunks live, named by digest. Implementations must be thread-safe."""

    @abc.abstractmethod
    def has(self, d: bytes) -> bool:
        """Whether a chunk is stored under `d` (not whether it is intact: `get` checks that)."""

    @abc.abstractmethod
    def get(self, d: bytes, *, verify: bool = True, quarantine_bad: bool = True) -> bytes:
        """The chunk's bytes; ChunkMissing if absent, ChunkCorrupt if they do not hash to `d` (and then, by
        default, the chunk is quarantined so that it is never served again and can be fetched anew)."""

    @abc.abstractmethod
    def put(self, d: bytes, data: Buffer, *, durable: bool = True) -> bool:
        """Store `data` under `d` after checking that it hashes to `d` (else ChunkCorrupt, nothing stored).

        False if the chunk was already there. With `durable` (the default) the chunk survives a power cut
        once this returns; without, only after `flush()`. StorageFull when the disk is full.
        """

    @abc.abstractmethod
    def delete(self, d: bytes) -> bool:
        """Remove a chunk; False if it was not there. Not made durable: a chunk that comes back after a
        crash is harmless and collected again."""

    @abc.abstractmethod
    def iter_digests(self) -> Iterator[bytes]:
        """Every stored digest, in no particular order."""

    @abc.abstractmethod
    def size_of(self, d: bytes) -> int:
        """The stored size of a chunk; ChunkMissing if absent."""

    @abc.abstractmethod
    def quarantine(self, d: bytes) -> bool:
        """Move a (bad) chunk out of the store, kept aside for inspection; False if it was not there."""

    @abc.abstractmethod
    def total_bytes(self) -> int:
        """The bytes of all stored chunks."""

    def space(self) -> tuple[int, int] | None:
        """(free, total) bytes the store may still fill; None when it cannot be known (yet).

        The node calls this on its event loop (status, metrics, every replication round), so it must answer
        at once: no network request, no scan. A store that has to count first answers None until it knows,
        and enforces its limit where it writes."""
        return None

    def flush(self) -> None:  # noqa: B027 - a no-op is right for stores whose writes are durable at once
        """Make every earlier `put(..., durable=False)` durable."""

    def close(self) -> None:  # noqa: B027 - a no-op is right for stores that hold nothing
        """Release what the store holds (threads, locks)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put_many(self, items: Iterable[tuple[bytes, Buffer]]) -> list[bool]:
        """Store several chunks, all durable when this returns; one bool per item as in `put`."""
        created = [self.put(d, data, durable=False) for d, data in items]
        self.flush()
        return created

    def ingest_file(self, path: str | os.PathLike[str], progress_cb: ProgressCallback | None = None,
                    created: list[bytes] | None = None) -> list[tuple[bytes, int]]:
        """Chunk a file and store every chunk not already there, for publishing.

        Returns the file's chunk list, `(digest, size)` in order; every chunk in it is durably stored when
        this returns. `created` receives the digest of every chunk this call wrote anew, also when it
        fails, so that a failed publish can remove what it alone added.
        """
        with open(path, "rb", buffering=0) as stream:
            total = os.fstat(stream.fileno()).st_size
            out: list[tuple[bytes, int]] = []
            done = 0
            for piece in chunker.iter_pieces(stream):
                d = digest(piece.data)
                if self.put(d, piece.data, durable=False) and created is not None:
                    created.append(d)
                out.append((d, piece.length))
                done += piece.length
                if progress_cb is not None:
                    progress_cb(done, total)
        self.flush()
        return out

    def scrub(self, progress_cb: ProgressCallback | None = None) -> list[bytes]:
        """Re-hash every stored chunk; the bad ones are quarantined and returned (for `communs verify`)."""
        digests = list(self.iter_digests())
        bad: list[bytes] = []
        for i, d in enumerate(digests, 1):
            try:
                self.get(d)
            except ChunkCorrupt:
                bad.append(d)
            except ChunkMissing:
                pass  # deleted meanwhile
            if progress_cb is not None:
                progress_cb(i, len(digests))
        return bad


class FsChunkStore(ChunkStore):
    """Chunks as files under `root/chunks/ab/<hex digest>` (`ab`: the digest's first byte).

    One level of 256 folders, as git's objects and IPFS's flatfs: a million chunks (about a terabyte) is
    ~4,000 files per folder, which ext4's hashed directories handle well. A second level (`ab/cd/`) was
    measured slower: a fresh 1 GiB publish then creates and fsyncs ~1,000 folders instead of 256, about
    0.4 s of kernel time per GiB (inode allocation and folder syncs), for no gain at these sizes.
    """

    def __init__(self, root: str | os.PathLike[str], *, writers: int = 8, windows: int = 4,
                 direct: bool | None = None) -> None:
        """`direct`: write chunks with O_DIRECT (None: where the probe at open shows that bytes written with
        O_DIRECT read back identical; `[storage] direct_io` in config.toml)."""
        self.root = Path(root)
        self._chunks = self.root / "chunks"
        self._tmp = self.root / "tmp"
        self._quarantine = self.root / "quarantine"
        self._writers = max(1, writers)
        self._buffers = _AlignedBuffers(chunker.MAX_SIZE, limit=2 * self._writers)
        self._direct = False
        self._direct_failed = False  # a write refused O_DIRECT: never turned on again (by the probe)
        self._probe: threading.Thread | None = None
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._busy: dict[bytes, threading.Event] = {}
        self._pending_dirs: set[Path] = set()
        self._inflight: set[Path] = set()  # taken by a flush that has not finished its fsyncs
        # Folders fsynced by this process (their entries at that time are durable), and folders created by
        # this process whose parent has not been fsynced since.
        self._synced: set[Path] = set()
        self._fresh: set[Path] = set()
        self._totals = TotalBytes()
        self._counter = itertools.count()
        self._executor: ThreadPoolExecutor | None = None
        self._windows: chunker.WindowPool | None = None
        self._window_count = windows
        self._lock_fd: int | None = None
        try:
            created_root = not self.root.exists()
            self.root.mkdir(parents=True, exist_ok=True)
            for sub in (self._chunks, self._tmp, self._quarantine):
                sub.mkdir(exist_ok=True)
            self._lock_fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._clean_temporaries()
            if direct is None:
                self._start_probe()
            else:
                self._direct = direct and _O_DIRECT != 0
            _fsync_dir(self.root)
            if created_root:
                _fsync_dir(self.root.parent)
        except OSError as exc:
            self.close()
            raise _os_error(exc, f"opening the chunk store in {self.root}") from exc
        self._synced.add(self.root)

    # -- open / close ------------------------------------------------------------------------------------

    def _clean_temporaries(self) -> None:
        """Delete the leftovers of a crash, but only when no other process has the store open (it could be
        writing them). Every open store holds a shared lock; only an opener that gets it exclusive cleans."""
        assert self._lock_fd is not None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            return
        try:
            for entry in os.scandir(self._tmp):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)

    def close(self) -> None:
        if self._probe is not None:
            self._probe.join()  # its file is in tmp/, which the caller may remove next
            self._probe = None
        if self._pending_dirs:
            try:
                self.flush()
            except StorageError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._windows = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _window_pool(self) -> chunker.WindowPool:
        with self._lock:
            if self._windows is None:
                self._windows = chunker.WindowPool(self._window_count)
            return self._windows

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._writers, thread_name_prefix="chunkstore")
            return self._executor

    # -- naming ------------------------------------------------------------------------------------------

    def _start_probe(self) -> None:
        """Probe O_DIRECT in the background: the probe writes and reads back 16 MiB (about 0.1 s, a sixth of
        a node's start-up), and chunks written meanwhile simply go through the page cache."""
        def probe() -> None:
            ok = _probe_direct(self._tmp)
            with self._lock:
                if self._direct_failed:
                    return
                self._direct = ok
            log.info("chunk files are written %s (probed)", "with O_DIRECT" if ok else "through the page cache")

        self._probe = threading.Thread(target=probe, name="chunkstore-probe", daemon=True)
        self._probe.start()

    @property
    def direct(self) -> bool:
        """Whether chunk files are written with O_DIRECT (else through the page cache)."""
        return self._direct

    def path_of(self, d: bytes) -> Path:
        """Where the chunk `d` lives (for tests and tools; nobody else should write there)."""
        _check_digest(d)
        h = d.hex()
        return self._chunks / h[:2] / h

    @contextmanager
    def _exclusive(self, d: bytes) -> Iterator[None]:
        """One operation at a time per digest: two puts of the same chunk write it once, and a delete never
        interleaves with a put of the same chunk. Different chunks never wait for each other."""
        while True:
            with self._lock:
                ev = self._busy.get(d)
                if ev is None:
                    self._busy[d] = threading.Event()
                    break
            ev.wait()
        try:
            yield
        finally:
            with self._lock:
                self._busy.pop(d).set()

    # -- reading -----------------------------------------------------------------------------------------

    def has(self, d: bytes) -> bool:
        return self.path_of(d).is_file()

    def size_of(self, d: bytes) -> int:
        try:
            return self.path_of(d).stat().st_size
        except FileNotFoundError:
            raise ChunkMissing(f"chunk {cid_str(d)} is not stored here") from None

    def get(self, d: bytes, *, verify: bool = True, quarantine_bad: bool = True) -> bytes:
        path = self.path_of(d)
        try:
            with open(path, "rb", buffering=0) as f:
                data = f.read()
        except FileNotFoundError:
            raise ChunkMissing(f"chunk {cid_str(d)} is not stored here") from None
        except OSError as exc:
            raise _os_error(exc, f"reading chunk {cid_str(d)}") from exc
        if verify and digest(data) != d:
            where = ""
            if quarantine_bad and self.quarantine(d):
                where = "; it was moved to quarantine"
            raise ChunkCorrupt(f"chunk {cid_str(d)} is corrupt on disk (its content does not match its "
                               f"hash){where}")
        return data

    def iter_digests(self) -> Iterator[bytes]:
        for folder in _scandirs(self._chunks):
            for entry in _scandir(folder.path):
                if len(entry.name) == _HEX_LEN and entry.is_file(follow_symlinks=False):
                    try:
                        yield bytes.fromhex(entry.name)
                    except ValueError:
                        continue

    def total_bytes(self) -> int:
        return self._totals.get(self._scan_total)

    def _scan_total(self) -> int:
        total = 0
        for d in self.iter_digests():
            try:
                total += self.size_of(d)
            except ChunkMissing:
                pass
        return total

    def space(self) -> tuple[int, int] | None:
        try:
            usage = shutil.disk_usage(self.root)
        except OSError:
            return None
        if usage.total == 0:  # a filesystem that reports no sizes (LazyFS, some FUSE ones): unknown, not full
            return None
        return usage.free, usage.total

    def quarantined(self) -> list[Path]:
        """The files in quarantine (for reports and tests)."""
        return sorted(p for p in self._quarantine.iterdir() if p.is_file())

    # -- writing -----------------------------------------------------------------------------------------

    def put(self, d: bytes, data: Buffer, *, durable: bool = True) -> bool:
        _check_digest(d)
        if digest(data) != d:
            raise ChunkCorrupt(f"the data offered for chunk {cid_str(d)} does not hash to it; "
                               "nothing was stored")
        created, dirs = self._store(d, data)
        if durable:
            self._sync_dirs(dirs)
        else:
            with self._lock:
                self._pending_dirs.update(dirs)
        return created

    def put_many(self, items: Iterable[tuple[bytes, Buffer]]) -> list[bool]:
        pool = self._pool()
        futures = []
        for d, data in items:
            _check_digest(d)
            futures.append(pool.submit(self.put, d, data, durable=False))
        created = _results(futures)
        self.flush()
        return created

    def flush(self) -> None:
        """Fsync the folders of every earlier non-durable put, and return only once they are synced.

        Flushes run one at a time: a flush that finds nothing pending because another thread took the
        folders must still wait for that thread's fsync to finish, or its caller would mark chunks stored
        while their folder entries are not yet on disk. A failed fsync puts its folders back.
        """
        with self._flush_lock:
            with self._lock:
                dirs, self._pending_dirs = self._pending_dirs, set()
                self._inflight = dirs
            try:
                self._sync_dirs(dirs)
            except BaseException:
                with self._lock:
                    self._pending_dirs.update(dirs)
                raise
            finally:
                with self._lock:
                    self._inflight = set()

    def _store(self, d: bytes, data: Buffer) -> tuple[bool, set[Path]]:
        """Write an already verified chunk if absent. Returns whether it was created, and the folders to
        fsync before the chunk may be called durable."""
        final = self.path_of(d)
        with self._exclusive(d):
            if final.exists():
                return False, self._folders_to_sync(final, renamed=False)
            tmp = self._tmp / f"{d.hex()}.{os.getpid()}.{next(self._counter)}.tmp"
            try:
                self._write_file(tmp, data)
                self._make_parents(final)
                os.rename(tmp, final)
            except BaseException as exc:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                if isinstance(exc, OSError):
                    raise _os_error(exc, f"writing chunk {cid_str(d)}") from exc
                raise
        self._totals.account(len(data))
        return True, self._folders_to_sync(final, renamed=True)

    def _write_file(self, tmp: Path, data: Buffer) -> None:
        """Write `data` to a new file and fsync it, with O_DIRECT when the filesystem allows it.

        Why O_DIRECT: the data goes from a reused, page-aligned staging buffer straight to the disk, so
        the kernel neither copies it into the page cache nor allocates and later writes back thousands of
        dirty pages. Measured here on 1 GiB of 1 MiB files: a third of the CPU time of buffered writes, and
        steady when the machine is busy, where buffered writes varied threefold. The fsync is still needed
        (file size, block allocation, the disk's own cache).
        """
        n = len(memoryview(data).cast("B"))
        buf = self._buffers.take() if self._direct and _DIRECT_MIN <= n <= self._buffers.size else None
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags | (_O_DIRECT if buf is not None else 0), 0o644)
            try:
                if buf is not None:
                    padded = -(-n // _ALIGN) * _ALIGN
                    view = memoryview(buf)
                    view[:n] = memoryview(data).cast("B")
                    view[n:padded] = bytes(padded - n)
                    try:
                        _write_all(fd, view[:padded])
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise
                        # This filesystem takes O_DIRECT at open but not these writes: go buffered.
                        with self._lock:
                            self._direct, self._direct_failed = False, True
                        os.close(fd)
                        fd = -1
                        fd = os.open(tmp, (flags & ~os.O_EXCL) | os.O_TRUNC, 0o644)
                        _write_all(fd, data)
                    else:
                        os.ftruncate(fd, n)
                else:
                    _write_all(fd, data)
                os.fsync(fd)
            finally:
                if fd >= 0:
                    os.close(fd)
        finally:
            if buf is not None:
                self._buffers.give(buf)

    def _make_parents(self, final: Path) -> None:
        folder = final.parent
        if folder in self._synced:
            return
        with self._lock:
            try:
                os.mkdir(folder)
            except FileExistsError:
                return
            self._fresh.add(folder)

    def _folders_to_sync(self, final: Path, *, renamed: bool) -> set[Path]:
        """The folders whose fsync makes the path of `final` durable.

        An entry (file or folder) is durable once its parent folder was fsynced after the entry appeared: so
        a folder is synced when an entry was just added to it (a rename, a fresh sub-folder), or when this
        process never synced it (it may hold entries of a process that crashed before syncing them).
        """
        folder = final.parent
        need: set[Path] = set()
        with self._lock:
            # A chunk found already there may have been renamed in by a put whose folder is not synced yet.
            if (renamed or folder not in self._synced or folder in self._pending_dirs
                    or folder in self._inflight):
                need.add(folder)
            if folder in self._fresh or self._chunks not in self._synced:
                need.add(self._chunks)
        return need

    def _sync_dirs(self, dirs: set[Path]) -> None:
        if not dirs:
            return
        with self._lock:
            covered = {f for f in self._fresh if f.parent in dirs}
        try:
            if len(dirs) == 1:
                for folder in dirs:
                    _fsync_dir(folder)
            else:
                _results([self._pool().submit(_fsync_dir, folder) for folder in dirs])
        except OSError as exc:
            raise _os_error(exc, "syncing chunk folders") from exc
        with self._lock:
            self._synced.update(dirs)
            self._fresh.difference_update(covered)

    def delete(self, d: bytes) -> bool:
        path = self.path_of(d)
        with self._exclusive(d):
            try:
                size = path.stat().st_size
                os.unlink(path)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise _os_error(exc, f"deleting chunk {cid_str(d)}") from exc
        self._totals.account(-size)
        return True

    def quarantine(self, d: bytes) -> bool:
        path = self.path_of(d)
        with self._exclusive(d):
            try:
                size = path.stat().st_size
                os.rename(path, self._quarantine / f"{d.hex()}.{time.time_ns()}")
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise _os_error(exc, f"quarantining chunk {cid_str(d)}") from exc
        self._totals.account(-size)
        return True

    # -- publishing --------------------------------------------------------------------------------------

    def ingest_file(self, path: str | os.PathLike[str], progress_cb: ProgressCallback | None = None,
                    created: list[bytes] | None = None) -> list[tuple[bytes, int]]:
        """Chunk, hash and store a file as a pipeline, for publishing throughput.

        The calling thread reads and cuts (FastCDC releases the GIL); writer threads hash (BLAKE3 releases
        the GIL), write, fsync and rename each new chunk, so the disk always has several files being
        flushed; the folders are fsynced once, at the end. Reads go into the store's pool of windows, which
        bounds memory whatever the file size and avoids page faults on fresh buffers.
        """
        pool = self._pool()
        windows = self._window_pool()
        futures: deque[Future[tuple[bytes, int, set[Path]]]] = deque()
        out: list[tuple[bytes, int]] = []
        dirs: set[Path] = set()
        done = 0
        total = 0

        abort = threading.Event()

        def job(piece: chunker.Piece) -> tuple[bytes, int, set[Path]]:
            try:
                if abort.is_set():
                    raise StorageError("publishing was interrupted")
                d = digest(piece.data)
                was_created, touched = self._store(d, piece.data)
                if was_created and created is not None:
                    created.append(d)  # list.append is atomic: writer threads share the list
                return d, piece.length, touched
            finally:
                piece.release()

        def collect(fut: Future[tuple[bytes, int, set[Path]]]) -> None:
            nonlocal done
            d, length, touched = fut.result()
            out.append((d, length))
            dirs.update(touched)
            done += length
            if progress_cb is not None:
                progress_cb(done, total)

        try:
            with open(path, "rb", buffering=0) as stream:
                st = os.fstat(stream.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise StorageError(f"{path} is not a regular file")
                total = st.st_size
                try:
                    os.posix_fadvise(stream.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
                except (AttributeError, OSError):
                    pass
                with closing(chunker.iter_pieces(stream, pool=windows)) as pieces:
                    for piece in pieces:
                        futures.append(pool.submit(job, piece))
                        del piece
                        while futures and futures[0].done():
                            collect(futures.popleft())
            while futures:
                collect(futures.popleft())
        except BaseException:
            # Every queued job still runs (and returns its window to the pool) but writes nothing more.
            abort.set()
            for fut in futures:
                try:
                    fut.result()
                except BaseException:
                    pass  # the first error is the one reported
            raise
        self._sync_dirs(dirs)
        return out


# -- helpers -----------------------------------------------------------------------------------------------

class _AlignedBuffers:
    """Page-aligned staging buffers for O_DIRECT writes, kept for reuse (fresh memory costs page faults).

    At most `limit` exist; a writer that finds none free writes through the page cache instead of waiting.
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self._limit = limit
        self._made = 0
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap | None:
        with self._lock:
            if self._free:
                return self._free.pop()
            if self._made >= self._limit:
                return None
            self._made += 1
        return mmap.mmap(-1, self.size + _ALIGN)  # anonymous maps start on a page boundary

    def give(self, buf: mmap.mmap) -> None:
        with self._lock:
            self._free.append(buf)


_PROBE_SIZE = 4 * chunker.MAX_SIZE  # written as one request: big enough that the kernel splits it
_probed: dict[int, bool] = {}  # st_dev -> probe result, once per filesystem and process
_probed_lock = threading.Lock()


def _probe_direct(folder: Path) -> bool:
    """Whether bytes written to files in `folder` with O_DIRECT read back identical; once per filesystem.

    Accepting the open and the write is not enough: on LazyFS (a FUSE file system) O_DIRECT writes of a
    few MiB are accepted and read back as zeros, intermittently for one chunk and nearly always for a
    16 MiB write, which FUSE splits into requests that the daemon serves at once. So the probe writes a
    random pattern of that size with O_DIRECT, closes the file, reads it back with an ordinary read and
    compares; and it refuses FUSE outright, whose O_DIRECT behaviour is whatever its daemon does (one
    passing sample proves nothing about an intermittent fault there).
    """
    if not _O_DIRECT:
        return False
    try:
        dev = os.stat(folder).st_dev
    except OSError:
        return False
    with _probed_lock:
        if dev in _probed:
            return _probed[dev]
        ok = not _is_fuse(folder) and _direct_reads_back(folder, _PROBE_SIZE)
        _probed[dev] = ok
        return ok


def _is_fuse(folder: Path) -> bool:
    """Whether `folder` is on a FUSE file system (Linux: its statfs type, from /proc/self/mountinfo)."""
    try:
        target = os.path.realpath(folder)
        best, fstype = "", ""
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                mount = fields[4].replace("\\040", " ")
                if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, fstype = mount, right.split()[0]
        return fstype == "fuse" or fstype.startswith(("fuse.", "fuseblk"))
    except OSError:
        return False


def _direct_reads_back(folder: Path, size: int) -> bool:
    """Write `size` random bytes with O_DIRECT, close, read them back without O_DIRECT and compare.

    Both copies live in anonymous maps, returned to the system when closed: heap buffers of this size would
    stay in the process (malloctune keeps freed blocks of up to 32 MiB for reuse), 32 MB for the node's
    lifetime."""
    probe = folder / f"direct-probe.{os.getpid()}.{threading.get_ident()}.tmp"
    step = 1 << 20
    written = mmap.mmap(-1, size)  # anonymous maps start on a page boundary, as O_DIRECT wants
    back = mmap.mmap(-1, size)
    try:
        for start in range(0, size, step):
            written[start:start + step] = os.urandom(min(step, size - start))
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _O_DIRECT, 0o600)
        try:
            _write_all(fd, memoryview(written))
        finally:
            os.close(fd)
        with open(probe, "rb", buffering=0) as f, memoryview(back) as view:
            got = 0
            while got < size:
                n = f.readinto(view[got:])
                if not n:
                    return False
                got += n
            if f.read(1):
                return False
        return all(written[s:s + step] == back[s:s + step] for s in range(0, size, step))
    except OSError:
        return False
    finally:
        written.close()
        back.close()
        try:
            os.unlink(probe)
        except OSError:
            pass


def _write_all(fd: int, data: Buffer) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _scandir(path: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except FileNotFoundError:
        return []


def _scandirs(path: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    return [e for e in _scandir(path) if len(e.name) == 2 and e.is_dir(follow_symlinks=False)]


def _results(futures: Sequence[Future[_T]]) -> list[_T]:
    """Wait for every future (so no write is left running behind an error) and raise the first error."""
    first: BaseException | None = None
    out: list[_T] = []
    for fut in futures:
        try:
            out.append(fut.result())
        except BaseException as exc:
            if first is None:
                first = exc
    if first is not None:
        raise first
    return out
