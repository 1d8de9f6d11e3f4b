"""Decision rules: proposal and ballot validation, the tally, closing, and enactment."""

from __future__ import annotations

import random
from typing import Any

import pytest
from communs.governance.errors import RejectedError, UnchangedVote
from communs.governance.policy import DEFAULT_POLICY, Policy
from communs.governance.records import Ballot, Proposal, Roster
from communs.governance.tally import (
    MAX_CLOCK_SKEW,
    GovernanceState,
    ballot_in_force,
    check_changes_vote,
    decided,
    enact,
    passes,
    tally,
    validate_ballot,
    validate_proposal,
)
from communs.protocol import encoding, keys
from communs.protocol.errors import SignatureError
from hypothesis import given, settings
from hypothesis import strategies as st

MEMBERS = [keys.SigningKey(bytes([i]) * 32) for i in range(1, 8)]
A, B, C, D = MEMBERS[:4]
OUTSIDER = keys.SigningKey(bytes([99]) * 32)
THREE = Roster.of([(A.public, "Ana"), (B.public, "Ben"), (C.public, "Cleo")])
POLICY = Policy(accept_licences=("CC0-1.0",))
OPENS, CLOSES = 1000, 2000


def make(kind: Any = "policy", body: Any = POLICY, key: keys.SigningKey = A, roster: Roster = THREE,
         nonce: int = 0, **kw: Any) -> Proposal:
    args: dict[str, Any] = {"opens": OPENS, "closes": CLOSES}
    args.update(kw)
    return Proposal.create(key, kind=kind, body=body, roster=roster.hash, nonce=bytes([nonce]) * 16, **args)


def vote(key: keys.SigningKey, p: Proposal, choice: Any, ts: int = 1500) -> Ballot:
    return Ballot.create(key, proposal=p.id, choice=choice, ts=ts)


# --- validate_proposal


def test_valid_proposals() -> None:
    for p in (make(), make("quota", {"storage_quota_bytes": 10}),
              make("member-add", {"key": D.public, "name": "Dee"}), make("member-remove", {"key": C.public})):
        validate_proposal(p, THREE, 1100)


@pytest.mark.parametrize(
    ("proposal", "now", "message"),
    [
        (lambda: make(key=OUTSIDER), 1100, "is not a member of the roster"),
        (lambda: make("member-add", {"key": B.public, "name": "Ben"}), 1100, "already on the roster"),
        (lambda: make("member-remove", {"key": D.public}), 1100, "is not a member of the roster"),
        (lambda: make(roster=THREE.with_member(D.public, "Dee")), 1100, "not the roster in force"),
        (lambda: make(), CLOSES, "already past"),
    ],
)
def test_refused_proposals(proposal: Any, now: int, message: str) -> None:
    with pytest.raises(RejectedError, match=message):
        validate_proposal(proposal(), THREE, now)


def test_removal_leaving_roster_empty_is_refused() -> None:
    alone = Roster.of([(A.public, "Ana")])
    p = make("member-remove", {"key": A.public}, roster=alone)
    with pytest.raises(RejectedError, match="would leave the roster empty"):
        validate_proposal(p, alone, 1100)
    with pytest.raises(RejectedError, match="would leave the roster empty"):
        enact(GovernanceState(alone), p)


def test_forged_proposal_object_is_refused() -> None:
    p = make()
    forged = Proposal(kind=p.kind, body=p.body, proposer=B.public, roster=p.roster, opens=p.opens,
                      closes=p.closes, nonce=p.nonce, sig=p.sig)
    with pytest.raises(SignatureError):
        validate_proposal(forged, THREE, 1100)


# --- validate_ballot


def test_valid_ballot() -> None:
    p = make()
    validate_ballot(vote(B, p, "yes"), p, THREE, 1500)


