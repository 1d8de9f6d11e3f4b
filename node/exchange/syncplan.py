"""Catalog sync's decisions (pure): whom to sync with now, what to do with a range answer, and the one
sentence a session's limits are reported in. `node/exchange/sync.py` does the I/O around them."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from communs.protocol import keys, wire
from communs.protocol import publog as plog

SYNC_INTERVAL = 45.0  # seconds between periodic catalog syncs (jittered), a few connected peers a round (syncpick.py)
NOT_COMMUNS_TTL = 600.0  # a peer without /communs/sync/1 is not asked again for this long


def own_key(peer: str) -> tuple[bytes, ...]:
    """The publisher key of a peer (its own records are asked for first), if its id is an Ed25519 key."""
    try:
        return (keys.public_from_peer_id(peer),)
    except Exception:  # noqa: BLE001 - another key type: no own records to put first
        return ()


def speaks_sync(peer: str, protocols: Sequence[str], now: float, not_communs: Mapping[str, float]) -> bool:
    """Whether `peer` may answer /communs/sync/1: not found lately to lack it, and not without it by what
    identify says (no protocols known yet counts as maybe)."""
    if now - not_communs.get(peer, -NOT_COMMUNS_TTL) < NOT_COMMUNS_TTL:
        return False
    return not protocols or wire.SYNC_PROTOCOL in protocols


@dataclass(frozen=True)
class RangeAnswer:
    """What one answer to a range request means for the session."""

    stored: plog.SyncRange | None  # the part of the asked range the answer holds (None: it holds nothing)
    follow: plog.SyncRange | None  # the rest, asked next (the answer was cut by its byte budget)
    short: bool  # the peer holds less than it advertised: ask no more of this publisher's records


def read_answer(asked: plog.SyncRange, count: int, size: int) -> RangeAnswer:
    """`count` records of `size` bytes in all came for the range `asked`. Fewer than asked is either the
    answer's byte budget (some came and the answer is as full as the budget allows: ask on from there) or a
    peer that advertised more than it serves (go no further with that publisher)."""
    follow = None
    short = False
    if count < asked.last - asked.first + 1:
        if count and wire.answer_was_cut(size):
            follow = plog.SyncRange(asked.publisher, asked.first + count, asked.last)
        else:
            short = True
    stored = None
    if count:
        stored = asked if follow is None else plog.SyncRange(asked.publisher, asked.first, follow.first - 1)
    return RangeAnswer(stored, follow, short)


def sync_limits_sentence(peer: str, plan: plog.SyncPlan, cut: Sequence[str], refused: collections.Counter[str],
                         refused_publishers: int) -> str:
    """One sentence saying what a catalog sync session left out or refused, and why."""
    parts = []
    if refused:
        reason, _ = refused.most_common(1)[0]
        parts.append(f"refused {sum(refused.values())} valid record(s) of {refused_publishers} publisher(s) "
                     f"over an ingest quota ({reason})")
    if cut:
        parts.append(f"stopped reading because {cut[0]}")
    if not plan.complete:
        parts.append(f"left {plan.deferred_records} advertised record(s) of {plan.deferred_publishers} "
                     f"publisher(s) for a later session (at most {plog.MAX_SESSION_RECORDS} records, "
                     f"{plog.MAX_SESSION_RECORDS_PER_PUBLISHER} per publisher, {plog.MAX_SESSION_RANGES} "
                     "ranges per session)")
    return f"catalog sync with {peer}: " + "; ".join(parts) + "."
