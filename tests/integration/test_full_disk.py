"""Issue 7: a node whose data folder is on a full disk.

Each test mounts a small tmpfs made for it (root is needed: the tests skip, saying so, where mounting is
refused) and puts a node's data folder on it; the node's log stays outside, so that the log itself never
fills the disk under test. A filler file takes the space; deleting it is "the operator frees space".

* publishing a file larger than the free space fails with 507 and one sentence naming the full disk (CLI:
  one sentence, exit 1); the catalog stays consistent (integrity_check ok, no manifest listed, `communs
  verify` ok, no partial chunk file); a publish whose chunks are stored but whose catalog write hits the
  full disk fails the same way; after space is freed the same publish completes;
* replication into a full disk stops with the reason in /api/v1/datasets and /api/v1/replication, does
  not refetch in a loop while the disk stays full, and completes once space is freed.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.nodes import NodeProc, cli, cli_json, wait_for

MiB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str, int], Path]]:
    """`make(name, mib)`: a tmpfs of that size mounted under tmp_path; unmounted at teardown."""
    mounts: list[Path] = []

    def make(name: str, mib: int) -> Path:
        where = tmp_path / name
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m,mode=0700", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"mounting a small tmpfs is refused here ({proc.stderr.strip() or proc.returncode}); "
                        "the full-disk tests need root or CAP_SYS_ADMIN")
        mounts.append(where)
        return where

    yield make
    for where in reversed(mounts):
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(disk: Path, leave: int, name: str = "filler") -> Path:
    """A file that takes all free space on `disk` but `leave` bytes (zeros are real pages on tmpfs)."""
    path = disk / name
    want = max(0, _free(disk) - leave)
    block = b"\0" * MiB
    with open(path, "wb") as fh:
        while want > 0:
            try:
                fh.write(block[: min(want, MiB)])
            except OSError:
                break
            want -= MiB
    return path


def _node_on(disk: Path, outside: Path, name: str, *init_args: str) -> NodeProc:
    data = disk / name
    cli(data, "init", "--name", name, "--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0", *init_args)
    return NodeProc(data, outside / f"{name}.log")


def _integrity(data: Path) -> str:
    db = sqlite3.connect(f"file:{data / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()


def _no_partial_chunks(data: Path) -> None:
    tmp = data / "store" / "tmp"
    left = list(tmp.iterdir()) if tmp.exists() else []
    assert left == [], f"partial chunk files left behind: {left[:5]}"


def _publish_api(n: NodeProc, path: Path, title: str) -> tuple[int, dict[str, str]]:
    status, body = n.api("POST", "/api/v1/datasets", {"path": str(path), "title": title, "licence": "CC0-1.0"})
    return status, body


def test_publish_onto_a_full_disk(tmp_path: Path, small_disk: Callable[[str, int], Path]) -> None:
    disk = small_disk("disk", 32)
    n = _node_on(disk, tmp_path, "pub")
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(200_000))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB))
    n.start()
    try:
        first = cli_json(n.data, "publish", str(small), "--title", "Small", "--licence", "CC0-1.0")
        filler = _fill(disk, leave=4 * MiB)

        # through the API: 507 and one sentence about the full disk
        status, body = _publish_api(n, big, "Big")
        assert status == 507, (status, body)
        assert set(body) == {"error"} and "disk is full" in body["error"], body
        assert "\n" not in body["error"] and body["error"].endswith("publish again"), body
        # through the CLI: one sentence on stderr, exit 1
        proc = cli(n.data, "publish", str(big), "--title", "Big", "--licence", "CC0-1.0", check=False)
        assert proc.returncode == 1
        err = proc.stderr.strip()
        assert err.count("\n") == 0 and "disk is full" in err and "Traceback" not in err, err

        # nothing was published, the catalog is intact, every stored chunk is good, nothing half-written
        listed = n.get("/api/v1/datasets")
        assert [d["id"] for d in listed] == [first["id"]]
        assert [j["state"] for j in n.get("/api/v1/publishing")][-2:] == ["failed", "failed"]
        assert _integrity(n.data) == "ok"
        _no_partial_chunks(n.data)
        assert cli_json(n.data, "verify")["ok"] is True

        # chunks all stored already, but the catalog cannot grow: the same refusal, from the catalog
        filler2 = _fill(disk, leave=0, name="filler2")
        assert _free(disk) < 64 << 10
        status, body = _publish_api(n, small, "Small again")
        assert status == 507 and "disk is full" in body["error"], (status, body)
        assert len(n.get("/api/v1/datasets")) == 1
        assert n.get("/healthz") == {"ok": True}
        filler2.unlink()

        # the operator frees space: the same publishes complete
        filler.unlink()
        status, body = _publish_api(n, big, "Big")
        assert status == 201, body
        big_id = body["id"]
        status, body = _publish_api(n, small, "Small again")
        assert status == 201, body
        states = {d["id"]: d["state"] for d in n.get("/api/v1/datasets")}
        assert states[big_id] == "own" and len(states) == 3
        assert _integrity(n.data) == "ok"
        report = cli_json(n.data, "verify")
        assert report["ok"] is True and report["checked"] >= 8
        out = tmp_path / "out"
        cli(n.data, "get", big_id, str(out))
        assert (out / "big.bin").read_bytes() == big.read_bytes()
    finally:
        code = n.stop()
    assert code == 0
    assert "Traceback" not in n.log(), n.log()


def _metric(n: NodeProc, name: str) -> float:
    status, text = n.api("GET", "/metrics")
    assert status == 200
    for line in str(text).splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_replication_into_a_full_disk(tmp_path: Path, small_disk: Callable[[str, int], Path]) -> None:
    a = NodeProc.init(tmp_path, "a")
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(14 * MiB))
    disk = small_disk("disk", 24)
    b = _node_on(disk, tmp_path, "b")
    a.start()
    b.start()
    try:
        published = cli_json(a.data, "publish", str(data), "--title", "Wanted", "--licence", "CC0-1.0")
        mid = published["id"]
        rules = tmp_path / "rules.toml"
        rules.write_text('accept_licences = ["CC0-1.0"]\n')
        pid = cli_json(b.data, "propose", "--key", str(b.data / "operator.key"), "--kind", "policy", "--file",
                       str(rules), "--closes-in", "1h")["id"]
        cli(b.data, "vote", pid, "yes", "--key", str(b.data / "operator.key"))
        wait_for(lambda: b.get("/api/v1/policy")["version"] == 1, 10, what="the policy to be in force on b")
        filler = _fill(disk, leave=5 * MiB)
        status, body = b.api("POST", "/api/v1/peers", {"addr": a.addr})
        assert status == 200, body

        def stopped_for_full_disk() -> dict[str, object] | None:
            rows = {d["id"]: d for d in b.get("/api/v1/datasets")}
            row = rows.get(mid)
            if row is None or row["state"] != "in-progress" or "disk is full" not in row["reason"]:
                return None
            return row

        row = wait_for(stopped_for_full_disk, 60, what="replication to stop on the full disk")
        assert "free" in str(row["reason"]) or "disk is full" in str(row["reason"])
        rep = wait_for(lambda: next((w for w in b.get("/api/v1/replication")["waiting"] if w["id"] == mid), None),
                       10, what="the dataset to be listed as waiting")
        assert "disk is full" in rep["reason"], rep
        assert 0 < rep["bytes_done"] < rep["bytes_total"] == 14 * MiB, rep
        # while the disk stays full the node neither spins refetching nor stops serving
        served = _metric(a, "communs_bytes_served_total")
        time.sleep(3)
        assert _metric(a, "communs_bytes_served_total") - served < 4 * MiB
        assert b.get("/healthz") == {"ok": True}
        assert _integrity(b.data) == "ok"
        _no_partial_chunks(b.data)

        # the operator frees space: replication resumes and completes, every chunk verified
        filler.unlink()
        wait_for(lambda: {d["id"]: d["state"] for d in b.get("/api/v1/datasets")}.get(mid) == "complete", 60,
                 what="replication to complete after space was freed")
        assert b.get("/api/v1/replication") == {"active": [], "waiting": []}
        assert _integrity(b.data) == "ok"
        report = cli_json(b.data, "verify")
        assert report["ok"] is True
        out = tmp_path / "out"
        cli(b.data, "get", mid, str(out))
        assert (out / "data.bin").read_bytes() == data.read_bytes()
    finally:
        code_b = b.stop()
        code_a = a.stop()
    assert code_a == 0 and code_b == 0
    assert "Traceback" not in b.log(), b.log()


async def test_catalog_transaction_cancelled_at_begin_leaves_no_open_transaction(tmp_path: Path) -> None:
    """Found by the replication test above: a fetch stopped by the full disk cancels its other store tasks,
    one of them while its BEGIN was queued in aiosqlite's thread; the transaction stayed open and every later
    catalog write failed. Cancel at every point of a transaction's start and check the catalog still writes."""
    import asyncio

    from communs.storage.catalog import Catalog

    cat = await Catalog.open(tmp_path / "catalog.sqlite")
    try:
        for spins in range(4):
            async def step() -> None:
                async with cat.transaction("test step") as db:
                    await db.execute("SELECT 1")

            task = asyncio.ensure_future(step())
            for _ in range(spins):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            await cat.mark_chunks_stored([(bytes([spins]) * 32, 10)])  # fails if a transaction stayed open
        assert await cat.used_bytes() == 40
    finally:
        await cat.close()


