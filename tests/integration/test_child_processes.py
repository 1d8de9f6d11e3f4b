"""Issue 12 item 7: the node's worker processes die with it, even when it is SIGKILLed.

Catalog sync verifies large batches of records in a `multiprocessing` worker. Before issue 12 a
SIGKILLed node left that worker running as an orphan (it waited on its task pipe, of which it held
both ends, for 19 minutes in one test). A real node is made to start the worker (a catalog sync of
400 records), then killed with SIGKILL; each of its child processes must be gone within seconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from communs.node.config import CATALOG_FILE
from communs.protocol import keys
from communs.protocol.records import FileEntry, Manifest, new_dataset_id
from communs.storage.catalog import Catalog, ManifestRow

from tests.nodes import NodeProc, wait_for

pytestmark = pytest.mark.slow

RECORDS = 400  # above node/publishing.py's PROCESS_BATCH (200): sync verifies them in the worker


async def fill(catalog_path: Path, count: int) -> None:
    """`count` manifests of one other publisher, stored directly (as scripts/bench/sync.py does)."""
    key = keys.SigningKey.generate()
    now = int(time.time())
    rows, prev = [], None
    for seq in range(1, count + 1):
        m = Manifest.create(key, dataset=new_dataset_id(key.public, os.urandom(16)), version=1, prev=None,
                            seq=seq, log_prev=prev, title=f"record {seq}", licence="CC-BY-4.0", created=now,
                            files=[FileEntry.of("a.csv", [(os.urandom(32), 1000)])])
        prev = m.id
        rows.append(ManifestRow.from_manifest(m, m.encode(), received_at=now, state="not-wanted", reason="test"))
    catalog = await Catalog.open(catalog_path)
    try:
        await catalog.put_manifests_batch(rows)
    finally:
        await catalog.close()


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (a container's init may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_workers_die_with_a_sigkilled_node(tmp_path: Path, nodes: list[NodeProc]) -> None:
    a = NodeProc.init(tmp_path, "a")
    asyncio.run(fill(a.data / CATALOG_FILE, RECORDS))
    nodes.append(a)
    a.start()
    b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr)
    nodes.append(b)
    b.start()
    assert b.proc is not None
    pid = b.proc.pid
    workers = wait_for(lambda: [c for c in children(pid) if "multiprocessing" in cmdline(c)], 60,
                       what="b's verification worker to start (catalog sync of 400 records)")
    wait_for(lambda: len(b.get("/api/v1/datasets")) == RECORDS, 60, what="b to sync every record")
    everyone = children(pid)
    assert set(workers) <= set(everyone)
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    b.proc = None
    try:
        wait_for(lambda: not any(alive(c) for c in everyone), 20, what="b's child processes to die with it")
    finally:
        for c in everyone:  # never leave an orphan behind, whatever the outcome
            if alive(c):
                os.kill(c, signal.SIGKILL)
    assert a.stop() == 0


def test_die_with_parent_arms_the_kernel(tmp_path: Path) -> None:
    """The initializer's own contract, in a real child: armed on Linux, and a no-op for a live parent."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from communs.node.runtime.childproc import die_with_parent, init_worker

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker,
                             initargs=(os.getpid(), 700, 10, 10)) as pool:
        assert pool.submit(die_with_parent, os.getpid()).result(30) is True  # the suite runs on Linux
        assert pool.submit(os.getppid).result(30) == os.getpid()
