"""The governance log as rows to read: newest first, paged by seq, each row naming who signed and the outcome."""

from __future__ import annotations

import pytest
from communs.node.services.govlog_view import MAX_LIMIT, PageError, log_page, member_names, page_params
from communs.protocol import keys

from tests.unit.governance.test_ledger import NODE, A, C, D, scenario

NODE_NAMES = {NODE.public: "Coop node"}


def test_rows_newest_first_with_signer_and_outcome() -> None:
    ledger = scenario()
    page = log_page(ledger, NODE_NAMES, limit=MAX_LIMIT)
    rows = page["entries"]
    assert page["total"] == len(ledger.entries) and page["next_before"] is None
    assert [r["seq"] for r in rows] == list(range(len(ledger.entries) - 1, -1, -1))
    assert rows[-1]["kind"] == "genesis" and rows[-1]["outcome"] == "founded"
    assert "3 founding member(s): Ana, Ben, Cleo" in rows[-1]["summary"]
    assert rows[-1]["signer"] == {"peer_id": keys.peer_id(NODE.public), "name": "Coop node"}
    # the newest: Dee's yes on the proposal still open
    assert rows[0]["kind"] == "ballot" and rows[0]["outcome"] == "voted yes"
    assert rows[0]["signer"] == {"peer_id": keys.peer_id(D.public), "name": "Dee"}
    assert rows[1]["kind"] == "proposal" and rows[1]["outcome"] == "open"
    assert rows[1]["signer"]["name"] == "Ana" and rows[1]["proposal"] == rows[0]["proposal"]
    by_outcome = {r["outcome"] for r in rows if r["kind"] == "proposal"}
    # passed and applied, passed but no longer applicable (Dee added twice), rejected (the quota)
    assert {"passed, enacted", "passed, no longer applied", "rejected", "open"} <= by_outcome
    tallies = [r for r in rows if r["kind"] == "tally"]
    assert tallies and all(r["signer"]["name"] == "Coop node" for r in tallies)
    assert any(r["outcome"].startswith("rejected: 0 yes, 1 no, 1 abstain") for r in tallies), tallies
    enactments = {r["outcome"] for r in rows if r["kind"] == "enactment"}
    assert enactments == {"applied", "not applied (no longer applies)"}
    # Cleo left the roster: her old ballots and proposals still carry her name
    assert any(r["signer"]["name"] == "Cleo" for r in rows)
    assert member_names(ledger)[C.public] == "Cleo"


def test_pages_walk_back_to_the_genesis_entry_without_overlap() -> None:
    ledger = scenario()
    seen: list[int] = []
    before = None
    while True:
        page = log_page(ledger, {}, before, 4)
        assert len(page["entries"]) <= 4
        seen += [r["seq"] for r in page["entries"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == list(range(len(ledger.entries) - 1, -1, -1))
    assert log_page(ledger, {}, 0, 4) == {"entries": [], "total": len(ledger.entries), "next_before": None}
    assert [r["seq"] for r in log_page(ledger, {}, 10**9, 2)["entries"]] == [len(ledger.entries) - 1,
                                                                            len(ledger.entries) - 2]
    # an unknown node key: no name, the peer id says who
    assert log_page(ledger, {}, 1, 1)["entries"][0]["signer"]["name"] is None


def test_page_params() -> None:
    assert page_params(None, None) == (None, 25)
    assert page_params("12", "200") == (12, 200)
    assert page_params("0", "1") == (0, 1)
    for before, limit in ((None, "0"), (None, "201"), (None, "x"), ("-1", None), ("1.5", None),
                          ("9" * 19, None), (None, "")):
        with pytest.raises(PageError):
            page_params(before, limit)


def test_member_names_prefer_the_newest_roster() -> None:
    names = member_names(scenario())
    assert names[A.public] == "Ana" and names[D.public] == "Dee"
