"""Replication's scheduling decisions, pure: whether a wanted dataset may start now, and when to try again.

The replication service reads the facts (bytes still missing, what the quota already holds, the store's
free space, the clock) and acts on the answer; the rules are here, unit-tested without a node.
"""

from __future__ import annotations

from dataclasses import dataclass

from communs.governance import policy as policy_mod

RETRY_WAITING_S = 5.0  # after a round that made progress, or the first wait
MAX_RETRY_S = 300.0  # backoff cap for a dataset nobody holds
MAX_RESERVE_BYTES = 64 << 20  # the disk keeps min(64 MiB, 2 %) free
FULL_DISK_REASON = "waiting: the disk is full; replication resumes when space is freed"


@dataclass(frozen=True)
class Admit:
    """Start fetching; `missing` bytes are reserved against the quota until the fetch ends."""

    missing: int


@dataclass(frozen=True)
class Wait:
    """Not now; `reason` is shown with the dataset, `log` (when not empty) is logged once."""

    reason: str
    log: str = ""


def reserve_bytes(total: int) -> int:
    """What replication leaves free on a store of `total` bytes."""
    return min(MAX_RESERVE_BYTES, total // 50)


def disk_has_room(size: int, space: tuple[int, int] | None, now: float, full_until: float) -> bool:
    """Whether `size` more bytes leave the reserve free; not before `full_until` after a full disk. A store
    that cannot tell its size (None) is taken to have room: a full disk is then met and waited out."""
    if now < full_until:
        return False
    if space is None:
        return True
    free, total = space
    return free - size >= reserve_bytes(total)


def admit(*, missing: int, repairing: bool, policy: policy_mod.Policy, used: int, reserved: int,
          space: tuple[int, int] | None, write_group: int, now: float, full_until: float) -> Admit | Wait:
    """Whether a wanted dataset with `missing` bytes may start now: it must fit the voted quota (with what
    is held, `used`, and what running fetches reserved) unless it is own data being repaired, and the disk
    must have room for the next group of writes."""
    fit = policy_mod.fits_quota(policy, used + reserved, missing)
    if not fit.wanted and not repairing:  # own data is never refused room
        return Wait(f"waiting: {fit.reason}", fit.reason)
    if not disk_has_room(min(missing, write_group), space, now, full_until):
        return Wait(FULL_DISK_REASON, "the disk is full")
    return Admit(missing)


def next_delay(previous: float | None, progressed: bool) -> float:
    """How long to wait before asking the same peers again after a round that left chunks missing: 5 s after
    progress, else doubling from 5 s to 5 min, so that a dataset nobody holds costs no traffic."""
    if progressed:
        return RETRY_WAITING_S
    return min((previous if previous is not None else RETRY_WAITING_S / 2) * 2, MAX_RETRY_S)
