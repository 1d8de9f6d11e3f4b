"""Issue 18: a dataset's lifecycle across real node processes, beyond the operator's day (test_operators_day.py,
which walks publishing, cancelling, retracting, kept versions and pruning once): a retraction travelling by
gossip and sync, kept where the policy says keep_retracted, never forged or replayed; duplicates needing
--force; disk figures and a damaged own dataset; verify during a replication."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from communs.protocol import encoding, ids
from communs.protocol.retraction import Retraction

from tests.nodes import NodeProc, cli, cli_json, wait_for


def enact(node: NodeProc, rules: str, tmp: Path, tag: str) -> None:
    """The node's sole founder proposes RULES and votes yes: a full roster closes the vote at once."""
    path = tmp / f"{node.data.name}-{tag}.toml"
    path.write_text(rules)
    key = str(node.data / "operator.key")
    pid = cli_json(node.data, "propose", "--key", key, "--kind", "policy", "--file", str(path),
                   "--closes-in", "1h")["id"]
    cli(node.data, "vote", pid, "yes", "--key", key)
    wait_for(lambda: cli_json(node.data, "policy")["proposal"] == pid, 15, what=f"{node.data.name}'s policy {tag}")


def states(node: NodeProc) -> dict[str, str]:
    return {d["id"]: d["state"] for d in node.get("/api/v1/datasets")}


def chunk_files(node: NodeProc) -> set[str]:
    return {p.name for p in (node.data / "store" / "chunks").rglob("*") if p.is_file() and len(p.name) == 64}


def held_retraction(node: NodeProc, dataset: bytes) -> bytes:
    with sqlite3.connect(node.data / "catalog.sqlite") as db:
        row = db.execute("SELECT value FROM kv WHERE key = ?", ("retraction:" + dataset.hex(),)).fetchone()
    assert row is not None, "no retraction held"
    return bytes(row[0])


def plant_retraction(node: NodeProc, dataset: bytes, raw: bytes) -> None:
    """Store a retraction in a stopped node's catalog as if it had accepted it (a lying node serves it on)."""
    with sqlite3.connect(node.data / "catalog.sqlite") as db:
        db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", ("retraction:" + dataset.hex(), raw))


