"""The governance records: the roster, proposals, ballots, and the genesis of a node's governance.

They follow the protocol records' form (see communs.protocol.records): a canonical msgpack map
with a `"type"` and a schema version `"v"`, an exact set of fields with exact types and bounded
sizes, and an Ed25519 signature in `"sig"` over the same map without `"sig"`, in a domain of
its own (`proposal/1`, `ballot/1`, `genesis/1`), so a member's signature on a ballot can never
be shown as a proposal or a manifest. A record's id is the BLAKE3 digest of its full encoding.

Constructing an object checks every field, so an instance is always well formed; `decode`
also checks the bytes are canonical and the signature verifies. Every fault raises a
`RecordError` subclass whose message is one sentence. Whether a valid record is *allowed*
(member of the roster, proposal open...) is decided in `tally`, not here.

A ballot signs the id of its proposal, so it cannot be replayed onto another proposal; a
proposal signs the hash of the roster it is voted under, so later roster changes cannot change
who may vote on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from communs.protocol import encoding, ids, keys
from communs.protocol.errors import DecodeError
from communs.protocol.signed import SignedRecord, check_bytes, check_uint, exact_map, short

from .kinds import KINDS, check_name, kind_of
from .policy import Policy

ROSTER_TYPE = "roster"
PROPOSAL_TYPE = "proposal"
PROPOSAL_DOMAIN = "proposal/1"
BALLOT_TYPE = "ballot"
BALLOT_DOMAIN = "ballot/1"
GENESIS_TYPE = "genesis"
GENESIS_DOMAIN = "genesis/1"
VERSION = 1

CHOICES = ("yes", "no", "abstain")
Kind = Literal["policy", "quota", "member-add", "member-remove"]
Choice = Literal["yes", "no", "abstain"]

MAX_MEMBERS = 1000
MAX_ROSTER_BYTES = 256 * 1024
MAX_PROPOSAL_BYTES = 512 * 1024
MAX_BALLOT_BYTES = 1024
MAX_GENESIS_BYTES = MAX_ROSTER_BYTES + 1024
NONCE_BYTES = 16


# --- field checks -------------------------------------------------------------------------------


def _key_text(key: bytes) -> str:
    return keys.peer_id(key)


# --- roster -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One member of the cooperative: their Ed25519 public key (they hold the private key) and a name."""

    key: bytes
    name: str

    def __post_init__(self) -> None:
        check_bytes("roster", "key", self.key, keys.PUBLIC_KEY_SIZE)
        check_name("roster", self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name}


_MEMBER_FIELDS = frozenset(["key", "name"])


