"""Issue 17: the operator dashboard in a real Chromium, against real node processes.

Sign-in and sign-out, a wrong token, CSRF refusal of forged requests, connecting a peer, a dataset
published on another node appearing and its replication progress moving live until complete,
publishing with progress, the page after the node restarts; axe-core on every page (no serious or
critical finding) and a screenshot of each page into docs/screenshots/.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from communs.node.runtime.faults import PAUSE_ENV

from tests.browser.dash import axe_findings, changes, shoot, sign_in, wait_js, wait_live
from tests.integration.test_replication import enact_policy, make_tree
from tests.nodes import NodeProc, cli_json, wait_for

pytestmark = pytest.mark.slow

# Records, in the page, every (value, max) a progress bar in a row for the given id takes: the test asks
# afterwards whether the bar moved while the copy ran, as the operator would have seen it.
WATCH = """(id) => {
  window.__seen = [];
  const look = () => document.querySelectorAll(`tr[data-id="${id}"] progress`).forEach(
      (p) => window.__seen.push([p.value, p.max]));
  new MutationObserver(look).observe(document.body, { childList: true, subtree: true });
  look();
}"""


def _cookie(context: Any) -> dict[str, Any]:
    cookies = [c for c in context.cookies() if c["name"].startswith("communs_session_")]
    assert len(cookies) == 1, cookies
    return dict(cookies[0])


def test_sign_in_wrong_token_csrf_and_sign_out(make_node, context, axe_source) -> None:  # type: ignore[no-untyped-def]
    a: NodeProc = make_node("a")
    page = context.new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    # signed out, the dashboard sends to the sign-in page; the JSON API still answers 401 JSON
    page.goto(a.info["admin_url"] + "/")
    page.wait_for_url("**/login")
    assert axe_findings(page, axe_source) == []
    shoot(page, "sign-in")

    # a wrong token: 401, one sentence on the page, no session
    resp = sign_in(page, a, token="not-the-token")
    assert resp.status == 401
    assert "not this node's admin token" in page.inner_text("#error")
    assert not [c for c in context.cookies() if c["name"].startswith("communs_session_")]

    # the right token: the overview, with the node's own peer id; a cookie scripts cannot read
    resp = sign_in(page, a)
    assert resp.status == 303
    page.wait_for_url(a.info["admin_url"] + "/")
    wait_live(page)
    page.wait_for_selector(f"text={a.peer_id}")
    cookie = _cookie(context)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("Object.keys(localStorage).length + Object.keys(sessionStorage).length") == 0
    assert not [u for u in urls if a.token in u]  # the token was never in a URL
    headers = page.request.get(a.info["admin_url"] + "/").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"

    # the cookie stands for the token on reads; the bearer token still works alone
    base = a.info["admin_url"]
    assert context.request.get(base + "/api/v1/status").json()["peer_id"] == a.peer_id
    assert a.get("/api/v1/status")["peer_id"] == a.peer_id

    # forged unsafe requests carrying the cookie: without the CSRF token, with a wrong one, from another origin
    forged = context.request.post(base + "/api/v1/peers", data=json.dumps({"addr": a.addr}),
                                  headers={"Content-Type": "application/json"})
    assert forged.status == 403 and "CSRF" in forged.json()["error"]
    forged = context.request.post(base + "/logout", headers={"X-CSRF-Token": "guess"})
    assert forged.status == 403
    csrf = context.request.get(base + "/dashboard/session").json()["csrf"]
    forged = context.request.post(base + "/logout", headers={"X-CSRF-Token": csrf, "Origin": "http://127.0.0.1:9"})
    assert forged.status == 403 and "another web origin" in forged.json()["error"]

    # a page on another port of the same host (same site, so SameSite lets the cookie through) posts a
    # form to the node: refused, and the session still works afterwards
    attacker = _serve_attacker(base)
    try:
        evil = context.new_page()
        with evil.expect_response(lambda r: r.url == base + "/logout") as resp_info:
            evil.goto(attacker)
        assert resp_info.value.status == 403
        evil.close()
    finally:
        attacker_server.shutdown()
    assert context.request.get(base + "/api/v1/status").status == 200

    # sign out: back to the sign-in page, and the old session id no longer opens anything
    old = _cookie(context)["value"]
    page.click("#signout")
    page.wait_for_url("**/login")
    status, body = a.api("GET", "/api/v1/status", token="", headers={"Cookie": f"{cookie['name']}={old}"})
    assert status == 401 and "session has ended" in body["error"]
    page.goto(base + "/")
    page.wait_for_url("**/login")


attacker_server: http.server.ThreadingHTTPServer


def _serve_attacker(target: str) -> str:
    """A page on another port whose form posts to the node's /logout as soon as it loads."""
    global attacker_server
    body = (f'<!doctype html><html><body><form id="f" method="post" action="{target}/logout">'
            '<input name="x" value="1"></form><script>document.getElementById("f").submit()</script>'
            '</body></html>').encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    attacker_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=attacker_server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{attacker_server.server_address[1]}/"