def test_a_failed_publish_gives_its_space_back_without_a_restart(tmp_path: Path,
                                                                small_disk: Callable[[str, int], Path]) -> None:
    """Issue 12, item 11: the chunks a publish wrote before the disk filled stayed until the next start
    (which deletes chunk files the catalog does not know), so the disk stayed full for everything else."""
    disk = small_disk("disk", 32)
    n = _node_on(disk, tmp_path, "pub")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MiB))
    medium = tmp_path / "medium.bin"
    medium.write_bytes(os.urandom(3 * MiB))
    n.start()
    try:
        _fill(disk, leave=5 * MiB)
        free_before = _free(disk)
        status, body = _publish_api(n, big, "Big")
        assert status == 507, (status, body)
        assert _free(disk) >= free_before - MiB, (free_before, _free(disk))  # the catalog may grow a little
        # what fits in the space given back is published, without a restart
        status, body = _publish_api(n, medium, "Medium")
        assert status == 201, (status, body)
        assert [d["title"] for d in n.get("/api/v1/datasets")] == ["Medium"]
        assert _integrity(n.data) == "ok"
        assert cli_json(n.data, "verify")["ok"] is True
        assert "written by the failed publish" in n.log()
    finally:
        code = n.stop()
    assert code == 0
    assert "Traceback" not in n.log(), n.log()
