"""Issue 17, the last gaps: the governance log as a paged listing on the page (with the download kept), the
Verify button of a dataset's page (busy state and progress while it runs, a damaged chunk reported, its file
named), and peers shown by name, else by a short id. Real Chromium, real node processes; axe-core on each page."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any

import pytest
from communs.governance.policy import Policy
from communs.governance.records import Proposal
from communs.node.datadir import read_private_key
from communs.node.runtime.faults import PAUSE_ENV
from communs.protocol import ids

from tests.browser.dash import SCREENSHOTS, axe_findings, changes, shoot, sign_in, wait_js, wait_live
from tests.integration.test_replication import enact_policy, make_tree
from tests.nodes import NodeProc, cli_json, wait_for

pytestmark = pytest.mark.slow

# Records, in the page, what the verify message shows each time it changes: the test asks afterwards whether
# the operator saw the busy state and a progress bar moving while the verification ran.
WATCH_VERIFY = """() => {
  window.__verify = [];
  const el = document.getElementById('verify-msg');
  new MutationObserver(() => {
    const p = el.querySelector('progress');
    window.__verify.push([el.textContent, p ? p.value : null, p ? p.max : null]);
  }).observe(el, { childList: true, subtree: true, characterData: true });
}"""


def _chunk_file(node: NodeProc, cid: str) -> Path:
    name = ids.parse_cid(cid).hex()
    return next(p for p in (node.data / "store" / "chunks").rglob(name) if p.is_file())


def test_verify_button_reports_a_damaged_chunk(make_node, context, tmp_path: Path, axe_source) -> None:  # type: ignore[no-untyped-def]
    # re-hashing 32 MiB takes a fraction of a second: the node sleeps 0.2 s after each chunk (~1 MiB) it
    # verified, as on a slow disk, so that each verification lasts about 6 s (the feed samples every 1 s)
    a: NodeProc = make_node("a", env={PAUSE_ENV: "verify-chunk:0.2"})
    src = make_tree(tmp_path / "src" / "archive", 32 << 20, 3)
    mid = cli_json(a.data, "publish", str(src), "--title", "Town archive", "--licence", "CC0-1.0")["id"]
    doc = a.get(f"/api/v1/datasets/{mid}")
    page = context.new_page()
    sign_in(page, a)
    wait_live(page)
    page.goto(a.info["admin_url"] + f"/#/datasets/{mid}")
    page.wait_for_selector("text=data.bin", timeout=30_000)

    # an intact dataset: the busy state, progress while the node re-hashes, then the verdict in one sentence
    page.evaluate(WATCH_VERIFY)
    started = time.monotonic()
    page.click("#verify")
    page.wait_for_selector("#verify-msg.ok >> text=stored chunks verified", timeout=120_000)
    verify_s = time.monotonic() - started
    seen: list[list[Any]] = page.evaluate("window.__verify")
    assert any(text.startswith("Verifying") for text, _, _ in seen), changes(seen)
    moving = sorted({v for _, v, m in seen if v is not None and 0 < v < m})
    assert moving, (f"no progress was shown while verifying ({verify_s:.1f} s); the message's [text, value, max] "
                    f"as it changed: {changes(seen)}")
    print(f"verification in {verify_s:.1f} s; progress values seen:", moving)
    assert not page.is_disabled("#verify")
    assert axe_findings(page, axe_source) == []

    # one chunk of data.bin altered on disk: reported, with its file, and the node fetches it again
    bad = next(c["id"] for f in doc["files"] if f["path"] == "data.bin" for c in f["chunks"])
    path = _chunk_file(a, bad)
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0xFF
    path.write_bytes(bytes(raw))
    page.click("#verify")
    page.wait_for_selector("#verify-msg.error >> text=1 corrupt (quarantined)", timeout=120_000)
    finding = page.inner_text("#verify-msg .findings")
    assert "data.bin" in finding and "was corrupt (quarantined)" in finding, finding
    assert bad[:8] in finding  # the chunk, by its short id
    assert not path.exists()
    assert axe_findings(page, axe_source) == []
    shoot(page, "dataset-verify")
    wait_for(lambda: next(d for d in a.get("/api/v1/datasets") if d["id"] == mid).get("damaged") is True, 30,
             what="the dataset to be listed as damaged")

    # the node stopped: one sentence saying so, and the button usable again
    assert a.stop() == 0
    page.click("#verify")
    page.wait_for_selector("#verify-msg.error >> text=The node did not answer", timeout=30_000)
    assert page.inner_text("#verify-msg").count(".") == 1
    assert not page.is_disabled("#verify")


def _propose_many(node: NodeProc, n: int) -> None:
    """`n` policy proposals by the node's founder, signed here and submitted through the admin API: one log
    entry each, quickly (the CLI would start a process per proposal)."""
    key = read_private_key(node.data / "operator.key", "operator key")
    roster = node.get("/api/v1/members")
    now = int(roster["now"])
    for i in range(n):
        p = Proposal.create(key, kind="policy", body=Policy(accept_licences=("CC0-1.0", f"LicenseRef-test-{i}")),
                            roster=bytes.fromhex(roster["roster_hash"]), opens=now, closes=now + 3600,
                            nonce=os.urandom(16))
        status, body = node.api("POST", "/api/v1/proposals",
                                {"record": base64.b64encode(p.encode()).decode("ascii")})
        assert status == 201, body


def test_governance_log_listing_pages(make_node, context, tmp_path: Path, axe_source) -> None:  # type: ignore[no-untyped-def]
    a: NodeProc = make_node("a")
    enact_policy(a, ["CC0-1.0"], tmp_path)  # genesis, proposal, ballot, tally, enactment (seq 0 to 4)
    _propose_many(a, 24)  # 29 entries: two pages of 25
    founder = a.get("/api/v1/members")["members"][0]["name"]
    page = context.new_page()
    sign_in(page, a)
    wait_live(page)
    page.click("nav >> text=Governance")
    page.wait_for_selector("#govlog tr[data-seq='28']", timeout=30_000)
    rows = page.eval_on_selector_all("#govlog tbody tr", "rs => rs.map(r => r.dataset.seq)")
    assert rows == [str(s) for s in range(28, 3, -1)], rows  # newest first, 25 of them
    newest = page.inner_text("#govlog tr[data-seq='28']")
    assert "proposal" in newest and "LicenseRef-test-23" in newest and founder in newest and "open" in newest
    assert "Entries 28 to 4 of 29" in page.inner_text("#govlog caption")
    assert page.is_disabled("#govlog-newer") and not page.is_disabled("#govlog-older")
    href = page.get_attribute("#govlog a[download]", "href")
    assert href == "/api/v1/governance/log"
    assert page.request.get(a.info["admin_url"] + href).body().startswith(b"communs-govlog/1\n")
    assert axe_findings(page, axe_source) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#govlog").screenshot(path=str(SCREENSHOTS / "governance-log.png"))  # the listing itself

    # the older page: the enacted policy's entries and the genesis entry, then back
    page.click("#govlog-older")
    page.wait_for_selector("#govlog tr[data-seq='0']", timeout=30_000)
    rows = page.eval_on_selector_all("#govlog tbody tr", "rs => rs.map(r => r.dataset.seq)")
    assert rows == ["3", "2", "1", "0"], rows
    assert page.inner_text("#govlog tr[data-seq='3'] .outcome").startswith("passed: 1 yes")  # the tally
    assert page.inner_text("#govlog tr[data-seq='2'] .outcome") == "voted yes"
    assert founder in page.inner_text("#govlog tr[data-seq='2'] .signer")
    assert page.inner_text("#govlog tr[data-seq='1'] .outcome") == "passed, enacted"  # the proposal's fate
    assert page.inner_text("#govlog tr[data-seq='0'] .kind") == "genesis"
    assert page.is_disabled("#govlog-older") and not page.is_disabled("#govlog-newer")
    page.click("#govlog-newer")
    page.wait_for_selector("#govlog tr[data-seq='28']", timeout=30_000)


def test_peers_by_name_else_short_id(make_node, context) -> None:  # type: ignore[no-untyped-def]
    a: NodeProc = make_node("a")
    b: NodeProc = make_node("b")
    c: NodeProc = make_node("c")
    page = context.new_page()
    sign_in(page, a)
    wait_live(page)
    page.click("nav >> text=Peers")
    page.fill("#peer-addr", b.addr)
    page.fill("#peer-name", "Fablab Nord")
    page.click("#connect button")
    page.wait_for_selector(f"#connect-msg >> text=Connected to {b.peer_id}, shown as “Fablab Nord”", timeout=30_000)
    status, _ = a.api("POST", "/api/v1/peers", {"addr": c.addr})  # no name known for c
    assert status == 200
    page.wait_for_selector(f'tr[data-peer="{c.peer_id}"]', timeout=30_000)
    page.wait_for_selector(f'tr[data-peer="{b.peer_id}"] .peer-name >> text=Fablab Nord', timeout=30_000)
    shown_c = page.inner_text(f'tr[data-peer="{c.peer_id}"] .peer-name')
    assert shown_c == f"{c.peer_id[:8]}…{c.peer_id[-6:]}", shown_c  # the short id
    # the overview names it too
    page.click("nav >> text=Overview")
    page.wait_for_selector("#peer-count >> text=Fablab Nord", timeout=30_000)
    wait_js(page, "(p) => document.getElementById('peer-count').textContent.includes(p)", c.peer_id[:8],
            what="c's short id on the overview")
