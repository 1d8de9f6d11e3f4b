"""`communs repair`: move a damaged catalog aside and rebuild what can be rebuilt.

What a catalog holds, and where each part comes back from:

* The governance log: this node's own signed history. Peers do not keep a copy, so it comes back only from
  the damaged file: the longest prefix of entries that can still be read and that re-verifies (signatures,
  links, tallies; as `communs audit`). Entries after a damaged page are lost; the report says how many
  remain, and `communs audit --export` of a backup is the remedy beyond that.
* Manifests (this node's and others'): every one that can still be read and whose signature verifies is
  kept; the rest come back from peers through catalog sync, as for a new node, since every node keeps the
  manifests of the whole federation. Own manifests come back in state `own`.
* Which chunks are stored: not copied at all. At start the node adopts by hash the chunk files of every
  kept dataset that are on disk (re-hashed, then marked), fetches what is missing from peers, and never
  deletes a chunk file the new catalog does not know (node/reconcile.py).
* Dataset states: decided again under the policy in force (the new catalog records no policy version, so
  the node re-evaluates at start). Fork evidence that can be read is kept.
* Lost for good: replication progress records, source bans, publish idempotency keys, the route each
  governance record came by (shown as not known) and the release graces of min_copies (they start over,
  which only delays a release); all are rebuilt or harmless.

A node whose own manifests were not all readable must not publish before they are back: its next publish
would reuse a place of its log (a fork signed by its own key). So after such a repair, publishing is refused
until the operator confirms with `communs repair --confirm` that `communs datasets` lists its datasets again.
The node must be stopped (the folder's run lock is taken); the damaged file is kept, renamed, never deleted.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from communs.governance.ledger import audit
from communs.node.config import CATALOG_FILE, ConfigError, load_config
from communs.node.datadir import RunLock, read_private_key
from communs.node.folder import DataFolder
from communs.node.jsondoc import JsonDict, SqlRow
from communs.protocol import keys
from communs.protocol.errors import RecordError
from communs.protocol.records import Manifest
from communs.storage.catalog import Catalog, ManifestRow, damaged_sentence
from communs.storage.errors import StorageError

REPAIR_PENDING_KEY = "repair_unconfirmed"  # kv: own manifests may be missing; publishing waits for --confirm


class RepairError(Exception):
    """One sentence for the operator; nothing was changed."""


def check_file(path: Path) -> list[str]:
    """`PRAGMA quick_check` of a catalog file, read-only; a file SQLite cannot even open counts as damaged."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute("PRAGMA quick_check(20)").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    problems = [str(r[0]) for r in rows]
    return [] if problems == ["ok"] else problems


def _salvage(conn: sqlite3.Connection, sql: str) -> tuple[list[SqlRow], bool]:
    """The rows a query yields before SQLite hits damage; True when it read them all."""
    rows: list[SqlRow] = []
    try:
        cur = conn.execute(sql)
        while (row := cur.fetchone()) is not None:
            rows.append(row)
    except sqlite3.DatabaseError:
        return rows, False
    return rows, True


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = path.with_name(f"{path.stem}.damaged-{stamp}{path.suffix}")
    for suffix in ("-wal", "-shm"):  # SQLite finds a WAL by the database's name: keep them together
        side = Path(f"{path}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{moved}{suffix}"))
    os.replace(path, moved)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return moved


async def repair(root: Path, *, force: bool = False, progress: Callable[[str], None] | None = None) -> JsonDict:
    """Move the damaged catalog aside and rebuild a new one (module docstring); returns what was done."""
    try:
        load_config(root)
    except ConfigError as exc:
        raise RepairError(str(exc)) from None
    lock = RunLock(root)
    try:
        lock.acquire()
    except ConfigError:
        raise RepairError(f"the node in {root} is running; stop it before 'communs repair'") from None
    try:
        return await _repair(root, force=force, say=progress or (lambda _m: None))
    finally:
        lock.release()


