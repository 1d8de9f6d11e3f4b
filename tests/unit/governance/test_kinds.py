"""The table of proposal kinds: each entry's body check, rule, applicability, enactment and words."""

from __future__ import annotations

import pytest
from communs.governance import kinds
from communs.governance.errors import RejectedError
from communs.governance.policy import DEFAULT_POLICY, Policy
from communs.governance.records import Roster
from communs.governance.tally import GovernanceState
from communs.protocol import keys
from communs.protocol.errors import DecodeError

ALICE, BOB = keys.SigningKey.generate(), keys.SigningKey.generate()
ROSTER = Roster.of([(ALICE.public, "alice")])
STATE = GovernanceState(roster=ROSTER)
PID = bytes(32)


def test_every_kind_is_in_the_table_once() -> None:
    assert kinds.NAMES == ("policy", "quota", "member-add", "member-remove")
    with pytest.raises(DecodeError, match="must be one of policy, quota, member-add, member-remove"):
        kinds.kind_of("dictator")


def test_rules() -> None:
    assert [kinds.KINDS[n].rule for n in kinds.NAMES] == ["majority", "majority", "two-thirds", "two-thirds"]


def test_policy_entry() -> None:
    spec = kinds.KINDS["policy"]
    body = Policy(accept_licences=("CC0-1.0",)).to_dict()
    spec.check_body(body)
    with pytest.raises(DecodeError, match="not a valid licence policy"):
        spec.check_body({"accept_licences": ["Nope-1.0"]})
    after = spec.enact(STATE, body, PID)
    assert after.policy.accept_licences == ("CC0-1.0",) and after.policy_version == 1 and after.policy_proposal == PID
    assert spec.summary(body) == "adopt a new licence policy accepting CC0-1.0"
    assert "licence policy version 1 is now in force (accepts CC0-1.0)" == spec.describe(body, after)


def test_quota_entry() -> None:
    spec = kinds.KINDS["quota"]
    spec.check_body({"storage_quota_bytes": 10})
    with pytest.raises(DecodeError, match="must be an integer"):
        spec.check_body({"storage_quota_bytes": "10"})
    with pytest.raises(DecodeError, match="unknown field"):
        spec.check_body({"storage_quota_bytes": 10, "x": 1})
    after = spec.enact(STATE, {"storage_quota_bytes": 10}, PID)
    assert after.policy == Policy(**{**DEFAULT_POLICY.__dict__, "storage_quota_bytes": 10})
    assert spec.summary({"storage_quota_bytes": 10}) == "set the storage quota to 10 bytes"


def test_member_add_entry() -> None:
    spec = kinds.KINDS["member-add"]
    body = {"key": BOB.public, "name": "bob"}
    spec.check_body(body)
    with pytest.raises(DecodeError, match="name"):
        spec.check_body({"key": BOB.public, "name": " bob"})
    spec.check_applies(body, ROSTER)
    after = spec.enact(STATE, body, PID)
    assert BOB.public in after.roster and len(after.roster) == 2
    with pytest.raises(RejectedError, match="already on the roster"):
        spec.check_applies(body, after.roster)
    assert spec.describe(body, after).endswith("joined the roster, now 2 members")


def test_member_remove_entry() -> None:
    spec = kinds.KINDS["member-remove"]
    with pytest.raises(RejectedError, match="would leave the roster empty"):
        spec.check_applies({"key": ALICE.public}, ROSTER)
    with pytest.raises(RejectedError, match="is not a member"):
        spec.check_applies({"key": BOB.public}, ROSTER)
    two = GovernanceState(roster=ROSTER.with_member(BOB.public, "bob"))
    after = spec.enact(two, {"key": BOB.public}, PID)
    assert BOB.public not in after.roster
    assert spec.summary({"key": BOB.public}) == f"remove member {keys.peer_id(BOB.public)}"