def test_ballot_bad_inputs() -> None:
    p = make()
    other = make(nonce=1)
    cases: list[tuple[Ballot, Proposal, int, list[Ballot], str]] = [
        (vote(OUTSIDER, p, "yes"), p, 1500, [], "is not a member of the roster proposal"),
        (vote(B, p, "yes", ts=1999), p, CLOSES, [], "closed at 2000"),
        (vote(B, p, "yes", ts=1999), p, 2500, [], "closed at 2000"),
        (vote(B, p, "yes", ts=1000), p, 999, [], "does not open until 1000"),
        (vote(B, other, "yes"), p, 1500, [], f"ballot is for proposal {other.cid}, not {p.cid}"),
        (vote(B, p, "yes", ts=999), p, 1500, [], "outside the voting period"),
        (vote(B, p, "yes", ts=1500 + MAX_CLOCK_SKEW + 1), p, 1500, [], "ahead of this node's clock"),
        (vote(B, p, "yes", ts=1500), p, 1600, [vote(B, p, "no", ts=1550)], "later ballot from this member"),
        (vote(B, p, "yes"), p, 1600, [vote(B, p, "yes")], "already recorded"),
        (vote(B, p, "no", ts=1700), p, 1700,
         [vote(A, p, "yes"), vote(B, p, "yes"), vote(C, p, "yes")], "closed: its outcome is decided"),
        (vote(C, p, "no", ts=1700), p, 1700,
         [vote(A, p, "yes"), vote(B, p, "yes")], "closed: its outcome is decided"),
    ]
    for ballot, proposal, now, earlier, message in cases:
        with pytest.raises(RejectedError, match=message):
            validate_ballot(ballot, proposal, THREE, now, earlier)


def test_ballot_with_altered_signature_is_refused() -> None:
    p = make()
    b = vote(B, p, "yes")
    value = b.to_dict()
    value["sig"] = bytes([value["sig"][0] ^ 1]) + value["sig"][1:]
    with pytest.raises(SignatureError):
        Ballot.decode(encoding.encode(value))
    forged = Ballot(proposal=p.id, member=C.public, choice="yes", ts=1500, sig=b.sig)
    with pytest.raises(SignatureError):
        validate_ballot(forged, p, THREE, 1500)


def test_ballot_replayed_onto_another_proposal() -> None:
    """Both proposals are open; the ballot signed for one cannot count on the other."""
    p, other = make(), make(nonce=1)
    b = vote(B, p, "yes")
    with pytest.raises(RejectedError, match="ballot is for proposal"):
        validate_ballot(b, other, THREE, 1500)
    moved = Ballot(proposal=other.id, member=b.member, choice=b.choice, ts=b.ts, sig=b.sig)
    with pytest.raises(SignatureError):
        validate_ballot(moved, other, THREE, 1500)
    assert tally(other, THREE, [b], 1500).voted == 0


def test_changing_a_ballot() -> None:
    p = make()
    first = vote(B, p, "no", ts=1100)
    second = vote(B, p, "yes", ts=1200)
    validate_ballot(second, p, THREE, 1200, [first])
    t = tally(p, THREE, [second, first], 1300)
    assert (t.yes, t.no) == (1, 0)
    assert t.counted == (second.id,)


def test_check_changes_vote_refuses_only_the_same_choice_as_the_ballot_in_force() -> None:
    p, other = make(), make(nonce=1)
    first = vote(B, p, "no", ts=1100)
    changed = vote(B, p, "yes", ts=1200)
    check_changes_vote(first, [])  # a first ballot
    check_changes_vote(changed, [first])  # a change of mind
    check_changes_vote(first, [first])  # the same record again is validate_ballot's to refuse ("recorded")
    check_changes_vote(vote(B, p, "no", ts=1300), [first, changed])  # back to no: yes is in force
    check_changes_vote(vote(B, other, "no", ts=1300), [first])  # another proposal
    check_changes_vote(vote(C, p, "no", ts=1300), [first])  # another member
    with pytest.raises(UnchangedVote, match=f"already voted no on proposal {p.cid}.*change nothing"):
        check_changes_vote(vote(B, p, "no", ts=1300), [first])
    with pytest.raises(UnchangedVote, match="already voted yes"):
        check_changes_vote(vote(B, p, "yes", ts=1300), [changed, first])  # order does not matter
    assert issubclass(UnchangedVote, RejectedError)
    assert ballot_in_force(B.public, p.id, [changed, first]) == changed
    assert ballot_in_force(C.public, p.id, [changed, first]) is None


# --- tally and the decision rules


def roster_of(n: int) -> Roster:
    return Roster.of([(k.public, f"m{i}") for i, k in enumerate(MEMBERS[:n])])


