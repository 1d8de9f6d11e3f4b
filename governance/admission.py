"""The cheap checks on a submitted governance record, before its signature is verified.

A node that takes submissions from any libp2p peer must not spend a signature check and a lock
on the log for a record it can refuse from the bytes alone: what type it is, whether it is
canonical and within its limits, whether its signer is on the roster it claims, whether the
proposal it votes on is known and open. `precheck` answers those from the ledger's memory, in
that order; the ledger then verifies the signature and applies the full rules (tally.py).
Every refusal is one sentence (a RecordError or a RejectedError).
"""

from __future__ import annotations

from typing import Literal

from communs.protocol import encoding, ids, keys
from communs.protocol.errors import DecodeError

from .errors import RejectedError
from .ledger import Ledger, rotated_roster
from .records import MAX_BALLOT_BYTES, MAX_PROPOSAL_BYTES, Ballot, Proposal
from .rotation import MAX_ROTATION_BYTES, Rotation

RecordKind = Literal["proposal", "ballot", "rotation"]


def record_kind(raw: bytes) -> RecordKind:
    """Whether `raw` is a proposal or a ballot, from its canonical map's "type" (DecodeError otherwise)."""
    if len(raw) > MAX_PROPOSAL_BYTES:
        raise DecodeError(f"a governance record is at most {MAX_PROPOSAL_BYTES} bytes")
    value = encoding.decode(bytes(raw), max_bytes=MAX_PROPOSAL_BYTES)
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "proposal":
        return "proposal"
    if kind == "ballot":
        if len(raw) > MAX_BALLOT_BYTES:
            raise DecodeError(f"a ballot is at most {MAX_BALLOT_BYTES} bytes")
        return "ballot"
    if kind == "rotation":
        if len(raw) > MAX_ROTATION_BYTES:
            raise DecodeError(f"a key rotation is at most {MAX_ROTATION_BYTES} bytes")
        return "rotation"
    raise DecodeError("the record is not a signed proposal, ballot or key rotation")


def precheck(raw: bytes, ledger: Ledger, now: int) -> RecordKind:
    """Refuse what can be refused without a signature check; the record's kind otherwise."""
    kind = record_kind(raw)
    if kind == "proposal":
        proposal = Proposal.decode(raw, verify=False)
        roster = ledger.current.roster
        if proposal.roster != roster.hash:
            raise RejectedError("the proposal names a roster that is not the roster in force on this node")
        if proposal.proposer not in roster:
            raise RejectedError(f"proposer {keys.peer_id(proposal.proposer)} is not a member of the roster")
        if proposal.id in ledger.proposals:
            raise RejectedError(f"proposal {proposal.cid} is already recorded")
        if proposal.closes <= now:
            raise RejectedError(f"proposal {proposal.cid} closes at {proposal.closes}, which is already past")
        return kind
    if kind == "rotation":
        rotated_roster(Rotation.decode(raw, verify=False), ledger.current.roster, ledger.rotated)
        return kind
    ballot = Ballot.decode(raw, verify=False)
    if ballot.member in ledger.rotated:
        raise RejectedError(f"key {keys.peer_id(ballot.member)} was rotated away; ballots must use the member's "
                            "new key")
    status = ledger.proposals.get(ballot.proposal)
    if status is None:
        raise RejectedError(f"ballot is for unknown proposal {ids.cid_str(ballot.proposal)}")
    if ballot.member not in status.roster:
        raise RejectedError(f"{keys.peer_id(ballot.member)} is not a member of the roster proposal "
                            f"{status.proposal.cid} is voted under")
    if status.tally is not None or now >= status.proposal.closes:
        raise RejectedError(f"proposal {status.proposal.cid} is closed")
    if any(b.id == ballot.id for b in status.ballots):
        raise RejectedError("this ballot is already recorded")
    return kind
