"""The kinds of proposal, one entry each: what its body holds, which rule decides it, what it does.

A new kind of proposal is one more `Kind` in `KINDS`: the record checks its body with `check_body`,
the tally asks `constitutional` for the rule and `check_applies` whether it can still take effect
under the roster in force, enactment calls `enact`, and people read `summary` (before the vote) and
`describe` (after the enactment). Nothing else in the code branches on a proposal's kind.

Bodies are the plain maps carried inside the signed proposal; they are checked before any other
function here sees them, so the functions below may index them freely.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from communs.protocol import encoding, keys
from communs.protocol.errors import DecodeError
from communs.protocol.signed import check_bytes, check_uint, exact_map, has_control, short

from .errors import PolicyError, RejectedError
from .policy import Policy

if TYPE_CHECKING:
    from .records import Roster
    from .tally import GovernanceState

Body = Mapping[str, Any]
Rule = Literal["majority", "two-thirds"]
MAX_NAME_CHARS = 100


@dataclass(frozen=True)
class Kind:
    """One kind of proposal."""

    name: str
    constitutional: bool
    """Roster changes need two thirds of yes + no; everything else a simple majority (see tally)."""
    check_body: Callable[[dict[str, Any]], None]
    """Raise DecodeError unless the body is well formed for this kind (the record's own check)."""
    check_applies: Callable[[Body, Roster], None]
    """Raise RejectedError if the body cannot take effect under `roster` (at opening and at enactment)."""
    enact: Callable[[GovernanceState, Body, bytes], GovernanceState]
    """The state after the proposal (named by its id) passed."""
    summary: Callable[[Body], str]
    """What the proposal would do, in words."""
    describe: Callable[[Body, GovernanceState], str]
    """What it did, in words, given the state after its enactment."""

    @property
    def rule(self) -> Rule:
        return "two-thirds" if self.constitutional else "majority"


def check_name(rec: str, value: object) -> str:
    """A member's name: 1 to 100 characters, no surrounding spaces, no control characters."""
    if type(value) is not str:
        raise DecodeError(f"{rec}: a member's name must be a string")
    if not 1 <= len(value) <= MAX_NAME_CHARS or value != value.strip():
        raise DecodeError(
            f"{rec}: a member's name must be 1 to {MAX_NAME_CHARS} characters without surrounding spaces"
        )
    if has_control(value):
        raise DecodeError(f"{rec}: a member's name must not contain control characters")
    return value


def _fields(kind: str, names: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    wanted = frozenset(names.split())
    return lambda body: exact_map("proposal", f"{kind} body", body, wanted)


def _nothing(body: Body, roster: Roster) -> None:
    return None


def _who(key: bytes) -> str:
    return keys.peer_id(key)


# --- policy ---------------------------------------------------------------------------------------


def _policy_body(body: dict[str, Any]) -> None:
    try:
        policy = Policy.from_dict(body)
    except PolicyError as exc:
        raise DecodeError(f"proposal body is not a valid licence policy: {exc}") from exc
    if encoding.encode(policy.to_dict()) != encoding.encode(body):
        raise DecodeError("proposal body is not a licence policy in its canonical form")


def _policy_applies(body: Body, roster: Roster) -> None:
    try:
        Policy.from_dict(dict(body))
    except PolicyError as exc:
        raise RejectedError(f"the proposal is not a valid licence policy: {exc}") from exc


def _policy_enact(state: GovernanceState, body: Body, proposal: bytes) -> GovernanceState:
    return dataclasses.replace(state, policy=Policy.from_dict(dict(body)), policy_version=state.policy_version + 1,
                               policy_proposal=proposal)


def _policy_summary(body: Body) -> str:
    accepted = ", ".join(body["accept_licences"]) or "no licence"
    return f"adopt a new licence policy accepting {accepted}"


def _policy_describe(body: Body, state: GovernanceState) -> str:
    return f"licence policy version {state.policy_version} is now in force ({policy_in_words(state.policy)})"


def policy_in_words(policy: Policy) -> str:
    """The rules of a policy in one line."""
    accepted = ", ".join(policy.accept_licences) or "no licence"
    parts = [f"accepts {accepted}"]
    if policy.refuse_licences:
        parts.append(f"refuses {', '.join(policy.refuse_licences)}")
    if policy.max_dataset_bytes is not None:
        parts.append(f"datasets up to {policy.max_dataset_bytes} bytes")
    if policy.storage_quota_bytes is not None:
        parts.append(f"quota {policy.storage_quota_bytes} bytes")
    if policy.trusted_publishers != "any":
        parts.append(f"{len(policy.trusted_publishers)} trusted publisher(s)")
    if policy.refused_publishers:
        parts.append(f"{len(policy.refused_publishers)} refused publisher(s)")
    return "; ".join(parts)


# --- quota ----------------------------------------------------------------------------------------


def _quota_body(body: dict[str, Any]) -> None:
    _fields("quota", "storage_quota_bytes")(body)
    check_uint("proposal", "storage_quota_bytes", body["storage_quota_bytes"])


def _quota_enact(state: GovernanceState, body: Body, proposal: bytes) -> GovernanceState:
    policy = dataclasses.replace(state.policy, storage_quota_bytes=body["storage_quota_bytes"])
    return dataclasses.replace(state, policy=policy, policy_version=state.policy_version + 1,
                               policy_proposal=proposal)


def _quota_describe(body: Body, state: GovernanceState) -> str:
    return (f"the storage quota is now {state.policy.storage_quota_bytes} bytes "
            f"(licence policy version {state.policy_version})")


# --- roster changes -------------------------------------------------------------------------------


def _member_add_body(body: dict[str, Any]) -> None:
    _fields("member-add", "key name")(body)
    check_bytes("proposal", "key", body["key"], keys.PUBLIC_KEY_SIZE)
    check_name("proposal", body["name"])


def _member_remove_body(body: dict[str, Any]) -> None:
    _fields("member-remove", "key")(body)
    check_bytes("proposal", "key", body["key"], keys.PUBLIC_KEY_SIZE)


def _member_add_applies(body: Body, roster: Roster) -> None:
    if body["key"] in roster:
        raise RejectedError(f"member {_who(body['key'])} is already on the roster")


def _member_remove_applies(body: Body, roster: Roster) -> None:
    key = body["key"]
    if key not in roster:
        raise RejectedError(f"{_who(key)} is not a member of the roster")
    if len(roster) == 1:
        raise RejectedError(f"removing {_who(key)} would leave the roster empty")


def _member_add_enact(state: GovernanceState, body: Body, proposal: bytes) -> GovernanceState:
    _member_add_applies(body, state.roster)
    return dataclasses.replace(state, roster=state.roster.with_member(body["key"], body["name"]))


def _member_remove_enact(state: GovernanceState, body: Body, proposal: bytes) -> GovernanceState:
    _member_remove_applies(body, state.roster)
    return dataclasses.replace(state, roster=state.roster.without_member(body["key"]))


# --- the table ------------------------------------------------------------------------------------

KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("policy", False, _policy_body, _policy_applies, _policy_enact, _policy_summary, _policy_describe),
    Kind("quota", False, _quota_body, _nothing, _quota_enact,
         lambda b: f"set the storage quota to {b['storage_quota_bytes']} bytes", _quota_describe),
    Kind("member-add", True, _member_add_body, _member_add_applies, _member_add_enact,
         lambda b: f"add member {b['name']} ({_who(b['key'])})",
         lambda b, s: f"{b['name']} ({_who(b['key'])}) joined the roster, now {len(s.roster)} members"),
    Kind("member-remove", True, _member_remove_body, _member_remove_applies, _member_remove_enact,
         lambda b: f"remove member {_who(b['key'])}",
         lambda b, s: f"{_who(b['key'])} left the roster, now {len(s.roster)} members"),
)}
NAMES = tuple(KINDS)


def kind_of(name: object) -> Kind:
    """The kind called `name`; DecodeError naming the known kinds otherwise."""
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise DecodeError(f"proposal kind must be one of {', '.join(NAMES)}, not {short(name)}")
    return kind
