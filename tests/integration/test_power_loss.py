"""Issue 12, "Power loss": real node processes with their data folder on LazyFS, power cut (every write not
yet fsynced dropped) during a publish, a replication, a vote and a release; then, read from the disk with
the node stopped: the catalog passes quick_check, every chunk marked stored is there and intact, every
dataset called own or complete has all its chunks; and after a restart nothing acknowledged is lost.

Bounded on purpose (two tests, small datasets): LazyFS writes 2.5 to 4 times slower than the disk.
"""

from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from communs.protocol import ids
from communs.storage import chunkstore
from communs.storage.chunkstore import FsChunkStore

from tests.integration.test_replication import enact_policy
from tests.lazyfs import LazyFS, check_disk, require_lazyfs
from tests.nodes import COMMUNS, NodeProc, cli, cli_json, wait_for

pytestmark = pytest.mark.slow

MiB = 1 << 20


@pytest.fixture
def lazyfs(tmp_path: Path, nodes: list[NodeProc]) -> Iterator[LazyFS]:
    """A LazyFS mount in the test's folder; its nodes are stopped before it is unmounted."""
    require_lazyfs()
    fs = LazyFS()
    try:
        try:
            fs.mount()
        except AssertionError as exc:  # e.g. /dev/fuse is there but mounting is not allowed (no CAP_SYS_ADMIN)
            lines = [x for x in str(exc).splitlines() if x.strip()]
            pytest.skip(f"power-cut tests skipped: LazyFS cannot mount here ({lines[-1][:200]})")
        yield fs
    finally:
        for n in nodes:
            n.kill()
        fs.remove()


def tree(root: Path, size: int) -> Path:
    root.mkdir(parents=True)
    (root / "data.bin").write_bytes(os.urandom(size))
    (root / "README.txt").write_text(f"{root.name}\n")
    return root


def power_cut(node: NodeProc, fs: LazyFS) -> dict[str, str]:
    """Kill the node, drop LazyFS's unsynced writes, check the disk as it is, mount again.
    Returns the states of the manifests the catalog holds, by manifest id."""
    assert node.proc is not None
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(10)
    node.proc = None
    fs.power_cut()
    fs.unmount()
    report = check_disk(fs.root / node.data.name)
    print(f"power cut: {report['stored']} chunk(s) marked stored, states {sorted(report['states'].values())}")
    fs.mount()
    return {ids.cid_str(k): v for k, v in report["states"].items()}


def chunk_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder / "store" / "chunks"))


def same_as(node: NodeProc, mid: str, src: Path, tmp: Path) -> None:
    out = tmp / f"out-{mid[-8:]}-{time.monotonic_ns()}"
    cli(node.data, "get", mid, str(out), timeout=120)
    assert not filecmp.dircmp(src, out).diff_files and sorted(os.listdir(src)) == sorted(os.listdir(out))
    for name in os.listdir(src):
        assert (src / name).read_bytes() == (out / name).read_bytes(), name


def test_the_chunk_store_does_not_trust_o_direct_on_lazyfs(lazyfs: LazyFS) -> None:
    # Measured: O_DIRECT writes of a few MiB on LazyFS are accepted and read back as zeros, and the probe
    # that only checked that the write was accepted said yes. The read-back check alone catches it (the
    # fault is intermittent for one chunk, near certain for the probe's 16 MiB), and FUSE is refused anyway.
    assert not all(chunkstore._direct_reads_back(lazyfs.mnt, chunkstore._PROBE_SIZE) for _ in range(3))
    assert chunkstore._is_fuse(lazyfs.mnt)
    store = FsChunkStore(lazyfs.mnt / "store")
    try:
        assert store._direct is False
    finally:
        store.close()


