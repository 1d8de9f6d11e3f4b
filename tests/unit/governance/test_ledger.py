"""The governance log: the Ledger state machine, replay, audit (naming the first bad entry), export."""

from __future__ import annotations

from typing import Any

import pytest
from communs.governance.errors import RejectedError, UnchangedVote
from communs.governance.ledger import (
    EXPORT_MAGIC,
    AuditError,
    Entry,
    Ledger,
    append,
    audit,
    audit_export,
    export_log,
    read_export,
    replay,
)
from communs.governance.policy import DEFAULT_POLICY, Policy
from communs.governance.records import Ballot, Proposal, Roster
from communs.protocol import encoding, keys
from communs.protocol.errors import RecordError, SignatureError

NODE = keys.SigningKey(bytes([9]) * 32)
A, B, C, D, E = (keys.SigningKey(bytes([i]) * 32) for i in range(1, 6))
OUTSIDER = keys.SigningKey(bytes([99]) * 32)
FOUNDERS = Roster.of([(A.public, "Ana"), (B.public, "Ben"), (C.public, "Cleo")])
POLICY = Policy(accept_licences=("CC0-1.0", "CC-BY-4.0"))
_counter = [0]


def _nonce() -> bytes:
    _counter[0] += 1
    return _counter[0].to_bytes(16, "big")


def propose(key: keys.SigningKey, roster: Roster, kind: Any = "policy", body: Any = POLICY,
            opens: int = 100, closes: int = 1000) -> Proposal:
    return Proposal.create(key, kind=kind, body=body, roster=roster.hash, opens=opens, closes=closes,
                           nonce=_nonce())


def ballot(key: keys.SigningKey, p: Proposal, choice: Any, ts: int) -> bytes:
    return Ballot.create(key, proposal=p.id, choice=choice, ts=ts).encode()


def scenario() -> Ledger:
    """Founding, a policy passed 2 of 3 at its close, a member added by two thirds, a rejected quota,
    a member-add that passed but no longer applied, a removal, and a proposal still open."""
    _counter[0] = 0
    ledger = Ledger.found(NODE, FOUNDERS, at=50)
    policy = propose(A, FOUNDERS)
    ledger.submit_proposal(policy.encode(), 100)
    ledger.submit_ballot(ballot(A, policy, "yes", 110), 110)
    ledger.submit_ballot(ballot(B, policy, "no", 120), 120)
    ledger.submit_ballot(ballot(B, policy, "abstain", 130), 130)  # Ben changes his mind; Cleo could still tip it
    assert ledger.current.policy == DEFAULT_POLICY
    assert ledger.close_due(1000)[0].outcome == "passed"
    assert ledger.current.policy == POLICY and ledger.current.policy_version == 1

    add_d = propose(B, FOUNDERS, "member-add", {"key": D.public, "name": "Dee"}, 1000, 2000)
    add_d_again = propose(C, FOUNDERS, "member-add", {"key": D.public, "name": "Dee"}, 1000, 2000)
    quota = propose(C, FOUNDERS, "quota", {"storage_quota_bytes": 10**9}, 1000, 2000)
    for p in (add_d, add_d_again, quota):
        ledger.submit_proposal(p.encode(), 1001)
    for key, choice in ((A, "yes"), (B, "yes")):
        ledger.submit_ballot(ballot(key, add_d, choice, 1010), 1010)  # closes at once: Cleo cannot change it
    with pytest.raises(RejectedError, match="closed"):
        ledger.submit_ballot(ballot(C, add_d, "no", 1010), 1010)
    assert D.public in ledger.current.roster
    for key in (A, B):
        ledger.submit_ballot(ballot(key, add_d_again, "yes", 1020), 1020)
    assert ledger.proposal(add_d_again.id).enacted is False
    ledger.submit_ballot(ballot(A, quota, "no", 1030), 1030)
    ledger.submit_ballot(ballot(B, quota, "abstain", 1030), 1030)
    ledger.close_due(2000)
    assert ledger.proposal(quota.id).current(2000).outcome == "rejected"

    four = ledger.current.roster
    remove_c = propose(D, four, "member-remove", {"key": C.public}, 2000, 3000)
    ledger.submit_proposal(remove_c.encode(), 2001)
    for key in (A, B, D):
        ledger.submit_ballot(ballot(key, remove_c, "yes", 2010), 2010)
    ledger.close_due(3000)
    assert C.public not in ledger.current.roster and len(ledger.current.roster) == 3

    still_open = propose(A, ledger.current.roster, opens=3000, closes=9000)
    ledger.submit_proposal(still_open.encode(), 3001)
    ledger.submit_ballot(ballot(D, still_open, "yes", 3010), 3010)
    return ledger


