"""Issue 3 through a running node: publish, versions, dedup, get, verify, and bad input."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.nodes import NodeProc, cli, cli_json, wait_for


def chunk_files(node: NodeProc) -> set[str]:
    return {p.name for p in (node.data / "store" / "chunks").rglob("*") if p.is_file()}


def test_publish_get_versions_and_dedup(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    blob = bytearray(os.urandom(20 << 20))
    (src / "big.bin").write_bytes(blob)
    (src / "deep" / "er" / "note.txt").write_text("héllo\n")
    (src / "empty.txt").write_bytes(b"")
    v1 = cli_json(a.data, "publish", str(src), "--title", "Trees", "--licence", "CC-BY-4.0",
                  "--description", "street trees", "--keyword", "trees", "--keyword", "city")
    assert v1["version"] == 1 and v1["id"].startswith("b") and v1["dataset"].startswith("b")
    before = chunk_files(a)
    # a few bytes changed in the middle: a new version stores only the changed chunks
    blob[10 << 20: (10 << 20) + 4] = b"XXXX"
    (src / "big.bin").write_bytes(blob)
    v2 = cli_json(a.data, "publish", str(src), "--title", "Trees", "--licence", "CC-BY-4.0",
                  "--dataset", v1["dataset"])
    assert v2["version"] == 2 and v2["dataset"] == v1["dataset"]
    added = chunk_files(a) - before
    assert 1 <= len(added) <= 3, f"{len(added)} new chunks for a 4-byte change"
    listing = {d["id"]: d for d in cli_json(a.data, "datasets")}
    assert listing[v1["id"]]["state"] == "own" and listing[v2["id"]]["state"] == "own"
    full = a.get(f"/api/v1/datasets/{v2['id']}")
    assert full["prev"] == v1["id"] and full["keywords"] == []
    assert sorted(f["path"] for f in full["files"]) == ["big.bin", "deep/er/note.txt", "empty.txt"]
    assert full["size"] == len(blob) + len("héllo\n".encode())
    out = tmp_path / "out"
    cli(a.data, "get", v2["id"], str(out))
    assert (out / "big.bin").read_bytes() == bytes(blob)
    assert (out / "deep" / "er" / "note.txt").read_text() == "héllo\n"
    assert (out / "empty.txt").read_bytes() == b""
    refused = cli(a.data, "get", v2["id"], str(out), check=False)
    assert refused.returncode != 0 and "already exists" in refused.stderr
    cli(a.data, "get", v2["id"], str(out), "--force")
    assert cli_json(a.data, "verify")["ok"] is True


def test_empty_file_and_empty_folder_are_datasets(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    (tmp_path / "e").mkdir()
    (tmp_path / "z.txt").write_bytes(b"")
    r1 = cli_json(a.data, "publish", str(tmp_path / "e"), "--title", "empty", "--licence", "CC0-1.0")
    r2 = cli_json(a.data, "publish", str(tmp_path / "z.txt"), "--title", "zero", "--licence", "CC0-1.0")
    assert a.get(f"/api/v1/datasets/{r1['id']}")["files"] == []
    assert a.get(f"/api/v1/datasets/{r2['id']}")["files"][0]["size"] == 0
    out = tmp_path / "o"
    cli(a.data, "get", r2["id"], str(out))
    assert (out / "z.txt").read_bytes() == b""


def _publish_fails(node: NodeProc, path: Path, licence: str = "CC0-1.0", *extra: str) -> str:
    before = node.get("/api/v1/datasets")
    chunks = chunk_files(node)
    proc = cli(node.data, "publish", str(path), "--title", "t", "--licence", licence, *extra, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert node.get("/api/v1/datasets") == before, "something was half-published"
    assert chunk_files(node) == chunks
    return proc.stderr


def test_publish_refuses_bad_paths(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    d1 = tmp_path / "escape"
    d1.mkdir()
    (d1 / "link").symlink_to(outside)
    # links and special files are never followed: refused with --refuse-special, else left out and listed (issue 18)
    assert "symbolic link" in _publish_fails(a, d1, "CC0-1.0", "--refuse-special")
    left = cli_json(a.data, "publish", str(d1), "--title", "t", "--licence", "CC0-1.0")
    assert left["skipped"] == [{"path": "link", "why": "symbolic link"}]
    assert a.get(f"/api/v1/datasets/{left['id']}")["files"] == []
    d2 = tmp_path / "fifo"
    d2.mkdir()
    os.mkfifo(d2 / "pipe")
    assert "named pipe" in _publish_fails(a, d2, "CC0-1.0", "--refuse-special")
    d3 = tmp_path / "sock"
    d3.mkdir()
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d3 / "s"))
    try:
        assert "socket" in _publish_fails(a, d3, "CC0-1.0", "--refuse-special")
    finally:
        s.close()
    if os.geteuid() != 0:  # root reads anything; the check is still in place
        d4 = tmp_path / "unreadable"
        d4.mkdir()
        (d4 / "f").write_text("x")
        (d4 / "f").chmod(0)
        assert "cannot read" in _publish_fails(a, d4)
    assert "does not exist" in _publish_fails(a, tmp_path / "missing")
    ok = tmp_path / "ok.txt"
    ok.write_text("x")
    err = _publish_fails(a, ok, licence="Not-A-Licence-1.0")
    assert "Not-A-Licence-1.0" in err
    # a symlink, even one that stays inside the folder, is left out and listed (issue 18)
    d5 = tmp_path / "inside"
    d5.mkdir()
    (d5 / "real.txt").write_text("real")
    (d5 / "alias.txt").symlink_to(d5 / "real.txt")
    proc = cli(a.data, "publish", str(d5), "--title", "links", "--licence", "CC0-1.0")
    assert "1 entr(ies) left out" in proc.stderr and "alias.txt  (symbolic link)" in proc.stderr
    r = proc.stdout.strip()
    assert [f["path"] for f in a.get(f"/api/v1/datasets/{r}")["files"]] == ["real.txt"]


def test_api_errors(make_node) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    for body, status, words in [
        ({"title": "t", "licence": "CC0-1.0"}, 400, "path"),
        ({"path": "/tmp/communs-nonexistent/x", "title": "t", "licence": "CC0-1.0"}, 400, "does not exist"),
        # outside [publish] allowed_paths (default: home and temporary folder), existing or not (issue 12)
        ({"path": "/nonexistent", "title": "t", "licence": "CC0-1.0"}, 403, "outside the folders"),
        ({"path": "/proc/self/environ", "title": "t", "licence": "CC0-1.0"}, 403, "pseudo-file"),
        ({"path": "/tmp", "title": 5, "licence": "CC0-1.0"}, 400, "title"),
        ({"path": "/tmp", "title": "t", "licence": "CC0-1.0", "bogus": 1}, 400, "unknown"),
        ({"path": "/tmp", "title": "t", "licence": "CC0-1.0", "dataset": "nope"}, 400, "dataset id"),
    ]:
        got, answer = a.api("POST", "/api/v1/datasets", body)
        assert got == status and words in answer["error"], (body, got, answer)
    got, answer = a.api("POST", "/api/v1/datasets", raw=b"{not json", headers={"Content-Type": "application/json"})
    assert got == 400 and "JSON" in answer["error"]
    got, answer = a.api("GET", "/api/v1/datasets/bafkr4ibddtrtyil3jxutrwalrtntquh6lbuhmddgndkvowvt2skwc4e7oa")
    assert got == 404
    got, answer = a.api("GET", "/api/v1/datasets/not-a-cid")
    assert got == 400


@pytest.mark.slow
def test_kill_during_publish_leaves_a_consistent_node(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        for _ in range(40):
            fh.write(os.urandom(8 << 20))  # 320 MiB: long enough to kill in the middle
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "communs.node.cli.main", "publish", str(big), "--title", "big",
                             "--licence", "CC0-1.0", "--data", str(a.data)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    wait_for(lambda: any(j["bytes_done"] > 0 for j in a.get("/api/v1/publishing")), 30, interval=0.02,
             what="publishing to start")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(5)
    proc.wait(30)
    assert proc.returncode != 0
    a.start()
    assert a.get("/api/v1/datasets") == []
    # the chunks written before the kill are referenced by nothing: removed at start
    wait_for(lambda: not chunk_files(a), 30, what="the interrupted publish's chunks to be removed")
    assert cli_json(a.data, "verify")["ok"] is True
    t0 = time.monotonic()
    r = cli_json(a.data, "publish", str(big), "--title", "big", "--licence", "CC0-1.0", timeout=300)
    assert time.monotonic() - t0 < 300
    out = tmp_path / "out"
    cli(a.data, "get", r["id"], str(out))
    assert (out / "big.bin").read_bytes() == big.read_bytes()
    assert cli_json(a.data, "verify")["ok"] is True
