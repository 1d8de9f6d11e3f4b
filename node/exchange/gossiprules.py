"""Gossip's decisions (pure): whether a message passes the topic validator and why not, when a misbehaving
peer is worth a warning, whom to ask for an announced manifest and when to try again.
`node/exchange/gossip.py` does the I/O around them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from communs.node.exchange.facts import RecordFacts
from communs.protocol.errors import DecodeError, RecordError, SignatureError
from communs.protocol.records import ANNOUNCE_MAX_AGE, MAX_ANNOUNCE_BYTES, Announcement, StaleError, check_fresh
from communs.protocol.retraction import Retraction, check_fresh_retraction, decode_gossip

REJECT_WARN_INTERVAL = 60.0  # at most one warning per misbehaving peer per this many seconds
FETCH_RETRY_DELAYS = (0.1, 0.3, 1.0, 3.0)  # a manifest announced but not found at the relaying peer yet

Warned = tuple[float, int, str]  # (when the last warning was said, rejections since, the last reason)


def check_message(data: bytes, now: float) -> Announcement | Retraction:
    """A gossip message's record, decoded, verified and fresh at `now`; RecordError (or any other exception,
    for a bug in a decoder) otherwise."""
    if len(data) > MAX_ANNOUNCE_BYTES:
        raise DecodeError(f"announcement is {len(data)} bytes, over {MAX_ANNOUNCE_BYTES}")
    record = decode_gossip(data)  # an announcement or a retraction, by its type
    if isinstance(record, Retraction):
        check_fresh_retraction(record, int(now))
    else:
        check_fresh(record, int(now))
    return record


def rejection(exc: Exception, size: int) -> tuple[str, str]:
    """(reason counted in the metrics, detail logged) for a message `check_message` refused."""
    if isinstance(exc, SignatureError):
        return "bad-signature", str(exc)
    if isinstance(exc, StaleError):
        return "stale", str(exc)
    if isinstance(exc, RecordError):
        return ("too-large" if size > MAX_ANNOUNCE_BYTES else "malformed"), str(exc)
    return "malformed", f"{type(exc).__name__}: {exc}"


def is_replay(accepted_at: float | None, now: float) -> bool:
    """Whether a record accepted at `accepted_at` (None: never) and seen again at `now` is a replay within
    the window in which it would still be fresh."""
    return accepted_at is not None and now - accepted_at < ANNOUNCE_MAX_AGE


def warn_step(previous: Warned | None, now: float, reason: str) -> tuple[int | None, Warned]:
    """One more rejection of a peer's message at `now`: (rejections to warn about now, or None to stay quiet,
    the peer's new warning state). At most one warning per REJECT_WARN_INTERVAL, counting those in between."""
    last, count, _ = previous if previous is not None else (0.0, 0, "")
    count += 1
    if now - last >= REJECT_WARN_INTERVAL:
        return count, (now, 0, reason)
    return None, (last, count, reason)


def fetch_peers(sender: str, announcer: str, origin: str, me: str) -> list[str]:
    """Whom to ask for an announced manifest, in order: the relaying peer (it accepted the announcement and
    fetches it too), the announcing node, the peer that first published the message."""
    return [p for p in dict.fromkeys([sender, announcer, origin]) if p and p != me]


def next_fetch_peer(peers: Sequence[str], tried: set[str], connected: Callable[[str], bool]) -> tuple[str | None, bool]:
    """(the peer to ask next, whether every candidate was tried once and the round starts again), or
    (None, False) when none of them is connected."""
    for peer in peers:
        if peer not in tried and connected(peer):
            return peer, False
    for peer in peers:  # every candidate tried once: start again from the first connected one
        if connected(peer):
            return peer, True
    return None, False


def retry_delay(attempt: int) -> float | None:
    """How long to wait before asking again for a manifest not found at its peers yet (`attempt` retries
    so far), or None to give up (catalog sync will bring it)."""
    return FETCH_RETRY_DELAYS[attempt] if attempt < len(FETCH_RETRY_DELAYS) else None


def matches(facts: RecordFacts, ann: Announcement) -> bool:
    """Whether a fetched manifest is the one its announcement describes."""
    return (facts.dataset, facts.publisher, facts.seq, facts.size) == (ann.dataset, ann.publisher, ann.seq, ann.size)