def test_two_nodes_connect_and_watch_replication(make_node, context, tmp_path: Path, axe_source) -> None:  # type: ignore[no-untyped-def]
    a: NodeProc = make_node("a")
    # a would serve 48 MiB faster than a person (or the feed's 1 s samples) can watch on loopback: b sleeps
    # 0.4 s before storing each chunk it fetched (its replication thread stores groups of ~4 chunks, up to
    # three groups at once), so the copy lasts about 7 s; both nodes answer streams and the feed at full speed
    b: NodeProc = make_node("b", env={PAUSE_ENV: "replication-chunk:0.4"})
    enact_policy(b, ["CC-BY-4.0"], tmp_path)
    page = context.new_page()
    sign_in(page, b)
    wait_live(page)

    # connect b to a from the Peers page
    page.click("nav >> text=Peers")
    page.fill("#peer-addr", a.addr)
    page.fill("#peer-name", "Fablab Nord")
    page.click("#connect button")
    page.wait_for_selector(f"#connect-msg >> text=Connected to {a.peer_id}", timeout=30_000)
    page.wait_for_selector(f'tr[data-peer="{a.peer_id}"] >> text=Fablab Nord', timeout=30_000)
    assert axe_findings(page, axe_source) == []
    shoot(page, "peers")

    # a publishes; b's overview shows the copy's progress moving, then the dataset complete
    page.click("nav >> text=Overview")
    src = make_tree(tmp_path / "src" / "survey", 48 << 20, 1)
    mid = cli_json(a.data, "publish", str(src), "--title", "Bird survey 2026", "--licence", "CC-BY-4.0")["id"]
    page.evaluate(WATCH, mid)
    started = time.monotonic()
    wait_for(lambda: b.get(f"/api/v1/datasets/{mid}")["state"] == "complete", 120, what="b to replicate the dataset")
    copy_s = time.monotonic() - started
    wait_js(page, "(id) => window.__seen.length > 0 && !document.querySelector(`tr[data-id=\"${id}\"]`)", mid,
            what="the finished copy to leave the overview's table")
    seen: list[list[float]] = page.evaluate("window.__seen")
    partial = sorted({v for v, m in seen if 0 < v < m})
    assert len(partial) >= 2, (f"the progress bar did not move while copying ({copy_s:.1f} s): {len(partial)} "
                               f"value(s) between 0 and the end; the bar's [value, max] as it changed: "
                               f"{changes(seen)}")
    page.wait_for_selector("#disk >> text=1 complete", timeout=30_000)  # the counts follow the copy's end

    # the datasets page lists it as complete, filters and searches
    page.click("nav >> text=Datasets")
    page.wait_for_selector(f'tr[data-id="{mid}"] >> text=complete copy held here', timeout=30_000)
    page.select_option("#f-state", "not-wanted")
    page.wait_for_selector(f'tr[data-id="{mid}"]', state="detached")
    page.select_option("#f-state", "")
    page.fill("#f-search", "bird")
    page.wait_for_selector(f'tr[data-id="{mid}"]')
    assert axe_findings(page, axe_source) == []
    shoot(page, "datasets")
    page.click(f'tr[data-id="{mid}"] a')
    page.wait_for_selector("text=data.bin")
    page.wait_for_selector("text=version 1")
    assert axe_findings(page, axe_source) == []
    shoot(page, "dataset")

    page.click("nav >> text=Governance")
    page.wait_for_selector("text=Last audit: the log verifies.", timeout=30_000)
    page.wait_for_selector("#proposals >> text=enacted")
    assert axe_findings(page, axe_source) == []
    shoot(page, "governance")

    # back on the overview, the last hour's charts have points on both sides of the copy
    page.click("nav >> text=Overview")
    wait_js(page, "() => document.querySelectorAll('svg.chart polyline').length === 2", timeout=60,
            what="both charts to have a line")
    assert axe_findings(page, axe_source) == []
    shoot(page, "overview")
    # and the progress was reported as moving, not only at 0 and at the end
    print(f"copy in {copy_s:.1f} s; progress values seen:", partial[:10], "…", len(seen), "observations")


