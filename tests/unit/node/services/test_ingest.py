"""The pure decision of ingesting a batch of manifests (node/services/ingest.py)."""

from __future__ import annotations

from communs.node.services.ingest import plan_ingest, views_wanted
from communs.protocol import keys
from communs.protocol.publog import LogEntry
from communs.protocol.records import FileEntry, Manifest, new_dataset_id
from communs.storage.catalog import LogView
from communs.storage.states import State

ME, ALICE, BOB = (keys.SigningKey.generate() for _ in range(3))
EMPTY = LogView(head=0, at_seq=None, before=None, after=None)


def log_of(key: keys.SigningKey, n: int, *, licence: str = "CC0-1.0", salt: str = "") -> list[Manifest]:
    """`n` manifests of one publisher, seq 1..n, each linked to the one before (one dataset each)."""
    out: list[Manifest] = []
    for seq in range(1, n + 1):
        out.append(Manifest.create(
            key, dataset=new_dataset_id(key.public, seq.to_bytes(16, "big")), version=1, prev=None, seq=seq,
            log_prev=out[-1].id if out else None, title=f"t{seq}{salt}", licence=licence, created=seq,
            files=[FileEntry.of("f", [(bytes([seq]) * 32, 10)])]))
    return out


def wants_cc0(m: Manifest, forked: bool) -> tuple[bool, str]:
    if forked:
        return False, "forked"
    return (m.licence == "CC0-1.0"), f"licence {m.licence}"


def plan(decoded: list[Manifest | str], views: dict[tuple[bytes, int], LogView] | None = None,
         owners: dict[bytes, bytes] | None = None, forked: frozenset[bytes] = frozenset()):  # type: ignore[no-untyped-def]
    if views is None:
        views = {k: EMPTY for k in views_wanted(decoded)}
    return plan_ingest(decoded, me=ME.public, owners=owners or {}, forked=forked, views=views, decide=wants_cc0)


def test_a_run_needs_views_only_at_its_ends_and_is_accepted_with_states() -> None:
    run = log_of(ALICE, 5)
    assert views_wanted(run) == {(ALICE.public, 1), (ALICE.public, 5)}
    p = plan(list(run))
    assert not p.need and not p.forks and not p.outcomes
    assert [(a.index, a.state, a.own) for a in p.accepted] == [(i, State.IN_PROGRESS, False) for i in range(5)]
    assert p.accepted[0].reason == "licence CC0-1.0"


def test_own_records_are_own_and_unwanted_licences_not_wanted() -> None:
    mine = log_of(ME, 1)[0]
    other = log_of(BOB, 1, licence="CC-BY-NC-4.0")[0]
    p = plan([mine, other])
    assert {a.index: (a.state, a.reason) for a in p.accepted} == {
        0: (State.OWN, "published here"), 1: (State.NOT_WANTED, "licence CC-BY-NC-4.0")}


def test_undecodable_records_are_rejected_with_their_reason() -> None:
    p = plan(["bad signature", *log_of(ALICE, 1)])
    assert p.outcomes[0].status == "rejected" and p.outcomes[0].reason == "bad signature"
    assert [a.index for a in p.accepted] == [1]


def test_a_dataset_id_of_another_publisher_is_rejected() -> None:
    m = log_of(ALICE, 1)[0]
    p = plan([m], owners={m.dataset: BOB.public})
    assert p.outcomes[0].status == "rejected" and "another publisher" in p.outcomes[0].reason
    assert not p.accepted


def test_a_broken_link_inside_a_run_is_a_fork() -> None:
    good = log_of(ALICE, 3)
    liar = log_of(ALICE, 3, salt="x")  # the same key, another history: its seq 2 does not link to good's seq 1
    p = plan([good[0], liar[1]])
    assert p.outcomes[1].status == "fork" and p.forks[0].conflict == good[0].id
    assert [a.index for a in p.accepted] == [0]


def test_what_the_catalog_holds_is_known_and_what_contradicts_it_is_a_fork() -> None:
    m = log_of(ALICE, 1)[0]
    held = LogView(head=1, at_seq=LogEntry(1, m.id, None), before=None, after=None)
    assert plan([m], views={(ALICE.public, 1): held}).outcomes[0].status == "known"
    other = log_of(ALICE, 1, salt="x")[0]  # another record at seq 1 of the same key
    p = plan([other], views={(ALICE.public, 1): held})
    assert p.outcomes[0].status == "fork" and p.forks[0].conflict == m.id


def test_a_missing_view_is_asked_for_and_stops_that_publisher_only() -> None:
    a, b = log_of(ALICE, 2), log_of(BOB, 1)
    views = {(BOB.public, 1): EMPTY, (ALICE.public, 2): EMPTY}
    p = plan([*a, *b], views=views)
    assert p.need == {(ALICE.public, 1)}
    assert [a.index for a in p.accepted] == [2]  # Bob's record is decided; Alice's wait for the view


def test_a_forked_publisher_is_decided_as_forked() -> None:
    m = log_of(ALICE, 1)[0]
    p = plan([m], forked=frozenset({ALICE.public}))
    assert p.accepted[0].state == State.NOT_WANTED and p.accepted[0].reason == "forked"


def test_a_repeat_of_the_record_before_is_known() -> None:
    m = log_of(ALICE, 1)[0]
    p = plan([m, m])
    assert p.outcomes[1].status == "known" and [a.index for a in p.accepted] == [0]
