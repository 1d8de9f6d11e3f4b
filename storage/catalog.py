"""The catalog: what the node knows (manifests, forks, governance log) and holds (chunks), in SQLite.

Why these settings:
- WAL mode: readers never block the writer, and a commit is one sequential append.
- `synchronous=FULL`: in WAL mode NORMAL can lose the last commits on a power cut. For most rows that is
  harmless (a manifest is fetched again), but not for this node's own records: forgetting a published
  manifest or an enacted vote could make the node sign a second record with the same `seq` (a fork, proof
  against its own key) or lose governance history. FULL costs one fsync per transaction, and the heavy
  paths (catalog sync, chunk marks) are batched into few transactions.
- One connection, one lock: every method runs alone, and every write is one explicit `BEGIN IMMEDIATE`
  transaction (`transaction()`), so a logical step is all or nothing, whatever crashes.

The catalog knows nothing of record classes: callers pass raw encoded records and the columns extracted
from them (`ManifestRow`), so the schema stays generic.

A manifest's chunk rows (`chunks`, `manifest_chunks`) exist only while it is in a kept state
(`KEPT_STATES`); otherwise its chunk list waits, packed, in one column (`chunk_refs`). A node learns of
every dataset in the federation and keeps few: writing six chunk rows and their index entries per
manifest nobody here wants was most of the cost of a catalog sync. When a manifest becomes kept, the
transaction that changes its state also writes its chunk rows (`_add_chunk_rows`), so every query about
kept data (progress, missing chunks, what release may delete) sees all of its chunks.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite
from communs.protocol.publog import LogEntry
from communs.storage.states import State

from .errors import CatalogDamaged, CatalogError, StorageFull
from .schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    from communs.protocol.records import Manifest

# States whose chunks are kept: a chunk used by none of these may be deleted.
KEPT_STATES: frozenset[str] = frozenset({State.OWN, State.COMPLETE, State.IN_PROGRESS, "wanted"})
RETRACTED = "retracted"  # withdrawn by its publisher: not kept, unless the policy says keep_retracted
RETRACTION_PREFIX = "retraction:"  # kv: a dataset's retraction, by dataset id in hex
_NOT_RETRACTED = f"AND state != '{RETRACTED}'"  # state changes never undo a retraction

STATES_POLICY_KEY = "states_policy_version"  # kv: the policy version manifest states were decided under

_COUNTED = "(failed_at IS NULL OR (verified_at IS NOT NULL AND verified_at >= failed_at))"
_MAX_VARS = 500  # parameters per statement, well under SQLite's limit


class PutOutcome(enum.Enum):
    INSERTED = "inserted"
    KNOWN = "known"  # this very manifest (same id) was already there
    CONFLICT = "conflict"  # another manifest holds the same publisher and seq: a fork, not stored


class ManifestConflict(CatalogError):
    """Another manifest already holds this publisher's seq."""

    def __init__(self, message: str, existing: bytes) -> None:
        super().__init__(message)
        self.existing = existing


@dataclass(frozen=True)
class ManifestRow:
    """A manifest to store: its encoded signed record and the columns the node queries by.

    `chunks` is every distinct chunk the dataset needs, as `(digest, size)`.
    """

    id: bytes
    dataset: bytes
    version: int
    publisher: bytes
    seq: int
    log_prev: bytes | None
    raw: bytes
    title: str
    licence: str
    size: int
    created: int
    received_at: int
    state: str
    reason: str = ""
    own: bool = False
    chunks: Sequence[tuple[bytes, int]] = field(default=(), repr=False)

    @classmethod
    def from_manifest(cls, m: Manifest, raw: bytes, *, received_at: int, state: str, reason: str = "",
                      own: bool = False) -> ManifestRow:
        """The row of a decoded `protocol.records.Manifest`."""
        sizes: dict[bytes, int] = {}
        for entry in m.files:
            for c in entry.chunks:
                sizes.setdefault(c.digest, c.size)
        return cls(id=m.id, dataset=m.dataset, version=m.version, publisher=m.publisher, seq=m.seq,
                   log_prev=m.log_prev, raw=raw, title=m.title, licence=m.licence, size=m.size,
                   created=m.created, received_at=received_at, state=state, reason=reason, own=own,
                   chunks=list(sizes.items()))


@dataclass(frozen=True)
class ManifestInfo:
    """A stored manifest; `raw` is None when the listing did not ask for it."""

    id: bytes
    dataset: bytes
    version: int
    publisher: bytes
    seq: int
    log_prev: bytes | None
    title: str
    licence: str
    size: int
    created: int
    received_at: int
    own: bool
    state: str
    reason: str
    raw: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ForkRecord:
    """Two manifests one publisher's key signed that cannot both belong to its log."""

    publisher: bytes
    seq: int
    id_a: bytes
    raw_a: bytes
    id_b: bytes
    raw_b: bytes
    reason: str
    detected_at: int


@dataclass(frozen=True)
class GovRow:
    """One entry of the governance log, as stored."""

    seq: int
    hash: bytes
    prev: bytes | None
    kind: str
    raw: bytes
    at: int


@dataclass(frozen=True)
class LogView:
    """What `protocol.log.place` needs about a publisher's log around `seq` (pass as keyword arguments)."""

    head: int
    at_seq: LogEntry | None
    before: LogEntry | None
    after: LogEntry | None


@dataclass(frozen=True)
class SourceRow:
    peer: str
    last_seen: int
    failures: int
    banned: bool
    ban_reason: str


@dataclass(frozen=True)
class ReplicationRow:
    """A dataset being fetched; `bytes_done` is what is stored of its chunks, so it survives crashes."""

    manifest: bytes
    bytes_done: int
    bytes_total: int
    started_at: int
    updated_at: int
    last_error: str


_MANIFEST_COLUMNS = ("id, dataset, version, publisher, seq, log_prev, title, licence, size, created, "
                     "received_at, own, state, reason")


@dataclass(frozen=True)
class ClaimRow:
    """One stored holding claim (the newest known of its node for its manifest)."""

    node: bytes
    manifest: bytes
    issued: int
    since: int
    expires: int
    withdrawn: bool
    raw: bytes
    verified_at: int | None
    failed_at: int | None


def _info(row: Sequence[Any], raw: bytes | None = None) -> ManifestInfo:
    return ManifestInfo(id=row[0], dataset=row[1], version=row[2], publisher=row[3], seq=row[4],
                        log_prev=row[5], title=row[6], licence=row[7], size=row[8], created=row[9],
                        received_at=row[10], own=bool(row[11]), state=row[12], reason=row[13], raw=raw)


def _batches(items: Sequence[Any], n: int = _MAX_VARS) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i: i + n]


def _db_error(exc: sqlite3.Error, what: str) -> Exception:
    text = str(exc)
    if "full" in text.lower():
        return StorageFull(f"the disk is full: the catalog could not be updated ({what})")
    if _is_damage(text):
        return CatalogDamaged(f"the catalog file is damaged ({text}) while {what}; stop the node and run "
                              "'communs repair' (README: Repairing a damaged catalog)")
    if text.startswith("the governance log is append-only"):
        return CatalogError(text)
    return CatalogError(f"catalog failure while {what}: {text}")


def _is_damage(text: str) -> bool:
    low = text.lower()
    return "malformed" in low or "not a database" in low or "corrupt" in low