@pytest.mark.parametrize(
    ("kind", "size", "votes", "outcome"),
    [
        # policy: quorum at least half, yes more than half of yes + no
        ("policy", 3, "yy", "passed"),           # two yes of three (the e2e case)
        ("policy", 3, "y", "rejected"),          # 1 of 3 voted: no quorum
        ("policy", 4, "ya", "passed"),           # 2 of 4 voted: quorum (abstain counts), 1 yes > 0.5
        ("policy", 4, "aa", "rejected"),         # quorum but no yes
        ("policy", 4, "yn", "rejected"),         # tie is not more than half
        ("policy", 3, "yyn", "passed"),
        ("policy", 5, "yynn", "rejected"),
        ("policy", 5, "yyyn", "passed"),
        ("policy", 2, "y", "passed"),            # 1 of 2 is half the roster
        ("policy", 1, "y", "passed"),
        ("policy", 1, "n", "rejected"),
        ("quota", 3, "yy", "passed"),
        ("quota", 3, "yn", "rejected"),
        # roster changes: at least two thirds of yes + no, same quorum
        ("member-add", 3, "yyn", "passed"),      # exactly two thirds
        ("member-add", 3, "yy", "passed"),
        ("member-add", 4, "yn", "rejected"),     # one half < two thirds
        ("member-add", 5, "yyn", "passed"),
        ("member-add", 5, "yynn", "rejected"),
        ("member-add", 7, "yyyyynn", "passed"),  # 5/7 >= 2/3
        ("member-add", 7, "yyyynnn", "rejected"),
        ("member-add", 3, "aa", "rejected"),     # abstentions only never change the roster
        ("member-add", 3, "ya", "passed"),
        ("member-add", 4, "y", "rejected"),      # no quorum
    ],
)
def test_decision_rules(kind: str, size: int, votes: str, outcome: str) -> None:
    roster = roster_of(size)
    outsider = keys.SigningKey(bytes([77]) * 32).public
    body = {"policy": POLICY, "quota": {"storage_quota_bytes": 5},
            "member-add": {"key": outsider, "name": "New"}}[kind]
    p = make(kind, body, key=MEMBERS[0], roster=roster)
    choice = {"y": "yes", "n": "no", "a": "abstain"}
    ballots = [vote(MEMBERS[i], p, choice[c]) for i, c in enumerate(votes)]
    t = tally(p, roster, ballots, CLOSES)
    assert t.closed and t.outcome == outcome
    assert (t.yes, t.no, t.abstain) == (votes.count("y"), votes.count("n"), votes.count("a"))
    assert t.rule == ("majority" if kind in ("policy", "quota") else "two-thirds")
    assert t.quorum == (size + 1) // 2


def test_open_until_close_or_decided() -> None:
    """Open while the members who have not voted could still change the outcome; closed, at the date of the
    ballot that decided it, as soon as they cannot (2-0 of three is decided, 1-1 is not)."""
    p = make()
    split = [vote(A, p, "yes", ts=1100), vote(B, p, "no", ts=1200)]
    t = tally(p, THREE, split, 1500)
    assert not t.closed and t.outcome == "open" and t.closed_at is None
    t = tally(p, THREE, split, CLOSES)
    assert t.closed and t.outcome == "rejected" and t.closed_at == CLOSES
    two = [vote(A, p, "yes", ts=1100), vote(B, p, "yes", ts=1200)]
    t = tally(p, THREE, two, 1500)
    assert t.closed and t.outcome == "passed" and t.closed_at == 1200
    everyone = [*split, vote(C, p, "yes", ts=1300)]
    t = tally(p, THREE, everyone, 1300)
    assert t.closed and t.outcome == "passed" and t.closed_at == 1300
    assert "2 yes, 1 no, 0 abstain of 3 members" in t.describe()
    # two no of three: it cannot pass any more
    t = tally(p, THREE, [vote(A, p, "no", ts=1100), vote(B, p, "no", ts=1150)], 1200)
    assert t.closed and t.outcome == "rejected" and t.closed_at == 1150


