"""The periodic catalog sync's choice of peers: bounded per round, every peer in turn."""

from __future__ import annotations

from communs.node.exchange.syncpick import PEERS_PER_ROUND, pick_sync_peers


def test_at_most_limit_peers_per_round_whatever_the_connections() -> None:
    peers = [f"p{i}" for i in range(49)]
    assert len(pick_sync_peers(peers, {}, now=100.0, min_gap=22.5)) == PEERS_PER_ROUND
    assert pick_sync_peers(peers, {}, now=100.0, min_gap=22.5, limit=2) == ["p0", "p1"]
    assert pick_sync_peers(peers, {}, now=100.0, min_gap=22.5, limit=0) == []


def test_never_synced_first_then_longest_ago_and_none_within_the_gap() -> None:
    last = {"a": 90.0, "b": 10.0, "c": 50.0, "d": 99.0}
    assert pick_sync_peers(["a", "b", "c", "d", "e"], last, now=100.0, min_gap=20.0, limit=3) == ["e", "b", "c"]
    assert pick_sync_peers(["a", "d"], last, now=100.0, min_gap=20.0) == []


def test_rounds_reach_every_peer_in_turn() -> None:
    peers = [f"p{i}" for i in range(20)]
    last: dict[str, float] = {}
    now = 0.0
    for _ in range(5):  # 5 rounds of 4: all 20 peers, each once
        for p in pick_sync_peers(peers, last, now, min_gap=22.5):
            assert p not in last
            last[p] = now
        now += 45.0
    assert set(last) == set(peers)


def test_duplicates_in_the_input_count_once() -> None:
    assert pick_sync_peers(["a", "a", "b"], {}, now=0.0, min_gap=1.0) == ["a", "b"]
