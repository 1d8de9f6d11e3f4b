"""Issue 12 item 5: source choice and chunk deadlines (node/sources.py), pure and seeded."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from communs.node.services import sources
from communs.node.services.sources import Outcome, can_hand_over, choose_sources, chunk_deadline, remember

LOW = [f"12D3KooW1{i:02d}" for i in range(10)]  # ids ground to sort first
HONEST = "12D3KooWzzHonest"


def test_an_honest_holder_behind_ids_that_sort_first_is_a_candidate() -> None:
    order = choose_sources([*LOW, HONEST], [], now=0.0, rng=random.Random(1))
    assert HONEST in order and len(order) == len(LOW) + 1
    # sorting by id would have left it out of the first eight every time; at random it often is in them
    firsts = Counter(HONEST in choose_sources([*LOW, HONEST], [], now=0.0, rng=random.Random(seed))[:8]
                     for seed in range(200))
    assert 100 < firsts[True] < 200, firsts
    assert sorted([*LOW, HONEST])[:8] == LOW[:8]  # what the old rule chose


def test_the_order_is_random_but_seeded() -> None:
    a = choose_sources(LOW, [], now=0.0, rng=random.Random(7))
    assert a == choose_sources(LOW, [], now=0.0, rng=random.Random(7))
    assert a != sorted(LOW)
    assert len({tuple(choose_sources(LOW, [], now=0.0, rng=random.Random(s))) for s in range(20)}) > 10
    # the input order does not matter either
    assert a == choose_sources(list(reversed(LOW)), [], now=0.0, rng=random.Random(7))


def test_announced_holders_come_before_merely_connected_peers() -> None:
    connected = [f"12D3KooWc{i}" for i in range(6)]
    for seed in range(30):
        order = choose_sources(["12D3KooWzA", "12D3KooWzB"], connected, now=0.0, rng=random.Random(seed))
        assert set(order[:2]) == {"12D3KooWzA", "12D3KooWzB"}
        assert set(order[2:]) == set(connected)


def test_recent_disappointments_go_last_and_are_forgiven_later() -> None:
    history = {p: Outcome(sources.LACKED, 100.0 + i) for i, p in enumerate(LOW[:8])}
    history[LOW[8]] = Outcome(sources.STALLED, 90.0)
    history[HONEST] = Outcome(sources.SENT, 50.0)
    order = choose_sources([*LOW, HONEST], [], history=history, now=200.0, rng=random.Random(3))
    assert order[0] in (HONEST, LOW[9])
    assert set(order[:2]) == {HONEST, LOW[9]}
    assert order[2:] == [LOW[8], *LOW[:8]]  # the longest ago first
    # a peer that only sent before ranks with the announced ones even when it did not announce
    assert choose_sources([], ["a", "b", HONEST], history={HONEST: Outcome(sources.SENT, 0.0)}, now=1.0,
                          rng=random.Random(0))[0] == HONEST
    # after FORGET_S, a disappointment no longer counts
    later = choose_sources([*LOW, HONEST], [], history=history, now=200.0 + sources.FORGET_S,
                           rng=random.Random(3))
    assert later == choose_sources([*LOW, HONEST], [], now=0.0, rng=random.Random(3))


def test_banned_self_and_limit() -> None:
    order = choose_sources(["me", "x", "bad"], ["y", "x"], banned={"bad"}, me="me", now=0.0, rng=random.Random(0),
                           limit=2)
    assert len(order) == 2 and set(order) <= {"x", "y"} and order[0] == "x"
    assert choose_sources([], [], now=0.0, rng=random.Random(0)) == []
    assert choose_sources(["a"], [], now=0.0, rng=random.Random(0), limit=0) == []


def test_chunk_deadline_is_a_throughput_deadline() -> None:
    assert chunk_deadline(100.0, 0) == 100.0 + sources.GRACE_S
    one_mib = chunk_deadline(100.0, 1 << 20)
    assert one_mib == pytest.approx(100.0 + sources.GRACE_S + (1 << 20) / sources.MIN_RATE)
    assert chunk_deadline(100.0, 4 << 20) - 100.0 == pytest.approx(sources.GRACE_S + 4 * (1 << 20) / sources.MIN_RATE)
    assert chunk_deadline(0.0, 1000, min_rate=100, grace=1) == 11.0
    # a source dripping a byte every 5 s gets a 300 KB chunk nowhere near its deadline
    drip_time = 300_000 * 5.0
    assert chunk_deadline(0.0, 300_000) < drip_time / 1000
    assert chunk_deadline(0.0, -5) == sources.GRACE_S


def test_remember_keeps_the_latest_outcome_and_a_bounded_history() -> None:
    history: dict[str, Outcome] = {}
    remember(history, "a", sources.SENT, 1.0)
    remember(history, "a", sources.LACKED, 2.0)
    assert history == {"a": Outcome(sources.LACKED, 2.0)}
    for i in range(10):
        remember(history, f"p{i}", sources.FAILED, 3.0 + i, cap=4)
    assert list(history) == ["p6", "p7", "p8", "p9"]


def test_a_stalled_source_is_handed_over_only_when_someone_can_take_its_chunks() -> None:
    assert can_hand_over({"slow": "active", "other": "active"}, 0, "slow")
    assert can_hand_over({"slow": "active"}, 1, "slow")  # a spare not asked yet
    assert not can_hand_over({"slow": "active"}, 0, "slow")  # the last source left keeps its chance
    assert not can_hand_over({"slow": "active", "x": "lacks", "y": "failed", "z": "stalled", "b": "banned"}, 0,
                             "slow")
    assert can_hand_over({"slow": "active", "x": "lacks", "y": "active"}, 0, "slow")


def test_fetch_order_differs_between_nodes_and_keeps_every_chunk() -> None:
    """Nodes fetching one dataset at once start on different chunks, so they can serve each other."""
    chunks = [(bytes([i]) * 32, 1 << 20) for i in range(200)]
    a = sources.fetch_order(chunks, random.Random(1))
    b = sources.fetch_order(chunks, random.Random(2))
    assert sorted(a) == sorted(b) == chunks
    assert a[:20] != b[:20] and a != chunks


def test_a_source_lacking_everything_is_asked_again_within_the_patience() -> None:
    assert sources.keep_asking(100.0, 100.0)
    assert sources.keep_asking(100.0, 100.0 + sources.SWARM_PATIENCE_S - 0.1)
    assert not sources.keep_asking(100.0, 100.0 + sources.SWARM_PATIENCE_S)
