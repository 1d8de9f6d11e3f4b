from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from communs.protocol import ids, keys
from communs.protocol.errors import DecodeError
from communs.protocol.publog import (
    LogEntry,
    LogStatus,
    SyncLimits,
    SyncRange,
    contiguous_head,
    entry_of,
    place,
    plan_session,
    plan_sync,
    verify_range,
)
from communs.protocol.records import Manifest, new_dataset_id
from hypothesis import given
from hypothesis import strategies as st

KEY = keys.SigningKey(bytes(range(32)))
OTHER = keys.SigningKey(bytes(range(1, 33)))


def chain(key: keys.SigningKey, n: int, tag: str = "") -> list[Manifest]:
    """n real signed manifests forming `key`'s log from seq 1."""
    out: list[Manifest] = []
    dataset = new_dataset_id(key.public, b"d" * 16)
    for seq in range(1, n + 1):
        prev = out[-1].id if out else None
        out.append(Manifest.create(
            key, dataset=dataset, version=seq, prev=prev, seq=seq, log_prev=prev,
            title=f"v{seq}{tag}", licence="CC0-1.0", created=seq, files=[],
        ))
    return out


LOG = chain(KEY, 5)
E = [entry_of(m) for m in LOG]  # E[i] is seq i + 1


def test_first_record_appends_to_empty_log() -> None:
    assert place(LOG[0], head=0, at_seq=None, before=None, after=None).status is LogStatus.APPENDS


def test_next_record_appends() -> None:
    p = place(LOG[3], head=3, at_seq=None, before=E[2], after=None)
    assert p.status is LogStatus.APPENDS and p.is_new and p.conflict is None


def test_known_record() -> None:
    p = place(LOG[1], head=5, at_seq=E[1], before=E[0], after=E[2])
    assert p.status is LogStatus.KNOWN and not p.is_new


def test_gap_filled() -> None:
    # held: 1, 2, 4, 5; record 3 arrives
    p = place(LOG[2], head=5, at_seq=None, before=E[1], after=E[3])
    assert p.status is LogStatus.FILLS_GAP and p.is_new


def test_ahead_of_head() -> None:
    p = place(LOG[4], head=2, at_seq=None, before=None, after=None)
    assert p.status is LogStatus.AHEAD and p.is_new


FORKED = chain(KEY, 3, tag="-fork")  # same key, same seqs, different records


def test_fork_same_seq() -> None:
    p = place(FORKED[1], head=5, at_seq=E[1], before=E[0], after=E[2])
    assert p.status is LogStatus.FORK and p.conflict == LOG[1].id and not p.is_new
    assert "seq 2" in p.reason


def test_fork_detected_by_predecessor_link() -> None:
    # held: 1, 2 of LOG; FORKED[2] (seq 3) links to FORKED[1], not LOG[1]
    p = place(FORKED[2], head=2, at_seq=None, before=E[1], after=None)
    assert p.status is LogStatus.FORK and p.conflict == LOG[1].id


def test_fork_detected_by_successor_link() -> None:
    # held: 1 of FORKED... and 3 of LOG; LOG's seq 3 links to LOG[1], so FORKED[1] contradicts it
    p = place(FORKED[1], head=3, at_seq=None, before=entry_of(FORKED[0]), after=E[2])
    assert p.status is LogStatus.FORK and p.conflict == LOG[2].id


def test_inconsistent_neighbours_are_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="seq 2"):
        place(LOG[2], head=5, at_seq=None, before=E[0], after=None)
    with pytest.raises(ValueError, match="head"):
        place(LOG[3], head=3, at_seq=None, before=None, after=None)


def test_verify_range_accepts_a_chain() -> None:
    verify_range(LOG, publisher=KEY.public, first_seq=1, prev_id=None)
    verify_range(LOG[2:], publisher=KEY.public, first_seq=3, prev_id=LOG[1].id, last_seq=5)
    verify_range([], publisher=KEY.public, first_seq=3, prev_id=LOG[1].id)


