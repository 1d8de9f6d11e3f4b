"""Governance records: round trips, strict decoding, and signatures that cannot be forged or moved."""

from __future__ import annotations

from typing import Any

import pytest
from communs.governance.policy import Policy
from communs.governance.records import (
    Ballot,
    Genesis,
    Member,
    Proposal,
    Roster,
)
from communs.protocol import encoding, keys
from communs.protocol.errors import DecodeError, RecordError, SignatureError

ALICE = keys.SigningKey(bytes([1]) * 32)
BOB = keys.SigningKey(bytes([2]) * 32)
CAROL = keys.SigningKey(bytes([3]) * 32)
NODE = keys.SigningKey(bytes([9]) * 32)
ROSTER = Roster.of([(BOB.public, "Bob"), (ALICE.public, "Alice")])
POLICY = Policy(accept_licences=("CC0-1.0", "CC-BY-4.0"), max_dataset_bytes=1000)


def proposal(kind: Any = "policy", body: Any = POLICY, key: keys.SigningKey = ALICE, **kw: Any) -> Proposal:
    args: dict[str, Any] = {"roster": ROSTER.hash, "opens": 100, "closes": 200, "nonce": bytes(16)}
    args.update(kw)
    return Proposal.create(key, kind=kind, body=body, **args)


def resign(value: dict[str, Any], key: keys.SigningKey, domain: str) -> bytes:
    """Re-encode `value` with a fresh valid signature, to test checks other than the signature."""
    unsigned = {k: v for k, v in value.items() if k != "sig"}
    return encoding.encode({**unsigned, "sig": key.sign(domain, encoding.encode(unsigned))})


# --- roster


def test_roster_is_sorted_and_hash_ignores_listing_order() -> None:
    other = Roster.of([(ALICE.public, "Alice"), (BOB.public, "Bob")])
    assert other == ROSTER and other.hash == ROSTER.hash
    assert [m.key for m in ROSTER] == sorted([ALICE.public, BOB.public])
    assert Roster.decode(ROSTER.encode()) == ROSTER
    assert ALICE.public in ROSTER and CAROL.public not in ROSTER
    assert ROSTER.name_of(BOB.public) == "Bob"


def test_roster_changes() -> None:
    bigger = ROSTER.with_member(CAROL.public, "Carol")
    assert len(bigger) == 3 and bigger.hash != ROSTER.hash
    assert bigger.without_member(CAROL.public) == ROSTER
    with pytest.raises(DecodeError, match="already on the roster"):
        ROSTER.with_member(ALICE.public, "Alice again")
    with pytest.raises(DecodeError, match="not a member"):
        ROSTER.without_member(CAROL.public)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([], "at least one member"),
        ([(ALICE.public, "A"), (ALICE.public, "B")], "twice"),
        ([(b"short", "A")], "must be 32 bytes"),
        ([(ALICE.public, "")], "1 to 100 characters"),
        ([(ALICE.public, " padded")], "surrounding spaces"),
        ([(ALICE.public, "x" * 101)], "1 to 100 characters"),
        ([(ALICE.public, "bell\x07")], "control characters"),
    ],
)
def test_bad_rosters(members: list[tuple[bytes, str]], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        Roster.of(members)


def test_roster_decode_refuses_unsorted_and_unknown_fields() -> None:
    value = ROSTER.to_dict()
    value["members"] = list(reversed(value["members"]))
    with pytest.raises(DecodeError, match="sorted"):
        Roster.decode(encoding.encode(value))
    value = ROSTER.to_dict()
    value["members"][0]["role"] = "admin"
    with pytest.raises(DecodeError, match="unknown field 'role'"):
        Roster.decode(encoding.encode(value))
    with pytest.raises(DecodeError, match="lacks field 'members'"):
        Roster.decode(encoding.encode({"type": "roster", "v": 1}))


# --- proposals


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("policy", POLICY),
        ("quota", {"storage_quota_bytes": 5_000_000}),
        ("member-add", {"key": CAROL.public, "name": "Carol"}),
        ("member-remove", {"key": BOB.public}),
    ],
)
def test_proposal_round_trip(kind: Any, body: Any) -> None:
    p = proposal(kind, body)
    again = Proposal.decode(p.encode())
    assert again == p and again.id == p.id and again.encode() == p.encode()
    assert again.cid.startswith("b")
    assert again.summary()


def test_proposal_accessors() -> None:
    assert proposal().policy == POLICY
    add = proposal("member-add", {"key": CAROL.public, "name": "Carol"})
    assert add.member_key == CAROL.public and add.is_roster_change
    assert "add member Carol" in add.summary()
    with pytest.raises(ValueError, match="carries no policy"):
        _ = add.policy


def test_altered_proposal_signature_fails() -> None:
    p = proposal()
    data = bytearray(p.encode())
    data[data.index(p.sig) + 10] ^= 1
    with pytest.raises(SignatureError):
        Proposal.decode(bytes(data))


def test_forged_proposal_fails() -> None:
    """Alice's proposal with the proposer field changed to Bob: Bob never signed it."""
    value = proposal().to_dict()
    value["proposer"] = BOB.public
    with pytest.raises(SignatureError):
        Proposal.decode(encoding.encode(value))
    # and the content altered under the original signature
    value = proposal().to_dict()
    value["closes"] = 10**9
    with pytest.raises(SignatureError):
        Proposal.decode(encoding.encode(value))


