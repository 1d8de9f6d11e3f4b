"""The decision rules: who may propose and vote, how ballots are counted, and what a passed proposal does.

Everything here is a pure function of records and `now` (unix seconds, given by the caller),
so any node, or anyone holding an exported log, computes the same answers.

The contract's rules, exactly:

- Quorum, for every kind: at least half the roster has voted (`2 * voted >= members`);
  abstentions count toward the quorum.
- Policy and quota proposals pass when yes votes are more than half of yes + no
  (`2 * yes > yes + no`).
- Roster changes (member-add, member-remove) need two thirds of yes + no:
  `3 * yes >= 2 * (yes + no)` and at least one yes. "Two thirds" is read as *at least* two
  thirds, so two yes of three pass; the `yes > 0` guard stops a roster change passing with
  only abstentions (0 >= 0).
- A proposal closes at its closing time, or as soon as the ballots of the members who have not
  voted can no longer change its outcome (`decided`; every member having voted is one case): a
  2-0 among three members is decided, a 1-1 is not. The moment is the date of the ballot that
  decided it, so the rule is a function of the records alone and an audit recomputes it.
- A member may change their ballot until the close; the last one counts: the highest `ts`,
  ties broken by the higher ballot id, so the result never depends on arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from communs.protocol import encoding, ids, keys
from communs.protocol.errors import DecodeError

from .errors import PolicyError, RejectedError, UnchangedVote
from .kinds import KINDS
from .policy import DEFAULT_POLICY, Policy
from .records import Ballot, Proposal, Roster

MAX_CLOCK_SKEW = 300
"""Seconds a ballot's own timestamp may run ahead of the node's clock."""

Outcome = Literal["open", "passed", "rejected"]


def _who(key: bytes) -> str:
    return keys.peer_id(key)


def _pid(proposal: Proposal) -> str:
    return proposal.cid


_STATE_FIELDS = frozenset(["roster", "policy", "policy_version", "policy_proposal"])


@dataclass(frozen=True)
class GovernanceState:
    """What governance has decided so far: the roster, the policy in force and where it came from."""

    roster: Roster
    policy: Policy = DEFAULT_POLICY
    policy_version: int = 0
    policy_proposal: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        """For `GET /api/v1/policy`: the policy in force, its version and the proposal that enacted it."""
        return {
            "policy": self.policy.to_dict(),
            "version": self.policy_version,
            "proposal": ids.cid_str(self.policy_proposal) if self.policy_proposal else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "roster": self.roster.to_dict(),
            "policy": self.policy.to_dict(),
            "policy_version": self.policy_version,
            "policy_proposal": self.policy_proposal,
        }

    @classmethod
    def from_dict(cls, value: Any) -> GovernanceState:
        if not isinstance(value, dict) or set(value) != _STATE_FIELDS:
            raise DecodeError("a governance state must be a map of roster, policy, policy_version and "
                              "policy_proposal")
        version = value["policy_version"]
        if type(version) is not int or version < 0:
            raise DecodeError("policy_version must be a non-negative integer")
        source = value["policy_proposal"]
        if source is not None and (type(source) is not bytes or len(source) != ids.DIGEST_SIZE):
            raise DecodeError("policy_proposal must be a 32-byte proposal id or nil")
        try:
            policy = Policy.from_dict(value["policy"])
        except PolicyError as exc:
            raise DecodeError(str(exc)) from exc
        return cls(Roster.from_dict(value["roster"]), policy, version, source)


@dataclass(frozen=True)
class Tally:
    """The count of one proposal's ballots, and what it means under the decision rules."""

    proposal: bytes
    roster: bytes
    members: int
    yes: int
    no: int
    abstain: int
    quorum: int
    rule: Literal["majority", "two-thirds"]
    quorum_met: bool
    threshold_met: bool
    closed: bool
    closed_at: int | None
    outcome: Outcome
    counted: tuple[bytes, ...]

    @property
    def voted(self) -> int:
        return self.yes + self.no + self.abstain

    @property
    def passing(self) -> bool:
        """Whether the proposal would pass if it closed now."""
        return self.quorum_met and self.threshold_met

    def to_dict(self) -> dict[str, Any]:
        """The canonical map recorded in the governance log (independent of `now` once closed)."""
        return {
            "proposal": self.proposal,
            "roster": self.roster,
            "members": self.members,
            "yes": self.yes,
            "no": self.no,
            "abstain": self.abstain,
            "quorum": self.quorum,
            "rule": self.rule,
            "quorum_met": self.quorum_met,
            "threshold_met": self.threshold_met,
            "closed": self.closed,
            "closed_at": self.closed_at,
            "outcome": self.outcome,
            "counted": list(self.counted),
        }

    def to_json(self) -> dict[str, Any]:
        """The tally for the admin API: ids as CIDv1 text, plus `passing` and the summary in words."""
        return {
            **self.to_dict(),
            "proposal": ids.cid_str(self.proposal),
            "roster": ids.cid_str(self.roster),
            "counted": [ids.cid_str(c) for c in self.counted],
            "passing": self.passing,
            "summary": self.describe(),
        }

    def describe(self) -> str:
        """The tally in words, for the CLI and the API."""
        rule = "more than half of yes + no" if self.rule == "majority" else "two thirds of yes + no"
        return (f"{self.yes} yes, {self.no} no, {self.abstain} abstain of {self.members} members "
                f"(quorum {self.quorum}, needs {rule}): {self.outcome}")