async def _repair(root: Path, *, force: bool, say: Callable[[str], None]) -> JsonDict:
    path = root / CATALOG_FILE
    if not path.exists():
        raise RepairError(f"there is no catalog at {path} to repair (the node creates one when it starts)")
    problems = check_file(path)
    if not problems and not force:
        return {"ok": True, "repaired": False, "moved_to": None, "problems": [],
                "message": f"the catalog {path} is sound; nothing to repair (--force rebuilds it anyway)"}
    node_key = read_private_key(DataFolder(root).node_key, "node key")
    moved = _move_aside(path)
    say(f"moved the catalog aside to {moved}")
    conn = sqlite3.connect(f"{moved.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        gov, _ = _salvage(conn, "SELECT seq, hash, prev, kind, raw, at FROM gov_log ORDER BY seq")
        manifests, all_manifests = _salvage(conn, "SELECT raw, state FROM manifests")
        forks, _ = _salvage(conn, "SELECT publisher, seq, id_a, raw_a, id_b, raw_b, reason, detected_at FROM forks")
    finally:
        conn.close()
    # the governance log: the longest consecutive prefix that re-verifies, written by this node
    prefix: list[SqlRow] = []
    for row in gov:
        if row[0] != len(prefix):
            break
        prefix.append(row)
    gov = prefix
    result = audit([bytes(r[4]) for r in gov])
    if not result.ok:
        gov = gov[: result.bad_seq or 0]
    elif gov and result.node != keys.peer_id(node_key.public):
        gov = []
    catalog = await Catalog.open(path)
    try:
        if gov:
            await catalog.gov_append_many([(r[0], bytes(r[1]), None if r[2] is None else bytes(r[2]), r[3],
                                            bytes(r[4]), r[5]) for r in gov])
        rows: list[ManifestRow] = []
        now = int(time.time())
        for raw, old_state in manifests:
            try:
                m = Manifest.decode(bytes(raw))
            except RecordError:
                continue
            own = m.publisher == node_key.public
            state = "own" if own else ("in-progress" if old_state in ("complete", "in-progress") else "not-wanted")
            rows.append(ManifestRow.from_manifest(m, bytes(raw), received_at=now, state=state, own=own,
                                                  reason="published here" if own else "restored by communs repair"))
        kept = 0
        for start in range(0, len(rows), 500):
            kept += sum(1 for o in await catalog.put_manifests_batch(rows[start:start + 500])
                        if o.value == "inserted")
        for f in forks:
            try:
                await catalog.record_fork(bytes(f[0]), f[1], bytes(f[2]), bytes(f[3]), bytes(f[4]), bytes(f[5]),
                                          detected_at=f[7], reason=f[6])
            except StorageError:
                continue
        pending = not all_manifests
        if pending:
            await catalog.kv_set(REPAIR_PENDING_KEY, json.dumps({"at": now, "moved_to": str(moved)}).encode())
    finally:
        await catalog.close()
    return {
        "ok": True, "repaired": True, "moved_to": str(moved), "problems": problems[:5],
        "governance_entries": len(gov), "manifests": kept, "manifests_all_read": all_manifests,
        "forks": len(forks), "publishing_held": pending,
        "message": (f"rebuilt {path}: {len(gov)} governance log entries, {kept} manifests kept"
                    + ("" if all_manifests else "; the rest come back from peers when the node runs, and "
                       "publishing waits until you check that 'communs datasets' lists your own datasets "
                       "again and run 'communs repair --confirm'")),
    }


async def confirm(root: Path) -> JsonDict:
    """The operator checked that the node's own datasets are back: allow publishing again."""
    try:
        load_config(root)
        catalog = await Catalog.open(root / CATALOG_FILE)
    except (ConfigError, StorageError) as exc:
        raise RepairError(str(exc)) from None
    try:
        held = await catalog.kv_get(REPAIR_PENDING_KEY) is not None
        if held:
            await catalog.kv_delete(REPAIR_PENDING_KEY)
    finally:
        await catalog.close()
    return {"ok": True, "confirmed": held,
            "message": "publishing is allowed again" if held else "no repair was waiting for confirmation"}


__all__ = ["REPAIR_PENDING_KEY", "RepairError", "check_file", "confirm", "damaged_sentence", "repair"]
