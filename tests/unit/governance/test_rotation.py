"""Member key rotation: both keys sign; the old key is refused afterwards, everywhere; audit replays it."""

from __future__ import annotations

import pytest
from communs.governance.admission import precheck
from communs.governance.errors import RejectedError
from communs.governance.ledger import Ledger, audit
from communs.governance.policy import Policy
from communs.governance.records import Ballot, Proposal, Roster
from communs.governance.rotation import Rotation
from communs.protocol import encoding, keys
from communs.protocol.errors import SignatureError

NODE = keys.SigningKey(bytes([9]) * 32)
A, B, C, A2 = (keys.SigningKey(bytes([i]) * 32) for i in (1, 2, 3, 11))
ROSTER = Roster.of([(A.public, "Ana"), (B.public, "Ben"), (C.public, "Cleo")])
POLICY = Policy(accept_licences=("CC0-1.0",))


def propose(ledger: Ledger, key: keys.SigningKey, at: int, nonce: int) -> Proposal:
    p = Proposal.create(key, kind="policy", body=POLICY, roster=ledger.current.roster.hash, opens=at, closes=at + 900,
                        nonce=bytes([nonce]) * 16)
    ledger.submit_proposal(p.encode(), at)
    return p


def test_rotation_moves_the_seat_and_the_old_key_is_refused_afterwards() -> None:
    ledger = Ledger.found(NODE, ROSTER, at=50)
    before = propose(ledger, B, 100, 1)
    ledger.submit_ballot(Ballot.create(A, proposal=before.id, choice="yes", ts=105).encode(), 105)
    rotation = Rotation.create(A, A2, roster=ROSTER.hash, ts=110)
    ledger.submit_rotation(rotation.encode(), 110)
    roster = ledger.current.roster
    assert A2.public in roster and A.public not in roster and roster.name_of(A2.public) == "Ana"
    # the old key: refused on the open proposal, and for a new proposal; the same rotation cannot be replayed
    with pytest.raises(RejectedError, match="was rotated away"):
        ledger.submit_ballot(Ballot.create(A, proposal=before.id, choice="no", ts=120).encode(), 120)
    with pytest.raises(RejectedError, match="was rotated away"):
        precheck(Ballot.create(A, proposal=before.id, choice="no", ts=120).encode(), ledger, 120)
    with pytest.raises(RejectedError, match="not the roster in force"):
        ledger.submit_rotation(rotation.encode(), 121)
    with pytest.raises(RejectedError, match="is not a member"):
        propose(ledger, A, 130, 2)
    # the new key votes on proposals opened after the rotation, and the earlier ballot still counts
    after = propose(ledger, A2, 140, 3)
    ledger.submit_ballot(Ballot.create(A2, proposal=after.id, choice="yes", ts=150).encode(), 150)
    assert ledger.proposals[before.id].current(150).yes == 1
    stored = [e.encode() for e in ledger.drain()]
    result = audit(stored)
    assert result.ok and result.state == ledger.current


def test_rotation_needs_both_signatures_and_a_member() -> None:
    ledger = Ledger.found(NODE, ROSTER, at=50)
    good = Rotation.create(A, A2, roster=ROSTER.hash, ts=60)
    wrong_proof = Rotation.sign(A, old=A.public, new=A2.public, roster=ROSTER.hash, ts=60, proof=bytes(64))
    with pytest.raises(SignatureError):
        ledger.submit_rotation(wrong_proof.encode(), 60)
    altered = encoding.encode({**good.to_dict(), "ts": 61})
    with pytest.raises(SignatureError):
        ledger.submit_rotation(altered, 61)
    outsider = keys.SigningKey(bytes([99]) * 32)
    with pytest.raises(RejectedError, match="is not a member"):
        ledger.submit_rotation(Rotation.create(outsider, A2, roster=ROSTER.hash, ts=60).encode(), 60)
    with pytest.raises(RejectedError, match="already on the roster"):
        ledger.submit_rotation(Rotation.create(A, B, roster=ROSTER.hash, ts=60).encode(), 60)
    assert len(ledger.entries) == 1  # nothing stored
