"""Issue 18, an operator's day, in the order the issue tells it, on two real node processes.

Morning: a real folder (executables, empty folders, a dangling link, names that differ only by case) is
published on a, every collision named in one go; `get` gives it back as it was, on a and on b (a tree
walk: bytes, executable bits, times, empty folders). A publish interrupted by Ctrl-C keeps nothing. A
dataset published by mistake is retracted: both nodes mark it and release its chunks. Midday: a restarts
on a new port and b sees it again within 10 s. Afternoon: four versions of a dataset, b keeps the latest
2 (its voted keep_versions), then 2 of 5; a, the publisher, keeps all of them until its operator prunes.
Evening: a new version of the folder reaches b, and `get` by dataset id takes it.

The deeper cases of each step live beside their own code: forged and replayed retractions, keep_retracted
and catalog sync in test_lifecycle.py, duplicates needing --force there too, `peers add` in
test_peers_add.py, the id forms in test_ids.py.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from communs.protocol import ids

from tests.integration.test_lifecycle import chunk_files, enact, states
from tests.nodes import COMMUNS, NodeProc, cli, cli_json, wait_for


def tree(root: Path) -> dict[str, Any]:
    """Every entry under `root`, by relative path: folders, and files with bytes, executable bit and time."""
    out: dict[str, Any] = {}
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(folder) / name
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link"
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "folder"
            else:
                out[rel] = (p.read_bytes(), bool(st.st_mode & 0o111), st.st_mtime_ns)
    return out


def make_folder(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "run.sh").chmod(0o750)
    (root / "tools").mkdir()
    (root / "tools" / "build").write_text("#!/bin/sh\nmake\n")
    (root / "tools" / "build").chmod(0o755)
    (root / "data" / "2024").mkdir(parents=True)
    (root / "data" / "2024" / "a.csv").write_text("x,y\n1,2\n")
    (root / "empty" / "nested" / "deep").mkdir(parents=True)
    (root / "also-empty").mkdir()
    (root / "README").write_text("upper")
    (root / "readme").write_text("lower")
    (root / "Notes").mkdir()
    (root / "Notes" / "n.txt").write_text("n")
    (root / "notes").mkdir()
    (root / "notes" / "m.txt").write_text("m")
    (root / "dangling").symlink_to(root / "gone")
    for i, p in enumerate(sorted(q for q in root.rglob("*") if q.is_file() and not q.is_symlink())):
        os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000 + i * 1_000_000_007))


def chunks_of(node: NodeProc, *manifests: str) -> set[str]:
    """The chunk file names of these versions, from the node's manifests."""
    return {ids.parse_cid(ch["id"]).hex() for m in manifests
            for f in node.get(f"/api/v1/datasets/{m}")["files"] for ch in f["chunks"]}


def held_chunks(node: NodeProc) -> set[str]:
    """The chunks of every version the node holds (own or complete): all its store should hold."""
    return chunks_of(node, *[d["id"] for d in node.get("/api/v1/datasets") if d["state"] in ("own", "complete")])


