"""One round of the `min_copies` rule (services/copies.py `apply_rule`): what it reads, and what it decides.

Reading is batched: the candidates (replicas complete or not wanted here), the forked publishers, every
live claim on the candidates and the stored release graces are four queries, whatever the number of
datasets. Before, each candidate cost a query of its own (10,000 datasets: 10,000 queries a round);
`gather_per_manifest` keeps that way of reading, for the benchmark (scripts/bench/copies.py `--rule-round`)
and the test that both read the same.

Deciding (`plan`) is pure: it takes what was read, the policy and `now`, and answers which replicas to
release, which to want back, and the new release graces (governance/copies.py `advance_grace`), so that
the catalog writes of a round are two transactions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from communs.governance import copies as rule
from communs.governance import policy as policy_mod
from communs.node.services.datasets import COMPLETE, NOT_WANTED
from communs.protocol import keys
from communs.storage.catalog import Catalog, ClaimRow, ManifestInfo

CANDIDATE_STATES = (COMPLETE, NOT_WANTED)


@dataclass(frozen=True)
class RoundInput:
    """What one round reads from the catalog."""

    candidates: list[ManifestInfo]  # replicas (not published here) complete or not wanted here
    claims: dict[bytes, list[ClaimRow]]  # live claims by manifest, in node order (absent: none)
    forked: set[bytes]  # publishers caught signing two manifests at one place of their log
    graces: dict[bytes, rule.Grace] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundPlan:
    """What one round decided: state changes with their reasons, and the graces to store (None: forget)."""

    released: list[tuple[bytes, str]]
    wanted: list[tuple[bytes, str]]
    graces: dict[bytes, rule.Grace | None]


def _candidates(infos: list[ManifestInfo]) -> list[ManifestInfo]:
    return [i for i in infos if not i.own and i.state in CANDIDATE_STATES]


async def gather(catalog: Catalog, now: int) -> RoundInput:
    """Read one round's input in a fixed number of queries."""
    candidates = _candidates(await catalog.list_manifests())
    claims = await catalog.claims_on_states(now, CANDIDATE_STATES, own=False)
    graces = {m: rule.Grace(o, s) for m, (o, s) in (await catalog.release_graces()).items()}
    return RoundInput(candidates, claims, await catalog.forked_publishers(), graces)


async def gather_per_manifest(catalog: Catalog, now: int) -> RoundInput:
    """The same input read as rounds did before batching: one claims query per candidate (benchmark and
    equivalence test only)."""
    candidates = _candidates(await catalog.list_manifests())
    claims: dict[bytes, list[ClaimRow]] = {}
    for info in candidates:
        rows = await catalog.live_claims(now, info.id)
        if rows:
            claims[info.id] = rows
    graces = {m: rule.Grace(o, s) for m, (o, s) in (await catalog.release_graces()).items()}
    return RoundInput(candidates, claims, await catalog.forked_publishers(), graces)


def counted(r: ClaimRow) -> bool:
    """The catalog's rule for a claim that counts: not failed, or verified since it failed."""
    return r.failed_at is None or (r.verified_at is not None and r.verified_at >= r.failed_at)


def plan(inp: RoundInput, policy: policy_mod.Policy, me_key: bytes, *, now: int, ttl: int, grace_s: int,
         max_gap_s: int) -> RoundPlan:
    """Decide one round under `policy.min_copies = N` (N > 0): release the replicas whose N keepers are other
    verified nodes, seen so for `grace_s`; want back the not-wanted ones fewer than N others hold."""
    n = policy.min_copies
    me = keys.peer_id(me_key)
    released: list[tuple[bytes, str]] = []
    wanted: list[tuple[bytes, str]] = []
    graces: dict[bytes, rule.Grace | None] = {}
    looked: set[bytes] = set()
    for info in inp.candidates:
        publisher = keys.peer_id(info.publisher)
        if info.state == NOT_WANTED and (info.publisher in inp.forked or not policy_mod.evaluate(
                policy, licence=info.licence, size=info.size, publisher_peer_id=publisher, own=False).wanted):
            continue  # refused by the policy itself: min_copies has nothing to say
        rows = [r for r in inp.claims.get(info.id, []) if counted(r)]
        others = {keys.peer_id(r.node): r for r in rows if r.node != me_key}
        if info.state == COMPLETE:
            looked.add(info.id)
            verified = {p: r.verified_at for p, r in others.items()
                        if r.verified_at is not None and now - r.verified_at <= ttl}
            enough = rule.enough_keepers(me, info.id, n, live=set(others), verified=verified, pinned=[publisher])
            before = inp.graces.get(info.id)
            grace = rule.advance_grace(before, enough, now, max_gap_s)
            verdict = None if grace is None else rule.may_release(  # not enough keepers: no release to weigh
                me, info.id, n, live=set(others), verified=verified, pinned=[publisher], observed_s=grace.observed_s,
                now=now, grace_s=grace_s)
            if verdict is not None and verdict.release:
                released.append((info.id, verdict.reason))
                grace = None
            if grace != before:
                graces[info.id] = grace
        elif rule.needs_copy(n, len(others)):  # not wanted only because enough others held it
            wanted.append((info.id, f"wanted: {len(others)} other node(s) hold it, fewer than min_copies = {n}"))
    for stale in set(inp.graces) - looked:  # released, no longer complete, or gone: nothing to wait for
        graces[stale] = None
    return RoundPlan(released, wanted, graces)


def grace_rows(graces: Mapping[bytes, rule.Grace | None]) -> dict[bytes, tuple[int, int] | None]:
    """The catalog's form of a plan's graces."""
    return {m: None if g is None else (g.observed_s, g.last_seen) for m, g in graces.items()}

