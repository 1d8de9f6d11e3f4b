"""Issue 17, the routes the dashboard added: verifying one dataset's stored chunks, the governance log as a
readable paged listing, peers' names. Real node processes, real HTTP (bearer token and dashboard session)."""

from __future__ import annotations

import contextlib
import http.cookiejar
import itertools
import json
import os
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from communs.protocol import ids

from tests.integration.test_replication import enact_policy, make_tree
from tests.nodes import NodeProc, cli, cli_json, wait_for


def _chunk_file(node: NodeProc, cid: str) -> Path:
    name = ids.parse_cid(cid).hex()
    return next(p for p in (node.data / "store" / "chunks").rglob(name) if p.is_file())


def _publish(node: NodeProc, tmp_path: Path, size: int = 3 << 20) -> tuple[str, dict[str, Any]]:
    src = make_tree(tmp_path / "src" / "survey", size, 7)
    mid = cli_json(node.data, "publish", str(src), "--title", "Survey", "--licence", "CC0-1.0")["id"]
    return mid, node.get(f"/api/v1/datasets/{mid}")


def test_verification_finds_corrupt_and_missing_chunks(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a: NodeProc = make_node("a")
    mid, doc = _publish(a, tmp_path)
    data_chunks = [c["id"] for f in doc["files"] if f["path"] == "data.bin" for c in f["chunks"]]
    assert len(data_chunks) >= 2, doc["files"]

    # an intact dataset: every stored chunk re-hashed, nothing found
    status, ok = a.api("POST", f"/api/v1/datasets/{mid}/verification")
    assert status == 200, ok
    distinct = len({c["id"] for f in doc["files"] for c in f["chunks"]})
    assert ok["ok"] is True and ok["chunks_done"] == ok["chunks_total"] == distinct, ok
    assert ok["bytes_done"] == ok["bytes_total"] > 0 and not ok["bad"] and not ok["missing"], ok
    assert ok["summary"].startswith(f"All {distinct} stored chunks verified")

    # one chunk altered on disk, another deleted: both named, with the file they belong to
    bad, gone = data_chunks[0], data_chunks[1]
    path = _chunk_file(a, bad)
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0xFF
    path.write_bytes(bytes(raw))
    _chunk_file(a, gone).unlink()
    # by a unique prefix of the dataset id, as every id-taking route
    status, found = a.api("POST", f"/api/v1/datasets/{doc['dataset'][:12]}/verification", body={})
    assert status == 200, found
    assert found["ok"] is False and found["bad"] == [bad] and found["missing"] == [gone], found
    assert {(f["path"], f["chunk"], f["problem"]) for f in found["files"]} == {
        ("data.bin", bad, "corrupt"), ("data.bin", gone, "missing")}
    assert "1 corrupt (quarantined) and 1 missing" in found["summary"]
    assert not path.exists()  # quarantined: never served again
    # the catalog now knows: the own dataset is listed as damaged (replication fetches the chunks back)
    wait_for(lambda: next(d for d in a.get("/api/v1/datasets") if d["id"] == mid).get("damaged") is True, 30,
             what="the dataset to be listed as damaged")
    listed = a.get("/api/v1/verifications")
    assert [v["id"] for v in listed] == [mid] and listed[0]["bad"] == [bad] and listed[0]["running"] is False

    # a second run checks only what is stored now, and says so
    status, again = a.api("POST", f"/api/v1/datasets/{mid}/verification")
    assert status == 200 and again["ok"] is True and again["not_here"] == 2, again
    assert "2 not stored here now" in again["summary"]

    # the caller's mistakes: one sentence each, nothing changed
    status, err = a.api("POST", "/api/v1/datasets/not-an-id/verification")
    assert status == 400 and err["error"]
    status, err = a.api("POST", "/api/v1/datasets/bafkr4ihzzzzzzzz/verification")
    assert status == 404 and err["error"]
    status, err = a.api("POST", f"/api/v1/datasets/{mid}/verification", body={"deep": True})
    assert status == 400 and "deep" in err["error"]
    status, err = a.api("GET", f"/api/v1/datasets/{mid}/verification")
    assert status == 405


def _session(node: NodeProc) -> tuple[urllib.request.OpenerDirector, str]:
    """Sign in as the dashboard does (the form), return an opener carrying the cookie and the CSRF token."""
    jar = http.cookiejar.CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    base = node.info["admin_url"]
    form = urllib.parse.urlencode({"token": node.token}).encode()
    req = urllib.request.Request(base + "/login", data=form, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as exc:  # 303 to the page, not followed
        opener.open(req, timeout=30)
    assert exc.value.code == 303
    with opener.open(base + "/dashboard/session", timeout=30) as resp:
        return opener, json.loads(resp.read())["csrf"]


def _post(opener: urllib.request.OpenerDirector, url: str, headers: dict[str, str]) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json",
                                                                          **headers})
    try:
        with opener.open(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_verification_from_a_dashboard_session_needs_its_csrf_token(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a: NodeProc = make_node("a")
    mid, _ = _publish(a, tmp_path, 1 << 20)
    opener, csrf = _session(a)
    url = a.info["admin_url"] + f"/api/v1/datasets/{mid}/verification"
    status, body = _post(opener, url, {})
    assert status == 403 and "CSRF" in body["error"]
    status, body = _post(opener, url, {"X-CSRF-Token": "guess"})
    assert status == 403
    assert a.get("/api/v1/verifications") == []  # refused before anything ran
    status, body = _post(opener, url, {"X-CSRF-Token": csrf})
    assert status == 200 and body["ok"] is True, body


def test_governance_entries_newest_first_in_pages(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a: NodeProc = make_node("a")
    pid = enact_policy(a, ["CC-BY-4.0"], tmp_path)
    first = a.get("/api/v1/governance/entries")
    kinds = [e["kind"] for e in first["entries"]]
    # a sole founder's yes closes the vote: proposal, ballot, tally, enactment after the genesis, newest first
    assert kinds == ["enactment", "tally", "ballot", "proposal", "genesis"], first
    assert first["total"] == 5 and first["next_before"] is None
    assert [e["seq"] for e in first["entries"]] == [4, 3, 2, 1, 0]
    by_kind = {e["kind"]: e for e in first["entries"]}
    founder = a.get("/api/v1/members")["members"][0]
    assert by_kind["proposal"]["proposal"] == pid and by_kind["proposal"]["outcome"] == "passed, enacted"
    assert by_kind["proposal"]["signer"] == {"peer_id": founder["peer_id"], "name": founder["name"]}
    assert "CC-BY-4.0" in by_kind["proposal"]["summary"]
    assert by_kind["ballot"]["outcome"] == "voted yes" and by_kind["ballot"]["signer"]["name"] == founder["name"]
    assert by_kind["tally"]["outcome"].startswith("passed: 1 yes, 0 no, 0 abstain")
    assert by_kind["tally"]["signer"] == {"peer_id": a.peer_id, "name": "a"}  # the node that keeps the log
    assert by_kind["enactment"]["outcome"] == "applied"
    assert by_kind["genesis"]["outcome"] == "founded" and founder["name"] in by_kind["genesis"]["summary"]
    assert all(isinstance(e["at"], int) and e["at"] > 0 for e in first["entries"])

    # pages of two: the cursors walk the log back to the genesis entry, no entry twice
    seen: list[int] = []
    url = "/api/v1/governance/entries?limit=2"
    while True:
        page = a.get(url)
        seen += [e["seq"] for e in page["entries"]]
        if page["next_before"] is None:
            break
        url = f"/api/v1/governance/entries?limit=2&before={page['next_before']}"
    assert seen == [4, 3, 2, 1, 0]
    for query in ("limit=0", "limit=201", "limit=x", "before=-1", "before=1e3"):
        status, err = a.api("GET", f"/api/v1/governance/entries?{query}")
        assert status == 400 and err["error"], (query, status, err)
    # the download stays, and audits as before
    status, raw = a.api("GET", "/api/v1/governance/log")
    assert status == 200 and raw


def test_peers_shown_by_the_name_given_when_connecting(make_node) -> None:  # type: ignore[no-untyped-def]
    a: NodeProc = make_node("a")
    b: NodeProc = make_node("b")
    c: NodeProc = make_node("c")
    status, body = a.api("POST", "/api/v1/peers", {"addr": b.addr, "name": "  Fablab Nord "})
    assert status == 200 and body == {"peer_id": b.peer_id, "kept": True, "name": "Fablab Nord"}, body
    status, body = a.api("POST", "/api/v1/peers", {"addr": c.addr, "keep": False})
    assert status == 200 and body["name"] is None, body
    peers = {p["peer_id"]: p for p in a.get("/api/v1/peers")}
    assert peers[b.peer_id]["name"] == "Fablab Nord"
    assert peers[c.peer_id]["name"] is None  # nothing known: pages show a short id
    names = a.data / "peer-names.json"
    assert json.loads(names.read_text()) == {b.peer_id: "Fablab Nord"}
    assert stat.S_IMODE(os.stat(names).st_mode) == 0o600

    # a bad name: one sentence, the kept name unchanged
    for bad in ("line\nbreak", "x" * 65, 7):
        status, err = a.api("POST", "/api/v1/peers", {"addr": b.addr, "name": bad})
        assert status == 400 and "'name'" in err["error"], (bad, err)
    assert json.loads(names.read_text()) == {b.peer_id: "Fablab Nord"}

    # kept across a restart; an empty name forgets it
    assert a.stop() == 0
    a.start()
    wait_for(lambda: any(p["peer_id"] == b.peer_id for p in a.get("/api/v1/peers")), 60,
             what="a to redial b (a bootstrap address now)")
    assert next(p for p in a.get("/api/v1/peers") if p["peer_id"] == b.peer_id)["name"] == "Fablab Nord"
    status, body = a.api("POST", "/api/v1/peers", {"addr": b.addr, "name": ""})
    assert status == 200 and body["name"] is None
    assert next(p for p in a.get("/api/v1/peers") if p["peer_id"] == b.peer_id)["name"] is None
    # the CLI names a peer too, and lists peers by name
    cli(a.data, "peers", "add", c.addr, "--name", "Atelier Sud")
    assert f"{c.peer_id} (Atelier Sud)" in cli(a.data, "peers").stdout


def test_two_requests_at_once_share_one_verification_whose_progress_is_readable(  # type: ignore[no-untyped-def]
        make_node, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COMMUNS_FAULT_PAUSE_AT", "verify-chunk:0.3")  # every chunk re-hashed costs 0.3 s more
    a: NodeProc = make_node("a")
    monkeypatch.delenv("COMMUNS_FAULT_PAUSE_AT")
    mid, doc = _publish(a, tmp_path, 6 << 20)
    distinct = len({c["id"] for f in doc["files"] for c in f["chunks"]})
    assert distinct >= 4, doc["files"]
    answers: list[tuple[int, Any]] = []
    threads = [threading.Thread(target=lambda: answers.append(
        a.api("POST", f"/api/v1/datasets/{mid}/verification"))) for _ in range(2)]
    for t in threads:
        t.start()
    # while it runs: listed as running, with its progress
    running = wait_for(lambda: [v for v in a.get("/api/v1/verifications") if v["running"]], 30,
                       what="the verification to be listed as running")
    assert running[0]["id"] == mid and running[0]["chunks_done"] < running[0]["chunks_total"] == distinct
    assert running[0]["summary"].startswith("Verifying: ")
    for t in threads:
        t.join(120)
    assert [s for s, _ in answers] == [200, 200], answers
    assert answers[0][1]["started"] == answers[1][1]["started"], "two verifications ran instead of one"
    assert all(body["ok"] and body["chunks_done"] == distinct for _, body in answers)
    listed = a.get("/api/v1/verifications")
    assert len(listed) == 1 and listed[0]["running"] is False


def _events(node: NodeProc) -> Any:
    """The dashboard's live feed (server-sent events, with the bearer token): an open response and a
    generator of its `state` events, decoded."""
    req = urllib.request.Request(node.info["admin_url"] + "/dashboard/events",
                                 headers={"Authorization": f"Bearer {node.token}"})
    resp = urllib.request.urlopen(req, timeout=30)

    def states() -> Any:
        for line in resp:
            if line.startswith(b"data: "):
                yield json.loads(line[6:])

    return resp, states()


def _progress(event: dict[str, Any]) -> list[tuple[str, int]]:
    return [(j["state"], j["bytes_done"]) for j in event.get("publishing") or []]


def test_a_dashboard_opening_does_not_take_changes_from_the_ones_open(  # type: ignore[no-untyped-def]
        make_node, tmp_path: Path) -> None:
    """Every dashboard that opens samples the node for its first event; what that sample found changed must
    reach the dashboards already open too (it used to count as sent: they never saw it, a job's running
    state or its end included, until the next change)."""
    a: NodeProc = make_node("a", env={"COMMUNS_FAULT_PAUSE_AT": "publish-chunk:0.2"})  # ~5 s for 24 MiB
    src = make_tree(tmp_path / "src" / "survey", 24 << 20, 8)
    first, events = _events(a)
    seen: list[tuple[str, int]] = []
    next(events)

    def follow() -> None:
        with contextlib.suppress(OSError, ValueError), first:
            for ev in events:
                seen.extend(_progress(ev))
                if any(state == "done" for state, _ in seen):
                    return

    threading.Thread(target=follow, daemon=True).start()
    answer: list[tuple[int, Any]] = []
    publish = threading.Thread(target=lambda: answer.append(
        a.api("POST", "/api/v1/datasets", {"path": str(src), "title": "Survey", "licence": "CC0-1.0"})))
    publish.start()
    newcomers: list[tuple[str, int]] = []
    while publish.is_alive():  # a dashboard opens every 0.3 s while the publish runs
        resp, ev = _events(a)
        newcomers.extend(p for p in _progress(next(ev)) if p[0] != "done")
        resp.close()
        time.sleep(0.3)
    assert answer and answer[0][0] == 201, answer
    assert len({p for p in newcomers if p[0] == "chunking"}) >= 3, newcomers  # they saw it run
    wait_for(lambda: any(state == "done" for state, _ in seen), 10, what="the open dashboard to see the publish end")
    missed = sorted(set(newcomers) - set(seen))
    assert not missed, f"the open dashboard never got {missed} (it got {sorted(set(seen))})"


def test_charts_keep_their_points_while_no_dashboard_is_open(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """With no dashboard open the feed reads only what the charts need (bytes stored and fetched); the page
    opened later still draws the minutes before it, and the stored bytes include what was published then."""
    a: NodeProc = make_node("a")
    _publish(a, tmp_path, 2 << 20)
    time.sleep(11.0)  # history.STEP_S is 5 s: at least two points, none of them asked for by a page
    opener, _ = _session(a)
    with opener.open(a.info["admin_url"] + "/dashboard/events", timeout=30) as resp:
        first = b""
        while not first.startswith(b"data:"):
            first = resp.readline().strip()
    snapshot = json.loads(first[len(b"data:"):])
    stored = snapshot["history"]["stored"]
    assert len(stored) >= 3, stored  # the points taken unwatched, and the one the snapshot added
    assert stored[-2][1] >= 2 << 20, stored  # the published bytes, counted by an unwatched point
    assert all(t1 - t0 >= 4.9 for (t0, _), (t1, _) in itertools.pairwise(stored)), stored
