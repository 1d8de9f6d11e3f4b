"""Issue 12, crash consistency: real nodes killed (SIGKILL) at named points, and real damaged catalog pages.

The node kills itself at a point named in COMMUNS_FAULT_CRASH_AT (node/faults.py), so each test stops it
exactly between the two steps it is about, every run. After the kill the node is started again without
the fault, and what the catalog says is checked against the policy in force and the disk.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.test_replication import enact_policy, same_tree, write_policy
from tests.nodes import NodeProc, cli, cli_json, wait_for

pytestmark = pytest.mark.slow

CRASH_ENV = "COMMUNS_FAULT_CRASH_AT"


@contextmanager
def crash_at(point: str) -> Iterator[None]:
    """Nodes started inside this block kill themselves at `point`."""
    os.environ[CRASH_ENV] = point
    try:
        yield
    finally:
        del os.environ[CRASH_ENV]


def chunk_files(node: NodeProc) -> list[Path]:
    return [p for p in (node.data / "store" / "chunks").rglob("*") if p.is_file()]


def state(node: NodeProc, mid: str) -> str:
    return str(node.get(f"/api/v1/datasets/{mid}")["state"])


def vote_expecting_death(node: NodeProc, accept: list[str], tmp: Path, point: str) -> None:
    """Enact a policy on a node started with the fault `point`; the node must die there."""
    rules = write_policy(tmp / f"{node.data.name}-crash-{'-'.join(accept)}.toml", accept)
    key = str(node.data / "operator.key")
    pid = cli_json(node.data, "propose", "--key", key, "--kind", "policy", "--file", str(rules),
                   "--closes-in", "1h")["id"]
    cli(node.data, "vote", pid, "yes", "--key", key, check=False)
    assert node.proc is not None
    node.proc.wait(30)
    assert node.proc.returncode != 0 and f"killed at {point}" in node.log(), node.log()
    node.proc = None


def reconnect(a: NodeProc, b: NodeProc) -> None:
    """`a` restarted on a new port: it dials `b` (whose bootstrap entry names a's old address)."""
    status, answer = a.api("POST", "/api/v1/peers", {"addr": b.addr})
    assert status == 200, answer


def two_nodes(tmp_path: Path, nodes: list[NodeProc], size: int = 6 << 20) -> tuple[NodeProc, NodeProc, str, Path]:
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(size))
    (src / "small.txt").write_text("hello\n")
    mid = cli_json(a.data, "publish", str(src), "--title", "d", "--licence", "CC0-1.0")["id"]
    b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr)
    nodes.append(b)
    b.start()
    wait_for(lambda: any(d["id"] == mid for d in b.get("/api/v1/datasets")), 30, what="b to list it")
    return a, b, mid, src