@pytest.mark.parametrize(
    ("records", "kwargs", "reason"),
    [
        (LOG[2:], {"first_seq": 3, "prev_id": FORKED[1].id}, "does not link"),
        (LOG[:2] + LOG[3:], {"first_seq": 1, "prev_id": None}, "expected 3"),
        (LOG[:1] + FORKED[1:2], {"first_seq": 1, "prev_id": None}, "does not link"),
        (LOG[1:3], {"first_seq": 1, "prev_id": None}, "expected 1"),
        (LOG[:3], {"first_seq": 1, "prev_id": None, "last_seq": 2}, "past the requested seq 2"),
        (chain(OTHER, 1), {"first_seq": 1, "prev_id": None}, "another publisher"),
    ],
)
def test_verify_range_rejects(records: list[Manifest], kwargs: dict, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        verify_range(records, publisher=KEY.public, **kwargs)


def test_contiguous_head() -> None:
    assert contiguous_head([]) == 0
    assert contiguous_head([2, 3]) == 0
    assert contiguous_head([1, 2, 3, 5]) == 3
    assert contiguous_head([3, 1, 2]) == 3


A, B, C = (bytes([i]) * 32 for i in (1, 2, 3))


def test_plan_sync() -> None:
    plan = plan_sync({A: 5, B: 10}, [(A, 7), (B, 10), (C, 2500)], max_range=1000)
    assert plan == [
        SyncRange(A, 6, 7),
        SyncRange(C, 1, 1000),
        SyncRange(C, 1001, 2000),
        SyncRange(C, 2001, 2500),
    ]
    assert plan_sync({A: 9}, [(A, 3)]) == []


@given(st.dictionaries(st.binary(min_size=1, max_size=2), st.integers(0, 3000)),
       st.dictionaries(st.binary(min_size=1, max_size=2), st.integers(0, 3000)),
       st.integers(1, 700))
def test_plan_sync_covers_exactly_the_missing_records(local: dict, remote: dict, max_range: int) -> None:
    """Within the session's caps, the plan asks for every missing record exactly once."""
    limits = SyncLimits(max_range=max_range, max_ranges=10**9, max_records=10**9, max_records_per_publisher=10**9)
    plan = plan_session(local, remote.items(), limits)
    wanted = {(p, s) for p, h in remote.items() for s in range(local.get(p, 0) + 1, h + 1)}
    got = [(r.publisher, s) for r in plan.ranges for s in range(r.first, r.last + 1)]
    assert len(got) == len(set(got))
    assert set(got) == wanted
    assert all(1 <= r.last - r.first + 1 <= max_range for r in plan.ranges)
    assert plan.complete and plan.deferred_publishers == 0


@given(st.dictionaries(st.binary(min_size=1, max_size=2), st.integers(0, 3000)),
       st.dictionaries(st.binary(min_size=1, max_size=2), st.integers(0, 2**63 - 1)),
       st.integers(1, 700), st.integers(1, 50), st.integers(1, 5000), st.integers(1, 3000))
def test_plan_session_stays_within_its_caps(local: dict, remote: dict, max_range: int, max_ranges: int,
                                            max_records: int, per_publisher: int) -> None:
    """Whatever the peer advertises, the plan stays within every cap, asks each record once, starts each
    publisher right after our head, and accounts for what it left out."""
    limits = SyncLimits(max_range, max_ranges, max_records, per_publisher)
    plan = plan_session(local, sorted(remote.items()), limits)
    assert len(plan.ranges) <= max_ranges
    assert plan.records <= max_records
    per: dict[bytes, list[SyncRange]] = {}
    for r in plan.ranges:
        assert 1 <= r.last - r.first + 1 <= max_range
        assert r.last <= remote[r.publisher]
        per.setdefault(r.publisher, []).append(r)
    for pub, rs in per.items():
        assert rs[0].first == local.get(pub, 0) + 1
        assert all(a.last + 1 == b.first for a, b in itertools.pairwise(rs))
        assert rs[-1].last - rs[0].first + 1 <= per_publisher
    missing = sum(max(0, h - local.get(p, 0)) for p, h in remote.items())
    assert plan.records + plan.deferred_records == missing
    assert plan.complete == (plan.records == missing)


def test_plan_session_with_a_head_of_2_63_is_small_and_immediate() -> None:
    """The attack of issue 12: one publisher at seq 2**63 - 1 used to make the planner build 9.2e15 ranges."""
    top = 2**63 - 1
    plan = plan_session({}, [(A, top)])
    assert len(plan.ranges) == 50  # MAX_SESSION_RECORDS_PER_PUBLISHER / MAX_RANGE
    assert plan.ranges[0] == SyncRange(A, 1, 1000) and plan.ranges[-1] == SyncRange(A, 49_001, 50_000)
    assert plan.deferred_records == top - 50_000 and plan.deferred_publishers == 1 and not plan.complete
    assert len(plan_sync({}, [(A, top), (B, top)])) == 100
    # every publisher of a full heads answer claiming the maximum: still bounded by the session's caps
    many = [(i.to_bytes(32, "big"), top) for i in range(1, 100_001)]
    plan = plan_session({}, many)
    assert len(plan.ranges) == 200 and plan.records == 200_000
    assert plan.deferred_publishers == 100_000  # four partly asked, the rest not at all


def test_plan_session_order_puts_the_peer_then_known_publishers_first() -> None:
    limits = SyncLimits(max_range=10, max_ranges=3, max_records=1000, max_records_per_publisher=1000)
    plan = plan_session({B: 4}, [(A, 5), (B, 9), (C, 5)], limits, first=[C])
    assert plan.ranges == (SyncRange(C, 1, 5), SyncRange(B, 5, 9), SyncRange(A, 1, 5))
    # caps cut the unknown publishers first
    limits = SyncLimits(max_range=10, max_ranges=2, max_records=1000, max_records_per_publisher=1000)
    plan = plan_session({B: 4}, [(A, 5), (B, 9), (C, 5)], limits, first=[C])
    assert [r.publisher for r in plan.ranges] == [C, B]
    assert plan.deferred_records == 5 and plan.deferred_publishers == 1


def test_plan_session_seed_orders_unknown_publishers_beyond_the_peers_choice() -> None:
    pubs = [bytes([i]) * 32 for i in range(1, 41)]
    limits = SyncLimits(max_range=10, max_ranges=1, max_records=1000, max_records_per_publisher=1000)
    chosen = {plan_session({}, [(p, 3) for p in pubs], limits, seed=bytes([s])).ranges[0].publisher
              for s in range(40)}
    assert len(chosen) > 10  # different sessions ask different unknown publishers first
    assert plan_session({}, [(p, 3) for p in pubs], limits).ranges[0].publisher == pubs[0]  # no seed: peer order
    # the order under one seed is fixed (pure)
    assert plan_session({}, [(p, 3) for p in pubs], limits, seed=b"x") == \
        plan_session({}, [(p, 3) for p in pubs], limits, seed=b"x")


def test_plan_session_caps_per_publisher_and_per_session() -> None:
    limits = SyncLimits(max_range=100, max_ranges=100, max_records=250, max_records_per_publisher=150)
    plan = plan_session({}, [(A, 1000), (B, 1000), (C, 10)], limits)
    assert plan.ranges == (SyncRange(A, 1, 100), SyncRange(A, 101, 150), SyncRange(B, 1, 100))
    assert plan.deferred_records == 850 + 900 + 10 and plan.deferred_publishers == 3
    with pytest.raises(ValueError):
        SyncLimits(max_ranges=0)


@dataclass(frozen=True)
class Rec:
    publisher: bytes
    seq: int
    id: bytes
    log_prev: bytes | None


@given(st.sets(st.integers(1, 12)), st.integers(1, 12), st.booleans())
def test_place_against_a_model(held: set[int], seq: int, forked: bool) -> None:
    """Against an honest chain, a record is a fork only if it is a forged one, and KNOWN only if held."""
    def rid(s: int, fork: bool = False) -> bytes:
        return ids.digest(f"{s}{fork}".encode())

    def rec(s: int, fork: bool = False) -> Rec:
        return Rec(KEY.public, s, rid(s, fork), None if s == 1 else rid(s - 1, fork))

    stored = {s: LogEntry(s, rid(s), None if s == 1 else rid(s - 1)) for s in held}
    head = max(held, default=0)
    new = rec(seq, forked)
    p = place(new, head=head, at_seq=stored.get(seq), before=stored.get(seq - 1), after=stored.get(seq + 1))
    neighbours = {seq - 1, seq, seq + 1} & held
    if forked and neighbours:
        assert p.status is LogStatus.FORK
    elif seq in held:
        assert p.status is LogStatus.KNOWN
    else:
        # an honest record, or a forged one with no held neighbour to contradict (undetectable yet)
        assert p.status in (LogStatus.APPENDS, LogStatus.FILLS_GAP, LogStatus.AHEAD)
        assert (p.status is LogStatus.APPENDS) == (seq == head + 1)
        assert (p.status is LogStatus.FILLS_GAP) == (seq < head)