@pytest.fixture(scope="module")
def stored() -> list[bytes]:
    ledger = scenario()
    return [e.encode() for e in ledger.drain()]


def test_scenario_audits_and_replays(stored: list[bytes]) -> None:
    ledger = scenario()
    result = audit(stored)
    assert result.ok, result.describe()
    assert result.entries == len(stored) and result.bad_seq is None
    assert result.node == keys.peer_id(NODE.public)
    assert result.state == ledger.current
    assert replay(stored) == ledger.current
    kinds = [Entry.decode(e).kind for e in stored]
    assert kinds[0] == "genesis" and kinds.count("tally") == 5 and kinds.count("enactment") == 4


def test_loaded_ledger_continues_and_enacts_after_downtime(stored: list[bytes]) -> None:
    """A node stopped across a closing time enacts on start (close_due with the start time)."""
    ledger = Ledger.load(stored, node_key=NODE)
    open_ids = [pid for pid, s in ledger.proposals.items() if s.tally is None]
    assert len(open_ids) == 1 and ledger.next_deadline() == 9000
    ledger.submit_ballot(ballot(A, ledger.proposals[open_ids[0]].proposal, "abstain", 3020), 3020)
    assert ledger.close_due(8999) == []
    assert ledger.current.policy_version == 1  # the earlier policy is in force
    closed = ledger.close_due(50_000)
    assert [t.outcome for t in closed] == ["passed"]
    new = ledger.drain()
    assert [e.kind for e in new] == ["ballot", "tally", "enactment"]
    assert new[0].seq == len(stored) and new[0].prev == Entry.decode(stored[-1]).hash
    assert audit([*stored, *(e.encode() for e in new)]).ok
    assert ledger.next_deadline() is None


def test_load_refuses_another_node_key(stored: list[bytes]) -> None:
    with pytest.raises(AuditError, match="another node key"):
        Ledger.load(stored, node_key=A)


def test_a_loaded_ledger_without_key_cannot_append(stored: list[bytes]) -> None:
    ledger = Ledger.load(stored)
    p = propose(A, ledger.current.roster, opens=3000, closes=9000)
    with pytest.raises(RuntimeError, match="without the node key"):
        ledger.submit_proposal(p.encode(), 3100)


# --- bad input changes nothing


def fresh() -> tuple[Ledger, Proposal]:
    ledger = Ledger.found(NODE, FOUNDERS, at=50)
    p = propose(A, FOUNDERS)
    ledger.submit_proposal(p.encode(), 100)
    ledger.submit_ballot(ballot(A, p, "yes", 110), 110)
    ledger.drain()
    return ledger, p


def rejects(ledger: Ledger, call: Any, error: type[Exception], message: str) -> None:
    before = [e.encode() for e in ledger.entries]
    state = ledger.current
    with pytest.raises(error, match=message):
        call()
    assert [e.encode() for e in ledger.entries] == before
    assert ledger.drain() == [] and ledger.current == state


def test_bad_submissions_change_nothing() -> None:
    ledger, p = fresh()
    other = propose(B, FOUNDERS)
    ledger.submit_proposal(other.encode(), 120)
    ledger.drain()
    forged = Ballot.create(B, proposal=p.id, choice="yes", ts=130).to_dict()
    forged["choice"] = "no"
    rejects(ledger, lambda: ledger.submit_ballot(ballot(OUTSIDER, p, "yes", 130), 130),
            RejectedError, "is not a member of the roster")
    rejects(ledger, lambda: ledger.submit_ballot(encoding.encode(forged), 130), SignatureError,
            "bad ballot/1")
    rejects(ledger, lambda: ledger.submit_ballot(ballot(B, propose(A, FOUNDERS), "yes", 130), 130),
            RejectedError, "unknown proposal")
    rejects(ledger, lambda: ledger.submit_ballot(ballot(B, p, "yes", 130), 130, proposal_id=other.id),
            RejectedError, f"ballot is for proposal {p.cid}, not {other.cid}")
    rejects(ledger, lambda: ledger.submit_ballot(ballot(B, p, "yes", 130), 130, proposal_id=bytes(32)),
            RejectedError, "unknown proposal")
    rejects(ledger, lambda: ledger.submit_proposal(propose(OUTSIDER, FOUNDERS).encode(), 130),
            RejectedError, "is not a member of the roster")
    rejects(ledger, lambda: ledger.submit_proposal(p.encode(), 130), RejectedError, "already recorded")
    rejects(ledger, lambda: ledger.submit_ballot(b"\x93garbage", 130), RecordError,
            r"msgpack|canonical|trailing")
    rejects(ledger, lambda: ledger.submit_ballot(ballot(A, p, "yes", 110), 130), RejectedError,
            "already recorded")