@dataclass(frozen=True)
class Roster:
    """The members who may propose and vote. Non-empty, one entry per key, kept sorted by key.

    Its `hash` names it inside proposals; sorting makes the hash independent of the order in
    which members were listed or added.
    """

    members: tuple[Member, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.members, tuple):
            raise DecodeError("roster members must be a tuple")
        if not self.members:
            raise DecodeError("a roster must have at least one member")
        if len(self.members) > MAX_MEMBERS:
            raise DecodeError(f"a roster has at most {MAX_MEMBERS} members")
        for prev, item in zip((None, *self.members), self.members, strict=False):
            if type(item) is not Member:
                raise DecodeError("roster members must be Member values")
            if prev is not None and item.key == prev.key:
                raise DecodeError(f"roster lists member {_key_text(item.key)} twice")
            if prev is not None and item.key < prev.key:
                raise DecodeError("roster members must be sorted by key")

    @classmethod
    def of(cls, members: Iterable[Member | tuple[bytes, str]]) -> Roster:
        """A roster of `members` in any order; duplicates are an error."""
        items = [m if isinstance(m, Member) else Member(m[0], m[1]) for m in members]
        return cls(tuple(sorted(items, key=lambda m: m.key)))

    def to_dict(self) -> dict[str, Any]:
        return {"type": ROSTER_TYPE, "v": VERSION, "members": [m.to_dict() for m in self.members]}

    @classmethod
    def from_dict(cls, value: object) -> Roster:
        """A roster from its canonical map (as nested inside a genesis record or a log entry)."""
        if not isinstance(value, dict) or value.get("type") != ROSTER_TYPE:
            raise DecodeError("not a roster map")
        if value.get("v") != VERSION or type(value.get("v")) is not int:
            raise DecodeError(f"unsupported roster schema version {short(value.get('v'))}")
        body = exact_map("roster", "map", {k: v for k, v in value.items() if k not in ("type", "v")},
                          frozenset(["members"]))
        members = body["members"]
        if not isinstance(members, list):
            raise DecodeError("roster field 'members' must be a list")
        if len(members) > MAX_MEMBERS:
            raise DecodeError(f"a roster has at most {MAX_MEMBERS} members")
        out = []
        for item in members:
            entry = exact_map("roster", "member", item, _MEMBER_FIELDS)
            out.append(Member(entry["key"], entry["name"]))
        return cls(tuple(out))

    @cached_property
    def _encoded(self) -> bytes:
        data = encoding.encode(self.to_dict())
        if len(data) > MAX_ROSTER_BYTES:
            raise DecodeError(f"roster encoding is over the limit of {MAX_ROSTER_BYTES} bytes")
        return data

    def encode(self) -> bytes:
        return self._encoded

    @classmethod
    def decode(cls, data: bytes) -> Roster:
        return cls.from_dict(encoding.decode(bytes(data), max_bytes=MAX_ROSTER_BYTES))

    @cached_property
    def hash(self) -> bytes:
        """BLAKE3 of the canonical encoding: what a proposal names as the roster it is voted under."""
        return ids.digest(self._encoded)

    @cached_property
    def keys(self) -> frozenset[bytes]:
        return frozenset(m.key for m in self.members)

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Member]:
        return iter(self.members)

    def name_of(self, key: bytes) -> str | None:
        return next((m.name for m in self.members if m.key == key), None)

    def with_member(self, key: bytes, name: str) -> Roster:
        if key in self:
            raise DecodeError(f"member {_key_text(key)} is already on the roster")
        return Roster.of([*self.members, Member(key, name)])

    def without_member(self, key: bytes) -> Roster:
        if key not in self:
            raise DecodeError(f"{_key_text(key)} is not a member of the roster")
        return Roster(tuple(m for m in self.members if m.key != key))


# --- proposals ----------------------------------------------------------------------------------

def _check_body(kind: object, body: object) -> dict[str, Any]:
    """The proposal body for `kind`, checked by the kind's own rule (see kinds.py)."""
    spec = kind_of(kind)
    if not isinstance(body, dict):
        raise DecodeError("proposal field 'body' must be a map")
    spec.check_body(body)
    return body


