"""The chunk store on an S3-compatible object store (SeaweedFS, Garage, MinIO, Ceph RGW, AWS).

Each chunk is one object, `<prefix><CID>`, written once with a single PUT: an object store makes an object
visible only once its whole body is stored, so an object under a chunk's name is always complete, and a
PUT that returned 200 is durable (what the catalog needs before marking the chunk stored). The body is
hashed (BLAKE3) before it is sent and carries a Content-MD5, so the server refuses a body damaged on the
way; every read is hashed again.

The requests go through a small aiohttp client (s3http.py: one asyncio loop in a thread of its own, SigV4
from sigv4.py, bodies sent as UNSIGNED-PAYLOAD with a Content-MD5). The `ChunkStore` contract is
synchronous and the node calls it from worker threads, so the store keeps its threads (`concurrency` of
them: the publish pipeline hashes and uploads chunks in parallel, replication's deferred writes and
`put_many` run there too) and each of them waits for its own request while the client's loop runs them
all at once. Why not botocore, used first: on this 2-core machine it spent 2 to 4.6 times the client CPU
per byte, taken from the object store on the same cores (figures in s3http.py and README.md).

Unreachable store: the client does not retry; `_call` retries 5xx answers, timeouts and refused
connections with exponential backoff for up to `wait_s` seconds, logging why it waits, so a store
restarted for maintenance pauses the node's work instead of failing it.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from communs.protocol.errors import DecodeError
from communs.protocol.ids import cid_str, digest, parse_cid

from . import chunker
from .chunkstore import Buffer, ChunkStore, ProgressCallback, TotalBytes, _check_digest, _results
from .errors import ChunkCorrupt, ChunkMissing, StorageError, StorageFull
from .s3http import S3Answer, S3Http, S3Unreachable

log = logging.getLogger("communs.storage.s3")

_T = TypeVar("_T")

QUARANTINE = "quarantine/"

# Answers that mean "the credentials are wrong", "the store is full", "try again later".
_AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
               "AuthorizationHeaderMalformed", "InvalidSecurity", "MissingSecurityHeader"}
_FULL_CODES = {"XMinioStorageFull", "StorageFull", "QuotaExceeded", "XMinioAdminBucketQuotaExceeded",
               "InsufficientStorage", "NotEnoughSpace", "XMinioAdminBucketQuotaExceed"}
_RETRY_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed",
                "OperationAborted"}


@dataclass(frozen=True)
class S3Settings:
    """Where the chunks go. `capacity_bytes`: the space the node may use in the bucket (None: unknown, then
    only the federation's quota limits it)."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    prefix: str = "communs/"
    region: str = "us-east-1"
    capacity_bytes: int | None = None
    concurrency: int = 8
    wait_s: float = 300.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0

    @property
    def key_prefix(self) -> str:
        p = self.prefix.strip("/")
        return f"{p}/" if p else ""


def read_credentials_file(path: Path) -> tuple[str, str]:
    """(access key, secret key) from an AWS-style credentials file (`[default]` with `aws_access_key_id` and
    `aws_secret_access_key`), refused when others than its owner may read it (as ssh does)."""
    try:
        st = path.stat()
        text = path.read_text("utf-8")
    except OSError as exc:
        raise StorageError(f"cannot read the S3 credentials file {path}: {exc.strerror or exc}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StorageError(f"the S3 credentials file {path} is readable by others; run 'chmod 600 {path}'")
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text if text.lstrip().startswith("[") else "[default]\n" + text)
    except configparser.Error as exc:
        raise StorageError(f"the S3 credentials file {path} is not valid: {exc}") from None
    section = parser["default"] if parser.has_section("default") else None
    key = section.get("aws_access_key_id") if section else None
    secret = section.get("aws_secret_access_key") if section else None
    if not key or not secret:
        raise StorageError(f"the S3 credentials file {path} needs aws_access_key_id and aws_secret_access_key "
                           "under [default]")
    return key.strip(), secret.strip()


def retry_delay(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (1, 2, ...): 0.25 s doubling to at most 10 s."""
    return float(min(10.0, 0.25 * 2 ** max(0, attempt - 1)))


def classify(code: str, status: int) -> str:
    """What an error answer from the store means: "retry", "auth", "bucket", "full", "denied", "missing",
    or "other"."""
    if code in _AUTH_CODES:
        return "auth"
    if code == "NoSuchBucket":
        return "bucket"
    if code in _FULL_CODES or status == 507:
        return "full"
    if code in ("NoSuchKey", "404", "NotFound") or status == 404:
        return "missing"
    if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled") or status == 403:
        return "denied"
    if code in _RETRY_CODES or status >= 500 or status == 429:
        return "retry"
    return "other"


class _Missing(Exception):
    """The object is not there (used inside this module only)."""


class S3ChunkStore(ChunkStore):
    """Chunks as objects `<prefix><CID>` in one bucket; quarantined ones under `<prefix>quarantine/`."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.prefix = settings.key_prefix
        self.waiting: str | None = None  # why the store is waiting for the object store now (also logged)
        self._lock = threading.Lock()
        self._totals = TotalBytes()
        self._counting = False  # a background count of the bucket's bytes runs (space())
        self._queued = 0  # bytes of deferred uploads not finished yet: they count against the capacity
        self._slots = threading.BoundedSemaphore(max(1, settings.concurrency) * 2)
        self._pending: dict[int, list[Future[bool]]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._windows: chunker.WindowPool | None = None
        self._last_warning = 0.0
        self._closing = threading.Event()  # set by close(): stop waiting for an unreachable store
        try:
            self._client = S3Http(settings.endpoint, settings.bucket, settings.access_key, settings.secret_key,
                                  settings.region, connections=max(4, settings.concurrency * 2 + 2),
                                  connect_timeout_s=settings.connect_timeout_s, read_timeout_s=settings.read_timeout_s)
        except ValueError as exc:
            raise StorageError(str(exc)) from None
        # One listing call: a clear sentence now for bad credentials or a missing bucket, not at first write.
        try:
            self._call("opening the chunk store", lambda: self._client.list_page(self.prefix, None, max_keys=1))
        except BaseException:
            self._client.close()
            raise

    # -- calling the store -------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], _T], *, write: bool = False) -> _T:
        """Run one request, retrying transient failures with backoff for up to `wait_s` seconds; every
        other failure becomes one sentence (StorageError, StorageFull, or `_Missing`)."""
        s = self.settings
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                result = fn()
            except S3Answer as exc:
                kind = classify(exc.code, exc.status)
                if kind == "retry":
                    reason = f"it answered {exc.code}"
                else:
                    raise self._error(kind, exc.code, exc.message, what, write) from None
            except S3Unreachable as exc:  # refused, reset, closed early, timed out, body cut short
                reason = f"it does not answer ({exc})"
            else:
                if self.waiting is not None:
                    log.warning("the object store at %s answers again; resuming", s.endpoint)
                    self.waiting = None
                return result
            waited = time.monotonic() - start
            if self._closing.is_set():
                self.waiting = None
                raise StorageError(f"the chunk store is closing; {what} was abandoned ({reason})")
            if waited >= s.wait_s:
                self.waiting = None
                raise StorageError(f"the object store at {s.endpoint} could not be used for {s.wait_s:.0f} s "
                                   f"while {what}: {reason}")
            self.waiting = f"waiting for the object store at {s.endpoint}: {reason}"
            now = time.monotonic()
            if now - self._last_warning >= 5.0:
                self._last_warning = now
                log.warning("%s while %s; retrying for up to %.0f s more", self.waiting, what,
                            s.wait_s - waited)
            self._closing.wait(min(retry_delay(attempt), max(0.0, s.wait_s - waited)))

    def _error(self, kind: str, code: str, message: str, what: str, write: bool) -> Exception:
        s = self.settings
        if kind == "auth":
            return StorageError(f"the object store at {s.endpoint} refused the credentials ({code}) while {what}; "
                                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or storage.s3.credentials_file")
        if kind == "bucket":
            return StorageError(f"the bucket '{s.bucket}' does not exist at {s.endpoint}; create it or fix "
                                "storage.s3.bucket in config.toml")
        if kind == "full":
            return StorageFull(f"the object store is full ({code}) while {what}; nothing partial was kept")
        if kind == "missing":
            return _Missing(code)
        if kind == "denied":
            if write:
                return StorageError(f"the object store at {s.endpoint} refused to write to bucket '{s.bucket}' "
                                    f"({code}) while {what}: the bucket is read-only for these credentials")
            return StorageError(f"the object store at {s.endpoint} denied access to bucket '{s.bucket}' ({code}) "
                                f"while {what}; check the credentials' permissions")
        return StorageError(f"the object store at {s.endpoint} answered {code} while {what}"
                            + (f": {message}" if message else ""))

    def key_of(self, d: bytes) -> str:
        """The object name of chunk `d` (for tests and tools)."""
        _check_digest(d)
        return self.prefix + cid_str(d)

    # -- reading -----------------------------------------------------------------------------------------

    def _head(self, d: bytes) -> int | None:
        key = self.key_of(d)
        try:
            r = self._call(f"looking up chunk {cid_str(d)}", lambda: self._client.request("HEAD", key))
        except _Missing:
            return None
        return int(r.headers.get("content-length", 0))

    def has(self, d: bytes) -> bool:
        return self._head(d) is not None

    def size_of(self, d: bytes) -> int:
        size = self._head(d)
        if size is None:
            raise ChunkMissing(f"chunk {cid_str(d)} is not stored here")
        return size

    def get(self, d: bytes, *, verify: bool = True, quarantine_bad: bool = True) -> bytes:
        key = self.key_of(d)

        try:
            # A body cut short fails inside the client (S3Unreachable) and is read again.
            data = self._call(f"reading chunk {cid_str(d)}", lambda: self._client.request("GET", key)).body
        except _Missing:
            raise ChunkMissing(f"chunk {cid_str(d)} is not stored here") from None
        if verify and digest(data) != d:
            where = ""
            if quarantine_bad and self.quarantine(d):
                where = "; it was moved to quarantine"
            raise ChunkCorrupt(f"chunk {cid_str(d)} is corrupt in the object store (its content does not match "
                               f"its hash){where}")
        return data

    def _list(self, prefix: str) -> Iterator[tuple[str, int]]:
        token: str | None = None
        while True:
            page = self._call("listing chunks", lambda t=token: self._client.list_page(prefix, t))  # type: ignore[misc]
            for key, size in page.objects:
                yield key[len(prefix):], size
            token = page.next_token
            if not token:
                return

    def _list_chunks(self) -> Iterator[tuple[bytes, int]]:
        for name, size in self._list(self.prefix):
            try:
                d = parse_cid(name)
            except DecodeError:
                continue
            if cid_str(d) == name:
                yield d, size

    def iter_digests(self) -> Iterator[bytes]:
        for d, _size in self._list_chunks():
            yield d

    def total_bytes(self) -> int:
        return self._totals.get(lambda: sum(size for _d, size in self._list_chunks()))

    def space(self) -> tuple[int, int] | None:
        """From the configured capacity; None until the bucket's first count is done (started here in the
        background: it lists the whole bucket, which takes long, or waits while the store does not answer).
        `_store` checks the capacity itself before every upload, so nothing is written past it meanwhile."""
        cap = self.settings.capacity_bytes
        if cap is None:
            return None
        total = self._totals.peek()
        if total is None:
            self._count_in_background()
            return None
        with self._lock:
            queued = self._queued
        return max(0, cap - total - queued), cap

    def _count_in_background(self) -> None:
        with self._lock:
            if self._counting or self._closing.is_set():
                return
            self._counting = True

        def count() -> None:
            try:
                self.total_bytes()
            except Exception as exc:  # noqa: BLE001 - a later call counts again; the reason is logged
                log.warning("could not count the bytes in the bucket yet: %s", exc)
            finally:
                with self._lock:
                    self._counting = False

        threading.Thread(target=count, name="s3store-count", daemon=True).start()

    def quarantined(self) -> list[str]:
        """The object names in quarantine (for reports and tests)."""
        return sorted(name for name, _ in self._list(self.prefix + QUARANTINE))

    # -- writing -----------------------------------------------------------------------------------------

    def _store(self, d: bytes, data: Buffer, *, look: bool = True) -> bool:
        """Upload an already verified chunk unless it is there (`look`: ask first, one cheap request that can
        save a whole upload when publishing data that is partly stored already); whether it was created."""
        if look and self._head(d) is not None:
            return False
        cap = self.settings.capacity_bytes
        if cap is not None and self.total_bytes() + len(memoryview(data).cast("B")) > cap:
            raise StorageFull(f"the bucket holds {self.total_bytes()} bytes of chunks, and storage.s3.capacity_bytes "
                              f"is {cap}: chunk {cid_str(d)} does not fit; nothing partial was kept")
        body = bytes(data) if not isinstance(data, bytes) else data
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")
        key = self.key_of(d)
        self._call(f"writing chunk {cid_str(d)}", lambda: self._client.request(
            "PUT", key, body=body, headers={"content-md5": md5}), write=True)
        self._totals.account(len(body))
        return True

    def _verified(self, d: bytes, data: Buffer) -> None:
        _check_digest(d)
        if digest(data) != d:
            raise ChunkCorrupt(f"the data offered for chunk {cid_str(d)} does not hash to it; nothing was stored")

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max(1, self.settings.concurrency), thread_name_prefix="s3store")
            return self._executor

    def _submit(self, fn: Callable[[], bool]) -> Future[bool]:
        """Queue an upload, waiting while 2 x concurrency are queued (bounded memory)."""
        self._slots.acquire()

        def run() -> bool:
            try:
                return fn()
            finally:
                self._slots.release()

        try:
            return self._pool().submit(run)
        except BaseException:
            self._slots.release()
            raise

    def put(self, d: bytes, data: Buffer, *, durable: bool = True) -> bool:
        """With `durable`, the object is stored when this returns. Without, the upload runs in the store's
        pool and this returns True at once: `flush()` from the same thread waits for it and raises its error."""
        self._verified(d, data)
        if durable:
            return self._store(d, data)
        # Replication asks only for chunks it lacks: no need to look first. The caller may reuse its buffer.
        body = bytes(data)
        with self._lock:
            self._queued += len(body)

        def upload() -> bool:
            try:
                return self._store(d, body, look=False)
            finally:
                with self._lock:
                    self._queued -= len(body)

        fut = self._submit(upload)
        with self._lock:
            self._pending.setdefault(threading.get_ident(), []).append(fut)
        return True

    def put_many(self, items: Iterable[tuple[bytes, Buffer]]) -> list[bool]:
        futures = []
        for d, data in items:
            self._verified(d, data)
            body = bytes(data)
            futures.append(self._submit(lambda d=d, body=body: self._store(d, body)))  # type: ignore[misc]
        return _results(futures)

    def flush(self) -> None:
        """Wait for the uploads this thread queued with `put(durable=False)`; raise the first error."""
        with self._lock:
            futures = self._pending.pop(threading.get_ident(), [])
        _results(futures)

    def delete(self, d: bytes) -> bool:
        size = self._head(d)
        if size is None:
            return False
        key = self.key_of(d)
        self._call(f"deleting chunk {cid_str(d)}", lambda: self._client.request("DELETE", key), write=True)
        self._totals.account(-size)
        return True

    def quarantine(self, d: bytes) -> bool:
        size = self._head(d)
        if size is None:
            return False
        key = self.key_of(d)
        aside = f"{self.prefix}{QUARANTINE}{cid_str(d)}.{time.time_ns()}"
        source = self._client.copy_source(key)
        try:
            self._call(f"quarantining chunk {cid_str(d)}", lambda: self._client.request(
                "PUT", aside, headers={"x-amz-copy-source": source}), write=True)
        except _Missing:
            return False
        self._call(f"quarantining chunk {cid_str(d)}", lambda: self._client.request("DELETE", key), write=True)
        self._totals.account(-size)
        return True

    def close(self) -> None:
        """Wait for queued uploads, but not for an unreachable store: the node must stop within seconds."""
        self._closing.set()
        with self._lock:
            pending = [f for fs in self._pending.values() for f in fs]
            self._pending.clear()
            executor, self._executor = self._executor, None
        for fut in pending:
            try:
                fut.result()
            except BaseException:  # noqa: BLE001 - nobody flushed them: their chunks were never marked stored
                pass
        if executor is not None:
            executor.shutdown(wait=True)
        self._client.close()

    # -- publishing --------------------------------------------------------------------------------------

    def ingest_file(self, path: str | os.PathLike[str], progress_cb: ProgressCallback | None = None,
                    created: list[bytes] | None = None) -> list[tuple[bytes, int]]:
        """Chunk, hash and upload a file as a pipeline: the calling thread reads and cuts, the store's
        threads hash and upload up to `concurrency` chunks at once; memory is bounded by the window pool.
        `created` receives the digest of every chunk uploaded anew (see ChunkStore.ingest_file)."""
        with self._lock:
            if self._windows is None:
                self._windows = chunker.WindowPool(4)
            windows = self._windows
        abort = threading.Event()
        futures: deque[Future[tuple[bytes, int]]] = deque()
        out: list[tuple[bytes, int]] = []
        done = 0
        total = 0

        def job(piece: chunker.Piece) -> tuple[bytes, int]:
            try:
                if abort.is_set():
                    raise StorageError("publishing was interrupted")
                d = digest(piece.data)
                if self._store(d, piece.data) and created is not None:
                    created.append(d)  # list.append is atomic: the upload threads share it safely
                return d, piece.length
            finally:
                piece.release()

        def collect(fut: Future[tuple[bytes, int]]) -> None:
            nonlocal done
            d, length = fut.result()
            out.append((d, length))
            done += length
            if progress_cb is not None:
                progress_cb(done, total)

        pool = self._pool()
        limit = max(1, self.settings.concurrency) * 2
        try:
            with open(path, "rb", buffering=0) as stream:
                st = os.fstat(stream.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise StorageError(f"{path} is not a regular file")
                total = st.st_size
                with closing(chunker.iter_pieces(stream, pool=windows)) as pieces:
                    for piece in pieces:
                        futures.append(pool.submit(job, piece))
                        del piece
                        while futures and (futures[0].done() or len(futures) >= limit):
                            collect(futures.popleft())
            while futures:
                collect(futures.popleft())
        except BaseException:
            abort.set()
            for fut in futures:
                try:
                    fut.result()
                except BaseException:  # noqa: BLE001 - the first error is the one reported
                    pass
            raise
        return out
