"""The min_copies rule: rendezvous keepers, release verdicts, fetch order, endangered datasets."""

from __future__ import annotations

import itertools

from communs.governance import copies
from communs.protocol.ids import digest

MID = digest(b"m")
PEERS = [f"12D3KooPeer{i}" for i in range(6)]


def test_keepers_are_deterministic_and_pinned_first() -> None:
    k = copies.keepers(PEERS, MID, 3)
    assert len(k) == 3 and k == copies.keepers(reversed(PEERS), MID, 3)
    assert PEERS[5] in copies.keepers(PEERS, MID, 3, pinned=[PEERS[5]])
    assert copies.keepers(PEERS[:2], MID, 3) == set(PEERS[:2])


def test_a_keeper_of_a_set_keeps_in_every_subset_that_holds_it() -> None:
    full = copies.keepers(PEERS, MID, 3)
    for size in range(1, 6):
        for subset in itertools.combinations(PEERS, size):
            assert full & set(subset) <= copies.keepers(subset, MID, 3)


def test_six_concurrent_holders_release_down_to_exactly_n() -> None:
    """Every holder decides alone from the same view: the keepers stay, the others go, never fewer than N."""
    verified = dict.fromkeys(PEERS, 100)
    releasing = [p for p in PEERS
                 if copies.may_release(p, MID, 3, live=set(PEERS) - {p}, verified=verified, pinned=(),
                                       enough_since=0, now=10_000, grace_s=60).release]
    assert len(releasing) == 3 and set(PEERS) - set(releasing) == copies.keepers(PEERS, MID, 3)


def test_a_stale_view_never_lets_a_keeper_release() -> None:
    keep = copies.keepers(PEERS, MID, 3)
    for me in keep:
        for size in range(0, 6):
            for view in itertools.combinations([p for p in PEERS if p != me], size):
                v = copies.may_release(me, MID, 3, live=view, verified=dict.fromkeys(view, 1), pinned=(),
                                       enough_since=0, now=10_000, grace_s=0)
                assert not v.release


def test_release_waits_for_verification_and_the_grace_period_and_spares_the_publisher() -> None:
    others = [p for p in PEERS if p not in copies.keepers(PEERS, MID, 3)]
    me = others[0]
    live = set(PEERS) - {me}
    assert not copies.may_release(me, MID, 3, live=live, verified={}, pinned=(), enough_since=0, now=10).release
    full = dict.fromkeys(live, 5)
    v = copies.may_release(me, MID, 3, live=live, verified=full, pinned=(), enough_since=100, now=150, grace_s=60)
    assert not v.release and "grace" in v.reason
    assert copies.may_release(me, MID, 3, live=live, verified=full, pinned=(), enough_since=100, now=161,
                              grace_s=60).release
    assert not copies.may_release(me, MID, 3, live=live, verified=full, pinned=[me], enough_since=0, now=10**6).release
    assert not copies.may_release(me, MID, 0, live=live, verified=full, pinned=(), enough_since=0, now=10**6).release


def test_wanted_while_fewer_than_n_others_hold() -> None:
    assert copies.needs_copy(3, 2) and not copies.needs_copy(3, 3) and copies.needs_copy(0, 99)


def test_fewest_copies_first_then_newest_then_smallest() -> None:
    a, b, c, d = (digest(bytes([i])) for i in range(4))
    order = copies.fetch_order({a: 2, b: 0, c: 0, d: 1}, {a: 5, b: 1, c: 9, d: 1}, {a: 1, b: 1, c: 1, d: 1})
    assert order == [c, b, d, a]
    assert copies.endangered([a, b, c], {a: 3, b: 1}, 3) == sorted([b, c])
    assert copies.endangered([a], {}, 0) == []


def test_the_grace_counts_only_time_seen_and_survives_a_restart() -> None:
    """`advance_grace` is what the node stores each round: seen time adds up, a break starts it over, and a
    gap longer than `max_gap_s` (the node stopped, then started again) adds nothing but loses nothing."""
    g = copies.advance_grace(None, True, 1000, max_gap_s=10)
    assert g == copies.Grace(0, 1000)
    g = copies.advance_grace(g, True, 1008, max_gap_s=10)
    assert g == copies.Grace(8, 1008)
    restarted = copies.advance_grace(g, True, 1500, max_gap_s=10)  # stopped for ~8 minutes
    assert restarted == copies.Grace(8, 1500)  # neither started over nor skipped ahead
    assert copies.advance_grace(restarted, True, 1505, max_gap_s=10) == copies.Grace(13, 1505)
    assert copies.advance_grace(restarted, True, 1400, max_gap_s=10) == copies.Grace(8, 1500)  # clock went back
    assert copies.advance_grace(restarted, False, 1505, max_gap_s=10) is None  # a keeper lost: start over


def test_release_after_the_grace_as_observed() -> None:
    others = [p for p in PEERS if p not in copies.keepers(PEERS, MID, 3)]
    me = others[0]
    live = set(PEERS) - {me}
    full = dict.fromkeys(live, 5)
    assert copies.enough_keepers(me, MID, 3, live=live, verified=full, pinned=())
    assert not copies.enough_keepers(me, MID, 3, live=live, verified={}, pinned=())
    assert not copies.enough_keepers(me, MID, 3, live=live, verified=full, pinned=[me])
    keeper = next(iter(copies.keepers(PEERS, MID, 3)))
    assert not copies.enough_keepers(keeper, MID, 3, live=set(PEERS) - {keeper}, verified=full, pinned=())
    kw = {"live": live, "verified": full, "pinned": (), "now": 10**6, "grace_s": 60}
    assert not copies.may_release(me, MID, 3, observed_s=59, **kw).release  # type: ignore[arg-type]
    assert copies.may_release(me, MID, 3, observed_s=60, **kw).release  # type: ignore[arg-type]
    assert not copies.may_release(me, MID, 3, observed_s=None, **kw).release  # type: ignore[arg-type]