def test_retraction_travels_releases_and_cannot_be_forged_or_replayed(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr)
    c = NodeProc.init(tmp_path, "c", "--bootstrap", a.addr)
    nodes.extend([b, c])
    b.start()
    c.start()
    enact(b, 'accept_licences = ["CC0-1.0"]\n', tmp_path, "cc0")
    enact(c, 'accept_licences = ["CC0-1.0"]\nkeep_retracted = true\n', tmp_path, "cc0-keep")
    src = tmp_path / "src"
    for name in ("oops", "fine"):
        (src / name).mkdir(parents=True)
        (src / name / "data.bin").write_bytes(os.urandom(3 << 20))
    oops1 = cli_json(a.data, "publish", str(src / "oops"), "--title", "oops", "--licence", "CC0-1.0")
    (src / "oops" / "more.txt").write_text("a second version\n")
    oops2 = cli_json(a.data, "publish", str(src / "oops"), "--title", "oops", "--licence", "CC0-1.0",
                     "--dataset", oops1["dataset"])
    fine = cli_json(a.data, "publish", str(src / "fine"), "--title", "fine", "--licence", "CC0-1.0")
    versions = {oops1["id"], oops2["id"]}
    for n in (b, c):
        wait_for(lambda n=n: {states(n).get(m) for m in [*versions, fine["id"]]} == {"complete"}, 90,
                 what=f"{n.data.name} to replicate everything")
    oops_chunks = {ids.parse_cid(ch["id"]).hex() for v in versions
                   for f in b.get(f"/api/v1/datasets/{v}")["files"] for ch in f["chunks"]}
    assert oops_chunks <= chunk_files(b) and oops_chunks <= chunk_files(c)

    out = cli(a.data, "retract", oops2["id"], "--reason", "published by mistake").stdout
    assert "2 version(s)" in out
    for n in (a, b, c):
        wait_for(lambda n=n: {states(n)[m] for m in versions} == {"retracted"}, 60,
                 what=f"{n.data.name} to mark both versions retracted")
        assert states(n)[fine["id"]] in ("own", "complete")
    assert "(by gossip from" in b.log() + c.log(), "the retraction did not travel by gossip"
    reason = {d["id"]: d["reason"] for d in b.get("/api/v1/datasets")}[oops1["id"]]
    assert "published by mistake" in reason
    # b releases the chunks, c keeps them (keep_retracted)
    wait_for(lambda: not (oops_chunks & chunk_files(b)), 30, what="b to release the retracted chunks")
    assert oops_chunks <= chunk_files(c)
    # get refuses a retracted version by default; --force writes it where the chunks are kept
    refused = cli(c.data, "get", oops2["id"], str(tmp_path / "out-c"), check=False)
    assert refused.returncode != 0 and "retracted" in refused.stderr
    cli(c.data, "get", oops2["id"], str(tmp_path / "out-c"), "--force")
    assert (tmp_path / "out-c" / "data.bin").read_bytes() == (src / "oops" / "data.bin").read_bytes()
    # a node that joins later learns the versions and their retraction by catalog sync alone
    d = NodeProc.init(tmp_path, "d", "--bootstrap", a.addr)
    nodes.append(d)
    d.start()
    wait_for(lambda: {states(d).get(m) for m in versions} == {"retracted"}, 90,
             what="d to learn the retraction by sync")
    assert d.get("/api/v1/status")["retractions"]["applied"] >= 1 and "(by catalog sync with" in d.log()
    assert d.stop() == 0
    assert cli_json(b.data, "verify")["ok"] is True

    # A lying node (b) serves a forged retraction of `fine` (signed by b's key) and a replayed one (a's
    # genuine retraction with its dataset id changed to `fine`'s): c refuses both at sync, `fine` stays.
    fine_ds = ids.parse_cid(fine["dataset"])
    genuine = held_retraction(a, ids.parse_cid(oops1["dataset"]))
    replayed = encoding.encode({**encoding.decode(genuine), "dataset": fine_ds})
    assert b.stop() == 0
    from communs.node.datadir import open_folder

    forged = Retraction.create(open_folder(b.data).node_key, dataset=fine_ds, reason="forged", created=1)
    plant_retraction(b, fine_ds, forged.encode())
    plant_retraction(b, os.urandom(32), replayed)  # served under another slot of b's table
    b.start()
    # (a restarted node's new address may take a few dials: issue 18's peers half, done elsewhere)
    wait_for(lambda: c.api("POST", "/api/v1/peers", {"addr": b.addr})[0] == 200, 60, interval=1.0,
             what="c to connect to b")
    wait_for(lambda: c.get("/api/v1/status")["retractions"]["refused"] >= 2, 120, interval=0.5,
             what="c to sync with b and refuse both planted retractions")
    assert states(c)[fine["id"]] == "complete" and states(a)[fine["id"]] == "own"
    for n in (a, b, c):
        assert n.stop() == 0