def test_kill_right_after_an_enactment_commits(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    """Item 8: the re-evaluation an enactment calls for is not lost with the process, both ways."""
    _a, b, mid, _src = two_nodes(tmp_path, nodes)
    assert state(b, mid) == "not-wanted"
    assert b.stop() == 0
    with crash_at("enactment-committed"):
        b.start()
    vote_expecting_death(b, ["CC0-1.0"], tmp_path, "enactment-committed")
    b.start()  # a clean restart: the policy in force wants the dataset, so it is fetched
    assert sorted(cli_json(b.data, "policy")["policy"]["accept_licences"]) == ["CC0-1.0"]
    wait_for(lambda: state(b, mid) == "complete", 60, what="the wanted dataset to be fetched after the restart")
    assert b.stop() == 0
    # the other way: a policy that no longer wants it, killed before the release
    with crash_at("enactment-committed"):
        b.start()
    vote_expecting_death(b, ["MIT"], tmp_path, "enactment-committed")
    assert chunk_files(b), "the kill came before the release: the chunks are still there"
    b.start()
    wait_for(lambda: state(b, mid) == "not-wanted", 30, what="the unwanted dataset to be re-evaluated")
    wait_for(lambda: not chunk_files(b), 30, what="the unwanted dataset's chunks to be released")
    assert b.stop() == 0
    b.start()  # and it stays so through another clean restart
    assert state(b, mid) == "not-wanted"


@pytest.mark.parametrize("point", ["release-deleting", "release-unmarked"])
def test_kill_during_a_release_leaves_no_chunk_marked_that_is_gone(tmp_path: Path, nodes, point: str) -> None:  # type: ignore[no-untyped-def]
    """Item 9: a release killed after deleting its first chunk file (or after unmarking, before deleting);
    wanted again later, the dataset is fetched again, never called complete with chunks missing, and no
    released chunk file is left behind."""
    _a, b, mid, src = two_nodes(tmp_path, nodes)
    enact_policy(b, ["CC0-1.0"], tmp_path)
    wait_for(lambda: state(b, mid) == "complete", 60, what="b's replica")
    assert b.stop() == 0
    with crash_at(point):
        b.start()
    vote_expecting_death(b, ["MIT"], tmp_path, point)
    b.start()
    wait_for(lambda: not chunk_files(b), 30, what="the released chunk files to be gone after the restart")
    enact_policy(b, ["CC0-1.0"], tmp_path)
    wait_for(lambda: state(b, mid) == "complete", 60, what="the dataset to be complete again")
    out = tmp_path / "out"
    cli(b.data, "get", mid, str(out))
    assert same_tree(src, out)
    assert cli_json(b.data, "verify")["ok"] is True


def test_chunk_files_lost_while_stopped_are_found_at_start(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    """Item 9: at start, chunks the catalog calls stored but that are not on disk are unmarked and fetched
    again (existence is checked, cheaply; `verify` re-hashes)."""
    _a, b, mid, src = two_nodes(tmp_path, nodes)
    enact_policy(b, ["CC0-1.0"], tmp_path)
    wait_for(lambda: state(b, mid) == "complete", 60, what="b's replica")
    assert b.stop() == 0
    files = chunk_files(b)
    assert len(files) >= 2
    for p in files[:2]:
        p.unlink()
    b.start()
    wait_for(lambda: state(b, mid) == "complete" and len(chunk_files(b)) == len(files), 60,
             what="the lost chunks to be fetched again")
    out = tmp_path / "out"
    cli(b.data, "get", mid, str(out))
    assert same_tree(src, out)


def test_killed_publish_leaves_nothing_marked_and_its_chunks_go(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    """Item 11: a publish killed after its chunks are written and before its manifest is recorded leaves
    no chunk marked stored without a manifest; the next start deletes the chunk files (its journal names
    them)."""
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    with crash_at("publish-chunks-written"):
        a.start()
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(6 << 20))
    r = cli(a.data, "publish", str(src), "--title", "d", "--licence", "CC0-1.0", check=False)
    assert r.returncode != 0
    assert a.proc is not None
    a.proc.wait(30)
    a.proc = None
    assert chunk_files(a)
    db = sqlite3.connect(a.data / "catalog.sqlite")
    try:
        assert db.execute("SELECT count(*) FROM chunks WHERE stored = 1").fetchone()[0] == 0
    finally:
        db.close()
    a.start()
    wait_for(lambda: not chunk_files(a), 30, what="the interrupted publish's chunk files to be removed")
    assert a.get("/api/v1/datasets") == []


def test_chunks_the_catalog_forgot_are_kept_and_adopted(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    """Item 11: a catalog that lost its last commits (here: the WAL removed after a kill) must not make the
    node delete its own dataset's chunks; the manifest comes back from a peer and the chunks are adopted."""
    a, b, mid, src = two_nodes(tmp_path, nodes)
    a.kill()  # no checkpoint: the publish lives only in the WAL
    wal = a.data / "catalog.sqlite-wal"
    assert wal.exists() and wal.stat().st_size > 0
    wal.unlink()
    (a.data / "catalog.sqlite-shm").unlink(missing_ok=True)
    files = chunk_files(a)
    assert files
    a.start()
    reconnect(a, b)
    wait_for(lambda: any(d["id"] == mid for d in a.get("/api/v1/datasets")), 60,
             what="a to learn its own manifest back from b")
    assert state(a, mid) == "own"
    assert all(p.exists() for p in files), "own chunk files were deleted on the catalog's word alone"
    out = tmp_path / "out"
    wait_for(lambda: cli(a.data, "get", mid, str(out), check=False, ).returncode == 0, 60,
             what="a's own dataset to be whole again")
    assert same_tree(src, out)


def test_publish_retried_with_its_idempotency_key_returns_the_first(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    """Item 11: a publish retried with the same Idempotency-Key (the CLI's retry after a broken connection)
    returns the first result and publishes nothing more; the same key with another request is refused."""
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(1 << 20))
    body = {"path": str(src), "title": "d", "licence": "CC0-1.0"}
    key = {"Idempotency-Key": "retry-me-1"}
    s1, r1 = a.api("POST", "/api/v1/datasets", body, headers=key)
    assert s1 == 201, r1
    assert a.stop() == 0
    a.start()  # the key survives a restart: it is stored with the manifest
    s2, r2 = a.api("POST", "/api/v1/datasets", body, headers=key)
    assert s2 == 201 and (r2["id"], r2["dataset"]) == (r1["id"], r1["dataset"]), (r1, r2)
    assert [d["id"] for d in a.get("/api/v1/datasets")] == [r1["id"]]
    s3, r3 = a.api("POST", "/api/v1/datasets", dict(body, title="other"), headers=key)
    assert s3 == 422 and "Idempotency-Key" in r3["error"], r3
    s4, r4 = a.api("POST", "/api/v1/datasets", body, headers={"Idempotency-Key": "bad key!"})
    assert s4 == 400, r4
    assert len(a.get("/api/v1/datasets")) == 1
    # a retry that arrives while the first request still runs waits for it and returns its result
    big = tmp_path / "big"
    big.mkdir()
    (big / "data.bin").write_bytes(os.urandom(48 << 20))
    big_body = {"path": str(big), "title": "big", "licence": "CC0-1.0"}
    answers: list[tuple[int, object]] = []
    threads = [threading.Thread(target=lambda: answers.append(
        a.api("POST", "/api/v1/datasets", big_body, headers={"Idempotency-Key": "concurrent-1"})))
        for _ in range(2)]
    threads[0].start()
    wait_for(lambda: any(j["path"] == str(big) and j["state"] not in ("done", "failed")
                         for j in a.get("/api/v1/publishing")), 30, interval=0.01, what="the first publish to run")
    threads[1].start()
    for t in threads:
        t.join(120)
    assert len(answers) == 2 and all(st == 201 for st, _ in answers), answers
    ids_back = {r["id"] for _, r in answers}  # type: ignore[index]
    assert len(ids_back) == 1, answers
    assert sorted(d["title"] for d in a.get("/api/v1/datasets")) == ["big", "d"]


def _damage_table_root(db_path: Path, table: str) -> None:
    """Overwrite the root page of `table` with garbage, as a bad sector or a torn write would."""
    db = sqlite3.connect(db_path)
    try:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
    finally:
        db.close()
    assert not Path(f"{db_path}-wal").exists() or Path(f"{db_path}-wal").stat().st_size == 0
    with open(db_path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(bytes([0xA5]) * page_size)


def test_damaged_table_root_is_refused_then_repaired(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    """Item 10: a damaged table root. The node refuses to start with one sentence naming the file and what to
    do; verify and audit fail cleanly; `communs repair` moves the file aside and the node rebuilds: its
    governance log from what was readable, its own manifest from a peer, its chunks adopted by hash."""
    a, b, mid, src = two_nodes(tmp_path, nodes)
    gov_before = cli_json(a.data, "audit")["entries"]
    assert a.stop() == 0
    catalog = a.data / "catalog.sqlite"
    _damage_table_root(catalog, "manifests")
    r = cli(a.data, "run", check=False, timeout=60)
    assert r.returncode != 0
    err = r.stderr.strip()
    assert "Traceback" not in err and str(catalog) in err and "communs repair" in err, err
    v = cli(a.data, "verify", check=False)
    assert v.returncode != 0 and "Traceback" not in v.stderr and "damaged" in v.stderr, v.stderr
    au = cli(a.data, "audit", check=False)
    assert au.returncode != 0 and "Traceback" not in au.stderr and "damaged" in au.stderr, au.stderr
    rep = cli_json(a.data, "repair")
    assert rep["moved_to"] and Path(rep["moved_to"]).exists()
    assert rep["governance_entries"] == gov_before
    a.start()
    assert cli_json(a.data, "audit")["ok"] is True
    reconnect(a, b)
    wait_for(lambda: any(d["id"] == mid for d in a.get("/api/v1/datasets")), 60,
             what="a to learn its own manifest back from b")
    out = tmp_path / "out"
    wait_for(lambda: cli(a.data, "get", mid, str(out), check=False).returncode == 0, 60,
             what="a's own dataset to be whole again")
    assert same_tree(src, out)
    assert state(a, mid) == "own"
    assert cli_json(a.data, "verify")["ok"] is True
    # the manifests table was unreadable: publishing waits for the operator's confirmation (no own-key fork)
    assert rep["publishing_held"] is True
    body = {"path": str(src), "title": "again", "licence": "CC0-1.0"}
    status, answer = a.api("POST", "/api/v1/datasets", body)
    assert status == 409 and "communs repair --confirm" in answer["error"], answer
    assert cli_json(a.data, "repair", "--confirm")["confirmed"] is True
    status, answer = a.api("POST", "/api/v1/datasets", body)
    assert status == 201, answer
    assert cli_json(a.data, "audit")["ok"] is True


def test_damage_met_while_running_makes_health_fail(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    """Item 10: a page damaged under a running node. The datasets API answers 503 with the repair sentence
    (not a 500 and a traceback), and /healthz stops saying ok."""
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(1 << 20))
    cli_json(a.data, "publish", str(src), "--title", "d", "--licence", "CC0-1.0")
    assert a.api("GET", "/healthz", token="") == (200, {"ok": True})
    catalog = a.data / "catalog.sqlite"
    db = sqlite3.connect(catalog, timeout=10)
    try:
        assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # every page in the main file
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'manifests'").fetchone()[0]
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        with open(catalog, "r+b") as fh:
            fh.seek((root - 1) * page_size)
            fh.write(bytes([0xA5]) * page_size)
        with db:  # another writer: the node's page cache is invalidated, so it reads the damaged page
            db.execute("INSERT INTO kv (key, value) VALUES ('test', x'00') "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
    finally:
        db.close()
    status, body = a.api("GET", "/api/v1/datasets")
    assert status == 503 and "communs repair" in body["error"], (status, body)
    status, body = a.api("GET", "/healthz", token="")
    assert status == 503 and body["ok"] is False and "damaged" in body["error"], (status, body)
    assert "Traceback" not in a.log()