def damaged_sentence(path: Path, problem: str) -> str:
    """What the operator reads when the catalog file is damaged: which file, what SQLite found, what to do."""
    return (f"the catalog {path} is damaged ({problem}); with the node stopped, run 'communs repair --data "
            f"{path.parent}' to move it aside and rebuild it from what can still be read, from peers and from "
            "the chunk store (README: Repairing a damaged catalog)")


async def _worker_stopped(conn: aiosqlite.Connection) -> None:
    """Wait for the worker thread of a connection that failed to open. aiosqlite stops it without waiting
    (it queues "close and stop" and forgets the future), so the thread could report that to an event loop
    that has closed meanwhile (asyncio.run returning after the CatalogError): "RuntimeError: Event loop is
    closed" from the thread, a traceback on stderr after a one-sentence error."""
    thread = getattr(conn, "_thread", None)  # aiosqlite >= 0.20 runs each connection on its own thread
    if thread is not None and thread.is_alive():
        await asyncio.to_thread(thread.join, 10.0)


async def quick_check(db: aiosqlite.Connection) -> list[str]:
    """SQLite's `PRAGMA quick_check` (every page and record, without cross-checking index contents: O(size)
    but several times faster than `integrity_check`); an empty list when the file is sound. A check that
    itself fails on a bad page counts as one problem."""
    try:
        async with db.execute("PRAGMA quick_check(20)") as cur:
            rows = await cur.fetchall()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    problems = [str(r[0]) for r in rows]
    return [] if problems == ["ok"] else problems


