"""Replication's scheduling rules (node/services/schedule.py): quota, disk reserve, backoff."""

from __future__ import annotations

from communs.governance.policy import Policy
from communs.node.services import schedule
from communs.node.services.schedule import Admit, Wait

MiB = 1 << 20
QUOTA = Policy(accept_licences=("CC0-1.0",), storage_quota_bytes=100 * MiB)
ROOMY = (10_000 * MiB, 20_000 * MiB)


def admit(**kw: object) -> Admit | Wait:
    args: dict[str, object] = dict(missing=10 * MiB, repairing=False, policy=QUOTA, used=0, reserved=0,
                                   space=ROOMY, write_group=4 * MiB, now=100.0, full_until=0.0)
    args.update(kw)
    return schedule.admit(**args)  # type: ignore[arg-type]


def test_a_dataset_that_fits_is_admitted_with_its_missing_bytes() -> None:
    assert admit() == Admit(10 * MiB)


def test_what_running_fetches_reserved_counts_against_the_quota() -> None:
    assert isinstance(admit(used=50 * MiB, reserved=45 * MiB), Wait)
    assert admit(used=50 * MiB, reserved=40 * MiB) == Admit(10 * MiB)
    wait = admit(used=95 * MiB)
    assert isinstance(wait, Wait) and wait.reason.startswith("waiting: ") and "quota" in wait.reason


def test_own_data_being_repaired_is_never_refused_by_the_quota() -> None:
    assert admit(used=100 * MiB, repairing=True) == Admit(10 * MiB)


def test_a_full_disk_waits_with_its_own_reason() -> None:
    assert admit(space=(60 * MiB, 20_000 * MiB)) == Wait(schedule.FULL_DISK_REASON, "the disk is full")
    assert admit(now=5.0, full_until=10.0) == Wait(schedule.FULL_DISK_REASON, "the disk is full")
    assert admit(space=None) == Admit(10 * MiB)  # a store that cannot tell its size: tried, not refused


def test_the_reserve_is_two_percent_up_to_64_mib() -> None:
    assert schedule.reserve_bytes(1000 * MiB) == 20 * MiB
    assert schedule.reserve_bytes(1 << 40) == 64 * MiB
    assert schedule.disk_has_room(10, (20 * MiB + 10, 1000 * MiB), 0.0, 0.0)
    assert not schedule.disk_has_room(11, (20 * MiB + 10, 1000 * MiB), 0.0, 0.0)


def test_backoff_doubles_to_five_minutes_and_resets_on_progress() -> None:
    delays = []
    prev = None
    for _ in range(10):
        prev = schedule.next_delay(prev, progressed=False)
        delays.append(prev)
    assert delays[:4] == [5.0, 10.0, 20.0, 40.0] and delays[-1] == 300.0
    assert schedule.next_delay(300.0, progressed=True) == 5.0