def test_publish_with_progress(make_node, context, tmp_path: Path, axe_source) -> None:  # type: ignore[no-untyped-def]
    # a publish on a fast disk ends within one sample of the feed (1 s): the node sleeps 0.2 s after storing
    # each chunk (~1 MiB), so that 32 MiB take about 6 s, and runs at full speed otherwise
    a: NodeProc = make_node("a", env={PAUSE_ENV: "publish-chunk:0.2"})
    page = context.new_page()
    sign_in(page, a)
    wait_live(page)
    page.click("nav >> text=Operations")
    src = make_tree(tmp_path / "pub" / "meteo", 32 << 20, 2)
    page.fill("#pub-path", str(src))
    page.fill("#pub-title", "Meteo station")
    page.fill("#pub-licence", "CC0-1.0")
    page.evaluate("""() => { window.__jobs = [];
      new MutationObserver(() => document.querySelectorAll('#jobs tr[data-job]').forEach((tr) => {
        const p = tr.querySelector('progress');
        window.__jobs.push([tr.querySelector('.job-state').textContent, p.value, p.max]); }))
        .observe(document.body, { childList: true, subtree: true }); }""")
    started = time.monotonic()
    page.click("#publish button")
    try:
        page.wait_for_selector("#publish-msg >> text=Published version 1", timeout=120_000)
    except Exception as exc:
        raise AssertionError(f"no publish result on the page: {page.inner_text('#publish-msg')!r}; jobs seen: "
                             f"{changes(page.evaluate('window.__jobs'))[-3:]}; node log: {a.log()[-1500:]}") from exc
    publish_s = time.monotonic() - started
    page.wait_for_selector("#jobs .job-state >> text=done", timeout=30_000)
    jobs: list[list[Any]] = page.evaluate("window.__jobs")
    running = sorted({v for state, v, m in jobs if state != "done" and 0 < v < m})
    assert running, (f"the running job's progress was never shown (publish: {publish_s:.1f} s); the job's "
                     f"[state, value, max] as it changed: {changes(jobs)}")
    assert any(state == "done" and v == m and m >= 32 << 20 for state, v, m in jobs), changes(jobs)
    print(f"publish in {publish_s:.1f} s; progress values seen:", running)
    assert axe_findings(page, axe_source) == []
    shoot(page, "operations")
    # a path outside the allowed folders: the API's sentence, on the page
    page.fill("#pub-path", "/proc/self/environ")
    page.click("#publish button")
    page.wait_for_selector("#publish-msg.error", timeout=30_000)
    assert page.inner_text("#publish-msg")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_page_after_the_node_restarts(make_node, context) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    a: NodeProc = make_node("a", "--admin", f"127.0.0.1:{port}")
    page = context.new_page()
    sign_in(page, a)
    wait_live(page)
    assert a.stop() == 0
    page.wait_for_selector("#live >> text=node unreachable", timeout=30_000)
    time.sleep(0.5)
    a.start()
    # sessions live in memory: after the restart the page sends the operator to sign in again
    page.wait_for_url("**/login", timeout=60_000)
    sign_in(page, a)
    wait_live(page)
    page.wait_for_selector(f"text={a.peer_id}")