def test_voting_the_same_way_again_is_refused_and_changing_is_not() -> None:
    ledger, p = fresh()  # Ana voted yes at 110
    rejects(ledger, lambda: ledger.submit_ballot(ballot(A, p, "yes", 120), 120), UnchangedVote,
            "already voted yes on proposal .* would change nothing")
    ledger.submit_ballot(ballot(A, p, "no", 130), 130)  # a change of mind is recorded and counts
    assert ledger.proposal(p.id).current(130).no == 1 and [e.kind for e in ledger.drain()] == ["ballot"]
    rejects(ledger, lambda: ledger.submit_ballot(ballot(A, p, "no", 140), 140), UnchangedVote, "already voted no")
    ledger.submit_ballot(ballot(A, p, "yes", 150), 150)  # and back again: a change from the ballot in force
    assert [e.kind for e in ledger.drain()] == ["ballot"]
    assert (ledger.proposal(p.id).current(150).yes, len(ledger.proposal(p.id).ballots)) == (1, 3)


def test_a_log_recorded_with_a_repeated_ballot_still_loads_and_audits() -> None:
    """Logs written before repeats were refused hold them: replaying them must stay valid."""
    ledger, p = fresh()
    stored = [e.encode() for e in ledger.entries]
    repeat = append(Entry.decode(stored[-1]), "ballot", ballot(A, p, "yes", 120), 120, NODE)
    loaded = Ledger.load([*stored, repeat.encode()], node_key=NODE)
    assert len(loaded.proposal(p.id).ballots) == 2 and loaded.proposal(p.id).current(120).yes == 1
    assert audit([*stored, repeat.encode()]).ok


def test_ballot_after_close_is_refused_and_close_is_recorded() -> None:
    ledger, p = fresh()
    with pytest.raises(RejectedError, match=r"is closed|closed at"):
        ledger.submit_ballot(ballot(B, p, "yes", 999), 1000)
    # the refusal came after the due closing was recorded: the caller stores it
    assert [e.kind for e in ledger.drain()] == ["tally"]
    assert ledger.proposal(p.id).tally is not None
    assert ledger.proposal(p.id).current(1000).outcome == "rejected"


def test_removal_leaving_roster_empty_is_refused() -> None:
    alone = Roster.of([(A.public, "Ana")])
    ledger = Ledger.found(NODE, alone, at=50)
    ledger.drain()
    rejects(ledger, lambda: ledger.submit_proposal(
        propose(A, alone, "member-remove", {"key": A.public}).encode(), 100),
        RejectedError, "would leave the roster empty")


def test_proposal_under_an_old_roster_is_refused(stored: list[bytes]) -> None:
    """Cleo was removed; a proposal she signs under the founding roster is refused."""
    ledger = Ledger.load(stored, node_key=NODE)
    rejects(ledger, lambda: ledger.submit_proposal(propose(C, FOUNDERS, opens=3000, closes=9000).encode(),
                                                   3100), RejectedError, "not the roster in force")


# --- audit names the first bad entry


def flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:]


def test_audit_names_any_single_altered_byte(stored: list[bytes]) -> None:
    for index, data in enumerate(stored):
        positions = sorted({0, 1, len(data) // 3, len(data) // 2, (2 * len(data)) // 3, len(data) - 2,
                            len(data) - 1})
        for pos in positions:
            altered = [*stored]
            altered[index] = flip(data, pos)
            result = audit(altered)
            assert not result.ok, (index, pos)
            assert result.bad_seq == index, (index, pos, result.describe())
            assert f"entry {index} is bad" in result.describe()