def test_an_operators_day(tmp_path: Path, nodes, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    monkeypatch.setenv("COMMUNS_FAULT_PAUSE_AT", "publish-chunk:0.05")  # ~1 MiB chunks: 20 MiB/s at most
    a.start()  # until its restart at midday, a publishes slowly enough for Ctrl-C to land mid-publish
    monkeypatch.delenv("COMMUNS_FAULT_PAUSE_AT")
    b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr)
    nodes.append(b)
    b.start()
    wait_for(lambda: any(p["peer_id"] == a.peer_id for p in b.get("/api/v1/peers")), 30, what="b joins a")
    enact(b, 'accept_licences = ["CC0-1.0"]\nkeep_versions = 2\n', tmp_path, "cc0-keep2")  # b's members vote

    # ---- morning: publish a real folder; every case collision is named in one go, then published anyway
    src = tmp_path / "src"
    make_folder(src)
    first = cli(a.data, "publish", str(src), "--title", "Day", "--licence", "CC0-1.0", check=False)
    assert first.returncode != 0 and "README / readme" in first.stderr and "Notes / notes" in first.stderr
    assert "internal error" not in first.stderr and a.get("/api/v1/datasets") == []  # no traceback, nothing kept
    v1 = cli_json(a.data, "publish", str(src), "--title", "Day", "--licence", "CC0-1.0", "--skip-case-collisions")
    assert {s["path"] for s in v1["skipped"]} == {"dangling", "notes/m.txt", "readme"}
    shown = a.get(f"/api/v1/datasets/{v1['id']}")
    assert shown["schema"] == 2 and shown["folders"] == ["also-empty", "empty/nested/deep"]
    want = tree(src)
    for left_out in ("dangling", "notes", "notes/m.txt", "readme"):
        del want[left_out]
    assert want["tools/build"][1] and want["bin/run.sh"][1] and not want["README"][1]  # the walk sees modes
    assert want["empty/nested/deep"] == "folder" and want["also-empty"] == "folder"
    got = cli_json(a.data, "get", v1["dataset"], str(tmp_path / "on-a"))
    assert got["folders"] == 2 and tree(tmp_path / "on-a") == want
    # b's members want CC0: b replicates it, and `get` on b gives the folder back as it was
    wait_for(lambda: states(b).get(v1["id"]) == "complete", 90, what="b to replicate the folder")
    cli(b.data, "get", v1["dataset"][:14], str(tmp_path / "on-b"))  # a dataset id prefix, as typed by hand
    assert tree(tmp_path / "on-b") == want

    # ---- Ctrl-C on a publish: the node stops it and keeps nothing of it
    before = (states(a), chunk_files(a))
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        for _ in range(20):
            fh.write(os.urandom(10 << 20))  # 200 MiB
    proc = subprocess.Popen([*COMMUNS, "publish", str(big), "--title", "big", "--licence", "CC0-1.0",
                             "--data", str(a.data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(j["bytes_done"] > (5 << 20) for j in a.get("/api/v1/publishing")
                             if j["path"].endswith("big.bin")), 60, what="the publish to be under way")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "cancelled" in err and "nothing" in err, err
    [job] = [j for j in a.get("/api/v1/publishing") if j["path"].endswith("big.bin")]
    assert job["state"] == "cancelled" and job["bytes_done"] < job["bytes_total"]
    assert (states(a), chunk_files(a)) == before, "the cancelled publish left a dataset or chunk files"
    assert a.api("DELETE", f"/api/v1/publishing/{job['id'] + 100}")[0] == 404
    big.unlink()

    # ---- a dataset published by mistake is retracted: both nodes mark it and release its chunks
    oops_dir = tmp_path / "oops"
    oops_dir.mkdir()
    (oops_dir / "personal.bin").write_bytes(os.urandom(3 << 20))
    oops = cli_json(a.data, "publish", str(oops_dir), "--title", "oops", "--licence", "CC0-1.0")
    wait_for(lambda: states(b).get(oops["id"]) == "complete", 90, what="b to replicate the mistake")
    oops_chunks = chunks_of(b, oops["id"])
    assert oops_chunks <= chunk_files(b)
    status, body = b.api("POST", f"/api/v1/datasets/{oops['dataset']}/retraction", {"reason": "not mine"})
    assert status == 403 and "publisher" in body["error"]  # only the publisher can retract
    out = cli(a.data, "retract", oops["id"], "--reason", "published by mistake").stdout
    assert "1 version(s)" in out
    for n in (a, b):
        wait_for(lambda n=n: states(n).get(oops["id"]) == "retracted", 60, what=f"{n.data.name} to mark it retracted")
    assert "published by mistake" in {d["id"]: d["reason"] for d in b.get("/api/v1/datasets")}[oops["id"]]
    wait_for(lambda: not (oops_chunks & chunk_files(b)), 30, what="b to release the retracted chunks")
    wait_for(lambda: not (oops_chunks & chunk_files(a)), 30, what="a to release its own retracted chunks")
    refused = cli(b.data, "get", oops["id"], str(tmp_path / "oops-on-b"), check=False)
    assert refused.returncode != 0 and "retracted" in refused.stderr
    status, body = a.api("POST", f"/api/v1/datasets/{oops['dataset']}/retraction", {})
    assert status == 200 and body["versions"] == 0  # retracting again changes nothing
    assert states(a)[v1["id"]] == "own" and states(b)[v1["id"]] == "complete"

    # ---- midday: a restarts on another port (it has no bootstrap of its own: b knew only its old address)
    wait_for(lambda: (a.data / "peers.json").exists() and b.peer_id in (a.data / "peers.json").read_text(), 30,
             what="a to note b in its peer book")
    old = a.addr
    assert a.stop() == 0
    a.start()  # listen port 0: a new port (and no more slow publishing)
    assert a.addr != old
    t0 = time.monotonic()
    wait_for(lambda: any(p["peer_id"] == a.peer_id for p in b.get("/api/v1/peers")), 10,
             what="b to see a again at its new address")
    assert time.monotonic() - t0 <= 10

    # ---- afternoon: four versions; b keeps the latest 2, a (the publisher) all of them
    folder = tmp_path / "v"
    folder.mkdir()
    made: list[dict[str, str]] = []
    for n in range(1, 5):
        (folder / f"part{n}.bin").write_bytes(os.urandom(1 << 20))  # each version adds a file of its own
        (folder / "latest.bin").write_bytes(os.urandom(1 << 20))  # and replaces one: chunks of its own alone
        extra = ["--dataset", made[0]["dataset"]] if made else []
        made.append(cli_json(a.data, "publish", str(folder), "--title", "grows", "--licence", "CC0-1.0", *extra))
    vs = [m["id"] for m in made]
    wait_for(lambda: [states(b).get(i) for i in vs] == ["not-wanted", "not-wanted", "complete", "complete"], 90,
             what="b to keep versions 3 and 4 only")
    reasons = {d["id"]: d["reason"] for d in b.get("/api/v1/datasets")}
    assert "keep_versions" in reasons[vs[0]] and "keep_versions" in reasons[vs[1]]
    assert [states(a)[i] for i in vs] == ["own"] * 4  # never on the publisher's own node
    # a fifth version moves the window: version 3 goes
    (folder / "part5.bin").write_bytes(os.urandom(1 << 20))
    (folder / "latest.bin").write_bytes(os.urandom(1 << 20))
    fifth = cli_json(a.data, "publish", str(folder), "--title", "grows", "--licence", "CC0-1.0",
                     "--dataset", made[0]["dataset"])
    wait_for(lambda: states(b).get(fifth["id"]) == "complete" and states(b)[vs[2]] == "not-wanted", 90,
             what="b to keep versions 4 and 5")
    wait_for(lambda: chunk_files(b) == held_chunks(b), 30, what="b to hold exactly the chunks of what it keeps")
    assert chunks_of(b, vs[3], fifth["id"]) <= chunk_files(b)
    only_old = chunks_of(a, *vs[:3]) - chunks_of(a, vs[3], fifth["id"])  # the earlier latest.bin files
    assert len(only_old) >= 3 and not (only_old & chunk_files(b)) and only_old <= chunk_files(a)

    # a's operator asks a to release the older versions too: `communs prune`, keeping the latest 2
    refused = cli(a.data, "prune", made[0]["dataset"], check=False)  # a's policy has no keep_versions
    assert refused.returncode != 0 and "--keep N" in refused.stderr
    status, body = b.api("POST", f"/api/v1/datasets/{made[0]['dataset']}/prune", {"keep": 1})
    assert status == 403 and "another node" in body["error"]  # a replica follows its members' vote
    pruned = cli_json(a.data, "prune", made[0]["dataset"][:12], "--keep", "2")  # a prefix will do
    assert pruned["released"] == [vs[2], vs[1], vs[0]] and pruned["kept"] == [fifth["id"], vs[3]]
    after = states(a)
    assert [after[i] for i in [*vs, fifth["id"]]] == ["not-wanted"] * 3 + ["own"] * 2
    assert "operator" in {d["id"]: d["reason"] for d in a.get("/api/v1/datasets")}[vs[0]]
    wait_for(lambda: not (only_old & chunk_files(a)), 30, what="a to release the chunks only old versions used")
    assert chunk_files(a) == held_chunks(a) and chunks_of(a, vs[3], fifth["id"]) <= chunk_files(a)
    gone = cli(a.data, "get", vs[0], str(tmp_path / "v1-on-a"), check=False)
    assert gone.returncode != 0 and "not complete here" in gone.stderr
    again = cli(a.data, "prune", vs[3], "--keep", "2")  # by a manifest id of the dataset, the same request
    assert "nothing to release" in again.stdout
    assert [states(b)[i] for i in [*vs, fifth["id"]]] == ["not-wanted"] * 3 + ["complete"] * 2  # b unchanged

    # ---- evening: a new version of the folder reaches b; `get` by dataset id takes it once complete
    (src / "tools" / "build").write_text("#!/bin/sh\nmake all\n")
    v2 = cli_json(a.data, "publish", str(src), "--title", "Day", "--licence", "CC0-1.0", "--skip-case-collisions",
                  "--dataset", v1["id"][:16] + "\u2026")
    assert v2["version"] == 2 and v2["dataset"] == v1["dataset"]
    wait_for(lambda: states(b).get(v2["id"]) == "complete", 90, what="b to replicate version 2")
    got = cli_json(b.data, "get", v1["dataset"], str(tmp_path / "v2-on-b"))
    assert got["id"] == v2["id"] and (tmp_path / "v2-on-b" / "tools" / "build").read_text().endswith("make all\n")
    for n in (a, b):
        assert n.stop() == 0
