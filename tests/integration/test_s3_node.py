"""Issue 19: real node processes whose chunks live in a real SeaweedFS bucket."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from communs.protocol import ids

from tests.integration.test_replication import enact_policy, same_tree
from tests.nodes import COMMUNS, NodeProc, cli, cli_json, wait_for
from tests.s3server import ACCESS_KEY, SECRET_KEY, WeedServer

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def s3_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The nodes (subprocesses) take their S3 credentials from the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


def s3_args(weed: WeedServer, bucket: str, prefix: str = "node") -> tuple[str, ...]:
    return ("--storage", "s3", "--s3-endpoint", weed.endpoint, "--s3-bucket", bucket, "--s3-prefix", prefix)


def objects(weed: WeedServer, bucket: str, prefix: str = "node/") -> dict[str, int]:
    """Chunk objects directly under `prefix` (CID -> size), read with a separate client."""
    c = weed.client()
    out: dict[str, int] = {}
    token = None
    while True:
        kw = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
        if token:
            kw["ContinuationToken"] = token
        page = c.list_objects_v2(**kw)
        for o in page.get("Contents", []):
            if o["Key"] != prefix:  # SeaweedFS lists an emptied folder as the object "prefix/"
                out[o["Key"][len(prefix):]] = o["Size"]
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated"):
            return out


def manifest_chunks(node: NodeProc, mid: str) -> set[str]:
    m = node.get(f"/api/v1/datasets/{mid}")
    return {ch["id"] for f in m["files"] for ch in f["chunks"]}


def tree(root: Path, size: int) -> Path:
    root.mkdir(parents=True)
    (root / "data.bin").write_bytes(os.urandom(size))
    (root / "notes.txt").write_text("a small file\n")
    return root


def test_init_refuses_bad_credentials_and_a_missing_bucket(weed: WeedServer, bucket: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    missing = cli(tmp_path / "n1", "init", *s3_args(weed, "no-such-bucket"), check=False)
    assert missing.returncode != 0 and "the bucket 'no-such-bucket' does not exist" in missing.stderr
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    bad = cli(tmp_path / "n2", "init", *s3_args(weed, bucket), check=False)
    assert bad.returncode != 0 and "refused the credentials" in bad.stderr
    assert not (tmp_path / "n2" / "config.toml").exists()
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    none = cli(tmp_path / "n3", "init", *s3_args(weed, bucket), check=False)
    assert none.returncode != 0 and "needs credentials" in none.stderr
    # a credentials file readable by others is refused; mode 0600 works and is what the config names
    creds = tmp_path / "s3.credentials"
    creds.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    creds.chmod(0o644)
    loose = cli(tmp_path / "n4", "init", *s3_args(weed, bucket), "--s3-credentials-file", str(creds), check=False)
    assert loose.returncode != 0 and "chmod 600" in loose.stderr
    creds.chmod(0o600)
    cli(tmp_path / "n4", "init", *s3_args(weed, bucket), "--s3-credentials-file", str(creds))
    text = (tmp_path / "n4" / "config.toml").read_text()
    assert "[storage]" in text and 'backend = "s3"' in text and f'credentials_file = "{creds}"' in text
    assert SECRET_KEY not in text


def test_publish_get_verify_release_on_s3(weed: WeedServer, bucket: str, tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a", *s3_args(weed, bucket))
    nodes.append(a)
    a.start()
    src = tree(tmp_path / "src", 9 << 20)
    mid = cli_json(a.data, "publish", str(src), "--title", "s3", "--licence", "CC0-1.0")["id"]
    chunks = manifest_chunks(a, mid)
    assert set(objects(weed, bucket)) == chunks
    assert not (a.data / "store" / "chunks").exists() or not any((a.data / "store" / "chunks").rglob("*"))
    out = tmp_path / "out"
    cli(a.data, "get", mid, str(out))
    assert same_tree(src, out)
    report = cli_json(a.data, "verify")
    assert report["ok"] is True
    assert a.stop() == 0
    # an object the catalog does not know, that no interrupted publish wrote (its journal would say so), is
    # kept and reported at start: it may be the only copy of own data after a lost catalog (issue 12)
    stray = os.urandom(5000)
    stray_cid = ids.cid_str(ids.digest(stray))
    weed.client().put_object(Bucket=bucket, Key="node/" + stray_cid, Body=stray)
    a.start()
    wait_for(lambda: "kept 1 chunk file(s) that the catalog does not know" in a.log(), 30,
             what="the start-up check to report the unknown object")
    assert set(objects(weed, bucket)) == chunks | {stray_cid}
    assert a.stop() == 0


def test_replication_s3_to_folder_and_back_with_an_altered_object(weed: WeedServer, bucket: str, tmp_path: Path,
                                                                  nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a", *s3_args(weed, bucket, "a"))
    nodes.append(a)
    a.start()
    src = tree(tmp_path / "src", 12 << 20)
    mid = cli_json(a.data, "publish", str(src), "--title", "from-s3", "--licence", "CC0-1.0")["id"]
    b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr)
    nodes.append(b)
    b.start()
    wait_for(lambda: any(d["id"] == mid for d in b.get("/api/v1/datasets")), 30, what="b lists it")
    enact_policy(b, ["CC0-1.0"], tmp_path)
    wait_for(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 90, what="b (folder) replicates")
    out = tmp_path / "out-b"
    cli(b.data, "get", mid, str(out))
    assert same_tree(src, out)
    # and back: b publishes, a (S3) replicates it into the bucket
    src2 = tree(tmp_path / "src2", 6 << 20)
    mid2 = cli_json(b.data, "publish", str(src2), "--title", "from-fs", "--licence", "CC0-1.0")["id"]
    wait_for(lambda: any(d["id"] == mid2 for d in a.get("/api/v1/datasets")), 30, what="a lists it")
    enact_policy(a, ["CC0-1.0"], tmp_path)
    wait_for(lambda: a.get(f"/api/v1/datasets/{mid2}")["state"] == "complete", 90, what="a (S3) replicates")
    assert manifest_chunks(a, mid2) <= set(objects(weed, bucket, "a/"))
    out2 = tmp_path / "out-a"
    cli(a.data, "get", mid2, str(out2))
    assert same_tree(src2, out2)
    # an object of a's own dataset altered behind the node's back: verify finds it, replication repairs it
    victim = sorted(manifest_chunks(a, mid))[0]
    weed.client().put_object(Bucket=bucket, Key="a/" + victim, Body=b"altered behind the node's back")
    bad = cli(a.data, "verify", "--json", check=False)
    assert bad.returncode != 0 and victim in bad.stdout
    wait_for(lambda: cli(a.data, "verify", check=False).returncode == 0, 90, what="a to repair its own data")
    body = weed.client().get_object(Bucket=bucket, Key="a/" + victim)["Body"].read()
    assert ids.cid_str(ids.digest(body)) == victim
    assert a.get(f"/api/v1/datasets/{mid}")["state"] == "own"
    out3 = tmp_path / "out-a-own"
    cli(a.data, "get", mid, str(out3))
    assert same_tree(src, out3)
    # release: a no longer wants b's dataset; its objects go from the bucket
    only2 = manifest_chunks(a, mid2) - manifest_chunks(a, mid)
    enact_policy(a, ["MIT"], tmp_path)
    wait_for(lambda: not (only2 & set(objects(weed, bucket, "a/"))), 60, what="a to delete the released objects")
    assert a.stop() == 0 and b.stop() == 0


def test_sigkill_mid_publish_then_publish_again(weed: WeedServer, bucket: str, tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a", *s3_args(weed, bucket))
    nodes.append(a)
    a.start()
    src = tree(tmp_path / "src", 96 << 20)
    pub = subprocess.Popen([*COMMUNS, "publish", str(src), "--title", "big", "--licence", "CC0-1.0", "--json",
                            "--data", str(a.data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(objects(weed, bucket)) >= 3, 60, interval=0.05, what="some objects uploaded")
        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        a.proc = None
    finally:
        pub.wait(60)
    left = set(objects(weed, bucket))
    assert left, "nothing was uploaded before the kill"
    a.start()
    wait_for(lambda: not objects(weed, bucket), 60, what="the unmarked objects to be removed at start")
    mid = cli_json(a.data, "publish", str(src), "--title", "big", "--licence", "CC0-1.0", timeout=300)["id"]
    assert set(objects(weed, bucket)) == manifest_chunks(a, mid)
    out = tmp_path / "out"
    cli(a.data, "get", mid, str(out), timeout=300)
    assert same_tree(src, out)
    assert a.stop() == 0


def _replicate_into_s3(tmp_path: Path, nodes: list[NodeProc], weed: WeedServer, bucket: str,
                       size: int) -> tuple[NodeProc, NodeProc, str, Path]:
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    src = tree(tmp_path / "src", size)
    mid = cli_json(a.data, "publish", str(src), "--title", "big", "--licence", "CC0-1.0", timeout=300)["id"]
    b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr, *s3_args(weed, bucket))
    nodes.append(b)
    b.start()
    wait_for(lambda: any(d["id"] == mid for d in b.get("/api/v1/datasets")), 30, what="b lists it")
    enact_policy(b, ["CC0-1.0"], tmp_path)
    return a, b, mid, src


def test_sigkill_mid_replication_into_s3_resumes(weed: WeedServer, bucket: str, tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    a, b, mid, src = _replicate_into_s3(tmp_path, nodes, weed, bucket, 96 << 20)
    wait_for(lambda: len(objects(weed, bucket)) >= 5, 90, interval=0.05, what="some objects replicated")
    assert b.get(f"/api/v1/datasets/{mid}")["state"] != "complete", "replication finished before the kill"
    assert b.proc is not None
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait(10)
    b.proc = None
    before = set(objects(weed, bucket))
    b.start()
    wait_for(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 180, what="b to resume and finish")
    assert before <= set(objects(weed, bucket)) == manifest_chunks(b, mid)
    out = tmp_path / "out"
    cli(b.data, "get", mid, str(out), timeout=300)
    assert same_tree(src, out)
    assert b.stop() == 0 and a.stop() == 0


def test_the_object_store_stopped_mid_transfer_is_waited_for(weed_bin: str, tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    server = WeedServer(weed_bin, tmp_path / "weed").start()
    try:
        server.make_bucket("chunks")
        a, b, mid, src = _replicate_into_s3(tmp_path, nodes, server, "chunks", 128 << 20)
        wait_for(lambda: len(objects(server, "chunks")) >= 5, 90, interval=0.05, what="some objects replicated")
        server.stop()
        wait_for(lambda: "waiting for the object store" in b.log(), 60, what="b to say why it waits")
        waiting = wait_for(lambda: b.get("/api/v1/status")["storage"]["waiting"], 30, what="status to say why")
        assert "does not answer" in waiting and server.endpoint in waiting
        assert "storage   s3; waiting for the object store" in cli(b.data, "status").stdout
        time.sleep(3)
        assert b.get(f"/api/v1/datasets/{mid}")["state"] != "complete"
        server.start()
        wait_for(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 300,
                 what="b to resume after the store came back")
        assert b.get("/api/v1/status")["storage"] == {"backend": "s3", "waiting": None}
        # no store operation gave up meanwhile (a connection closed mid-request is waited for too)
        full_log = b.log_path.read_text(errors="replace")
        assert "failed while" not in full_log and "answers again; resuming" in full_log
        out = tmp_path / "out"
        cli(b.data, "get", mid, str(out), timeout=300)
        assert same_tree(src, out)
        assert b.stop() == 0 and a.stop() == 0
    finally:
        for n in nodes:
            n.kill()
        server.stop()


def test_migrate_to_s3_resumes_after_a_kill_and_back_to_the_folder(weed: WeedServer, bucket: str, tmp_path: Path,
                                                                   nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    src = tree(tmp_path / "src", 64 << 20)
    mid = cli_json(a.data, "publish", str(src), "--title", "moved", "--licence", "CC0-1.0", timeout=300)["id"]
    chunks = manifest_chunks(a, mid)
    to_s3 = ("storage", "migrate", "--to", "s3", "--s3-endpoint", weed.endpoint, "--s3-bucket", bucket,
             "--s3-prefix", "node")
    running = cli(a.data, *to_s3, check=False)
    assert running.returncode != 0 and "the node is running; stop it" in running.stderr
    assert a.stop() == 0
    # killed part-way: nothing switched; run again: resumes, skipping what was copied
    proc = subprocess.Popen([*COMMUNS, *to_s3, "--data", str(a.data)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(objects(weed, bucket)) >= 3 or proc.poll() is not None, 120, interval=0.02,
                 what="the migration to start copying")
        assert proc.poll() is None, "the migration finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert 'backend = "s3"' not in (a.data / "config.toml").read_text()
    copied_before = len(objects(weed, bucket))
    result = subprocess.run([*COMMUNS, *to_s3, "--data", str(a.data), "--json"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["skipped"] >= copied_before and report["copied"] + report["skipped"] == report["chunks"]
    assert "migrated" in result.stderr  # progress lines
    assert 'backend = "s3"' in (a.data / "config.toml").read_text()
    assert chunks <= set(objects(weed, bucket))
    a.start()
    assert a.get(f"/api/v1/datasets/{mid}")["state"] == "own"
    out = tmp_path / "out-s3"
    cli(a.data, "get", mid, str(out), timeout=300)
    assert same_tree(src, out)
    assert cli_json(a.data, "verify")["ok"] is True
    assert a.stop() == 0
    # and back to the folder store (the old chunk files are still there: they are checked and skipped)
    for p in sorted((a.data / "store" / "chunks").rglob("*"))[-3:]:
        if p.is_file():
            p.unlink()  # a few are gone from the old folder: copied back from the bucket
    back = cli_json(a.data, "storage", "migrate", "--to", "fs", timeout=300)
    assert back["copied"] >= 1 and back["chunks"] == len(chunks)
    assert "backend" not in (a.data / "config.toml").read_text() or \
        'backend = "fs"' in (a.data / "config.toml").read_text()
    a.start()
    out2 = tmp_path / "out-fs"
    cli(a.data, "get", mid, str(out2), timeout=300)
    assert same_tree(src, out2)
    assert a.stop() == 0
    again = cli(a.data, "storage", "migrate", "--to", "fs", check=False)
    assert again.returncode != 0 and "already keeps its chunks in the folder store" in again.stderr


def test_a_bucket_at_its_configured_capacity_stops_replication_like_a_full_disk(
        weed: WeedServer, bucket: str, tmp_path: Path, nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    src = tree(tmp_path / "src", 14 << 20)
    mid = cli_json(a.data, "publish", str(src), "--title", "big", "--licence", "CC0-1.0")["id"]
    b = NodeProc.init(tmp_path, "b", "--bootstrap", a.addr, *s3_args(weed, bucket), "--s3-capacity-bytes",
                      str(6 << 20))
    nodes.append(b)
    b.start()
    wait_for(lambda: any(d["id"] == mid for d in b.get("/api/v1/datasets")), 30, what="b lists it")
    enact_policy(b, ["CC0-1.0"], tmp_path)
    rep = wait_for(lambda: next((w for w in b.get("/api/v1/replication")["waiting"]
                                 if w["id"] == mid and "disk is full" in w["reason"]), None),
                   90, what="replication to stop at the bucket's capacity")
    assert 0 < rep["bytes_done"] < rep["bytes_total"]
    assert 0 < sum(objects(weed, bucket).values()) <= 6 << 20
    assert b.stop() == 0
    # the operator gives the node more room: it resumes from what is stored and completes
    config = b.data / "config.toml"
    config.write_text(config.read_text().replace(f"capacity_bytes = {6 << 20}", f"capacity_bytes = {1 << 30}"))
    b.start()
    wait_for(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 120, what="b to complete")
    out = tmp_path / "out"
    cli(b.data, "get", mid, str(out))
    assert same_tree(src, out)
    assert b.stop() == 0 and a.stop() == 0


def test_migrate_stops_at_a_corrupt_chunk_and_switches_nothing(weed: WeedServer, bucket: str, tmp_path: Path,
                                                               nodes) -> None:  # type: ignore[no-untyped-def]
    a = NodeProc.init(tmp_path, "a")
    nodes.append(a)
    a.start()
    src = tree(tmp_path / "src", 3 << 20)
    cli_json(a.data, "publish", str(src), "--title", "d", "--licence", "CC0-1.0")
    assert a.stop() == 0
    victim = next(p for p in sorted((a.data / "store" / "chunks").rglob("*")) if p.is_file())
    victim.write_bytes(b"rotten" + victim.read_bytes()[6:])
    before = (a.data / "config.toml").read_text()
    bad = cli(a.data, "storage", "migrate", "--to", "s3", "--s3-endpoint", weed.endpoint, "--s3-bucket", bucket,
              check=False)
    assert bad.returncode != 0
    assert f"chunk {ids.cid_str(bytes.fromhex(victim.name))} is corrupt in the current store" in bad.stderr
    assert (a.data / "config.toml").read_text() == before
    assert victim.exists()  # left for verify and repair, not quarantined by the move
