"""The per-publisher append-only log, as pure decisions over what a node already holds.

Each manifest carries its publisher's `seq` (1, 2, 3...) and `log_prev`, the id of the
publisher's record at `seq - 1`. So a publisher's records form a hash chain, as in Secure
Scuttlebutt and Hypercore, and two records that cannot both belong to one chain are proof
that the key signed two histories (a fork).

The catalog asks three neighbours of a new record (at seq - 1, seq, seq + 1) and the
publisher's head, and `place` tells it what the record is. Catalog sync compares, per
publisher, the *contiguous* head (highest seq with every record from 1 to it held), so that
"what am I missing?" is one number per publisher (`plan_sync`), and a fetched range is
checked as a whole chain (`verify_range`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .errors import DecodeError
from .ids import digest

MAX_RANGE = 1000


class LogRecord(Protocol):
    """What the log needs of a record; `records.Manifest` provides it."""

    @property
    def publisher(self) -> bytes: ...
    @property
    def seq(self) -> int: ...
    @property
    def id(self) -> bytes: ...
    @property
    def log_prev(self) -> bytes | None: ...


@dataclass(frozen=True)
class LogEntry:
    """A stored record's place in its publisher's log."""

    seq: int
    id: bytes
    log_prev: bytes | None


class LogStatus(enum.Enum):
    APPENDS = "appends"  # seq == head + 1 and linked to the head: the log grows by one
    KNOWN = "known"  # this very record is already held
    FILLS_GAP = "fills-gap"  # seq <= head, the slot was empty, and it agrees with its neighbours
    AHEAD = "ahead"  # seq > head + 1: keep it, and sync the records in between
    FORK = "fork"  # it contradicts a held record of the same publisher: proof of a misbehaving key


@dataclass(frozen=True)
class Placement:
    status: LogStatus
    conflict: bytes | None = None  # for FORK: id of the held record it contradicts
    reason: str = ""  # for FORK: one sentence

    @property
    def is_new(self) -> bool:
        """Whether the record should be stored (forks are stored too, but as evidence)."""
        return self.status in (LogStatus.APPENDS, LogStatus.FILLS_GAP, LogStatus.AHEAD)


def place(
    record: LogRecord | LogEntry,
    *,
    head: int,
    at_seq: LogEntry | None,
    before: LogEntry | None,
    after: LogEntry | None,
) -> Placement:
    """Decide what `record` is, given the publisher's highest held seq (`head`, 0 if none) and the
    held records at `record.seq` (`at_seq`), `record.seq - 1` (`before`) and `record.seq + 1` (`after`).
    """
    seq = record.seq
    neighbours = (("at_seq", at_seq, seq), ("before", before, seq - 1), ("after", after, seq + 1))
    for name, entry, expected in neighbours:
        if entry is not None and entry.seq != expected:
            raise ValueError(f"{name} must be the held entry at seq {expected}, got seq {entry.seq}")
    if seq == head + 1 and head > 0 and before is None:
        raise ValueError("before must be the held head entry when the record's seq is head + 1")
    if at_seq is not None:
        if at_seq.id == record.id:
            return Placement(LogStatus.KNOWN)
        return Placement(LogStatus.FORK, at_seq.id, f"publisher signed two different records at seq {seq}")
    if before is not None and record.log_prev != before.id:
        return Placement(
            LogStatus.FORK, before.id, f"record at seq {seq} does not follow the held record at seq {seq - 1}"
        )
    if after is not None and after.log_prev != record.id:
        return Placement(
            LogStatus.FORK, after.id, f"held record at seq {seq + 1} does not follow this record at seq {seq}"
        )
    if seq == head + 1:
        return Placement(LogStatus.APPENDS)
    if seq <= head:
        return Placement(LogStatus.FILLS_GAP)
    return Placement(LogStatus.AHEAD)


def entry_of(record: LogRecord) -> LogEntry:
    return LogEntry(record.seq, record.id, record.log_prev)


def verify_range(
    records: Sequence[LogRecord],
    *,
    publisher: bytes,
    first_seq: int,
    prev_id: bytes | None,
    last_seq: int | None = None,
) -> None:
    """Raise DecodeError unless `records` are `publisher`'s consecutive log records from `first_seq`,
    each linked to the one before, the first linked to `prev_id` (the held record at `first_seq - 1`,
    None when `first_seq` is 1), and none past `last_seq`.
    """
    expected_prev = prev_id
    for offset, rec in enumerate(records):
        seq = first_seq + offset
        if rec.publisher != publisher:
            raise DecodeError(f"record at position {offset} of the range is from another publisher")
        if rec.seq != seq:
            raise DecodeError(f"range record has seq {rec.seq}, expected {seq}")
        if last_seq is not None and seq > last_seq:
            raise DecodeError(f"range goes past the requested seq {last_seq}")
        if rec.log_prev != expected_prev:
            raise DecodeError(f"range record at seq {seq} does not link to the record before it")
        expected_prev = rec.id


def contiguous_head(seqs: Iterable[int]) -> int:
    """The highest n such that every seq from 1 to n is in `seqs` (0 if seq 1 is missing)."""
    have = set(seqs)
    n = 0
    while n + 1 in have:
        n += 1
    return n


@dataclass(frozen=True)
class SyncRange:
    publisher: bytes
    first: int
    last: int


# What one catalog sync session asks a peer for at most. The peer's heads are numbers it chose (a head
# of 2**63 - 1 is well formed), so the plan is built from them without ever iterating or allocating in
# proportion to them: what is missing beyond these caps is left for the next session.
MAX_SESSION_RANGES = 1000  # range requests per session
MAX_SESSION_RECORDS = 200_000  # records asked for per session, all publishers together
MAX_SESSION_RECORDS_PER_PUBLISHER = 50_000  # records asked for per publisher per session


@dataclass(frozen=True)
class SyncLimits:
    """The caps of one sync session's plan (see the module constants for why these values)."""

    max_range: int = MAX_RANGE
    max_ranges: int = MAX_SESSION_RANGES
    max_records: int = MAX_SESSION_RECORDS
    max_records_per_publisher: int = MAX_SESSION_RECORDS_PER_PUBLISHER

    def __post_init__(self) -> None:
        for name in ("max_range", "max_ranges", "max_records", "max_records_per_publisher"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass(frozen=True)
class SyncPlan:
    """The ranges of one session, and what the peer advertised beyond them (left for a later session)."""

    ranges: tuple[SyncRange, ...]
    deferred_records: int = 0  # advertised records not asked for this time (may be huge: it is the peer's number)
    deferred_publishers: int = 0  # publishers with some of those records

    @property
    def records(self) -> int:
        return sum(r.last - r.first + 1 for r in self.ranges)

    @property
    def complete(self) -> bool:
        """Whether the plan asks for everything the peer advertised beyond our heads."""
        return self.deferred_records == 0


def plan_session(
    local: Mapping[bytes, int],
    remote: Iterable[tuple[bytes, int]],
    limits: SyncLimits = SyncLimits(),
    *,
    first: Iterable[bytes] = (),
    seed: bytes | None = None,
) -> SyncPlan:
    """The bounded plan of one sync session: per publisher, from our contiguous head + 1 towards the
    peer's, in pieces of at most `limits.max_range` records, within the session's caps.

    Order (what is asked first when the caps cut): the publishers in `first` (the peer's own key), then
    publishers we already hold records of, then the others, in the peer's order or, given a `seed`, in
    an order the peer cannot choose (so that a peer listing many made-up publishers cannot keep the
    same honest one behind them every time). Work and memory are O(len(remote) + ranges returned).
    """
    wanted: list[tuple[int, bytes, bytes, int, int]] = []  # (rank, tiebreak, publisher, first, their head)
    leading = set(first)
    for position, (publisher, their_head) in enumerate(remote):
        start = local.get(publisher, 0) + 1
        if their_head < start:
            continue
        rank = 0 if publisher in leading else 1 if publisher in local else 2
        tiebreak = (digest(seed + publisher)[:8] if seed is not None and rank == 2
                    else position.to_bytes(8, "big"))
        wanted.append((rank, tiebreak, publisher, start, their_head))
    wanted.sort(key=lambda w: (w[0], w[1]))
    ranges: list[SyncRange] = []
    budget = limits.max_records
    deferred = deferred_pubs = 0
    for _, _, publisher, start, their_head in wanted:
        advertised = their_head - start + 1
        take = min(advertised, limits.max_records_per_publisher, budget)
        stop = start + take - 1  # last seq asked for; take may be 0
        seq = start
        while seq <= stop and len(ranges) < limits.max_ranges:
            last = min(stop, seq + limits.max_range - 1)
            ranges.append(SyncRange(publisher, seq, last))
            seq = last + 1
        asked = seq - start
        budget -= asked
        if asked < advertised:
            deferred += advertised - asked
            deferred_pubs += 1
    return SyncPlan(tuple(ranges), deferred, deferred_pubs)


def plan_sync(
    local: Mapping[bytes, int], remote: Iterable[tuple[bytes, int]], max_range: int = MAX_RANGE
) -> list[SyncRange]:
    """The ranges to ask a peer for in one session, in the peer's publisher order among publishers we
    already hold and among those we do not (`plan_session` with the default caps)."""
    if max_range < 1:
        raise ValueError("max_range must be at least 1")
    return list(plan_session(local, remote, SyncLimits(max_range=max_range)).ranges)
