"""The `min_copies` rule: who must keep a dataset, who may release it, and what to fetch first.

Pure decisions over plain values (peer ids, manifest ids, times), so that every node, given the same
holders, reaches the same answer without talking to the others.

Who keeps: rendezvous hashing. Each holder's score for a manifest is BLAKE3(peer id text + manifest id);
the nodes that never release it (its publisher) keep first, then the highest scores, until N keep. A
keeper of a set of holders is a keeper of every subset that contains it, so a node that sees fewer
holders than there are never wrongly believes it may release while the true top N would need it; and
because keepers never release, concurrent releases by the others cannot take the federation below N.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from communs.protocol import ids

DEFAULT_GRACE_S = 3600  # a copy is released only this long after N others were seen verified


def score(peer_id: str, manifest_id: bytes) -> bytes:
    """The rendezvous score of one holder for one manifest (higher keeps first)."""
    return ids.digest(peer_id.encode() + manifest_id)


def keepers(holders: Iterable[str], manifest_id: bytes, n: int, pinned: Collection[str] = ()) -> set[str]:
    """The N holders that keep `manifest_id`: holders in `pinned` first, then by rendezvous score."""
    held = set(holders)
    first = sorted(held & set(pinned))
    rest = sorted(held - set(first), key=lambda p: score(p, manifest_id), reverse=True)
    return set((first + rest)[:max(n, 0)])


@dataclass(frozen=True)
class Verdict:
    """Whether this node may drop its copy now, and why, in words."""

    release: bool
    reason: str


@dataclass(frozen=True)
class Grace:
    """How long this node has seen N verified other keepers of one replica: `observed_s` seconds in all,
    the last time at `last_seen`. Stored in the catalog, so that a restart keeps it."""

    observed_s: int
    last_seen: int


def enough_keepers(me: str, manifest_id: bytes, n: int, *, live: Collection[str], verified: Collection[str],
                   pinned: Collection[str]) -> bool:
    """Whether the N keepers of `manifest_id` among `live` and `me` are all others, and all verified: the
    condition the grace period must see hold before `me` releases its copy."""
    keep = keepers(set(live) | {me}, manifest_id, n, pinned)
    return n > 0 and me not in keep and all(p in verified for p in keep)


def advance_grace(grace: Grace | None, enough: bool, now: int, max_gap_s: int) -> Grace | None:
    """The grace after one look at a replica at `now`: None as soon as the keepers are not `enough` (the
    grace starts over when they are again); otherwise the time since the last look is added, if it is at
    most `max_gap_s`. A longer gap (the node was stopped, or busy, or its clock jumped; a clock going back
    adds nothing) adds nothing but keeps what was seen before: a restart neither starts the grace over nor
    counts time during which nobody looked."""
    if not enough:
        return None
    if grace is None:
        return Grace(0, now)
    gap = now - grace.last_seen
    return Grace(grace.observed_s + (gap if 0 <= gap <= max_gap_s else 0), max(now, grace.last_seen))


def may_release(me: str, manifest_id: bytes, n: int, *, live: Collection[str], verified: Mapping[str, int],
                pinned: Collection[str], enough_since: int | None = None, now: int, grace_s: int = DEFAULT_GRACE_S,
                observed_s: int | None = None) -> Verdict:
    """Whether node `me`, which holds `manifest_id`, may release it under `min_copies = n`.

    `live`: the other nodes with a live claim; `verified`: those among them that passed a challenge, with
    when; `pinned`: nodes that never release it (its publisher); how long N other verified keepers have
    been seen: `observed_s` seconds (a `Grace`, as the node keeps it), or since `enough_since` (None: not
    yet). Releases only if `me` is not a keeper among all holders, the N keepers are all verified, and
    that has held for `grace_s`.
    """
    if observed_s is None and enough_since is not None:
        observed_s = now - enough_since
    if n <= 0:
        return Verdict(False, "no min_copies is set")
    if me in pinned:
        return Verdict(False, "published here: never released")
    holders = set(live) | {me}
    keep = keepers(holders, manifest_id, n, pinned)
    if me in keep:
        return Verdict(False, f"this node is one of the {n} keepers")
    unverified = sorted(p for p in keep if p not in verified)
    if unverified:
        return Verdict(False, f"{len(unverified)} of the {n} keepers not verified yet")
    if observed_s is None or observed_s < grace_s:
        return Verdict(False, f"{n} verified keepers; waiting out the grace period of {grace_s} s")
    return Verdict(True, f"{n} other nodes keep it, verified; released under min_copies = {n}")


def needs_copy(n: int, others_live: int) -> bool:
    """Whether an accepted dataset is wanted here under `min_copies = n`: while fewer than n others hold
    it (n = 0: always, the policy without the rule)."""
    return n <= 0 or others_live < n


def fetch_order(copies: Mapping[bytes, int], created: Mapping[bytes, int], sizes: Mapping[bytes, int]) -> list[bytes]:
    """The order to fetch wanted manifests in: fewest copies first (the most endangered), then newest,
    then smallest (quick to complete, so soon a source for others)."""
    return sorted(copies, key=lambda m: (copies[m], -created.get(m, 0), sizes.get(m, 0), m))


def endangered(held: Iterable[bytes], copies: Mapping[bytes, int], n: int) -> list[bytes]:
    """The manifests held here with fewer than `n` copies in the federation (this one included)."""
    if n <= 0:
        return []
    return sorted(m for m in held if copies.get(m, 0) < n)
