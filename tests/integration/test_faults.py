"""Issue 6 fault tests: a replicating node killed with SIGKILL, and a peer that serves altered chunks."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.integration.test_replication import enact_policy, same_tree
from tests.nodes import NodeProc, cli, cli_json, wait_for

pytestmark = pytest.mark.slow


def progress(node: NodeProc, mid: str) -> tuple[int, int]:
    for job in node.get("/api/v1/replication")["active"]:
        if job["id"] == mid:
            return job["bytes_done"], job["bytes_total"]
    return 0, 0


def test_sigkill_during_replication_resumes(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"part{i}.bin").write_bytes(os.urandom(100 << 20))  # 300 MiB in all
    mid = cli_json(a.data, "publish", str(src), "--title", "big", "--licence", "CC0-1.0", timeout=300)["id"]
    total = sum(p.stat().st_size for p in src.iterdir())
    b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr)
    nodes.append(b)
    b.start()
    wait_for(lambda: any(d["id"] == mid for d in b.get("/api/v1/datasets")), 30, what="b to list it")
    enact_policy(b, ["CC0-1.0"], tmp_path)
    kills = 0
    last_done = 0
    for fraction in (0.2, 0.45, 0.7):
        wait_for(lambda fraction=fraction: progress(b, mid)[0] >= fraction * total
                 or b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 120, interval=0.02,
                 what=f"{fraction:.0%} replicated")
        if b.get(f"/api/v1/datasets/{mid}")["state"] == "complete":
            break
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(5)
        kills += 1
        b.start()
        # it resumes from what it had stored: progress never goes back to zero
        done_after = wait_for(lambda: progress(b, mid)[0] or
                              (b.get(f"/api/v1/datasets/{mid}")["state"] == "complete" and total), 30,
                              what="replication to resume")
        assert done_after >= last_done
        last_done = done_after
    assert kills >= 2, "the replication finished too fast to be killed twice; use a larger dataset"
    wait_for(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 300, what="completion")
    report = cli_json(b.data, "verify", timeout=300)
    assert report["ok"] is True and report["checked"] >= total // (8 << 20)
    out = tmp_path / "out"
    cli(b.data, "get", mid, str(out), timeout=300)
    assert same_tree(src, out)
    # nothing fetched twice beyond what was in flight at each kill (at most a few batches)
    status, text = a.api("GET", "/metrics")
    assert status == 200
    served = float(next(line.split()[1] for line in text.splitlines()
                        if line.startswith("communs_bytes_served_total ")))
    assert served <= total + kills * 3 * (32 << 20), (served, total)
    assert a.stop() == 0 and b.stop() == 0


def test_lying_peer_is_detected_and_dropped(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    honest = NodeProc.init(tmp_path, "honest")
    nodes.append(honest)
    honest.start()
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(40 << 20))
    mid = cli_json(honest.data, "publish", str(src), "--title", "d", "--licence", "CC0-1.0")["id"]
    liar = NodeProc.init(tmp_path, "liar", "--bootstrap", honest.addr)
    nodes.append(liar)
    liar.start()
    wait_for(lambda: any(d["id"] == mid for d in liar.get("/api/v1/datasets")), 30, what="liar lists it")
    enact_policy(liar, ["CC0-1.0"], tmp_path)
    wait_for(lambda: liar.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 60, what="liar's copy")
    assert liar.stop() == 0
    # alter every chunk the liar stored, and make it serve them without checking (fault injection)
    altered = 0
    for p in (liar.data / "store" / "chunks").rglob("*"):
        if p.is_file():
            data = bytearray(p.read_bytes())
            data[len(data) // 2] ^= 0xFF
            p.write_bytes(bytes(data))
            altered += 1
    assert altered >= 5
    os.environ["COMMUNS_FAULT_SERVE_UNVERIFIED"] = "1"
    try:
        liar.start()
    finally:
        del os.environ["COMMUNS_FAULT_SERVE_UNVERIFIED"]
    victim = NodeProc.init(tmp_path, "victim", "--bootstrap", liar.addr, "--bootstrap", honest.addr)
    nodes.append(victim)
    victim.start()
    wait_for(lambda: any(d["id"] == mid for d in victim.get("/api/v1/datasets")), 30, what="victim lists it")
    enact_policy(victim, ["CC0-1.0"], tmp_path)
    wait_for(lambda: victim.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 120, what="completion")
    status, text = victim.api("GET", "/metrics")
    assert status == 200
    rejected = float(next(line.split()[1] for line in text.splitlines()
                          if line.startswith("communs_chunks_rejected_total ")))
    out = tmp_path / "out"
    cli(victim.data, "get", mid, str(out))
    assert same_tree(src, out)
    assert cli_json(victim.data, "verify")["ok"] is True
    assert rejected >= 1, "no altered chunk was ever detected"
    log = victim.log()
    assert f"dropped {liar.peer_id} as a source" in log, log


def _corrupt_one_chunk(node: NodeProc) -> None:
    path = next(p for p in sorted((node.data / "store" / "chunks").rglob("*")) if p.is_file())
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_on_a_running_node_repairs_replicas_and_own_data(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(12 << 20))
    mid = cli_json(a.data, "publish", str(src), "--title", "d", "--licence", "CC0-1.0")["id"]
    b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr)
    nodes.append(b)
    b.start()
    wait_for(lambda: any(d["id"] == mid for d in b.get("/api/v1/datasets")), 30, what="b lists it")
    enact_policy(b, ["CC0-1.0"], tmp_path)
    wait_for(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 60, what="b's replica")
    # a replica loses a chunk: verify (node running) quarantines it, replication fetches it again
    _corrupt_one_chunk(b)
    bad = cli(b.data, "verify", "--json", check=False)
    assert bad.returncode != 0 and '"bad"' in bad.stdout
    wait_for(lambda: cli(b.data, "verify", check=False).returncode == 0
             and b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 60, what="b to repair its replica")
    # the publisher loses a chunk of its own dataset: fetched back from b, and it stays `own`
    _corrupt_one_chunk(a)
    assert cli(a.data, "verify", check=False).returncode != 0
    wait_for(lambda: cli(a.data, "verify", check=False).returncode == 0, 60, what="a to repair its own data")
    assert a.get(f"/api/v1/datasets/{mid}")["state"] == "own"
    out = tmp_path / "out"
    cli(a.data, "get", mid, str(out))
    assert same_tree(src, out)
    assert a.stop() == 0 and b.stop() == 0