def test_signature_of_another_record_kind_is_not_accepted() -> None:
    """A ballot signature over the same bytes is in another domain."""
    p = proposal()
    unsigned = {k: v for k, v in p.to_dict().items() if k != "sig"}
    value = {**unsigned, "sig": ALICE.sign("ballot/1", encoding.encode(unsigned))}
    with pytest.raises(SignatureError):
        Proposal.decode(encoding.encode(value))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "coup"}, "proposal kind must be one of"),
        ({"closes": 100}, "close after it opens"),
        ({"opens": -1}, "'opens' must be between"),
        ({"nonce": bytes(8)}, "'nonce' must be 16 bytes"),
        ({"roster": bytes(31)}, "'roster' must be 32 bytes"),
        ({"body": {"accept_licences": ["MIT"], "colour": "red"}}, "unknown key 'colour'"),
        ({"body": {"accept_licences": ["Nope-1.0"]}}, "not a valid licence policy"),
        ({"body": {"accept_licences": ["MIT"]}}, "canonical form"),
        ({"kind": "quota", "body": {"storage_quota_bytes": -5}}, "'storage_quota_bytes' must be between"),
        ({"kind": "quota", "body": {"storage_quota_bytes": "5"}}, "must be an integer"),
        ({"kind": "quota", "body": {}}, "lacks field 'storage_quota_bytes'"),
        ({"kind": "member-add", "body": {"key": CAROL.public}}, "lacks field 'name'"),
        ({"kind": "member-add", "body": {"key": b"x", "name": "C"}}, "'key' must be 32 bytes"),
        ({"kind": "member-remove", "body": {"key": CAROL.public, "name": "C"}}, "unknown field 'name'"),
        ({"extra": 1}, "unknown field 'extra'"),
        ({"v": 2}, "unsupported proposal schema version"),
        ({"type": "ballot"}, "expected 'proposal'"),
    ],
)
def test_bad_proposals_are_refused(change: dict[str, Any], message: str) -> None:
    value = {**proposal().to_dict(), **change}
    with pytest.raises(DecodeError, match=message):
        Proposal.decode(resign(value, ALICE, "proposal/1"))


def test_proposal_missing_field() -> None:
    value = proposal().to_dict()
    del value["nonce"]
    with pytest.raises(DecodeError, match="lacks field 'nonce'"):
        Proposal.decode(resign(value, ALICE, "proposal/1"))


def test_non_canonical_bytes_refused() -> None:
    import msgpack

    value = proposal().to_dict()
    loose = msgpack.packb(dict(reversed(list(value.items()))), use_bin_type=True)
    with pytest.raises(DecodeError, match="canonical"):
        Proposal.decode(loose)
    with pytest.raises(DecodeError):
        Proposal.decode(proposal().encode() + b"\x00")


# --- ballots


def test_ballot_round_trip_and_signature() -> None:
    p = proposal()
    b = Ballot.create(BOB, proposal=p.id, choice="no", ts=150)
    again = Ballot.decode(b.encode())
    assert again == b and again.id == b.id and again.member == BOB.public


def test_ballot_replayed_onto_another_proposal_fails_signature() -> None:
    """The proposal id is inside the signed bytes: moving a ballot breaks it."""
    b = Ballot.create(BOB, proposal=proposal().id, choice="yes", ts=150)
    value = b.to_dict()
    value["proposal"] = proposal(nonce=bytes([1]) * 16).id
    with pytest.raises(SignatureError):
        Ballot.decode(encoding.encode(value))


def test_altered_ballot_choice_fails_signature() -> None:
    value = Ballot.create(BOB, proposal=proposal().id, choice="yes", ts=150).to_dict()
    value["choice"] = "no"
    with pytest.raises(SignatureError):
        Ballot.decode(encoding.encode(value))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"choice": "maybe"}, "yes, no or abstain"),
        ({"ts": "now"}, "'ts' must be an integer"),
        ({"member": bytes(5)}, "'member' must be 32 bytes"),
        ({"proposal": bytes(5)}, "'proposal' must be 32 bytes"),
        ({"weight": 2}, "unknown field 'weight'"),
    ],
)
def test_bad_ballots_are_refused(change: dict[str, Any], message: str) -> None:
    value = {**Ballot.create(BOB, proposal=proposal().id, choice="yes", ts=150).to_dict(), **change}
    with pytest.raises(DecodeError, match=message):
        Ballot.decode(resign(value, BOB, "ballot/1"))


def test_oversized_ballot_refused() -> None:
    with pytest.raises(DecodeError, match="over the limit"):
        Ballot.decode(encoding.encode({"type": "ballot", "pad": "x" * 2000}))


# --- genesis


def test_genesis_round_trip_and_forgery() -> None:
    g = Genesis.create(NODE, ROSTER)
    assert Genesis.decode(g.encode()) == g
    value = g.to_dict()
    value["roster"] = ROSTER.with_member(CAROL.public, "Carol").to_dict()
    with pytest.raises(SignatureError):
        Genesis.decode(encoding.encode(value))


def test_every_decoder_raises_only_record_errors() -> None:
    for data in (b"", b"\xc1", b"\x90", encoding.encode({"type": "proposal", "v": 1}), b"\xff" * 40):
        for cls in (Proposal, Ballot, Genesis, Roster):
            with pytest.raises(RecordError):
                cls.decode(data)


def test_member_value() -> None:
    assert Member(ALICE.public, "Alice").to_dict() == {"key": ALICE.public, "name": "Alice"}
