"""One round of the min_copies rule: the batched read answers what the per-manifest read answered, on the
same real catalog, and the pure plan releases after the grace as seen, across a restart of the catalog."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from pathlib import Path

from communs.governance.copies import Grace, keepers
from communs.governance.policy import Policy
from communs.node.services import copies_round
from communs.protocol import keys
from communs.protocol.ids import digest
from communs.storage.catalog import Catalog, ManifestRow

NOW = 1_000_000
TTL = 600
POLICY = Policy(accept_licences=("CC0-1.0",), min_copies=2)


def key(i: int) -> bytes:
    return keys.SigningKey(hashlib.sha256(b"node%d" % i).digest()).public


ME, PUB = key(0), key(1)
OTHERS = [key(i) for i in range(2, 7)]


def manifest(i: int, state: str, *, own: bool = False, licence: str = "CC0-1.0", publisher: bytes = PUB) \
        -> ManifestRow:
    mid = digest(b"manifest%d" % i)
    return ManifestRow(id=mid, dataset=digest(b"ds" + mid), version=1, publisher=publisher, seq=i, log_prev=None,
                       raw=b"raw:" + mid, title=f"t{i}", licence=licence, size=10, created=1000 + i,
                       received_at=2000, state=state, chunks=[], own=own)


async def fill(cat: Catalog, count: int, seed: int = 7) -> list[ManifestRow]:
    """Manifests in every state, with claims live, expired, withdrawn, failed, verified long ago or lately."""
    rng = random.Random(seed)
    states = ["complete", "not-wanted", "in-progress", "complete", "not-wanted", "retracted"]
    rows = [manifest(i, states[i % len(states)], licence="CC0-1.0" if i % 7 else "CC-BY-4.0")
            for i in range(1, count + 1)]
    rows.append(manifest(count + 1, "own", own=True, publisher=ME))
    await cat.put_manifests_batch(rows)
    claims = []
    for r in rows:
        for node in [PUB, ME, *OTHERS]:
            if rng.random() < 0.5:
                claims.append((node, r.id, 10, 1, NOW + rng.choice([-5, 300]), rng.random() < 0.1, b"c"))
    claims.append((OTHERS[0], digest(b"a manifest not known here"), 10, 1, NOW + 300, False, b"c"))
    await cat.put_claims(claims)
    for node, mid, *_ in claims:
        roll = rng.random()
        if roll < 0.5:
            await cat.claim_checked(node, mid, NOW - rng.choice([10, TTL * 2]), True)
        elif roll < 0.6:
            await cat.claim_checked(node, mid, NOW - 1, False)
    return rows


async def test_the_batched_read_answers_what_the_per_manifest_read_did(tmp_path: Path) -> None:
    async with await Catalog.open(tmp_path / "c.sqlite") as cat:
        rows = await fill(cat, 120)
        await cat.save_release_graces({rows[0].id: (5, NOW - 3), digest(b"gone"): (1, NOW - 1)})
        old = await copies_round.gather_per_manifest(cat, NOW)
        new = await copies_round.gather(cat, NOW)
    assert new == old
    assert len(new.candidates) >= 40 and len(new.claims) >= 30  # the scenario has something to decide on
    args = {"now": NOW, "ttl": TTL, "grace_s": 0, "max_gap_s": 10}
    planned = copies_round.plan(new, POLICY, ME, **args)  # type: ignore[arg-type]
    assert planned == copies_round.plan(old, POLICY, ME, **args)  # type: ignore[arg-type]
    assert planned.released and planned.wanted and planned.graces[digest(b"gone")] is None


def verified_keepers_scenario() -> tuple[copies_round.RoundInput, ManifestRow]:
    """One replica held complete here that two verified other nodes (its publisher and another) keep."""
    from communs.storage.catalog import ClaimRow, ManifestInfo

    row = manifest(1, "complete")
    info = ManifestInfo(id=row.id, dataset=row.dataset, version=1, publisher=PUB, seq=1, log_prev=None,
                        title="t", licence="CC0-1.0", size=10, created=1, received_at=1, own=False,
                        state="complete", reason="")
    holders = [PUB, *OTHERS]
    peer = {keys.peer_id(k): k for k in holders}
    keep = keepers(set(peer) | {keys.peer_id(ME)}, row.id, 2, [keys.peer_id(PUB)])
    assert keys.peer_id(ME) not in keep  # the keys are fixed: this holds for this scenario
    claims = [ClaimRow(peer[p], row.id, 1, 1, NOW + 10_000, False, b"c", NOW - 5, None) for p in sorted(keep)]
    return copies_round.RoundInput([info], {row.id: claims}, set()), row


async def test_the_grace_is_kept_across_a_restart_and_the_downtime_is_not_counted(tmp_path: Path) -> None:
    inp, row = verified_keepers_scenario()
    path = tmp_path / "c.sqlite"
    t, observed = NOW, None
    for _ in range(4):  # rounds 5 s apart: 15 s seen
        p = copies_round.plan(inp, POLICY, ME, now=t, ttl=TTL, grace_s=30, max_gap_s=10)
        assert not p.released
        async with await Catalog.open(path) as cat:
            await cat.save_release_graces(copies_round.grace_rows(p.graces))
            observed = (await cat.release_graces())[row.id]
        inp = copies_round.RoundInput(inp.candidates, inp.claims, set(), {row.id: Grace(*observed)})
        t += 5
    assert observed == (15, NOW + 15)
    # the node was stopped for 5 minutes (the keepers' verifications still fresh, under the TTL); after the
    # restart the stored grace goes on from 15 s, neither from 0 nor from 315
    t = NOW + 300
    async with await Catalog.open(path) as cat:
        graces = {m: Grace(*g) for m, g in (await cat.release_graces()).items()}
    inp = copies_round.RoundInput(inp.candidates, inp.claims, set(), graces)
    p = copies_round.plan(inp, POLICY, ME, now=t, ttl=TTL, grace_s=30, max_gap_s=10)
    assert not p.released and p.graces == {row.id: Grace(15, t)}
    for step in range(1, 4):
        grace = p.graces[row.id]
        assert grace is not None
        inp = copies_round.RoundInput(inp.candidates, inp.claims, set(), {row.id: grace})
        p = copies_round.plan(inp, POLICY, ME, now=t + 5 * step, ttl=TTL, grace_s=30, max_gap_s=10)
        if step < 3:
            assert not p.released and p.graces[row.id] == Grace(15 + 5 * step, t + 5 * step)
    assert [m for m, _ in p.released] == [row.id] and p.graces == {row.id: None}  # 30 s seen: released


def test_a_keeper_that_stops_counting_starts_the_grace_over() -> None:
    inp, row = verified_keepers_scenario()
    unverified = {row.id: [dataclasses.replace(c, verified_at=None) for c in inp.claims[row.id]]}
    inp = copies_round.RoundInput(inp.candidates, unverified, set(), {row.id: Grace(25, NOW - 5)})
    p = copies_round.plan(inp, POLICY, ME, now=NOW, ttl=TTL, grace_s=30, max_gap_s=10)
    assert not p.released and p.graces == {row.id: None}