def test_audit_export_names_any_single_altered_byte(stored: list[bytes]) -> None:
    exported = export_log(stored)
    assert read_export(exported) == stored
    assert audit_export(exported).ok
    starts, pos = [], len(EXPORT_MAGIC)
    for data in stored:
        starts.append(pos)
        pos += len(data) + (1 if len(data) < 128 else 2)
    assert pos == len(exported)
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(exported)
        for at in sorted({start, start + 1, (start + end) // 2, end - 1}):
            result = audit_export(flip(exported, at))
            assert not result.ok and result.bad_seq == index, (index, at, result.describe())


def test_audit_export_header_and_truncation(stored: list[bytes]) -> None:
    exported = export_log(stored)
    assert audit_export(b"not a log").reason is not None
    assert not audit_export(b"not a log").ok
    cut = audit_export(exported[:-5])
    assert not cut.ok and cut.bad_seq == len(stored) - 1
    assert audit_export(EXPORT_MAGIC).describe().startswith("governance log entry 0 is bad")


def test_audit_detects_removed_reordered_and_empty(stored: list[bytes]) -> None:
    assert audit([]).bad_seq == 0
    removed = audit([*stored[:3], *stored[4:]])
    assert not removed.ok and removed.bad_seq == 3 and "sequence number 4" in (removed.reason or "")
    swapped = [*stored]
    swapped[2], swapped[3] = swapped[3], swapped[2]
    assert audit(swapped).bad_seq == 2


def test_audit_recomputes_tallies_and_enactments(stored: list[bytes]) -> None:
    """Entries correctly signed by the node key but with a wrong result are still caught."""
    entries = [Entry.decode(e) for e in stored]
    index = next(i for i, e in enumerate(entries) if e.kind == "tally")
    bad = dict(entries[index].body)
    bad["outcome"] = "rejected"
    forged = append(entries[index - 1], "tally", bad, entries[index].at, NODE)
    result = audit([*stored[:index], forged.encode()])
    assert result.bad_seq == index and "differs from the recount" in (result.reason or "")

    index = next(i for i, e in enumerate(entries) if e.kind == "enactment")
    body = dict(entries[index].body)
    state = dict(body["state"])
    state["policy"] = Policy(accept_licences=("MIT",)).to_dict()
    forged = append(entries[index - 1], "enactment", {**body, "state": state}, entries[index].at, NODE)
    result = audit([*stored[:index], forged.encode()])
    assert result.bad_seq == index and "differs from the recomputed" in (result.reason or "")

    # a tally recorded before the proposal closed
    proposal_index = next(i for i, e in enumerate(entries) if e.kind == "proposal")
    first = Proposal.decode(entries[proposal_index].body)
    early = append(entries[proposal_index], "tally", {"proposal": first.id}, entries[proposal_index].at, NODE)
    result = audit([*stored[:proposal_index + 1], early.encode()])
    assert result.bad_seq == proposal_index + 1 and "still open" in (result.reason or "")


def test_audit_refuses_entries_signed_by_another_key(stored: list[bytes]) -> None:
    entries = [Entry.decode(e) for e in stored]
    resigned = append(entries[2], entries[3].kind, entries[3].body, entries[3].at, A)
    result = audit([*stored[:3], resigned.encode(), *stored[4:]])
    assert result.bad_seq == 3 and "signature" in (result.reason or "")


def test_time_cannot_go_backwards() -> None:
    ledger = Ledger.found(NODE, FOUNDERS, at=500)
    with pytest.raises(ValueError, match="backwards"):
        append(ledger.head, "tally", {}, 499, NODE)


def test_json_views_are_json(stored: list[bytes]) -> None:
    import json

    ledger = Ledger.load(stored)
    views = [s.to_json(3500) for s in ledger.proposals.values()]
    text = json.dumps({"proposals": views, "policy": ledger.current.to_json()})
    assert "member-add" in text and views[0]["tally"]["outcome"] == "passed"
    assert views[0]["proposer"] == keys.peer_id(A.public) and views[0]["proposer_name"] == "Ana"
    assert views[-1]["tally"]["outcome"] == "open" and views[-1]["enacted"] is None
    assert ledger.current.to_json()["proposal"] == views[0]["id"] and ledger.current.to_json()["version"] == 1
