"""Which peers a dataset's chunks are fetched from, and how long a source may take over a chunk.

Pure decisions over plain data (the replication scheduler in node/replication.py does the I/O):

* `choose_sources`: an order of candidate sources. Sorting peer ids, as replication once did, let
  anyone who grinds keys that sort first (and answers `not-found`) keep an honest holder from ever
  being asked. Here the order is random (a seeded `random.Random` in tests), peers that announced
  holding the dataset come before peers that are merely connected, and peers that recently lacked
  it, failed or stalled come last (oldest disappointment first), so every candidate gets its turn.
  The scheduler starts the first `MAX_SOURCES` and keeps the rest as spares that replace a source
  that lacks the chunks, fails or stalls, within the same round.
* `chunk_deadline`: a throughput deadline for the next chunk of an answer. A source that drips a
  byte every few seconds never trips a per-byte idle timeout; one that delivers less than
  `MIN_RATE` bytes per second (after a grace period for the first byte) loses its chunks to the
  other sources (`can_hand_over`; when it is the last one, the scheduler looks for sources again).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_SOURCES = 8  # sources fetched from at once for one dataset
MAX_CANDIDATES = 32  # sources tried (at once or as spares) in one round for one dataset
MIN_RATE = 128 << 10  # bytes per second a source must deliver a chunk at, once it started answering
GRACE_S = 10.0  # time allowed for a source to start delivering a chunk (disk reads, a busy peer)
FORGET_S = 600.0  # a source that lacked, failed or stalled is asked last for this long
# Swarming: a source that lacks every chunk still wanted may be fetching the same dataset right now (49
# nodes enacting one policy at once all start empty). It is asked again every LACK_RETRY_S, for at most
# SWARM_PATIENCE_S since it last had something to give, instead of being dropped at its first "not-found".
LACK_RETRY_S = 1.0
SWARM_PATIENCE_S = 30.0

# What a source did the last time it was asked for a dataset's chunks.
SENT = "sent"
LACKED = "lacked"
FAILED = "failed"
STALLED = "stalled"
BAD_OUTCOMES = frozenset({LACKED, FAILED, STALLED})


@dataclass(frozen=True)
class Outcome:
    """The last thing a peer did as a source of one dataset, and when (monotonic seconds)."""

    kind: str
    at: float


def choose_sources(announced: Iterable[str], others: Iterable[str], *, banned: Iterable[str] = (),
                   history: Mapping[str, Outcome] | None = None, now: float, rng: random.Random,
                   limit: int = MAX_CANDIDATES, me: str | None = None) -> list[str]:
    """The candidates to fetch from, in the order to try them, at most `limit`.

    Ranks: peers that sent chunks of this dataset before or announced holding it, then other
    candidates (connected peers that may hold it without having said so), then those that lacked it,
    failed or stalled within `FORGET_S` (the longest ago first). Within a rank the order is random,
    so no peer id decides who is asked.
    """
    history = history or {}
    excluded = set(banned)
    if me is not None:
        excluded.add(me)
    announced_set = set(announced)
    candidates = [p for p in dict.fromkeys([*announced_set, *others]) if p not in excluded]
    candidates.sort()  # a deterministic start, so a seeded rng gives the same order in tests
    rng.shuffle(candidates)

    def rank(peer: str) -> tuple[int, float]:
        last = history.get(peer)
        if last is not None and last.kind in BAD_OUTCOMES and now - last.at < FORGET_S:
            return 2, last.at
        if peer in announced_set or (last is not None and last.kind == SENT):
            return 0, 0.0
        return 1, 0.0

    candidates.sort(key=rank)  # stable: the shuffled order stays within a rank
    return candidates[:max(0, limit)]


def fetch_order(chunks: Iterable[tuple[bytes, int]], rng: random.Random) -> list[tuple[bytes, int]]:
    """The order to fetch a dataset's missing chunks in: random, so that nodes fetching one dataset at
    the same time hold different chunks and can serve each other (as BitTorrent's random first pieces),
    instead of all asking the publisher for the same chunk at the same moment."""
    order = list(chunks)
    rng.shuffle(order)
    return order


def keep_asking(lacked_since: float, now: float, *, patience: float = SWARM_PATIENCE_S) -> bool:
    """Whether a source that lacks every chunk still wanted (since `lacked_since`) is asked again later
    (it may be fetching them too) rather than dropped for this round."""
    return now - lacked_since < patience


def chunk_deadline(since: float, size: int, *, min_rate: float = MIN_RATE, grace: float = GRACE_S) -> float:
    """When the chunk of `size` bytes asked for (or next in an answer) since `since` must have arrived."""
    return since + grace + max(0, size) / min_rate


def can_hand_over(states: Mapping[str, str], spares: int, peer: str) -> bool:
    """Whether `peer`'s chunks can go to another source when it misses a deadline: another source is
    still `active`, or a spare has not been asked yet. The last source left (once a new search found
    nobody else) keeps its chance, its stream's idle timeouts still ending a dead one, so a slow but
    honest only holder is not abandoned."""
    return spares > 0 or any(p != peer and s == "active" for p, s in states.items())


def remember(history: dict[str, Outcome], peer: str, kind: str, now: float, *, cap: int = 256) -> None:
    """Record a source's outcome, keeping at most `cap` peers (the oldest are forgotten first)."""
    history.pop(peer, None)
    history[peer] = Outcome(kind, now)
    while len(history) > cap:
        del history[next(iter(history))]