def test_power_cut_during_a_publish_keeps_what_was_acknowledged(tmp_path: Path, nodes: list[NodeProc],
                                                                lazyfs: LazyFS) -> None:
    a = NodeProc.init(lazyfs.mnt, "a")
    a.log_path = tmp_path / "a.log"
    nodes.append(a)
    a.start(timeout=60)
    wait_for(lambda: "chunk files are written through the page cache (probed)" in a.log(), 10,
             what="the node to find that O_DIRECT cannot be trusted on LazyFS")
    first = tree(tmp_path / "src" / "first", 6 * MiB)
    acked = cli_json(a.data, "publish", str(first), "--title", "first", "--licence", "CC0-1.0")["id"]
    before = chunk_files(lazyfs.root / "a")
    # A second publish, cut while its chunks are being written.
    second = tree(tmp_path / "src" / "second", 40 * MiB)
    publish = subprocess.Popen([*COMMUNS, "publish", str(second), "--title", "second", "--licence", "CC0-1.0",
                                "--json", "--data", str(a.data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: chunk_files(lazyfs.root / "a") >= before + 2 or publish.poll() is not None, 120,
                 interval=0.02, what="the second publish to write chunks")
        states = power_cut(a, lazyfs)
    finally:
        publish.kill()
        publish.wait(10)
    assert states.get(acked) == "own", f"the acknowledged dataset is not own after the cut: {states}"
    a.start(timeout=60)
    assert a.get(f"/api/v1/datasets/{acked}")["state"] == "own"
    same_as(a, acked, first, tmp_path)
    report = cli_json(a.data, "verify", timeout=120)
    assert report["ok"] is True, report
    # The node publishes again after the cut (the interrupted publish left nothing in the way).
    again = cli_json(a.data, "publish", str(second), "--title", "second", "--licence", "CC0-1.0")["id"]
    same_as(a, again, second, tmp_path)

    # A publish cut exactly as its first catalog commit reaches the disk, before the node can answer: after
    # the restart it is either whole (state own, byte-exact) or absent, never half there.
    third = tree(tmp_path / "src" / "third", 3 * MiB)
    lazyfs.crash_at("after", "fsync", r"catalog\.sqlite-wal")
    done = cli(a.data, "publish", str(third), "--title", "third", "--licence", "CC0-1.0", "--json", check=False)
    states = crashed(a, lazyfs)
    assert done.returncode != 0, "the node answered although its disk was gone"
    assert states.get(acked) == "own" and states.get(again) == "own", states
    a.start(timeout=60)
    thirds = [d for d in a.get("/api/v1/datasets") if d["title"] == "third"]
    assert [d["state"] for d in thirds] in ([], ["own"]), thirds
    for d in thirds:
        same_as(a, d["id"], third, tmp_path)
    same_as(a, again, second, tmp_path)
    report = cli_json(a.data, "verify", timeout=120)
    assert report["ok"] is True, report


def crashed(node: NodeProc, fs: LazyFS) -> dict[str, str]:
    """After an armed crash: stop the node (its folder is gone with the mount), check the disk, mount again."""
    fs.wait_crashed()
    assert node.proc is not None
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait(10)
    node.proc = None
    fs.unmount()
    report = check_disk(fs.root / node.data.name)
    print(f"crash: {report['stored']} chunk(s) marked stored, states {sorted(report['states'].values())}")
    fs.mount()
    return {ids.cid_str(k): v for k, v in report["states"].items()}


def publisher_and_replica(tmp_path: Path, nodes: list[NodeProc], fs: LazyFS) -> tuple[NodeProc, NodeProc, str, Path]:
    """A publisher on the plain disk with one 24 MiB CC0 dataset; a node on LazyFS that lists it."""
    p = NodeProc.init(tmp_path, "p")
    nodes.append(p)
    p.start()
    src = tree(tmp_path / "src" / "shared", 24 * MiB)
    mid = cli_json(p.data, "publish", str(src), "--title", "shared", "--licence", "CC0-1.0")["id"]
    b = NodeProc.init(fs.mnt, "b", "--bootstrap", p.addr)
    b.log_path = tmp_path / "b.log"
    nodes.append(b)
    b.start(timeout=60)
    wait_for(lambda: any(d["id"] == mid for d in b.get("/api/v1/datasets")), 60, what="b to list the dataset")
    return p, b, mid, src


def vote_policy(node: NodeProc, accept: list[str], tmp: Path, *, check: bool = True) -> bool:
    """The sole founder proposes a policy and votes yes; True once the vote is acknowledged (the vote
    closes and is enacted at once: every member voted)."""
    key = str(node.data / "operator.key")
    rules = tmp / f"policy-{'-'.join(accept)}-{time.monotonic_ns()}.toml"
    rules.write_text("accept_licences = [" + ", ".join(f'"{x}"' for x in accept) + "]\n")
    pid = cli_json(node.data, "propose", "--key", key, "--kind", "policy", "--file", str(rules),
                   "--closes-in", "1h")["id"]
    return cli(node.data, "vote", pid, "yes", "--key", key, check=check, timeout=60).returncode == 0


def policy_version(node: NodeProc) -> int:
    return int(cli_json(node.data, "policy")["version"])


def test_power_cut_during_replication_and_a_vote(tmp_path: Path, nodes: list[NodeProc], lazyfs: LazyFS) -> None:
    _p, b, mid, src = publisher_and_replica(tmp_path, nodes, lazyfs)

    # The vote makes b want the dataset; power goes just after the first fetched chunk reaches its name.
    lazyfs.crash_at("after", "rename", "store/tmp/")
    assert vote_policy(b, ["CC0-1.0"], tmp_path)  # acknowledged
    states = crashed(b, lazyfs)
    assert states[mid] in ("in-progress", "wanted"), states
    b.start(timeout=60)
    assert policy_version(b) == 1
    wait_for(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 180, what="replication to finish")
    # Acknowledged: complete. A power cut now keeps it complete and intact.
    states = power_cut(b, lazyfs)
    assert states[mid] == "complete", states
    b.start(timeout=60)
    same_as(b, mid, src, tmp_path)

    # A vote cut just after its ballot reaches the catalog's log, before the node can answer.
    key = str(b.data / "operator.key")
    rules = tmp_path / "release.toml"
    rules.write_text('accept_licences = ["CC-BY-4.0"]\n')
    pid = cli_json(b.data, "propose", "--key", key, "--kind", "policy", "--file", str(rules), "--closes-in", "1h")["id"]
    lazyfs.crash_at("after", "fsync", r"catalog\.sqlite-wal")
    voted = cli(b.data, "vote", pid, "yes", "--key", key, check=False, timeout=60)
    states = crashed(b, lazyfs)
    b.start(timeout=60)
    version = policy_version(b)
    assert version in (1, 2) and (voted.returncode != 0 or version == 2), (voted.returncode, version)
    if version == 1:  # the ballot did not reach the disk: the dataset stays wanted and intact
        assert b.get(f"/api/v1/datasets/{mid}")["state"] == "complete"
        same_as(b, mid, src, tmp_path)
    else:  # it did: the policy in force releases the dataset (re-evaluated at start: issue 12 item 8)
        wait_for(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "not-wanted", 30, what="the release")
    report = cli_json(b.data, "verify", timeout=120)
    assert report["ok"] is True, report


def test_power_cut_during_a_release(tmp_path: Path, nodes: list[NodeProc], lazyfs: LazyFS) -> None:
    _p, b, mid, _src = publisher_and_replica(tmp_path, nodes, lazyfs)
    enact_policy(b, ["CC0-1.0"], tmp_path)
    wait_for(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 180, what="replication to finish")
    # A vote that releases it; power goes just after the first chunk file is deleted.
    lazyfs.crash_at("after", "unlink", "store/chunks/")
    assert vote_policy(b, ["CC-BY-4.0"], tmp_path)  # acknowledged
    crashed(b, lazyfs)  # nothing marked stored is missing: a release unmarks before it deletes (issue 12 item 9)
    b.start(timeout=60)
    assert policy_version(b) == 2
    wait_for(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "not-wanted", 60, what="the release")
    report = cli_json(b.data, "verify", timeout=120)
    assert report["ok"] is True, report