def validate_proposal(proposal: Proposal, roster: Roster, now: int) -> None:
    """Raise unless `proposal` may be opened now under `roster`, the roster in force.

    A SignatureError (a RecordError) for a bad signature, a RejectedError naming the rule for
    anything else. The proposal must name the roster in force: a proposal voted under an older
    roster would let a removed member vote.
    """
    proposal.verify()
    if proposal.roster != roster.hash:
        raise RejectedError(f"proposal {_pid(proposal)} names a roster that is not the roster in force")
    if proposal.proposer not in roster:
        raise RejectedError(f"proposer {_who(proposal.proposer)} is not a member of the roster")
    if proposal.closes <= now:
        raise RejectedError(f"proposal {_pid(proposal)} closes at {proposal.closes}, which is already past")
    KINDS[proposal.kind].check_applies(proposal.body, roster)


# A member may change their vote until the close, but not without bound: each ballot is checked against
# the earlier ones, so an unbounded number would make replaying the log at start-up quadratic.
MAX_BALLOTS_PER_MEMBER = 100


def validate_ballot(
    ballot: Ballot, proposal: Proposal, roster: Roster, now: int, ballots: Iterable[Ballot] = ()
) -> None:
    """Raise unless `ballot` may be recorded now on `proposal` (voted under `roster`).

    `ballots` are the ballots already recorded on the proposal: they decide whether it has
    already closed early (every member voted) and whether this ballot is newer than the
    member's last one (an older one would be recorded but never count).
    """
    ballot.verify()
    if ballot.proposal != proposal.id:
        raise RejectedError(f"ballot is for proposal {ids.cid_str(ballot.proposal)}, not {_pid(proposal)}")
    if proposal.roster != roster.hash:
        raise RejectedError(f"the roster given is not the roster proposal {_pid(proposal)} is voted under")
    if ballot.member not in roster:
        raise RejectedError(f"{_who(ballot.member)} is not a member of the roster proposal "
                            f"{_pid(proposal)} is voted under")
    if now < proposal.opens:
        raise RejectedError(f"proposal {_pid(proposal)} does not open until {proposal.opens}")
    if now >= proposal.closes:
        raise RejectedError(f"proposal {_pid(proposal)} closed at {proposal.closes}")
    if not proposal.opens <= ballot.ts < proposal.closes:
        raise RejectedError(f"ballot is dated {ballot.ts}, outside the voting period of proposal "
                            f"{_pid(proposal)} ({proposal.opens} to {proposal.closes})")
    if ballot.ts > now + MAX_CLOCK_SKEW:
        raise RejectedError(f"ballot is dated {ballot.ts}, more than {MAX_CLOCK_SKEW} s ahead of this "
                            "node's clock")
    earlier = [b for b in ballots if b.proposal == proposal.id]
    if any(b.id == ballot.id for b in earlier):
        raise RejectedError("this ballot is already recorded")
    if tally(proposal, roster, earlier, now).closed:
        raise RejectedError(f"proposal {_pid(proposal)} is closed: its outcome is decided whatever the others vote")
    own = [b for b in earlier if b.member == ballot.member]
    if len(own) >= MAX_BALLOTS_PER_MEMBER:
        raise RejectedError(f"{_who(ballot.member)} already cast {MAX_BALLOTS_PER_MEMBER} ballots on proposal "
                            f"{_pid(proposal)}; no further changes of vote are accepted")
    if own:
        last = max(own, key=_order)
        if _order(ballot) < _order(last):
            raise RejectedError(f"a later ballot from this member is already recorded (dated {last.ts}); "
                                "a new ballot must be dated later")


def _order(ballot: Ballot) -> tuple[int, bytes]:
    return ballot.ts, ballot.id


def ballot_in_force(member: bytes, proposal: bytes, ballots: Iterable[Ballot]) -> Ballot | None:
    """`member`'s ballot that counts on `proposal` among `ballots` (their latest), None when they have not voted."""
    own = [b for b in ballots if b.member == member and b.proposal == proposal]
    return max(own, key=_order) if own else None


