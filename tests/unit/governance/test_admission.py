"""The cheap checks before a signature is verified, and the light client's own checks of a node's answers."""

from __future__ import annotations

import pytest
from communs.governance.admission import precheck, record_kind
from communs.governance.errors import RejectedError
from communs.governance.ledger import Ledger
from communs.governance.light import LightError, check_list_item, check_proposal_answer, policy_changes
from communs.governance.policy import DEFAULT_POLICY, Policy
from communs.governance.records import Ballot, Proposal, Roster
from communs.protocol import encoding, keys
from communs.protocol.errors import DecodeError

NODE = keys.SigningKey(bytes([9]) * 32)
A, B, C = (keys.SigningKey(bytes([i]) * 32) for i in range(1, 4))
OUTSIDER = keys.SigningKey(bytes([99]) * 32)
ROSTER = Roster.of([(A.public, "Ana"), (B.public, "Ben"), (C.public, "Cleo")])
POLICY = Policy(accept_licences=("CC0-1.0",))


def setup() -> tuple[Ledger, Proposal]:
    ledger = Ledger.found(NODE, ROSTER, at=50)
    p = Proposal.create(A, kind="policy", body=POLICY, roster=ROSTER.hash, opens=100, closes=1000, nonce=bytes(16))
    ledger.submit_proposal(p.encode(), 100)
    return ledger, p


def test_precheck_refuses_without_verifying_a_signature() -> None:
    ledger, p = setup()
    bad_sig = Ballot(proposal=p.id, member=B.public, choice="yes", ts=110, sig=bytes(64))
    assert precheck(bad_sig.encode(), ledger, 110) == "ballot"  # the signature is the ledger's to check
    other_roster = Roster.of([(OUTSIDER.public, "Mal")])
    cases = [
        (Ballot.create(OUTSIDER, proposal=p.id, choice="yes", ts=110).encode(), "is not a member of the roster"),
        (Ballot.create(A, proposal=bytes(32), choice="yes", ts=110).encode(), "unknown proposal"),
        (p.encode(), "already recorded"),
        (Proposal.create(OUTSIDER, kind="policy", body=POLICY, roster=ROSTER.hash, opens=100, closes=1000,
                         nonce=bytes(16)).encode(), "is not a member of the roster"),
        (Proposal.create(OUTSIDER, kind="policy", body=POLICY, roster=other_roster.hash, opens=100, closes=1000,
                         nonce=bytes(16)).encode(), "not the roster in force"),
        (Proposal.create(A, kind="policy", body=POLICY, roster=ROSTER.hash, opens=10, closes=20,
                         nonce=bytes([1]) * 16).encode(), "already past"),
    ]
    for raw, phrase in cases:
        with pytest.raises(RejectedError, match=phrase):
            precheck(raw, ledger, 110)
    ballot = Ballot.create(B, proposal=p.id, choice="yes", ts=110)
    ledger.submit_ballot(ballot.encode(), 110)
    with pytest.raises(RejectedError, match="already recorded"):
        precheck(ballot.encode(), ledger, 111)
    with pytest.raises(RejectedError, match="is closed"):
        precheck(Ballot.create(C, proposal=p.id, choice="yes", ts=1001).encode(), ledger, 1001)


def test_record_kind_refuses_what_is_not_a_governance_record() -> None:
    for raw, phrase in [(encoding.encode({"type": "manifest"}), "not a signed proposal, ballot or key rotation"),
                        (b"\xc1", ""), (b"\x80" * (600 * 1024), "at most")]:
        with pytest.raises(DecodeError, match=phrase or None):
            record_kind(raw)
    big_ballot = encoding.encode({"type": "ballot", "pad": "x" * 2000})
    with pytest.raises(DecodeError, match="a ballot is at most"):
        record_kind(big_ballot)


def answer(ledger: Ledger, p: Proposal, now: int = 200) -> dict[str, object]:
    status = ledger.proposals[p.id]
    t = status.current(now)
    return {"t": "proposal", "record": p.encode(), "roster": status.roster.encode(),
            "ballots": [b.encode() for b in status.ballots], "tally": t.to_dict(), "status": t.outcome, "now": now}


def test_light_client_verifies_what_the_node_sends() -> None:
    ledger, p = setup()
    ledger.submit_ballot(Ballot.create(B, proposal=p.id, choice="yes", ts=110).encode(), 110)
    good = answer(ledger, p)
    checked = check_proposal_answer(good, p.id)
    assert checked.tally.yes == 1 and checked.roster == ROSTER
    other_roster = Roster.of([(A.public, "Ana"), (OUTSIDER.public, "Mal")])
    lying_tally = dict(good["tally"])  # type: ignore[call-overload]
    lying_tally["yes"] = 3
    forged = Ballot(proposal=p.id, member=C.public, choice="no", ts=120, sig=bytes(64)).encode()
    stranger = Ballot.create(OUTSIDER, proposal=p.id, choice="no", ts=120).encode()
    for change, phrase in [({"roster": other_roster.encode()}, "not the roster proposal"),
                           ({"tally": lying_tally}, "differs from the recount"),
                           ({"ballots": [forged]}, "does not verify"),
                           ({"ballots": [stranger]}, "not on the roster"),
                           ({"now": None}, "no clock reading")]:
        with pytest.raises(LightError, match=phrase):
            check_proposal_answer({**good, **change}, p.id)
    with pytest.raises(LightError, match="instead of"):
        check_proposal_answer(good, bytes(32))
    item = {"id": p.id, "kind": p.kind, "closes": p.closes, "record": p.encode()}
    assert check_list_item(item) == p
    with pytest.raises(LightError, match="does not match"):
        check_list_item({**item, "closes": 5})


def test_policy_changes_in_words() -> None:
    new = Policy(accept_licences=("CC0-1.0", "CC-BY-4.0"), max_dataset_bytes=10)
    lines = policy_changes(DEFAULT_POLICY, new)
    assert "accept_licences: adds CC-BY-4.0, CC0-1.0" in lines and "max_dataset_bytes: none -> 10" in lines
    assert policy_changes(new, new) == ["no change against the policy in force"]