def test_a_duplicate_needs_force_and_a_publish_says_what_it_stored(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    """(Interrupting a publish is a step of the operator's day, test_operators_day.py.)"""
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    # the same files twice under the same title: refused without --force, and says what it stored
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.bin").write_bytes(os.urandom(3 << 20))
    (folder / "b.txt").write_text("hello\n")
    first = cli(a.data, "publish", str(folder), "--title", "twice", "--licence", "CC0-1.0")
    assert "stored 2 file(s)" in first.stderr and "0 bytes deduplicated" in first.stderr, first.stderr
    done = [j for j in a.get("/api/v1/publishing") if j["state"] == "done"][-1]
    status, body = a.api("DELETE", f"/api/v1/publishing/{done['id']}")
    assert status == 409 and first.stdout.strip() in body["error"]  # too late to cancel: retract instead
    again = cli(a.data, "publish", str(folder), "--title", "twice", "--licence", "CC0-1.0", check=False)
    assert again.returncode != 0 and "already published" in again.stderr and "--force" in again.stderr
    assert len(a.get("/api/v1/datasets")) == 1
    size = (3 << 20) + 6
    forced = cli_json(a.data, "publish", str(folder), "--title", "twice", "--licence", "CC0-1.0", "--force")
    assert forced["stored"]["new_chunks"] == 0 and forced["stored"]["deduplicated_bytes"] == size
    assert len(a.get("/api/v1/datasets")) == 2
    # another title, or changed files, are not duplicates
    cli(a.data, "publish", str(folder), "--title", "other title", "--licence", "CC0-1.0")
    (folder / "b.txt").write_text("changed\n")
    changed = cli_json(a.data, "publish", str(folder), "--title", "twice", "--licence", "CC0-1.0")
    assert changed["stored"]["new_chunks"] == 1
    assert a.stop() == 0


def test_status_and_metrics_report_disk_and_a_damaged_own_dataset_says_so(tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    src = tmp_path / "d"
    src.mkdir()
    (src / "x.bin").write_bytes(os.urandom(2 << 20))
    pub = cli_json(a.data, "publish", str(src), "--title", "mine", "--licence", "CC0-1.0")
    disk = a.get("/api/v1/status")["disk"]
    assert disk["store_bytes"] == 2 << 20 and disk["quota_bytes"] is None
    assert disk["free_bytes"] is not None and disk["free_bytes"] > 0
    assert "disk      2097152 bytes stored" in cli(a.data, "status").stdout
    enact(a, 'accept_licences = ["CC0-1.0"]\nstorage_quota_bytes = 1000000000\n', tmp_path, "quota")
    assert a.get("/api/v1/status")["disk"]["quota_bytes"] == 1_000_000_000
    status, text = a.api("GET", "/metrics")
    assert status == 200
    assert 'communs_disk_bytes{what="store"} 2.097152e+06' in text and 'communs_disk_bytes{what="quota"} 1e+09' in text
    assert 'communs_disk_bytes{what="free"}' in text
    [entry] = a.get("/api/v1/datasets")
    assert entry["damaged"] is False and entry["reason"] == "published here"
    # a chunk of the own dataset is lost: verify says so, and the dataset shows as damaged
    lost = sorted((a.data / "store" / "chunks").rglob("*"))
    victim = next(p for p in lost if p.is_file() and len(p.name) == 64)
    victim.unlink()
    assert cli(a.data, "verify", check=False).returncode != 0
    [entry] = a.get("/api/v1/datasets")
    assert entry["id"] == pub["id"] and entry["state"] == "own" and entry["damaged"] is True
    assert "DAMAGED" in entry["reason"]
    assert "DAMAGED" in cli(a.data, "datasets").stdout
    assert a.stop() == 0


def test_verify_during_a_replication_raises_no_false_alarm(tmp_path: Path, nodes, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr)
    nodes.append(b)
    monkeypatch.setenv("COMMUNS_FAULT_PAUSE_AT", "replication-chunk:0.1")  # b stores ~10 chunks a second
    b.start()
    monkeypatch.delenv("COMMUNS_FAULT_PAUSE_AT")
    src = tmp_path / "src"
    src.mkdir()
    for n in range(3):
        (src / f"f{n}.bin").write_bytes(os.urandom(8 << 20))
    small = tmp_path / "small"
    small.mkdir()
    (small / "s.bin").write_bytes(os.urandom(1 << 20))
    big = cli_json(a.data, "publish", str(src), "--title", "big", "--licence", "CC0-1.0")
    first = cli_json(a.data, "publish", str(small), "--title", "small", "--licence", "CC0-1.0")
    wait_for(lambda: len(b.get("/api/v1/datasets")) == 2, 60, what="b to learn both manifests")
    enact(b, 'accept_licences = ["CC0-1.0"]\n', tmp_path, "cc0")
    wait_for(lambda: states(b)[first["id"]] == "complete", 60, what="b to complete the small dataset")
    runs = 0
    while states(b)[big["id"]] != "complete":
        report = cli(b.data, "verify", "--json", check=False)
        assert report.returncode == 0, report.stdout + report.stderr
        runs += 1
        assert runs < 200, "the replication did not complete"
    report = cli_json(b.data, "verify")
    assert report["ok"] and report["missing"] == [] and report["bad"] == []
    assert runs >= 1, "no verify ran during the replication"
    assert "fetching them again" not in b.log() and "lost chunks" not in b.log()
    assert states(b)[big["id"]] == "complete" and states(b)[first["id"]] == "complete"
    for n in (a, b):
        assert n.stop() == 0
