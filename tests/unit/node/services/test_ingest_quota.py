"""The ingest quotas of issue 12 (node/ingest_quota.py): pure decisions, every branch."""

from __future__ import annotations

import pytest
from communs.node.services import ingest_quota as q
from communs.node.services.ingest_quota import Candidate, PeerLedger, Quota, Usage, admit
from hypothesis import given
from hypothesis import strategies as st

A, B, ME = (bytes([i]) * 32 for i in (1, 2, 3))
SMALL = Quota(records=3, bytes=1000, chunk_refs=10)


def test_usage_adds_and_quota_names_the_limit_exceeded() -> None:
    assert Usage(1, 2, 3) + Usage(10, 20, 30) == Usage(11, 22, 33)
    assert SMALL.excess(Usage(3, 1000, 10)) is None
    assert SMALL.excess(Usage(4, 0, 0)) == "3 records"
    assert Quota(1, 2 * q.MiB, 1).excess(Usage(1, 2 * q.MiB + 1, 0)) == "2 MiB of records"
    assert SMALL.excess(Usage(0, 0, 11)) == "10 chunk references"


def test_admit_per_publisher_counts_what_is_held_and_what_was_admitted_before() -> None:
    cands = [Candidate(A, 100, 1), Candidate(A, 100, 1), Candidate(B, 100, 1)]
    verdicts = admit(cands, publishers={A: Usage(2, 0, 0)}, peer=None, storage_left=None, publisher_quota=SMALL)
    assert verdicts[0] is None
    assert verdicts[1] is not None and "reached its quota of 3 records here" in verdicts[1]
    assert verdicts[2] is None


def test_admit_refuses_the_rest_of_a_publisher_after_a_refusal() -> None:
    """No gaps: once one record of a publisher is refused, its later ones are too, even if they would fit."""
    cands = [Candidate(A, 900, 1), Candidate(A, 200, 1), Candidate(A, 10, 1)]
    verdicts = admit(cands, publishers={}, peer=None, storage_left=None, publisher_quota=SMALL)
    assert verdicts[0] is None and verdicts[1] is not None and verdicts[2] == verdicts[1]


def test_admit_per_peer_window() -> None:
    cands = [Candidate(A, 10, 4), Candidate(B, 10, 4), Candidate(A, 10, 4)]
    verdicts = admit(cands, publishers={}, peer=Usage(0, 0, 3), storage_left=None, peer_quota=SMALL)
    assert verdicts[0] is None
    assert verdicts[1] == "the peer reached its quota of 10 chunk references per 1 h"
    assert verdicts[2] is not None  # A's next record follows B's refusal only through the peer's total
    # not from a peer (peer=None): no peer limit at all
    assert admit(cands, publishers={}, peer=None, storage_left=None, peer_quota=SMALL) == [None] * 3


def test_admit_counts_the_catalog_against_the_storage_quota() -> None:
    cost = q.catalog_cost(100, 2)
    assert cost == 100 + 2 * q.CATALOG_BYTES_PER_REF == 700
    cands = [Candidate(A, 100, 2), Candidate(B, 100, 2)]
    verdicts = admit(cands, publishers={}, peer=Usage(), storage_left=cost + 1)
    assert verdicts == [None, "the catalog and the chunks held reached the storage quota"]
    assert admit(cands, publishers={}, peer=Usage(), storage_left=-5)[0] is not None  # already over
    assert admit(cands, publishers={}, peer=Usage(), storage_left=None) == [None, None]


def test_admit_never_refuses_the_nodes_own_records() -> None:
    cands = [Candidate(ME, 10**9, 10**9), Candidate(A, 10, 1)]
    verdicts = admit(cands, publishers={ME: Usage(10**9, 10**12, 10**9)}, peer=Usage(10**9, 0, 0),
                     storage_left=0, exempt=ME)
    assert verdicts[0] is None and verdicts[1] is not None


def test_default_quotas_let_an_honest_federation_through() -> None:
    """100,000 manifests of 50 publishers, about 600 bytes and 6 chunk references each (scripts/bench/sync.py),
    all brought by one peer within the hour: nothing is refused."""
    pubs = [i.to_bytes(32, "big") for i in range(1, 51)]
    cands = [Candidate(p, 700, 6) for p in pubs for _ in range(2000)]
    assert all(v is None for v in admit(cands, publishers={}, peer=Usage(), storage_left=None))