class Catalog:
    """The node's SQLite catalog. Open with `await Catalog.open(path)`; every method is a coroutine."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._lock = asyncio.Lock()
        self.damaged: str | None = None  # set when SQLite reports the file damaged while running (health)

    def _failed(self, exc: sqlite3.Error, what: str) -> Exception:
        err = _db_error(exc, what)
        if isinstance(err, CatalogDamaged) and self.damaged is None:
            self.damaged = str(err)
        return err

    # -- open / close ------------------------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str | Path, *, check: bool = True) -> Catalog:
        """Open (creating if absent) and migrate the catalog; CatalogError with one sentence otherwise.

        With `check`, `PRAGMA quick_check` runs first and a damaged file is refused (CatalogDamaged, naming
        the file and what to do): a node must not start, say ready and then fail on every query, nor write
        into a file whose free list or table roots are broken."""
        path = Path(path)
        if path.exists() and not path.is_file():
            raise CatalogError(f"{path} is not a Communs catalog (it is not a file)")
        connecting = aiosqlite.connect(path, isolation_level=None)
        try:
            db = await connecting
        except sqlite3.Error as exc:
            await _worker_stopped(connecting)
            raise CatalogError(f"cannot open the catalog {path}: {exc}") from exc
        try:
            await _prepare(db, path)
            if check and (problems := await quick_check(db)):
                raise CatalogDamaged(damaged_sentence(path, "; ".join(problems[:3])))
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def close(self) -> None:
        async with self._lock:
            await self._db.close()

    async def __aenter__(self) -> Catalog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self, what: str = "writing") -> AsyncIterator[aiosqlite.Connection]:
        """One logical step: `BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any error. Not reentrant."""
        async with self._lock:
            db = self._db
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._failed(exc, what) from exc
            except asyncio.CancelledError:
                # aiosqlite's thread still runs the BEGIN: end it before the lock is given back, or every
                # later transaction would fail with "cannot start a transaction within a transaction".
                try:
                    await db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the BEGIN itself failed
                raise
            try:
                yield db
            except BaseException as exc:
                try:
                    await db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the transaction may already be gone; the original error says why
                if isinstance(exc, sqlite3.Error):
                    raise self._failed(exc, what) from exc
                raise
            try:
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    await db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise self._failed(exc, what) from exc

    @asynccontextmanager
    async def _reading(self, what: str = "reading") -> AsyncIterator[aiosqlite.Connection]:
        """Reads take the lock too, so they never see another coroutine's uncommitted transaction."""
        async with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise self._failed(exc, what) from exc

    async def _all(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        async with self._reading() as db, db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def _one(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        async with self._reading() as db, db.execute(sql, params) as cur:
            return await cur.fetchone()

    async def quick_check(self) -> list[str]:
        """`PRAGMA quick_check` on the open file; an empty list when it is sound."""
        async with self._lock:
            problems = await quick_check(self._db)
        if problems and self.damaged is None:
            self.damaged = damaged_sentence(self.path, "; ".join(problems[:3]))
        return problems

    async def integrity_check(self) -> list[str]:
        """SQLite's own check of the file; an empty list when it is sound."""
        rows = await self._all("PRAGMA integrity_check")
        problems = [r[0] for r in rows]
        return [] if problems == ["ok"] else problems

    # -- manifests ---------------------------------------------------------------------------------------

    async def put_manifest(self, row: ManifestRow) -> bool:
        """Store a manifest; False if it was already there (idempotent). ManifestConflict if another
        manifest holds the same publisher and seq (the caller records a fork instead)."""
        [(outcome, existing)] = await self._put_batch([row])
        if outcome is PutOutcome.CONFLICT:
            assert existing is not None
            raise ManifestConflict(f"the publisher's log already holds another manifest at seq {row.seq}",
                                   existing)
        return outcome is PutOutcome.INSERTED

    async def put_published(self, row: ManifestRow, stored: Sequence[tuple[bytes, int]], *,
                            kv: tuple[str, bytes] | None = None) -> None:
        """Record a manifest published here, the chunks it stored and (optionally) one `kv` entry, in one
        transaction: a publish killed before it commits leaves no chunk marked stored without its manifest
        (which nothing would ever release), and an idempotency key never names a publish that is not there.
        ManifestConflict as `put_manifest`."""
        await self._put_batch([row], stored=stored, kv=kv, strict=True)

    async def put_manifests_batch(self, rows: Sequence[ManifestRow]) -> list[PutOutcome]:
        """Store many manifests in one transaction (catalog sync); one outcome per row, in order.

        Conflicting rows (another id at the same publisher and seq, in the catalog or earlier in the batch)
        are not stored; `manifest_at` gives the one that is, for fork evidence.
        """
        return [outcome for outcome, _ in await self._put_batch(rows)]

    async def _put_batch(self, rows: Sequence[ManifestRow], *, stored: Sequence[tuple[bytes, int]] = (),
                         kv: tuple[str, bytes] | None = None,
                         strict: bool = False) -> list[tuple[PutOutcome, bytes | None]]:
        if not rows:
            return []
        async with self.transaction("storing manifests") as db:
            if stored:
                await db.executemany(
                    "INSERT INTO chunks (digest, size, stored) VALUES (?, ?, 1) "
                    "ON CONFLICT (digest) DO UPDATE SET stored = 1, size = excluded.size", list(stored))
            known_ids: set[bytes] = set()
            for part in _batches([r.id for r in rows]):
                sql = f"SELECT id FROM manifests WHERE id IN ({','.join('?' * len(part))})"
                async with db.execute(sql, part) as cur:
                    known_ids.update(r[0] for r in await cur.fetchall())
            # Which (publisher, seq) slots are taken: one indexed range scan per publisher in the batch
            # (a row-value `IN (VALUES ...)` is not answered from the index and scanned the whole table).
            slots: dict[tuple[bytes, int], bytes] = {}
            wanted_seqs: dict[bytes, set[int]] = {}
            for r in rows:
                wanted_seqs.setdefault(r.publisher, set()).add(r.seq)
            for pub, seqs in wanted_seqs.items():
                sql = "SELECT seq, id FROM manifests WHERE publisher = ? AND seq BETWEEN ? AND ?"
                async with db.execute(sql, (pub, min(seqs), max(seqs))) as cur:
                    slots.update(((pub, sq), i) for sq, i in await cur.fetchall() if sq in seqs)
            outcomes: list[tuple[PutOutcome, bytes | None]] = []
            new: list[ManifestRow] = []
            for r in rows:
                holder = slots.get((r.publisher, r.seq))
                if r.id in known_ids:
                    outcomes.append((PutOutcome.KNOWN, r.id))
                elif holder is not None and holder != r.id:
                    outcomes.append((PutOutcome.CONFLICT, holder))
                else:
                    outcomes.append((PutOutcome.INSERTED, None))
                    new.append(r)
                    known_ids.add(r.id)
                    slots[(r.publisher, r.seq)] = r.id
            if new:
                await db.executemany(
                    f"INSERT INTO manifests ({_MANIFEST_COLUMNS}, raw, chunk_refs) VALUES ({','.join('?' * 16)})",
                    [(r.id, r.dataset, r.version, r.publisher, r.seq, r.log_prev, r.title, r.licence, r.size,
                      r.created, r.received_at, int(r.own), r.state, r.reason, r.raw, _pack_refs(r.chunks))
                     for r in new])
                await _insert_chunk_rows(db, [(r.id, r.chunks) for r in new if r.state in KEPT_STATES])
            if kv is not None and new:
                await db.execute("INSERT INTO kv (key, value) VALUES (?, ?) "
                                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", kv)
            if strict and outcomes[0][0] is PutOutcome.CONFLICT:  # roll the chunk marks back with it
                raise ManifestConflict("the publisher's log already holds another manifest at seq "
                                       f"{rows[0].seq}", outcomes[0][1] or b"")
            return outcomes

    async def get_manifest(self, manifest_id: bytes) -> ManifestInfo | None:
        row = await self._one(f"SELECT {_MANIFEST_COLUMNS}, raw FROM manifests WHERE id = ?", (manifest_id,))
        return None if row is None else _info(row, row[14])

    async def manifest_at(self, publisher: bytes, seq: int) -> ManifestInfo | None:
        """The manifest at one place of a publisher's log, with its raw record."""
        row = await self._one(f"SELECT {_MANIFEST_COLUMNS}, raw FROM manifests WHERE publisher = ? AND seq = ?",
                              (publisher, seq))
        return None if row is None else _info(row, row[14])

    async def list_manifests(self, *, state: str | None = None, dataset: bytes | None = None,
                             with_raw: bool = False) -> list[ManifestInfo]:
        """Manifests, newest first (by creation time), optionally of one state or one dataset."""
        where: list[str] = []
        params: list[Any] = []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if dataset is not None:
            where.append("dataset = ?")
            params.append(dataset)
        sql = (f"SELECT {_MANIFEST_COLUMNS}{', raw' if with_raw else ''} FROM manifests"
               f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY created DESC, id")
        rows = await self._all(sql, params)
        return [_info(r, r[14] if with_raw else None) for r in rows]

    async def dataset_publishers(self, datasets: Iterable[bytes]) -> list[tuple[bytes, bytes]]:
        """`(dataset, publisher)` of the manifests held for these datasets: a dataset id is bound to the
        publisher of its first manifest, so another key's manifest for it is refused."""
        items = list(set(datasets))
        out: list[tuple[bytes, bytes]] = []
        for part in _batches(items):
            sql = f"SELECT DISTINCT dataset, publisher FROM manifests WHERE dataset IN ({','.join('?' * len(part))})"
            out.extend((d, p) for d, p in await self._all(sql, list(part)))
        return out

    async def latest_version(self, dataset: bytes) -> ManifestInfo | None:
        """The highest version held of a dataset (for publishing its next version)."""
        row = await self._one(f"SELECT {_MANIFEST_COLUMNS}, raw FROM manifests WHERE dataset = ? "
                              "ORDER BY version DESC LIMIT 1", (dataset,))
        return None if row is None else _info(row, row[14])

    async def id_candidates(self, low: bytes, high: bytes, limit: int = 20) -> tuple[list[ManifestInfo],
                                                                                       list[ManifestInfo]]:
        """What an id (or a prefix of one) may name: manifests whose id lies in [low, high], and every version
        of the datasets whose id does (at most `limit` of each kind: more is ambiguous anyway)."""
        manifests = await self._all(f"SELECT {_MANIFEST_COLUMNS} FROM manifests WHERE id >= ? AND id <= ? "
                                    "ORDER BY id LIMIT ?", (low, high, limit))
        versions = await self._all(
            f"SELECT {_MANIFEST_COLUMNS} FROM manifests WHERE dataset IN (SELECT DISTINCT dataset FROM manifests "
            "WHERE dataset >= ? AND dataset <= ? ORDER BY dataset LIMIT ?) ORDER BY dataset, version",
            (low, high, limit))
        return [_info(r) for r in manifests], [_info(r) for r in versions]

    async def set_state(self, manifest_id: bytes, state: str, reason: str = "") -> None:
        """Set a manifest's state and the reason in words; CatalogError for an unknown manifest. A retracted
        manifest stays retracted (a retraction is final: a fetch that was running when it came cannot undo it)."""
        async with self.transaction("setting a manifest's state") as db:
            cur = await db.execute(f"UPDATE manifests SET state = ?, reason = ? WHERE id = ? {_NOT_RETRACTED}",
                                   (state, reason, manifest_id))
            if cur.rowcount == 0:
                async with db.execute("SELECT 1 FROM manifests WHERE id = ?", (manifest_id,)) as c:
                    if await c.fetchone() is not None:
                        return
                raise CatalogError("no such manifest in the catalog")
            if state in KEPT_STATES:
                await _add_chunk_rows(db, [manifest_id])

    async def set_states(self, changes: Iterable[tuple[bytes, str, str]], *,
                         policy_version: int | None = None) -> None:
        """Several `(id, state, reason)` at once (a policy enactment re-evaluates everything).

        `policy_version`, when given, is recorded in the same transaction as the policy version these
        states were decided under (`states_policy_version`): a node killed after an enactment commits but
        before its re-evaluation finds the two versions apart at start, and re-evaluates then."""
        changes = list(changes)
        async with self.transaction("setting manifest states") as db:
            await db.executemany(f"UPDATE manifests SET state = ?, reason = ? WHERE id = ? {_NOT_RETRACTED}",
                                 [(s, r, i) for i, s, r in changes])
            await _add_chunk_rows(db, [i for i, s, _ in changes if s in KEPT_STATES])
            if policy_version is not None:
                await db.execute("INSERT INTO kv (key, value) VALUES (?, ?) "
                                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                                 (STATES_POLICY_KEY, str(policy_version).encode()))

    async def states_policy_version(self) -> int | None:
        """The policy version the stored manifest states were last evaluated under (None: never recorded)."""
        raw = await self.kv_get(STATES_POLICY_KEY)
        try:
            return None if raw is None else int(raw.decode())
        except ValueError:
            return None

    # -- per-publisher logs ------------------------------------------------------------------------------

    async def heads(self) -> dict[bytes, int]:
        """Each publisher's highest held seq (there may be gaps below it)."""
        return dict(await self._all("SELECT publisher, MAX(seq) FROM manifests GROUP BY publisher"))

    async def contiguous_heads(self) -> dict[bytes, int]:
        """Each publisher's highest seq with every record from 1 to it held: what catalog sync compares.
        Publishers whose seq 1 is missing are absent (their contiguous head is 0)."""
        rows = await self._all(
            "SELECT m.publisher, MIN(m.seq) FROM manifests m "
            "WHERE NOT EXISTS (SELECT 1 FROM manifests n WHERE n.publisher = m.publisher AND n.seq = m.seq + 1) "
            "AND EXISTS (SELECT 1 FROM manifests o WHERE o.publisher = m.publisher AND o.seq = 1) "
            "GROUP BY m.publisher")
        return dict(rows)

    async def contiguous_head(self, publisher: bytes) -> int:
        row = await self._one(
            "SELECT MIN(m.seq) FROM manifests m WHERE m.publisher = :p "
            "AND NOT EXISTS (SELECT 1 FROM manifests n WHERE n.publisher = :p AND n.seq = m.seq + 1) "
            "AND EXISTS (SELECT 1 FROM manifests o WHERE o.publisher = :p AND o.seq = 1)",
            {"p": publisher})
        return int(row[0] or 0)

    async def manifests_range(self, publisher: bytes, from_seq: int, to_seq: int, *,
                              limit: int | None = None) -> list[ManifestInfo]:
        """A publisher's held manifests with from_seq <= seq <= to_seq, by seq, with their raw records."""
        sql = (f"SELECT {_MANIFEST_COLUMNS}, raw FROM manifests WHERE publisher = ? AND seq BETWEEN ? AND ? "
               "ORDER BY seq")
        params: list[Any] = [publisher, from_seq, to_seq]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_info(r, r[14]) for r in await self._all(sql, params)]

    async def log_view(self, publisher: bytes, seq: int) -> LogView:
        """The publisher's head and held entries at seq - 1, seq and seq + 1, for `protocol.log.place`."""
        async with self._reading() as db:
            async with db.execute("SELECT MAX(seq) FROM manifests WHERE publisher = ?", (publisher,)) as cur:
                row = await cur.fetchone()
            head = int(row[0] or 0) if row else 0
            async with db.execute("SELECT seq, id, log_prev FROM manifests WHERE publisher = ? "
                                  "AND seq BETWEEN ? AND ?", (publisher, seq - 1, seq + 1)) as cur:
                near = {s: LogEntry(s, i, p) for s, i, p in await cur.fetchall()}
        return LogView(head=head, at_seq=near.get(seq), before=near.get(seq - 1), after=near.get(seq + 1))

    # -- forks -------------------------------------------------------------------------------------------

    async def record_fork(self, publisher: bytes, seq: int, id_a: bytes, raw_a: bytes, id_b: bytes,
                          raw_b: bytes, *, detected_at: int, reason: str = "") -> bool:
        """Keep the proof that a key signed two histories; False if this pair was already recorded."""
        if id_a == id_b:
            raise CatalogError("a fork needs two different manifests")
        if id_b < id_a:
            id_a, raw_a, id_b, raw_b = id_b, raw_b, id_a, raw_a
        async with self.transaction("recording a fork") as db:
            cur = await db.execute(
                "INSERT OR IGNORE INTO forks (publisher, seq, id_a, raw_a, id_b, raw_b, reason, detected_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (publisher, seq, id_a, raw_a, id_b, raw_b, reason, detected_at))
            return cur.rowcount == 1

    async def forks(self, publisher: bytes | None = None) -> list[ForkRecord]:
        sql = "SELECT publisher, seq, id_a, raw_a, id_b, raw_b, reason, detected_at FROM forks"
        params: tuple[Any, ...] = ()
        if publisher is not None:
            sql += " WHERE publisher = ?"
            params = (publisher,)
        return [ForkRecord(*r) for r in await self._all(sql + " ORDER BY detected_at, seq", params)]

    async def forked_publishers(self) -> set[bytes]:
        """Publishers whose key was caught signing two histories (flagged in the API, distrusted)."""
        return {r[0] for r in await self._all("SELECT DISTINCT publisher FROM forks")}

    # -- chunks ------------------------------------------------------------------------------------------

    async def mark_chunk_stored(self, digest: bytes, size: int) -> None:
        await self.mark_chunks_stored([(digest, size)])

    async def mark_chunks_stored(self, chunks: Iterable[tuple[bytes, int]]) -> None:
        """Record chunks as durably stored (only after the chunk store said so)."""
        async with self.transaction("marking chunks stored") as db:
            await db.executemany(
                "INSERT INTO chunks (digest, size, stored) VALUES (?, ?, 1) "
                "ON CONFLICT (digest) DO UPDATE SET stored = 1, size = excluded.size", list(chunks))

    async def mark_chunks_gone(self, digests: Iterable[bytes]) -> None:
        """Record chunks as no longer stored (deleted, or quarantined as corrupt); rows no manifest uses
        are dropped."""
        items = [(d,) for d in digests]
        async with self.transaction("marking chunks deleted") as db:
            await db.executemany("UPDATE chunks SET stored = 0 WHERE digest = ?", items)
            await db.executemany(
                "DELETE FROM chunks WHERE digest = ? AND NOT EXISTS "
                "(SELECT 1 FROM manifest_chunks mc WHERE mc.digest = chunks.digest)", items)

    async def is_chunk_stored(self, digest: bytes) -> bool:
        row = await self._one("SELECT stored FROM chunks WHERE digest = ?", (digest,))
        return bool(row and row[0])

    async def manifest_chunks(self, manifest_id: bytes) -> list[tuple[bytes, int]]:
        """Every distinct chunk a manifest uses, `(digest, size)`."""
        return [(d, s) for d, s in await self._all(
            "SELECT c.digest, c.size FROM manifest_chunks mc JOIN chunks c ON c.digest = mc.digest "
            "WHERE mc.manifest = ?", (manifest_id,))]

    async def missing_chunks(self, manifest_id: bytes) -> list[tuple[bytes, int]]:
        """The chunks of a manifest not stored here yet, `(digest, size)`."""
        return [(d, s) for d, s in await self._all(
            "SELECT c.digest, c.size FROM manifest_chunks mc JOIN chunks c ON c.digest = mc.digest "
            "WHERE mc.manifest = ? AND c.stored = 0", (manifest_id,))]

    async def progress(self, manifest_id: bytes) -> tuple[int, int]:
        """`(bytes stored, bytes total)` of a manifest's distinct chunks."""
        row = await self._one(
            "SELECT COALESCE(SUM(CASE WHEN c.stored THEN c.size ELSE 0 END), 0), COALESCE(SUM(c.size), 0) "
            "FROM manifest_chunks mc JOIN chunks c ON c.digest = mc.digest WHERE mc.manifest = ?",
            (manifest_id,))
        return int(row[0]), int(row[1])

    async def missing_bytes(self, manifest_id: bytes) -> int:
        """Bytes still to store for a manifest (chunks shared with stored data do not count): for quotas."""
        done, total = await self.progress(manifest_id)
        return total - done

    async def damaged_manifests(self) -> list[tuple[bytes, str]]:
        """`(id, state)` of manifests in state own or complete that use a chunk not stored here."""
        return [(i, st) for i, st in await self._all(
            "SELECT DISTINCT m.id, m.state FROM manifests m JOIN manifest_chunks mc ON mc.manifest = m.id "
            "JOIN chunks c ON c.digest = mc.digest WHERE m.state IN ('own', 'complete') AND c.stored = 0")]

    async def chunks_in_use(self) -> set[bytes]:
        """Digests used by at least one manifest in a kept state."""
        marks = ",".join("?" * len(KEPT_STATES))
        rows = await self._all(
            "SELECT DISTINCT mc.digest FROM manifest_chunks mc JOIN manifests m ON m.id = mc.manifest "
            f"WHERE m.state IN ({marks})", sorted(KEPT_STATES))
        return {r[0] for r in rows}

    async def unreferenced_chunks(self, *, keep: Iterable[str] = ()) -> list[tuple[bytes, int]]:
        """Stored chunks that no manifest in a kept state (or in one of the states `keep`, such as
        `retracted` under `keep_retracted = true`) uses: what release may delete."""
        states = sorted(KEPT_STATES | set(keep))
        marks = ",".join("?" * len(states))
        rows = await self._all(
            "SELECT c.digest, c.size FROM chunks c WHERE c.stored = 1 AND NOT EXISTS ("
            "SELECT 1 FROM manifest_chunks mc JOIN manifests m ON m.id = mc.manifest "
            f"WHERE mc.digest = c.digest AND m.state IN ({marks}))", states)
        return [(d, s) for d, s in rows]

    # -- retractions (stored in `kv` under RETRACTION_PREFIX + dataset hex: one per dataset, final) ------

    async def put_retraction(self, dataset: bytes, publisher: bytes, raw: bytes, reason: str) -> list[bytes]:
        """Keep a verified retraction of `dataset` (the first one held stays: a retraction is final) and mark
        every held version of it by `publisher` `retracted` with `reason`, in one transaction. Returns the
        ids of the manifests whose state changed (empty when all were already retracted)."""
        async with self.transaction("recording a retraction") as db:
            await db.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                             (RETRACTION_PREFIX + dataset.hex(), raw))
            async with db.execute("SELECT id FROM manifests WHERE dataset = ? AND publisher = ? AND state != ?",
                                  (dataset, publisher, RETRACTED)) as cur:
                changed = [r[0] for r in await cur.fetchall()]
            await db.executemany("UPDATE manifests SET state = ?, reason = ? WHERE id = ?",
                                 [(RETRACTED, reason, i) for i in changed])
            return changed

    async def retraction(self, dataset: bytes) -> bytes | None:
        """The retraction held for `dataset` (its encoding), or None."""
        return await self.kv_get(RETRACTION_PREFIX + dataset.hex())

    async def retractions_after(self, after: bytes | None, limit: int) -> list[tuple[bytes, bytes]]:
        """`(dataset, retraction encoding)` of the held retractions, by dataset id, those after `after`."""
        low = RETRACTION_PREFIX + (after.hex() if after is not None else "")
        rows = await self._all("SELECT key, value FROM kv WHERE key > ? AND key < ? ORDER BY key LIMIT ?",
                               (low, RETRACTION_PREFIX + "~", limit))
        return [(bytes.fromhex(k[len(RETRACTION_PREFIX):]), bytes(v)) for k, v in rows]

    async def retracted_datasets(self, datasets: Iterable[bytes]) -> set[bytes]:
        """Those of `datasets` that have a retraction held here."""
        keys = [RETRACTION_PREFIX + d.hex() for d in set(datasets)]
        out: set[bytes] = set()
        for part in _batches(keys):
            rows = await self._all(f"SELECT key FROM kv WHERE key IN ({','.join('?' * len(part))})", list(part))
            out.update(bytes.fromhex(r[0][len(RETRACTION_PREFIX):]) for r in rows)
        return out

    async def known_chunks(self, digests: Iterable[bytes]) -> set[bytes]:
        """Those of `digests` the catalog knows: stored here, or used by a manifest in a kept state (one
        that is or may be fetched: a chunk file with such a digest may be waited for, so only a chunk
        unknown here is free to delete)."""
        wanted = list(dict.fromkeys(digests))
        known: set[bytes] = set()
        for i in range(0, len(wanted), 500):
            part = wanted[i:i + 500]
            rows = await self._all(f"SELECT digest FROM chunks WHERE digest IN ({','.join('?' * len(part))})", part)
            known.update(r[0] for r in rows)
        return known

    async def stored_digests(self) -> set[bytes]:
        """Every chunk the catalog records as stored: to reconcile with the chunk store after a crash
        (chunks written by a publish or fetch whose catalog step never committed are on disk but not here)."""
        return {r[0] for r in await self._all("SELECT digest FROM chunks WHERE stored = 1")}

    async def used_bytes(self) -> int:
        """Bytes of all chunks stored here (with `catalog_bytes`, what the storage quota limits)."""
        row = await self._one("SELECT COALESCE(SUM(size), 0) FROM chunks WHERE stored = 1")
        return int(row[0])

    async def catalog_bytes(self) -> int:
        """Bytes the catalog takes on disk: its pages in use (free pages left by deletions not counted) and
        its write-ahead log, which holds recent pages a second time until a checkpoint."""
        async with self._reading() as db:
            values = []
            for pragma in ("page_count", "freelist_count", "page_size"):
                async with db.execute(f"PRAGMA {pragma}") as cur:
                    row = await cur.fetchone()
                values.append(int(row[0]) if row is not None else 0)
        pages, free, size = values
        return max(0, pages - free) * size + await asyncio.to_thread(_file_size, Path(f"{self.path}-wal"))

    async def quota_used_bytes(self) -> int:
        """What the policy's storage quota limits: the chunks stored here and the catalog itself, so that
        neither datasets nor the records that describe them can grow past it."""
        return await self.used_bytes() + await self.catalog_bytes()

    async def publisher_usage(self, publishers: Iterable[bytes]) -> dict[bytes, tuple[int, int, int]]:
        """Per publisher: (records, bytes of records, chunk references) held here, for ingest quotas."""
        out: dict[bytes, tuple[int, int, int]] = {}
        for part in _batches(list(dict.fromkeys(publishers))):
            sql = (f"SELECT publisher, COUNT(*), COALESCE(SUM(length(raw)), 0), "
                   f"COALESCE(SUM(length(chunk_refs)), 0) / {_REF} FROM manifests "
                   f"WHERE publisher IN ({','.join('?' * len(part))}) GROUP BY publisher")
            for pub, n, size, refs in await self._all(sql, part):
                out[bytes(pub)] = (int(n), int(size), int(refs))
        return out

    # -- governance log ----------------------------------------------------------------------------------

    async def gov_append(self, seq: int, hash: bytes, prev: bytes | None, kind: str, raw: bytes,
                         at: int) -> None:
        """Append one entry; it must follow the last one (seq + 1, prev = its hash)."""
        await self.gov_append_many([(seq, hash, prev, kind, raw, at)])

    async def gov_append_many(self, rows: Sequence[tuple[int, bytes, bytes | None, str, bytes, int]]) -> None:
        """Append consecutive entries `(seq, hash, prev, kind, raw, at)` in one transaction: all or none.

        A governance step (a ballot, the tally it completes, the enactment that follows) is one
        decision; storing it in one transaction means a crash never leaves half of it.
        """
        if not rows:
            return
        async with self.transaction("appending to the governance log") as db:
            async with db.execute("SELECT seq, hash FROM gov_log ORDER BY seq DESC LIMIT 1") as cur:
                last = await cur.fetchone()
            expected_seq, expected_prev = (0, None) if last is None else (last[0] + 1, last[1])
            for seq, hash, prev, kind, raw, at in rows:
                if seq != expected_seq:
                    raise CatalogError(f"governance log entry {seq} does not follow the last one "
                                       f"(expected entry {expected_seq})")
                if prev != expected_prev:
                    raise CatalogError(f"governance log entry {seq} does not link to the previous entry's hash")
                await db.execute("INSERT INTO gov_log (seq, hash, prev, kind, raw, at) VALUES (?, ?, ?, ?, ?, ?)",
                                 (seq, hash, prev, kind, raw, at))
                expected_seq, expected_prev = seq + 1, hash

    async def gov_entries(self, from_seq: int = 0) -> list[GovRow]:
        return [GovRow(*r) for r in await self._all(
            "SELECT seq, hash, prev, kind, raw, at FROM gov_log WHERE seq >= ? ORDER BY seq", (from_seq,))]

    async def gov_head(self) -> GovRow | None:
        row = await self._one("SELECT seq, hash, prev, kind, raw, at FROM gov_log ORDER BY seq DESC LIMIT 1")
        return None if row is None else GovRow(*row)

    # -- replication -------------------------------------------------------------------------------------

    async def replication_start(self, manifest_id: bytes, bytes_total: int, now: int) -> None:
        async with self.transaction("starting a replication") as db:
            await db.execute(
                "INSERT INTO replication (manifest, bytes_total, started_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (manifest) DO UPDATE SET bytes_total = excluded.bytes_total, "
                "updated_at = excluded.updated_at", (manifest_id, bytes_total, now, now))

    async def replication_update(self, manifest_id: bytes, now: int, error: str | None = None) -> None:
        """Touch a replication; `error` replaces the last error ("" clears it, None keeps it)."""
        async with self.transaction("updating a replication") as db:
            if error is None:
                await db.execute("UPDATE replication SET updated_at = ? WHERE manifest = ?", (now, manifest_id))
            else:
                await db.execute("UPDATE replication SET updated_at = ?, last_error = ? WHERE manifest = ?",
                                 (now, error, manifest_id))

    async def replication_finish(self, manifest_id: bytes, *, state: str | None = None,
                                 reason: str = "") -> None:
        """End a replication (complete or released), optionally setting the manifest's state in the same
        transaction."""
        async with self.transaction("finishing a replication") as db:
            await db.execute("DELETE FROM replication WHERE manifest = ?", (manifest_id,))
            await db.execute("DELETE FROM sources WHERE manifest = ?", (manifest_id,))
            if state is not None:
                await db.execute(f"UPDATE manifests SET state = ?, reason = ? WHERE id = ? {_NOT_RETRACTED}",
                                 (state, reason, manifest_id))
                if state in KEPT_STATES:
                    await _add_chunk_rows(db, [manifest_id])

    async def replications(self) -> list[ReplicationRow]:
        rows = await self._all(
            "SELECT r.manifest, "
            "COALESCE((SELECT SUM(c.size) FROM manifest_chunks mc JOIN chunks c ON c.digest = mc.digest "
            "WHERE mc.manifest = r.manifest AND c.stored = 1), 0), "
            "r.bytes_total, r.started_at, r.updated_at, r.last_error FROM replication r ORDER BY r.started_at")
        return [ReplicationRow(*r) for r in rows]

    async def source_seen(self, manifest_id: bytes, peer: str, now: int) -> None:
        async with self.transaction("recording a source") as db:
            await db.execute(
                "INSERT INTO sources (manifest, peer, last_seen) VALUES (?, ?, ?) "
                "ON CONFLICT (manifest, peer) DO UPDATE SET last_seen = excluded.last_seen",
                (manifest_id, peer, now))

    async def source_failed(self, manifest_id: bytes, peer: str, now: int, *, ban: bool = False,
                            reason: str = "") -> None:
        """Count a failure of a source; `ban` drops it for this dataset (it sent a bad chunk)."""
        async with self.transaction("recording a source failure") as db:
            await db.execute(
                "INSERT INTO sources (manifest, peer, last_seen, failures, banned, ban_reason) "
                "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (manifest, peer) DO UPDATE SET "
                "failures = failures + 1, banned = MAX(banned, excluded.banned), "
                "ban_reason = CASE WHEN excluded.banned THEN excluded.ban_reason ELSE ban_reason END",
                (manifest_id, peer, now, int(ban), reason))

    async def sources(self, manifest_id: bytes) -> list[SourceRow]:
        rows = await self._all("SELECT peer, last_seen, failures, banned, ban_reason FROM sources "
                               "WHERE manifest = ? ORDER BY failures, last_seen DESC", (manifest_id,))
        return [SourceRow(p, s, f, bool(b), r) for p, s, f, b, r in rows]

    # -- small node state --------------------------------------------------------------------------------

    async def kv_get(self, key: str) -> bytes | None:
        row = await self._one("SELECT value FROM kv WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    async def kv_set(self, key: str, value: bytes) -> None:
        async with self.transaction("saving node state") as db:
            await db.execute("INSERT INTO kv (key, value) VALUES (?, ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    async def kv_delete(self, key: str) -> None:
        async with self.transaction("saving node state") as db:
            await db.execute("DELETE FROM kv WHERE key = ?", (key,))


    # -- whole-file checksums (node/http/public/checksums.py) ----------------------------------------------

    async def file_sha256(self, file_keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """The SHA-256 known for each of `file_keys` (absent: not computed yet)."""
        out: dict[bytes, bytes] = {}
        for batch in _batches(list(file_keys)):
            marks = ",".join("?" * len(batch))
            rows = await self._all(f"SELECT file_key, sha256 FROM file_sha256 WHERE file_key IN ({marks})", batch)
            out.update({bytes(k): bytes(h) for k, h in rows})
        return out

    async def put_file_sha256(self, file_key: bytes, sha256: bytes, size: int, now: int) -> None:
        """Record a file's SHA-256, computed from bytes read back and verified chunk by chunk (the caller's
        duty: this table is what the public export states as the file's checksum)."""
        async with self.transaction("saving a file checksum") as db:
            await db.execute("INSERT INTO file_sha256 (file_key, sha256, size, computed_at) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT (file_key) DO NOTHING", (file_key, sha256, size, now))

    # -- holding claims (protocol/holding.py) -------------------------------------------------------------

    async def claim_issued(self, pairs: Sequence[tuple[bytes, bytes]]) -> dict[tuple[bytes, bytes], int]:
        """The newest `issued` known for each (node, manifest), withdrawals included (replays are refused
        against it)."""
        out: dict[tuple[bytes, bytes], int] = {}
        for batch in _batches(list(pairs), _MAX_VARS // 2):
            where = " OR ".join("(node = ? AND manifest = ?)" for _ in batch)
            rows = await self._all(f"SELECT node, manifest, issued FROM holding_claims WHERE {where}",
                                   [v for pair in batch for v in pair])
            out.update({(bytes(n), bytes(m)): i for n, m, i in rows})
        return out

    async def put_claims(self, claims: Sequence[tuple[bytes, bytes, int, int, int, bool, bytes]]) -> int:
        """Store `(node, manifest, issued, since, expires, withdrawn, raw)` rows that are newer than what is
        known (by `issued`); a refresh keeps `verified_at`, a withdrawal clears it. Returns how many changed."""
        changed = 0
        async with self.transaction("storing holding claims") as db:
            async with db.execute("SELECT COALESCE(MAX(stamp), 0) FROM holding_claims") as cur:
                stamp = (await cur.fetchone() or (0,))[0]
            for node, manifest, issued, since, expires, withdrawn, raw in claims:
                stamp += 1
                cur = await db.execute(
                    "INSERT INTO holding_claims (node, manifest, issued, since, expires, withdrawn, raw, stamp) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (node, manifest) DO UPDATE SET "
                    "issued = excluded.issued, since = excluded.since, expires = excluded.expires, "
                    "withdrawn = excluded.withdrawn, raw = excluded.raw, stamp = excluded.stamp, "
                    "verified_at = CASE WHEN excluded.withdrawn THEN NULL ELSE verified_at END, "
                    "failed_at = CASE WHEN excluded.withdrawn THEN NULL ELSE failed_at END "
                    "WHERE excluded.issued > holding_claims.issued",
                    (node, manifest, issued, since, expires, int(withdrawn), raw, stamp))
                changed += cur.rowcount
        return changed

    async def live_claims(self, now: int, manifest: bytes | None = None, *, after: tuple[bytes, bytes] | None = None,
                          limit: int = 100_000, include_withdrawn: bool = False) -> list[ClaimRow]:
        """Claims not expired at `now` (withdrawals only with `include_withdrawn`), for one manifest or all,
        in (manifest, node) order after `after` (paging)."""
        sql = ("SELECT node, manifest, issued, since, expires, withdrawn, raw, verified_at, failed_at "
               "FROM holding_claims WHERE expires > ?")
        params: list[Any] = [now]
        if not include_withdrawn:
            sql += " AND withdrawn = 0"
        if manifest is not None:
            sql += " AND manifest = ?"
            params.append(manifest)
        if after is not None:
            sql += " AND (manifest > ? OR (manifest = ? AND node > ?))"
            params += [after[1], after[1], after[0]]
        sql += " ORDER BY manifest, node LIMIT ?"
        params.append(limit)
        rows = await self._all(sql, params)
        return [ClaimRow(bytes(n), bytes(m), i, s, e, bool(w), bytes(r), v, f) for n, m, i, s, e, w, r, v, f in rows]

    async def claims_since(self, stamp: int, now: int, limit: int) -> list[tuple[int, bytes]]:
        """Unexpired claims and withdrawals stored here after `stamp`, as (stamp, raw), oldest first: the
        answer of /communs/claims/1, so that a peer asks only for what changed since it last asked."""
        rows = await self._all("SELECT stamp, raw FROM holding_claims WHERE stamp > ? AND expires > ? "
                               "ORDER BY stamp LIMIT ?", (stamp, now, limit))
        return [(s, bytes(r)) for s, r in rows]

    async def claim_counts(self, now: int, manifests: Sequence[bytes] | None = None) -> dict[bytes, int]:
        """Live claims per manifest (distinct nodes: one row per node and manifest), leaving out claims whose
        holder failed a challenge and has not passed one since."""
        if manifests is None:
            rows = await self._all("SELECT manifest, COUNT(*) FROM holding_claims WHERE expires > ? AND withdrawn = 0 "
                                   f"AND {_COUNTED} GROUP BY manifest", (now,))
            return {bytes(m): c for m, c in rows}
        out: dict[bytes, int] = {}
        for batch in _batches(list(manifests), _MAX_VARS - 1):
            marks = ",".join("?" * len(batch))
            rows = await self._all(f"SELECT manifest, COUNT(*) FROM holding_claims WHERE expires > ? AND withdrawn = 0 "
                                   f"AND {_COUNTED} AND manifest IN ({marks}) GROUP BY manifest", [now, *batch])
            out.update({bytes(m): c for m, c in rows})
        return out

    async def claims_by_node(self, node: bytes, now: int) -> int:
        row = await self._one("SELECT COUNT(*) FROM holding_claims WHERE node = ? AND expires > ?", (node, now))
        return int(row[0])

    async def claim_checked(self, node: bytes, manifest: bytes, now: int, ok: bool) -> None:
        """Record a proof-of-holding outcome for a claim: passed (verified_at) or failed (failed_at)."""
        column = "verified_at" if ok else "failed_at"
        async with self.transaction("recording a challenge") as db:
            await db.execute(f"UPDATE holding_claims SET {column} = ? WHERE node = ? AND manifest = ?",
                             (now, node, manifest))

    async def drop_expired_claims(self, now: int) -> int:
        async with self.transaction("dropping expired claims") as db:
            cur = await db.execute("DELETE FROM holding_claims WHERE expires <= ?", (now,))
            return cur.rowcount

    async def claims_on_states(self, now: int, states: Collection[str], *, own: bool = False) \
            -> dict[bytes, list[ClaimRow]]:
        """The live claims (not withdrawn, not expired at `now`) on every manifest in one of `states` (and
        published here or not, by `own`), by manifest, each list in node order: what `live_claims(now, m)`
        answers for each such manifest, in one query (one min_copies round at 10,000 datasets was 10,000
        queries)."""
        states = sorted(states)
        rows = await self._all(
            "SELECT c.node, c.manifest, c.issued, c.since, c.expires, c.withdrawn, c.raw, c.verified_at, "
            "c.failed_at FROM holding_claims AS c JOIN manifests AS m ON m.id = c.manifest "
            f"WHERE c.expires > ? AND c.withdrawn = 0 AND m.own = ? AND m.state IN ({','.join('?' * len(states))}) "
            "ORDER BY c.manifest, c.node", [now, int(own), *states])
        out: dict[bytes, list[ClaimRow]] = {}
        for n, m, i, s, e, w, r, v, f in rows:
            out.setdefault(bytes(m), []).append(ClaimRow(bytes(n), bytes(m), i, s, e, bool(w), bytes(r), v, f))
        return out

    # -- the release grace of min_copies (governance/copies.py `Grace`) ------------------------------------

    async def release_graces(self) -> dict[bytes, tuple[int, int]]:
        """Every stored grace: manifest -> (observed_s, last_seen)."""
        rows = await self._all("SELECT manifest, observed_s, last_seen FROM release_grace")
        return {bytes(m): (o, s) for m, o, s in rows}

    async def save_release_graces(self, graces: Mapping[bytes, tuple[int, int] | None]) -> None:
        """Store `(observed_s, last_seen)` for each manifest, or forget it (None), in one transaction."""
        if not graces:
            return
        async with self.transaction("saving the release grace of replicas") as db:
            await db.executemany("DELETE FROM release_grace WHERE manifest = ?",
                                 [(m,) for m, g in graces.items() if g is None])
            await db.executemany(
                "INSERT INTO release_grace (manifest, observed_s, last_seen) VALUES (?, ?, ?) ON CONFLICT "
                "(manifest) DO UPDATE SET observed_s = excluded.observed_s, last_seen = excluded.last_seen",
                [(m, g[0], g[1]) for m, g in graces.items() if g is not None])

    # -- the route each governance record came by (operator's view; not signed) ---------------------------

    async def put_gov_route(self, record: bytes, route: str, peer: str | None, at: int) -> None:
        """Remember by which route an accepted governance record came; the first one stored stays."""
        async with self.transaction("recording a governance record's route") as db:
            await db.execute("INSERT OR IGNORE INTO gov_routes (record, route, peer, at) VALUES (?, ?, ?, ?)",
                             (record, route, peer, at))

    async def gov_routes(self, limit: int = 1_000_000) -> dict[bytes, tuple[str, str | None]]:
        """record id -> (route, peer), the newest `limit`."""
        rows = await self._all("SELECT record, route, peer FROM gov_routes ORDER BY at DESC LIMIT ?", (limit,))
        return {bytes(r): (route, peer) for r, route, peer in rows}


async def _insert_chunk_rows(db: aiosqlite.Connection,
                             items: Sequence[tuple[bytes, Sequence[tuple[bytes, int]]]]) -> None:
    """Record that each manifest uses these `(digest, size)` chunks (known chunks keep their stored flag)."""
    await db.executemany("INSERT INTO chunks (digest, size) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING",
                         [(d, size) for _, chunks in items for d, size in chunks])
    await db.executemany("INSERT OR IGNORE INTO manifest_chunks (manifest, digest) VALUES (?, ?)",
                         [(mid, d) for mid, chunks in items for d, _ in chunks])


async def _add_chunk_rows(db: aiosqlite.Connection, manifest_ids: Sequence[bytes]) -> None:
    """Give manifests that just became kept their chunk rows, from their packed chunk lists (see the
    module docstring); those that have them already are left alone. Inside the caller's transaction."""
    items: list[tuple[bytes, list[tuple[bytes, int]]]] = []
    for part in _batches(list(dict.fromkeys(manifest_ids))):
        sql = (f"SELECT m.id, m.chunk_refs FROM manifests m WHERE m.id IN ({','.join('?' * len(part))}) "
               "AND m.chunk_refs IS NOT NULL "
               "AND NOT EXISTS (SELECT 1 FROM manifest_chunks mc WHERE mc.manifest = m.id)")
        async with db.execute(sql, part) as cur:
            items.extend((mid, _unpack_refs(bytes(refs))) for mid, refs in await cur.fetchall())
    if items:
        await _insert_chunk_rows(db, items)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


_REF = 40  # a packed chunk reference: 32-byte digest, 8-byte big-endian size


def _pack_refs(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    return b"".join(d + size.to_bytes(8, "big") for d, size in chunks)


def _unpack_refs(packed: bytes) -> list[tuple[bytes, int]]:
    if len(packed) % _REF:
        raise CatalogError("a manifest's packed chunk list is damaged (not a whole number of entries)")
    return [(packed[i:i + 32], int.from_bytes(packed[i + 32:i + _REF], "big")) for i in range(0, len(packed), _REF)]


async def _prepare(db: aiosqlite.Connection, path: Path) -> None:
    """Check that the file is a Communs catalog this code can read, set the connection up, migrate."""
    not_ours = f"{path} is not a Communs catalog"
    try:
        async with db.execute("PRAGMA application_id") as cur:
            app_row = await cur.fetchone()
        async with db.execute("PRAGMA user_version") as cur:
            version_row = await cur.fetchone()
        async with db.execute("SELECT count(*) FROM sqlite_master") as cur:
            objects_row = await cur.fetchone()
    except sqlite3.DatabaseError as exc:
        raise CatalogError(f"{not_ours} (not an SQLite database, or a damaged one: {exc})") from exc
    app_id = app_row[0] if app_row else 0
    version = version_row[0] if version_row else 0
    objects = objects_row[0] if objects_row else 0
    if app_id != APPLICATION_ID and not (app_id == 0 and version == 0 and objects == 0):
        raise CatalogError(f"{not_ours} (it is another application's SQLite database)")
    if version > SCHEMA_VERSION:
        raise CatalogError(f"{path} was written by a newer Communs (catalog schema {version}; this version "
                           f"reads up to {SCHEMA_VERSION}): upgrade Communs to open it")
    try:
        async with db.execute("PRAGMA journal_mode = WAL") as cur:
            mode = await cur.fetchone()
        if not mode or str(mode[0]).lower() != "wal":
            raise CatalogError(f"the catalog {path} cannot use write-ahead logging (journal mode {mode})")
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("PRAGMA busy_timeout = 5000")
        await db.execute("PRAGMA cache_size = -65536")
        await db.execute("PRAGMA wal_autocheckpoint = 8192")
    except sqlite3.Error as exc:
        raise CatalogError(f"cannot set up the catalog {path}: {exc}") from exc
    if version < SCHEMA_VERSION:
        await _migrate(db, path)


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Run every pending migration in one transaction: all of them, or none."""
    try:
        await db.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise CatalogError(f"cannot migrate the catalog {path}: {exc}") from exc
    try:
        async with db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        current = row[0] if row else 0  # re-read inside the lock: another process may have migrated
        for number in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1]:
                await db.execute(statement)
        await db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await db.execute("COMMIT")
    except sqlite3.Error as exc:
        try:
            await db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise CatalogError(f"migrating the catalog {path} to schema {SCHEMA_VERSION} failed: {exc}") from exc


def read_gov_log_readonly(path: Path) -> list[bytes]:
    """The stored governance log entries, in order, read without opening the catalog for writing (no
    migration, no lock): `communs audit` reads them whether the node runs or not."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            # A damaged file can still answer this one query from intact pages: audit must not say "intact"
            # about a catalog that is not (the whole file is checked, as the node does at start).
            problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(20)").fetchall()]
            if problems != ["ok"]:
                raise CatalogDamaged(damaged_sentence(path, "; ".join(problems[:3])))
            rows = conn.execute("SELECT seq, raw FROM gov_log ORDER BY seq").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if _is_damage(str(exc)):
            raise CatalogDamaged(damaged_sentence(path, str(exc))) from None
        raise CatalogError(f"cannot read the governance log from {path}: {exc}") from None
    except sqlite3.Error as exc:
        raise CatalogError(f"cannot read the governance log from {path}: {exc}") from None
    return [bytes(raw) for _, raw in rows]


def read_gov_routes_readonly(path: Path) -> dict[bytes, tuple[str, str | None]]:
    """The stored route of each governance record (`gov_routes`), read-only: `communs proposals` on a
    stopped node shows them as the running node does. A catalog from before schema 5 has none."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'gov_routes'").fetchone() \
                    is None:
                return {}
            rows = conn.execute("SELECT record, route, peer FROM gov_routes").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if _is_damage(str(exc)):
            raise CatalogDamaged(damaged_sentence(path, str(exc))) from None
        raise CatalogError(f"cannot read the catalog {path}: {exc}") from None
    except sqlite3.Error as exc:
        raise CatalogError(f"cannot read the catalog {path}: {exc}") from None
    return {bytes(r): (route, peer) for r, route, peer in rows}


def read_manifests_readonly(path: Path, now: int = 0) -> tuple[list[ManifestInfo], set[bytes], dict[bytes, int]]:
    """Every stored manifest (newest first, as `list_manifests`), the forked publishers and the live copies
    per manifest at `now` (as `claim_counts`), read without opening the catalog for writing: `communs
    datasets` reads them while the node is stopped."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute(f"SELECT {_MANIFEST_COLUMNS} FROM manifests ORDER BY created DESC, id").fetchall()
            forked = {bytes(r[0]) for r in conn.execute("SELECT DISTINCT publisher FROM forks").fetchall()}
            copies = {bytes(m): c for m, c in conn.execute(
                "SELECT manifest, COUNT(*) FROM holding_claims WHERE expires > ? AND withdrawn = 0 "
                f"AND {_COUNTED} GROUP BY manifest", (now,)).fetchall()}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if _is_damage(str(exc)):
            raise CatalogDamaged(damaged_sentence(path, str(exc))) from None
        raise CatalogError(f"cannot read the catalog {path}: {exc}") from None
    except sqlite3.Error as exc:
        raise CatalogError(f"cannot read the catalog {path}: {exc}") from None
    return [_info(r) for r in rows], forked, copies