def check_changes_vote(ballot: Ballot, ballots: Iterable[Ballot]) -> None:
    """Raise UnchangedVote when `ballot` says what its member's ballot in force on the same proposal already
    says: a member may change their vote until the close, but voting the same way again would change
    nothing and only list a second ballot beside the first. Checked on new submissions only: logs recorded
    before this rule keep such repeats, and replaying them stays valid."""
    last = ballot_in_force(ballot.member, ballot.proposal, ballots)
    if last is not None and last.choice == ballot.choice and last.id != ballot.id:
        raise UnchangedVote(f"{_who(ballot.member)} already voted {ballot.choice} on proposal "
                            f"{ids.cid_str(ballot.proposal)}, so a second {ballot.choice} would change nothing "
                            "and is not recorded")


def tally(proposal: Proposal, roster: Roster, ballots: Iterable[Ballot], now: int) -> Tally:
    """Count `ballots` on `proposal` at time `now`. Order of `ballots` does not matter.

    Only ballots on this proposal, from members of its roster, dated inside its voting period
    count (signatures are the caller's to have checked: ballots come from `Ballot.decode` or
    passed `validate_ballot`). A proposal is decided, and closes, at the first moment (the date of a
    ballot) when the members who have not voted can no longer change its outcome, every member having
    voted being one case (see `decided`); a ballot dated after that moment does not count.
    """
    if proposal.roster != roster.hash:
        raise RejectedError(f"the roster given is not the roster proposal {_pid(proposal)} is voted under")
    members = len(roster)
    rule = KINDS[proposal.kind].rule
    eligible = sorted((b for b in ballots if b.proposal == proposal.id and b.member in roster
                       and proposal.opens <= b.ts < proposal.closes), key=_order)
    # Replay the ballots in date order; the proposal is decided at the first moment (a ballot's date)
    # when the members who have not voted can no longer change the outcome (all voted is one case).
    last: dict[bytes, Ballot] = {}
    counts = {"yes": 0, "no": 0, "abstain": 0}
    end = proposal.closes
    decided_early = False
    for i, b in enumerate(eligible):
        before = last.get(b.member)
        if before is not None:
            counts[before.choice] -= 1
        last[b.member] = b
        counts[b.choice] += 1
        if i + 1 < len(eligible) and eligible[i + 1].ts == b.ts:
            continue  # decide only once every ballot of this moment is counted
        if decided(counts["yes"], counts["no"], counts["abstain"], members, rule):
            end, decided_early = b.ts, True
            break
    choices = [b.choice for b in last.values()]
    yes, no, abstain = (choices.count(c) for c in ("yes", "no", "abstain"))
    quorum = (members + 1) // 2
    quorum_met = 2 * (yes + no + abstain) >= members
    threshold_met = _threshold(yes, no, rule)
    closed = decided_early or now >= proposal.closes
    outcome: Outcome = "open"
    closed_at = end if closed else None
    if closed:
        outcome = "passed" if quorum_met and threshold_met else "rejected"
    return Tally(
        proposal=proposal.id, roster=roster.hash, members=members, yes=yes, no=no, abstain=abstain,
        quorum=quorum, rule=rule, quorum_met=quorum_met, threshold_met=threshold_met, closed=closed,
        closed_at=closed_at, outcome=outcome, counted=tuple(sorted(b.id for b in last.values())),
    )


def _threshold(yes: int, no: int, rule: str) -> bool:
    if rule == "two-thirds":
        return yes > 0 and 3 * yes >= 2 * (yes + no)
    return 2 * yes > yes + no


def passes(yes: int, no: int, abstain: int, members: int, rule: str) -> bool:
    """Whether these votes pass under `rule` in a roster of `members` (quorum and threshold)."""
    return 2 * (yes + no + abstain) >= members and _threshold(yes, no, rule)


def decided(yes: int, no: int, abstain: int, members: int, rule: str) -> bool:
    """Whether no ballots of the members who have not voted yet can change the outcome any more.

    Exact, not a bound: of all the ways the others may vote or not vote, every yes more helps a
    proposal pass (quorum and threshold alike), so it can pass iff it passes with all of them voting
    yes; a no more hurts the threshold but helps the quorum and an abstention helps only the
    quorum, so it can fail iff it fails with none of them voting or with all of them voting no.
    (tests/unit/governance/test_tally.py checks this against every assignment for small rosters.)
    """
    remaining = members - (yes + no + abstain)
    if remaining <= 0:
        return True
    can_pass = passes(yes + remaining, no, abstain, members, rule)
    can_fail = not passes(yes, no, abstain, members, rule) or not passes(yes, no + remaining, abstain, members, rule)
    return not (can_pass and can_fail)


def enact(state: GovernanceState, proposal: Proposal) -> GovernanceState:
    """The state after a passed `proposal` takes effect; RejectedError if it no longer applies.

    A roster change can stop applying between its opening and its close (another proposal
    added the same member first, or removed the last other member); the caller records that
    it was not enacted and why.
    """
    return KINDS[proposal.kind].enact(state, proposal.body, proposal.id)


def state_bytes(state: GovernanceState) -> bytes:
    """Canonical bytes of a state, to compare recorded and recomputed enactments."""
    return encoding.encode(state.to_dict())
