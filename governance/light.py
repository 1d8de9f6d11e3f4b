"""What a member's light client checks itself before showing or signing anything.

The node serving `/communs/governance/1` is trusted for availability only: every proposal and
ballot arrives as its signed bytes, and the client verifies the signatures, that the roster sent
is the roster the proposal is voted under (its hash is inside the proposer's signature), that
the proposer and every ballot's member are on it, and recounts the tally from the ballots.
`policy_changes` says, in words, what a policy proposal changes against the policy in force, so
a member signs only what they have seen. Pure functions; each fault is a one-sentence LightError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from communs.protocol import ids, keys
from communs.protocol.errors import RecordError

from .errors import GovernanceError, PolicyError
from .policy import Policy
from .receipts import Receipt
from .records import Ballot, Proposal, Roster
from .tally import Tally, tally

_COUNTS = ("yes", "no", "abstain", "members")


class LightError(GovernanceError):
    """What the node sent does not hold up; the message says what, in one sentence."""


@dataclass(frozen=True)
class CheckedProposal:
    proposal: Proposal
    roster: Roster
    ballots: tuple[Ballot, ...]
    tally: Tally
    now: int


def check_proposal_answer(answer: dict[str, Any], expected_id: bytes | None = None) -> CheckedProposal:
    """The `proposal` answer's records, verified, and the tally recounted from them."""
    try:
        proposal = Proposal.decode(answer["record"])
        roster = Roster.decode(answer["roster"])
        ballots = tuple(Ballot.decode(b) for b in answer["ballots"])
    except (RecordError, TypeError) as exc:
        raise LightError(f"the node sent a record that does not verify: {exc}") from None
    if expected_id is not None and proposal.id != expected_id:
        raise LightError(f"the node sent proposal {proposal.cid} instead of {ids.cid_str(expected_id)}")
    if roster.hash != proposal.roster:
        raise LightError(f"the roster the node sent is not the roster proposal {proposal.cid} is voted under")
    if proposal.proposer not in roster:
        raise LightError(f"the proposer of {proposal.cid} is not on the roster it is voted under")
    for b in ballots:
        if b.proposal != proposal.id:
            raise LightError(f"the node sent ballot {b.cid}, which is for another proposal")
        if b.member not in roster:
            raise LightError(f"ballot {b.cid} is signed by {keys.peer_id(b.member)}, who is not on the roster")
    now = answer.get("now")
    if type(now) is not int:
        raise LightError("the node's answer has no clock reading")
    recount = tally(proposal, roster, ballots, now)
    claimed = answer.get("tally")
    if not isinstance(claimed, dict) or any(claimed.get(k) != getattr(recount, k) for k in _COUNTS):
        raise LightError(f"the tally the node reports for {proposal.cid} differs from the recount of its "
                         f"ballots ({recount.describe()})")
    return CheckedProposal(proposal, roster, ballots, recount, now)


def check_list_item(item: dict[str, Any]) -> Proposal:
    """One item of a `proposals` answer: its signed record verified and matching the summary fields."""
    try:
        proposal = Proposal.decode(item["record"])
    except (RecordError, TypeError, KeyError) as exc:
        raise LightError(f"the node listed a proposal that does not verify: {exc}") from None
    if item.get("id") != proposal.id or item.get("kind") != proposal.kind or item.get("closes") != proposal.closes:
        raise LightError(f"the node's list entry for {proposal.cid} does not match the signed proposal")
    return proposal


def check_receipt_answer(raw: object, node: bytes, record: bytes) -> Receipt:
    """The node's receipt for `record`: signed by the node we asked, naming that record."""
    try:
        receipt = Receipt.decode(raw)  # type: ignore[arg-type]
    except RecordError as exc:
        raise LightError(f"the node's receipt does not verify: {exc}") from None
    if receipt.node != node:
        raise LightError(f"the receipt is signed by {keys.peer_id(receipt.node)}, not by the node asked "
                         f"({keys.peer_id(node)})")
    if receipt.record != record:
        raise LightError(f"the receipt names record {ids.cid_str(receipt.record)}, not the one submitted")
    return receipt


def policy_changes(current: Policy, proposed: Policy) -> list[str]:
    """What adopting `proposed` changes against `current`, one line per rule, in words."""
    out: list[str] = []
    a, b = current.to_dict(), proposed.to_dict()
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key), b.get(key)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list):
            added = [x for x in new if x not in old]
            removed = [x for x in old if x not in new]
            parts = []
            if added:
                parts.append("adds " + ", ".join(map(str, added)))
            if removed:
                parts.append("removes " + ", ".join(map(str, removed)))
            out.append(f"{key}: {'; '.join(parts)}")
        else:
            out.append(f"{key}: {_show(old)} -> {_show(new)}")
    return out or ["no change against the policy in force"]


def _show(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def policy_from(answer: dict[str, Any]) -> Policy:
    try:
        return Policy.from_dict(answer["policy"])
    except (PolicyError, KeyError, TypeError) as exc:
        raise LightError(f"the node sent a policy that is not valid: {exc}") from None
