"""Catalog sync's pure decisions: whom a periodic round syncs with, what a range answer means, the
publisher asked first, and the sentence a session's limits are reported in."""

from __future__ import annotations

import collections

from communs.node.exchange import syncplan
from communs.node.exchange.syncpick import pick_sync_peers
from communs.node.exchange.syncplan import RangeAnswer, read_answer, speaks_sync, sync_limits_sentence
from communs.protocol import keys, wire
from communs.protocol import publog as plog

PUB = b"\x01" * 32


def test_own_key_is_the_publisher_key_of_an_ed25519_peer_id() -> None:
    key = keys.SigningKey.generate()
    assert syncplan.own_key(keys.peer_id(key.public)) == (key.public,)
    assert syncplan.own_key("not a peer id") == ()


def test_a_periodic_round_skips_peers_without_sync_and_peers_synced_lately() -> None:
    now = 10_000.0
    assert speaks_sync("a", [wire.SYNC_PROTOCOL], now, {})
    assert speaks_sync("b", [], now, {})  # identify has not said yet: asked
    assert not speaks_sync("c", ["/ipfs/kad/1.0.0"], now, {})
    assert not speaks_sync("b", [], now, {"b": now - syncplan.NOT_COMMUNS_TTL + 1})
    assert speaks_sync("b", [], now, {"b": now - syncplan.NOT_COMMUNS_TTL})
    half = syncplan.SYNC_INTERVAL / 2
    assert pick_sync_peers(["a"], {"a": now - half + 1}, now, half) == []
    assert pick_sync_peers(["a"], {"a": now - half}, now, half) == ["a"]


def test_a_full_answer_is_stored_whole() -> None:
    r = plog.SyncRange(PUB, 1, 10)
    assert read_answer(r, 10, 5000) == RangeAnswer(r, None, False)


def test_an_answer_cut_by_its_byte_budget_is_asked_on_from_the_next_seq() -> None:
    r = plog.SyncRange(PUB, 5, 100)
    answer = read_answer(r, 40, wire.RANGE_ANSWER_BYTES)
    assert answer == RangeAnswer(plog.SyncRange(PUB, 5, 44), plog.SyncRange(PUB, 45, 100), False)


def test_a_short_answer_under_the_budget_means_the_peer_holds_less_than_it_advertised() -> None:
    r = plog.SyncRange(PUB, 1, 10)
    assert read_answer(r, 4, 2000) == RangeAnswer(r, None, True)  # what came is still handed on
    assert read_answer(r, 0, 0) == RangeAnswer(None, None, True)  # nothing came
    assert read_answer(r, 0, wire.RANGE_ANSWER_BYTES) == RangeAnswer(None, None, True)


def test_sync_limits_sentence_says_what_was_left_and_refused_in_one_sentence() -> None:
    plan = plog.plan_session({}, [(PUB, 2**63 - 1)])
    refused = collections.Counter({"the peer reached its quota of 1000000 chunk references per 1 h": 7,
                                   "other": 1})
    text = sync_limits_sentence("12D3KooWpeer", plan, ["the peer served less than it advertised for 17 publishers"],
                                refused, 8)
    assert text.startswith("catalog sync with 12D3KooWpeer: refused 8 valid record(s) of 8 publisher(s) over an "
                           "ingest quota (the peer reached its quota of 1000000 chunk references per 1 h)")
    assert "stopped reading because the peer served less" in text
    assert f"left {2**63 - 1 - 50_000} advertised record(s) of 1 publisher(s) for a later session" in text
    assert text.endswith(".") and text.count(".") == 1 and "\n" not in text
    complete = plog.plan_session({}, [(PUB, 3)])
    assert sync_limits_sentence("p", complete, ["x"], collections.Counter(), 0) == \
        "catalog sync with p: stopped reading because x."
    assert sync_limits_sentence("p", complete, [], collections.Counter({"x": 1}), 1) == \
        "catalog sync with p: refused 1 valid record(s) of 1 publisher(s) over an ingest quota (x)."