def test_ballot_dated_after_early_close_does_not_count() -> None:
    p = make()
    ballots = [vote(A, p, "yes", ts=1100), vote(B, p, "no", ts=1200), vote(C, p, "yes", ts=1300),
               vote(A, p, "no", ts=1400)]
    t = tally(p, THREE, ballots, 1500)
    assert t.closed_at == 1300 and (t.yes, t.no) == (2, 1)
    ballots = [vote(A, p, "yes", ts=1100), vote(B, p, "yes", ts=1200), vote(B, p, "no", ts=1300)]
    t = tally(p, THREE, ballots, 1500)
    assert t.closed_at == 1200 and (t.yes, t.no) == (2, 0)


@pytest.mark.parametrize("rule", ["majority", "two-thirds"])
def test_decided_is_exact_for_every_small_roster(rule: str) -> None:
    """`decided` against brute force: every count of yes/no/abstain for rosters of 1 to 9 members, and every
    way the others may vote or not."""
    for members in range(1, 10):
        for yes in range(members + 1):
            for no in range(members + 1 - yes):
                for abstain in range(members + 1 - yes - no):
                    rest = members - yes - no - abstain
                    outcomes = {passes(yes + y, no + n, abstain + a, members, rule)
                                for y in range(rest + 1) for n in range(rest + 1 - y)
                                for a in range(rest + 1 - y - n)}
                    assert decided(yes, no, abstain, members, rule) == (len(outcomes) == 1), \
                        (members, yes, no, abstain)


def test_tally_ignores_foreign_ballots() -> None:
    p, other = make(), make(nonce=1)
    ballots = [vote(OUTSIDER, p, "yes"), vote(B, other, "yes"), vote(C, p, "yes", ts=CLOSES),
               vote(C, p, "yes", ts=OPENS - 1)]
    assert tally(p, THREE, ballots, 1500).voted == 0


def test_same_ts_tie_broken_by_ballot_id() -> None:
    p = make()
    x, y = vote(B, p, "yes", ts=1500), vote(B, p, "no", ts=1500)
    winner = max(x, y, key=lambda b: b.id)
    for order in ([x, y], [y, x]):
        assert tally(p, THREE, order, 1600).counted == (winner.id,)


ballot_specs = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(["yes", "no", "abstain"]),
              st.integers(OPENS - 5, CLOSES + 5)),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(specs=ballot_specs, kind=st.sampled_from(["policy", "member-add"]), seed=st.integers(0, 2**32),
       now=st.integers(OPENS, CLOSES + 10))
def test_tally_does_not_depend_on_arrival_order(specs: list[tuple[int, str, int]], kind: str, seed: int,
                                                now: int) -> None:
    body = POLICY if kind == "policy" else {"key": D.public, "name": "Dee"}
    p = make(kind, body)
    voters = [A, B, C, OUTSIDER]
    ballots = [vote(voters[i], p, choice, ts) for i, choice, ts in specs]
    shuffled = list(ballots)
    random.Random(seed).shuffle(shuffled)
    assert tally(p, THREE, ballots, now) == tally(p, THREE, shuffled, now)
    assert tally(p, THREE, ballots, now) == tally(p, THREE, list(reversed(ballots)), now)


# --- enactment


def test_enact_policy_quota_and_members() -> None:
    state = GovernanceState(THREE)
    assert state.policy == DEFAULT_POLICY and state.policy_version == 0 and state.policy_proposal is None
    p = make()
    s1 = enact(state, p)
    assert s1.policy == POLICY and s1.policy_version == 1 and s1.policy_proposal == p.id
    q = make("quota", {"storage_quota_bytes": 123})
    s2 = enact(s1, q)
    assert s2.policy.storage_quota_bytes == 123 and s2.policy.accept_licences == POLICY.accept_licences
    assert s2.policy_version == 2 and s2.policy_proposal == q.id
    add = make("member-add", {"key": D.public, "name": "Dee"})
    s3 = enact(s2, add)
    assert D.public in s3.roster and s3.roster.name_of(D.public) == "Dee" and s3.policy == s2.policy
    with pytest.raises(RejectedError, match="already on the roster"):
        enact(s3, add)
    s4 = enact(s3, make("member-remove", {"key": A.public}))
    assert A.public not in s4.roster and len(s4.roster) == 3
    assert GovernanceState.from_dict(encoding.decode(encoding.encode(s4.to_dict()))) == s4
