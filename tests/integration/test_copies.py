"""Issue 15: copies across the federation, on real node processes: holding claims, proof of holding, min_copies."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

from tests.nodes import NodeProc, cli, cli_json, wait_for


def fast_node(tmp: Path, name: str, *args: str, ttl: int = 8, grace: int = 1) -> NodeProc:
    """A node with short claim lifetimes and frequent challenges, so that a test sees them work."""
    node = NodeProc.init(tmp, name, *args)
    with open(node.data / "config.toml", "a") as fh:
        fh.write(f"\n[copies]\nclaim_ttl_s = {ttl}\nclaims_sync_s = 1\nchallenge_every_s = 0.3\n"
                 f"release_grace_s = {grace}\n")
    return node


def enact(node: NodeProc, tmp: Path, rules: str, want: list[str] | None = None) -> None:
    path = tmp / f"{node.data.name}-{abs(hash(rules))}.toml"
    path.write_text(rules)
    key = str(node.data / "operator.key")
    pid = cli_json(node.data, "propose", "--key", key, "--kind", "policy", "--file", str(path),
                   "--closes-in", "1h")["id"]
    cli(node.data, "vote", pid, "yes", "--key", key)
    wait_for(lambda: cli_json(node.data, "policy")["policy"]["accept_licences"] == (want or ["CC0-1.0"]), 15,
             what="policy enacted")


def holders(node: NodeProc, mid: str) -> set[str]:
    doc = node.get(f"/api/v1/datasets/{mid}/holders")
    assert doc["copies"] == len(doc["holders"]) and doc["id"] == mid
    return {h["peer_id"] for h in doc["holders"]}


def state_of(node: NodeProc, mid: str) -> str | None:
    for d in node.get("/api/v1/datasets"):
        if d["id"] == mid:
            return str(d["state"])
    return None


def start_all(tmp: Path, names: list[str], nodes: list[NodeProc], ttl: int = 8) -> list[NodeProc]:
    first = fast_node(tmp, names[0], ttl=ttl)
    nodes.append(first)
    first.start()
    out = [first]
    for name in names[1:]:
        n = fast_node(tmp, name, "--bootstrap", first.addr, ttl=ttl)
        nodes.append(n)
        n.start()
        out.append(n)
    return out


def publish(node: NodeProc, tmp: Path, name: str, size: int) -> str:
    src = tmp / "src" / name
    src.mkdir(parents=True)
    (src / "data.bin").write_bytes(os.urandom(size))
    return str(cli_json(node.data, "publish", str(src), "--title", name, "--licence", "CC0-1.0")["id"])


def test_holders_are_counted_everywhere_and_stop_counting_when_lost(tmp_path: Path, nodes: list[NodeProc]) -> None:
    a, b, c, d, e = start_all(tmp_path, ["a", "b", "c", "d", "e"], nodes)
    for n in (b, c, d):
        enact(n, tmp_path, 'accept_licences = ["CC0-1.0"]\n')
    mid = publish(a, tmp_path, "ds", 3 << 20)
    want = {n.peer_id for n in (a, b, c, d)}
    for n in (a, b, c, d, e):
        wait_for(lambda n=n: holders(n, mid) == want, 90, 0.5, what=f"{n.data.name} to count a, b, c and d")
    listed = {x["id"]: x for x in e.get("/api/v1/datasets")}
    assert listed[mid]["copies"] == 4
    assert "4 cop" in cli(e.data, "datasets").stdout
    where = cli_json(e.data, "whereis", mid)
    assert where["copies"] == 4 and {h["peer_id"] for h in where["holders"]} == want
    # a holder proves it: some node verified b's copy
    wait_for(lambda: any(h["verified_at"] for h in a.get(f"/api/v1/datasets/{mid}/holders")["holders"]
                         if h["peer_id"] == b.peer_id), 60, 0.5, what="a to verify b's copy")

    # d deletes its chunks but keeps claiming: a failed challenge stops it counting on the challengers
    for p in (d.data / "store").rglob("*"):
        if p.is_file() and len(p.name) == 64:
            p.unlink()
    wait_for(lambda: d.peer_id not in holders(a, mid), 60, 0.5, what="a to stop counting d after a challenge")
    assert "failed a proof-of-holding challenge" in a.log() + b.log() + c.log()

    # c disappears: its claims expire everywhere (TTL 8 s) without a withdrawal
    c.stop()
    for n in (a, b, e):
        wait_for(lambda n=n: c.peer_id not in holders(n, mid), 40, 0.5, what=f"{n.data.name} to expire c's claim")
    assert a.get("/api/v1/status")["copies"] == {**a.get("/api/v1/status")["copies"], "min_copies": 0,
                                                  "endangered": []}
    _, metrics = a.api("GET", "/metrics")
    for outcome in ("passed", "failed"):
        assert f'communs_challenges_total{{outcome="{outcome}"}}' in metrics
    assert 'communs_datasets_by_copies{copies="2"} 1.0' in metrics or 'communs_datasets_by_copies{copies="3"} 1.0' \
        in metrics, metrics
    # with min_copies = 5, the publisher's own dataset is endangered: named by `communs status`
    enact(a, tmp_path, 'accept_licences = ["CC0-1.0"]\nmin_copies = 5\n')
    risky = a.get("/api/v1/status")["copies"]["endangered"]
    assert [e["id"] for e in risky] == [mid] and risky[0]["copies"] < 5
    out = cli(a.data, "status").stdout
    assert "endangered" in out and mid in out, out
    code, body = a.api("GET", "/api/v1/datasets/bnotanid/holders")
    assert code == 400 and "not a usable id" in body["error"], body


def claims_bytes(node: NodeProc) -> dict[tuple[str, str], float]:
    """`communs_claims_bytes_total` of `node`, by (direction, channel)."""
    _, text = node.api("GET", "/metrics")
    out = {}
    for labels, value in re.findall(r"^communs_claims_bytes_total\{(.*)\} (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="(\w+)"', labels))
        out[got["direction"], got["channel"]] = float(value)
    return out


def test_claims_traffic_is_counted_in_bytes_on_both_sides(tmp_path: Path, nodes: list[NodeProc]) -> None:
    a, b = start_all(tmp_path, ["a", "b"], nodes)
    assert set(claims_bytes(b)) == {(d, c) for d in ("in", "out") for c in ("gossip", "sync_client", "sync_server")}
    publish(a, tmp_path, "ds", 1000)  # a holds it and claims it; b accepts nothing and holds nothing

    def moved() -> bool:
        # receivers first, then senders: what one side counted received, the other counted sent before
        got_b = claims_bytes(b)
        got_a = claims_bytes(a)
        again_b = claims_bytes(b)
        return (200 < got_b["in", "gossip"] <= got_a["out", "gossip"]  # at least one claim of ~220 bytes
                and 200 < got_b["in", "sync_client"] <= got_a["out", "sync_server"]  # b asked a: a's claims
                and 0 < got_a["in", "sync_server"] <= again_b["out", "sync_client"]
                and 0 < got_a["in", "sync_client"] <= again_b["out", "sync_server"])

    wait_for(moved, 60, 0.5, what=f"claims bytes counted on a and b: {claims_bytes(a)} {claims_bytes(b)}")
    quiet = claims_bytes(b)
    assert quiet["out", "gossip"] == 0 and claims_bytes(a)["in", "gossip"] == 0, "only a holds: only a publishes"
    # a's claim is refreshed at half its 8 s life: more gossip, and the sync answers carry it again
    wait_for(lambda: claims_bytes(b)["in", "gossip"] > quiet["in", "gossip"]
             and claims_bytes(b)["in", "sync_client"] > quiet["in", "sync_client"] + 200, 30, 0.5,
             what="a refreshed claim counted again")


def test_min_copies_converges_to_n_and_never_dips_below(tmp_path: Path, nodes: list[NodeProc]) -> None:
    six = start_all(tmp_path, ["a", "b", "c", "d", "e", "f"], nodes, ttl=30)
    for n in six[1:]:
        enact(n, tmp_path, 'accept_licences = ["CC0-1.0"]\nmin_copies = 3\n')
    mid = publish(six[0], tmp_path, "rare", 2 << 20)
    samples: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                held = sum(1 for n in six if state_of(n, mid) in ("own", "complete"))
            except Exception as exc:  # a slow answer is not a copy lost: note it, go on
                errors.append(str(exc))
            else:
                samples.append(held)
            time.sleep(0.3)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        def settled() -> bool:
            return len(samples) > 5 and samples[-5:] == [3] * 5

        wait_for(settled, 180, 1.0, what="exactly 3 copies held")
        time.sleep(6)  # a while longer: nothing more is released, nothing fetched back
    finally:
        stop.set()
        sampler.join(10)
    reached = next(i for i, v in enumerate(samples) if v >= 3)
    assert min(samples[reached:]) >= 3, samples
    assert samples[-5:] == [3] * 5, samples
    for n in six:
        wait_for(lambda n=n: len(holders(n, mid)) == 3, 30, 0.5, what=f"{n.data.name} to count 3 holders")
    released = [n for n in six if state_of(n, mid) == "not-wanted"]
    assert len(released) == 3 and all("min_copies" in str(
        next(d for d in n.get("/api/v1/datasets") if d["id"] == mid)["reason"]) for n in released)


def test_a_node_with_little_room_fetches_the_endangered_dataset_first(tmp_path: Path, nodes: list[NodeProc]) -> None:
    a, b, c = start_all(tmp_path, ["a", "b", "c"], nodes, ttl=60)
    for n in (b, c):
        enact(n, tmp_path, 'accept_licences = ["CC-BY-4.0"]\n', want=["CC-BY-4.0"])
    src = tmp_path / "src"
    rare_dir, common_dir = src / "rare", src / "common"
    for d in (rare_dir, common_dir):
        d.mkdir(parents=True)
        (d / "data.bin").write_bytes(os.urandom(4 << 20))
    rare = cli_json(a.data, "publish", str(rare_dir), "--title", "rare", "--licence", "CC0-1.0")["id"]
    time.sleep(1.1)  # "common" is newer: without copies first, the newest would be fetched first
    common = cli_json(a.data, "publish", str(common_dir), "--title", "common", "--licence", "CC-BY-4.0")["id"]
    for n in (a, b, c):
        wait_for(lambda n=n: len(holders(n, common)) == 3, 90, 0.5, what=f"{n.data.name} to count 3 holders of common")
    g = fast_node(tmp_path, "g", "--bootstrap", a.addr, ttl=60)
    nodes.append(g)
    g.start()
    wait_for(lambda: len(holders(g, common)) == 3 and len(holders(g, rare)) == 1, 60, 0.5,
             what="g to learn who holds what")
    # room for one dataset (4 MiB) and the catalog, not two
    enact(g, tmp_path, 'accept_licences = ["CC-BY-4.0", "CC0-1.0"]\nstorage_quota_bytes = 7000000\n',
          want=["CC-BY-4.0", "CC0-1.0"])
    wait_for(lambda: state_of(g, rare) == "complete", 90, 0.5, what="g to fetch the rare dataset")
    assert state_of(g, common) == "in-progress"
    reason = next(d for d in g.get("/api/v1/datasets") if d["id"] == common)["reason"]
    assert "quota" in reason, reason


def test_the_release_grace_survives_a_restart_without_counting_the_downtime(tmp_path: Path,
                                                                           nodes: list[NodeProc]) -> None:
    """The grace before a replica is released is stored: stopping the node neither starts it over nor lets
    the time it was stopped count (governance/copies.py `advance_grace`)."""
    downtime, grace = 12.0, 40
    a = fast_node(tmp_path, "a", ttl=60)
    nodes.append(a)
    a.start()
    b = fast_node(tmp_path, "b", "--bootstrap", a.addr, ttl=60, grace=grace)
    nodes.append(b)
    b.start()
    enact(b, tmp_path, 'accept_licences = ["CC0-1.0"]\n')
    mid = publish(a, tmp_path, "ds", 1 << 20)
    wait_for(lambda: state_of(b, mid) == "complete", 90, 0.5, what="b to hold a replica")
    # now one copy is enough: a (the publisher) keeps it, so b may release its own after the grace
    enact(b, tmp_path, 'accept_licences = ["CC0-1.0"]\nmin_copies = 1\n')

    def seen() -> int | None:
        for r in b.get("/api/v1/status")["copies"]["releasing"]:
            if r["id"] == mid:
                assert r["grace_s"] == grace
                return int(r["observed_s"])
        return None

    before = wait_for(lambda: (s := seen()) is not None and s >= 4 and s, 90, 0.5, what="b to see a verified")
    t0 = time.monotonic()
    assert state_of(b, mid) == "complete"
    assert b.stop() == 0
    time.sleep(downtime)
    b.start()
    after = seen()
    t1 = time.monotonic()
    assert after is not None and after >= before, (before, after)  # not started over
    # not skipped: what b counted between the two looks excludes at least the time it was stopped (a round
    # of the rule comes every 3 s: the look before the stop may date from up to ~5 s before `before`)
    assert after - before <= (t1 - t0) - downtime + 5, (before, after, t1 - t0)
    assert after < grace and state_of(b, mid) == "complete"
    wait_for(lambda: state_of(b, mid) == "not-wanted", 120, 0.5, what="b to release its replica after the grace")
    reason = next(d for d in b.get("/api/v1/datasets") if d["id"] == mid)["reason"]
    assert "min_copies = 1" in reason
    assert seen() is None  # nothing left to wait for