@dataclass(frozen=True)
class Proposal(SignedRecord):
    """A member's signed proposal to change the policy, the quota, or the roster."""

    TYPE = PROPOSAL_TYPE
    MAX_BYTES = MAX_PROPOSAL_BYTES
    NAME = "proposal"

    kind: Kind
    body: Mapping[str, Any] = field(repr=False)
    proposer: bytes
    roster: bytes
    opens: int
    closes: int
    nonce: bytes = field(repr=False)
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        r = "proposal"
        object.__setattr__(self, "body", _check_body(self.kind, dict(self.body)
                                                     if isinstance(self.body, Mapping) else self.body))
        check_bytes(r, "proposer", self.proposer, keys.PUBLIC_KEY_SIZE)
        check_bytes(r, "roster", self.roster, ids.DIGEST_SIZE)
        check_uint(r, "opens", self.opens)
        check_uint(r, "closes", self.closes)
        if self.closes <= self.opens:
            raise DecodeError("a proposal must close after it opens")
        check_bytes(r, "nonce", self.nonce, NONCE_BYTES)
        check_bytes(r, "sig", self.sig, keys.SIGNATURE_SIZE)

    @classmethod
    def create(
        cls,
        key: keys.SigningKey,
        *,
        kind: Kind,
        body: Mapping[str, Any] | Policy,
        roster: bytes,
        opens: int,
        closes: int,
        nonce: bytes,
    ) -> Proposal:
        """Build and sign a proposal with the member's key. `nonce`: 16 random bytes from the caller.

        For a policy proposal `body` may be the Policy itself; it is stored as its canonical map.
        """
        body_map = body.to_dict() if isinstance(body, Policy) else dict(body)
        return cls.sign(key, kind=kind, body=body_map, proposer=key.public, roster=roster, opens=opens,
                        closes=closes, nonce=nonce)

    def signer(self) -> bytes:
        return self.proposer

    def payload(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "body": dict(self.body),
            "proposer": self.proposer,
            "roster": self.roster,
            "opens": self.opens,
            "closes": self.closes,
            "nonce": self.nonce,
        }

    def __hash__(self) -> int:  # the body is a dict; the id names the whole record
        return hash(self.id)

    @property
    def policy(self) -> Policy:
        """The proposed policy (policy proposals only)."""
        if self.kind != "policy":
            raise ValueError(f"a {self.kind} proposal carries no policy")
        return Policy.from_dict(self.body)

    @property
    def member_key(self) -> bytes:
        """The member added or removed (roster proposals only)."""
        if not KINDS[self.kind].constitutional:
            raise ValueError(f"a {self.kind} proposal names no member")
        key: bytes = self.body["key"]
        return key

    @property
    def is_roster_change(self) -> bool:
        """Roster changes are constitutional: they need two thirds (see tally)."""
        return KINDS[self.kind].constitutional

    def summary(self) -> str:
        """What the proposal would do, in words (for `communs proposals`)."""
        return KINDS[self.kind].summary(self.body)


# --- ballots ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ballot(SignedRecord):
    """A member's signed yes, no or abstain on one proposal (named by id, inside the signature)."""

    TYPE = BALLOT_TYPE
    MAX_BYTES = MAX_BALLOT_BYTES
    NAME = "ballot"

    proposal: bytes
    member: bytes
    choice: Choice
    ts: int
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        r = "ballot"
        check_bytes(r, "proposal", self.proposal, ids.DIGEST_SIZE)
        check_bytes(r, "member", self.member, keys.PUBLIC_KEY_SIZE)
        if self.choice not in CHOICES:
            raise DecodeError(f"ballot choice must be yes, no or abstain, not {short(self.choice)}")
        check_uint(r, "ts", self.ts)
        check_bytes(r, "sig", self.sig, keys.SIGNATURE_SIZE)

    @classmethod
    def create(cls, key: keys.SigningKey, *, proposal: bytes, choice: Choice, ts: int) -> Ballot:
        """Build and sign a ballot with the member's key; `ts` is the member's clock, unix seconds."""
        return cls.sign(key, proposal=proposal, member=key.public, choice=choice, ts=ts)

    def signer(self) -> bytes:
        return self.member

    def payload(self) -> dict[str, Any]:
        return {"proposal": self.proposal, "member": self.member, "choice": self.choice, "ts": self.ts}


# --- genesis ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Genesis(SignedRecord):
    """The founding roster, signed by the node key at `init`: the first entry of the governance log."""

    TYPE = GENESIS_TYPE
    MAX_BYTES = MAX_GENESIS_BYTES
    NAME = "genesis"

    node: bytes
    roster: Roster
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_bytes("genesis", "node", self.node, keys.PUBLIC_KEY_SIZE)
        if type(self.roster) is not Roster:
            raise DecodeError("genesis field 'roster' must be a roster")
        check_bytes("genesis", "sig", self.sig, keys.SIGNATURE_SIZE)

    @classmethod
    def create(cls, node_key: keys.SigningKey, roster: Roster) -> Genesis:
        return cls.sign(node_key, node=node_key.public, roster=roster)

    def signer(self) -> bytes:
        return self.node

    def payload(self) -> dict[str, Any]:
        return {"node": self.node, "roster": self.roster.to_dict()}

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Genesis:
        return cls(node=m["node"], roster=Roster.from_dict(m["roster"]), sig=m["sig"])