def test_default_quotas_stop_the_large_manifest_flood() -> None:
    """Issue 12's attack: valid 1 MiB manifests (about 25,000 chunk references each) from throwaway keys."""
    cands = [Candidate(bytes([i % 256, i // 256]) * 16, 1 << 20, 25_000) for i in range(300)]
    verdicts = admit(cands, publishers={}, peer=Usage(), storage_left=None)
    admitted = sum(v is None for v in verdicts)
    assert admitted == q.PEER_QUOTA.chunk_refs // 25_000 == 40
    assert all(v is not None for v in verdicts[admitted:])


def test_peer_ledger_slides_its_window() -> None:
    ledger = PeerLedger(window=60.0, buckets=6)
    ledger.add("p", Usage(1, 10, 1), now=0.0)
    ledger.add("p", Usage(1, 10, 1), now=5.0)  # same 10 s slice
    ledger.add("p", Usage(1, 10, 1), now=35.0)
    ledger.add("q", Usage(5, 5, 5), now=35.0)
    ledger.add("p", Usage(), now=36.0)  # nothing: no slice
    assert ledger.usage("p", 40.0) == Usage(3, 30, 3)
    assert ledger.usage("p", 60.0) == Usage(1, 10, 1)  # the slices of 0-10 s left the window
    assert ledger.usage("p", 95.0) == Usage()
    assert ledger.usage("q", 40.0) == Usage(5, 5, 5)
    assert ledger.usage("never", 40.0) == Usage()


def test_peer_ledger_memory_is_bounded() -> None:
    ledger = PeerLedger(window=60.0, buckets=6, max_peers=3)
    for i in range(10):
        ledger.add(f"p{i}", Usage(1, 1, 1), now=float(i))
    assert len(ledger._peers) == 3
    assert ledger.usage("p0", 10.0) == Usage() and ledger.usage("p9", 10.0) == Usage(1, 1, 1)
    with pytest.raises(ValueError):
        PeerLedger(window=0)
    assert q.total([Usage(1, 1, 1), Usage(2, 2, 2)]) == Usage(3, 3, 3)


def test_refusals_that_end_a_sync_session() -> None:
    """A peer over its own quota, or a node over its storage quota: nothing more the peer sends now can be
    stored, so sync stops asking. A publisher over its quota only stops that publisher."""
    peer, storage, pub = (admit([Candidate(A, 10, 1)], publishers=held, peer=p, storage_left=left,
                                publisher_quota=SMALL, peer_quota=SMALL)[0]
                          for held, p, left in (({}, Usage(10, 0, 0), None), ({}, None, 0),
                                                ({A: Usage(3, 0, 0)}, None, None)))
    assert peer is not None and q.ends_session(peer)
    assert storage is not None and q.ends_session(storage)
    assert pub is not None and not q.ends_session(pub)


@given(st.lists(st.tuples(st.sampled_from([b"A" * 32, b"B" * 32, b"M" * 32]), st.integers(1, 400),
                          st.integers(0, 40)), max_size=40),
       st.integers(0, 20), st.one_of(st.none(), st.integers(0, 30_000)))
def test_the_batch_fast_path_agrees_with_counting_record_by_record(
        batch: list[tuple[bytes, int, int]], held: int, left: int | None) -> None:
    small = q.Quota(records=15, bytes=3000, chunk_refs=200)
    cands = [q.Candidate(p, b, r) for p, b, r in batch]
    kw = dict(publishers={b"A" * 32: q.Usage(held, held * 10, held)}, peer=q.Usage(held, held, held),
              storage_left=left, exempt=b"M" * 32, publisher_quota=small, peer_quota=small)
    fast = q.admit(cands, **kw)  # type: ignore[arg-type]
    original = q._all_fit
    try:
        q._all_fit = lambda *a, **k: False  # type: ignore[assignment]
        slow = q.admit(cands, **kw)  # type: ignore[arg-type]
    finally:
        q._all_fit = original  # type: ignore[assignment]
    assert fast == slow
