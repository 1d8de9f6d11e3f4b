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

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from communs.protocol import encoding, ids, keys
from communs.protocol.errors import DecodeError

from .errors import PolicyError
from .policy import Policy

ROSTER_TYPE = "roster"
PROPOSAL_TYPE = "proposal"
PROPOSAL_DOMAIN = "proposal/1"
BALLOT_TYPE = "ballot"
BALLOT_DOMAIN = "ballot/1"
GENESIS_TYPE = "genesis"
GENESIS_DOMAIN = "genesis/1"
VERSION = 1

KINDS = ("policy", "quota", "member-add", "member-remove")
CHOICES = ("yes", "no", "abstain")
Kind = Literal["policy", "quota", "member-add", "member-remove"]
Choice = Literal["yes", "no", "abstain"]

MAX_MEMBERS = 1000
MAX_NAME_CHARS = 100
MAX_ROSTER_BYTES = 256 * 1024
MAX_PROPOSAL_BYTES = 512 * 1024
MAX_BALLOT_BYTES = 1024
MAX_GENESIS_BYTES = MAX_ROSTER_BYTES + 1024
NONCE_BYTES = 16
MAX_UINT = 2**63 - 1

_LINE_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


# --- field checks -------------------------------------------------------------------------------


def _bytes(rec: str, name: str, value: object, size: int) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise DecodeError(f"{rec} field '{name}' must be {size} bytes")
    return value


def _uint(rec: str, name: str, value: object, low: int = 0, high: int = MAX_UINT) -> int:
    if type(value) is not int:
        raise DecodeError(f"{rec} field '{name}' must be an integer")
    if not low <= value <= high:
        raise DecodeError(f"{rec} field '{name}' must be between {low} and {high}")
    return value


def _name(rec: str, value: object) -> str:
    if type(value) is not str:
        raise DecodeError(f"{rec}: a member's name must be a string")
    if not 1 <= len(value) <= MAX_NAME_CHARS or value != value.strip():
        raise DecodeError(
            f"{rec}: a member's name must be 1 to {MAX_NAME_CHARS} characters without surrounding spaces"
        )
    if _LINE_BAD.search(value):
        raise DecodeError(f"{rec}: a member's name must not contain control characters")
    return value


def _exact_map(rec: str, what: str, value: object, fields: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{rec} {what} must be a map")
    missing = fields - set(value)
    if missing:
        raise DecodeError(f"{rec} {what} lacks field '{min(missing)}'")
    unknown = set(value) - fields
    if unknown:
        raise DecodeError(f"{rec} {what} has unknown field {_short(min(unknown))}")
    return value


def _open_map(data: object, rec: str, max_bytes: int, fields: frozenset[str]) -> dict[str, Any]:
    """Decode canonical bytes into a map with exactly `fields` plus type and v."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"a {rec} record must be given as bytes")
    value = encoding.decode(bytes(data), max_bytes=max_bytes)
    if not isinstance(value, dict):
        raise DecodeError(f"a {rec} record must be a map")
    if value.get("type") != rec:
        raise DecodeError(f"record type is {_short(value.get('type'))}, expected {rec!r}")
    if value.get("v") != VERSION or type(value.get("v")) is not int:
        raise DecodeError(f"unsupported {rec} schema version {_short(value.get('v'))}")
    return _exact_map(rec, "record", {k: v for k, v in value.items() if k not in ("type", "v")}, fields)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key_text(key: bytes) -> str:
    return keys.peer_id(key)


# --- roster -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One member of the cooperative: their Ed25519 public key (they hold the private key) and a name."""

    key: bytes
    name: str

    def __post_init__(self) -> None:
        _bytes("roster", "key", self.key, keys.PUBLIC_KEY_SIZE)
        _name("roster", self.name)

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
            raise DecodeError(f"unsupported roster schema version {_short(value.get('v'))}")
        body = _exact_map("roster", "map", {k: v for k, v in value.items() if k not in ("type", "v")},
                          frozenset(["members"]))
        members = body["members"]
        if not isinstance(members, list):
            raise DecodeError("roster field 'members' must be a list")
        if len(members) > MAX_MEMBERS:
            raise DecodeError(f"a roster has at most {MAX_MEMBERS} members")
        out = []
        for item in members:
            entry = _exact_map("roster", "member", item, _MEMBER_FIELDS)
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

_PROPOSAL_FIELDS = frozenset(["kind", "body", "proposer", "roster", "opens", "closes", "nonce", "sig"])
_BODY_FIELDS: dict[str, frozenset[str]] = {
    "quota": frozenset(["storage_quota_bytes"]),
    "member-add": frozenset(["key", "name"]),
    "member-remove": frozenset(["key"]),
}


def _check_body(kind: object, body: object) -> dict[str, Any]:
    """The proposal body for `kind`, checked; policy bodies must be a policy's canonical map."""
    if kind not in KINDS:
        raise DecodeError(f"proposal kind must be one of {', '.join(KINDS)}, not {_short(kind)}")
    if not isinstance(body, dict):
        raise DecodeError("proposal field 'body' must be a map")
    if kind == "policy":
        try:
            policy = Policy.from_dict(body)
        except PolicyError as exc:
            raise DecodeError(f"proposal body is not a valid licence policy: {exc}") from exc
        if encoding.encode(policy.to_dict()) != encoding.encode(body):
            raise DecodeError("proposal body is not a licence policy in its canonical form")
        return body
    _exact_map("proposal", f"{kind} body", body, _BODY_FIELDS[str(kind)])
    if kind == "quota":
        _uint("proposal", "storage_quota_bytes", body["storage_quota_bytes"])
    else:
        _bytes("proposal", "key", body["key"], keys.PUBLIC_KEY_SIZE)
        if kind == "member-add":
            _name("proposal", body["name"])
    return body


@dataclass(frozen=True)
class Proposal:
    """A member's signed proposal to change the policy, the quota, or the roster."""

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
        _bytes(r, "proposer", self.proposer, keys.PUBLIC_KEY_SIZE)
        _bytes(r, "roster", self.roster, ids.DIGEST_SIZE)
        _uint(r, "opens", self.opens)
        _uint(r, "closes", self.closes)
        if self.closes <= self.opens:
            raise DecodeError("a proposal must close after it opens")
        _bytes(r, "nonce", self.nonce, NONCE_BYTES)
        _bytes(r, "sig", self.sig, keys.SIGNATURE_SIZE)

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
        unsigned = cls(kind=kind, body=body_map, proposer=key.public, roster=roster, opens=opens,
                       closes=closes, nonce=nonce, sig=bytes(keys.SIGNATURE_SIZE))
        sig = key.sign(PROPOSAL_DOMAIN, encoding.encode(unsigned._body()))
        signed = cls(kind=kind, body=body_map, proposer=key.public, roster=roster, opens=opens,
                     closes=closes, nonce=nonce, sig=sig)
        signed._encoded  # noqa: B018 -- enforce the size limit now, not at first use
        return signed

    def _body(self) -> dict[str, Any]:
        return {
            "type": PROPOSAL_TYPE,
            "v": VERSION,
            "kind": self.kind,
            "body": dict(self.body),
            "proposer": self.proposer,
            "roster": self.roster,
            "opens": self.opens,
            "closes": self.closes,
            "nonce": self.nonce,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self._body(), "sig": self.sig}

    @cached_property
    def _encoded(self) -> bytes:
        data = encoding.encode(self.to_dict())
        if len(data) > MAX_PROPOSAL_BYTES:
            raise DecodeError(f"proposal encoding is over the limit of {MAX_PROPOSAL_BYTES} bytes")
        return data

    def encode(self) -> bytes:
        return self._encoded

    @cached_property
    def id(self) -> bytes:
        return ids.digest(self._encoded)

    @property
    def cid(self) -> str:
        return ids.cid_str(self.id)

    def verify(self) -> None:
        """Raise SignatureError unless `sig` is the proposer's signature of this proposal."""
        keys.verify(self.proposer, PROPOSAL_DOMAIN, encoding.encode(self._body()), self.sig)

    @classmethod
    def decode(cls, data: bytes, *, verify: bool = True) -> Proposal:
        """Parse and check a proposal from untrusted bytes; `verify=False` only for bytes already verified."""
        m = _open_map(data, PROPOSAL_TYPE, MAX_PROPOSAL_BYTES, _PROPOSAL_FIELDS)
        proposal = cls(kind=m["kind"], body=m["body"], proposer=m["proposer"], roster=m["roster"],
                       opens=m["opens"], closes=m["closes"], nonce=m["nonce"], sig=m["sig"])
        proposal.__dict__["_encoded"] = bytes(data)
        if verify:
            proposal.verify()
        return proposal

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
        if self.kind not in ("member-add", "member-remove"):
            raise ValueError(f"a {self.kind} proposal names no member")
        key: bytes = self.body["key"]
        return key

    @property
    def is_roster_change(self) -> bool:
        """Roster changes are constitutional: they need two thirds (see tally)."""
        return self.kind in ("member-add", "member-remove")

    def summary(self) -> str:
        """What the proposal would do, in words (for `communs proposals`)."""
        if self.kind == "policy":
            accepted = ", ".join(self.body["accept_licences"]) or "no licence"
            return f"adopt a new licence policy accepting {accepted}"
        if self.kind == "quota":
            return f"set the storage quota to {self.body['storage_quota_bytes']} bytes"
        if self.kind == "member-add":
            return f"add member {self.body['name']} ({_key_text(self.body['key'])})"
        return f"remove member {_key_text(self.body['key'])}"


# --- ballots ------------------------------------------------------------------------------------

_BALLOT_FIELDS = frozenset(["proposal", "member", "choice", "ts", "sig"])


@dataclass(frozen=True)
class Ballot:
    """A member's signed yes, no or abstain on one proposal (named by id, inside the signature)."""

    proposal: bytes
    member: bytes
    choice: Choice
    ts: int
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        r = "ballot"
        _bytes(r, "proposal", self.proposal, ids.DIGEST_SIZE)
        _bytes(r, "member", self.member, keys.PUBLIC_KEY_SIZE)
        if self.choice not in CHOICES:
            raise DecodeError(f"ballot choice must be yes, no or abstain, not {_short(self.choice)}")
        _uint(r, "ts", self.ts)
        _bytes(r, "sig", self.sig, keys.SIGNATURE_SIZE)

    @classmethod
    def create(cls, key: keys.SigningKey, *, proposal: bytes, choice: Choice, ts: int) -> Ballot:
        """Build and sign a ballot with the member's key; `ts` is the member's clock, unix seconds."""
        unsigned = cls(proposal=proposal, member=key.public, choice=choice, ts=ts,
                       sig=bytes(keys.SIGNATURE_SIZE))
        sig = key.sign(BALLOT_DOMAIN, encoding.encode(unsigned._body()))
        return cls(proposal=proposal, member=key.public, choice=choice, ts=ts, sig=sig)

    def _body(self) -> dict[str, Any]:
        return {"type": BALLOT_TYPE, "v": VERSION, "proposal": self.proposal, "member": self.member,
                "choice": self.choice, "ts": self.ts}

    def to_dict(self) -> dict[str, Any]:
        return {**self._body(), "sig": self.sig}

    @cached_property
    def _encoded(self) -> bytes:
        return encoding.encode(self.to_dict())

    def encode(self) -> bytes:
        return self._encoded

    @cached_property
    def id(self) -> bytes:
        return ids.digest(self._encoded)

    @property
    def cid(self) -> str:
        return ids.cid_str(self.id)

    def verify(self) -> None:
        """Raise SignatureError unless `sig` is the member's signature of this ballot."""
        keys.verify(self.member, BALLOT_DOMAIN, encoding.encode(self._body()), self.sig)

    @classmethod
    def decode(cls, data: bytes, *, verify: bool = True) -> Ballot:
        """Parse and check a ballot from untrusted bytes; `verify=False` only for bytes already verified."""
        m = _open_map(data, BALLOT_TYPE, MAX_BALLOT_BYTES, _BALLOT_FIELDS)
        ballot = cls(proposal=m["proposal"], member=m["member"], choice=m["choice"], ts=m["ts"], sig=m["sig"])
        ballot.__dict__["_encoded"] = bytes(data)
        if verify:
            ballot.verify()
        return ballot


# --- genesis ------------------------------------------------------------------------------------

_GENESIS_FIELDS = frozenset(["node", "roster", "sig"])


@dataclass(frozen=True)
class Genesis:
    """The founding roster, signed by the node key at `init`: the first entry of the governance log."""

    node: bytes
    roster: Roster
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _bytes("genesis", "node", self.node, keys.PUBLIC_KEY_SIZE)
        if type(self.roster) is not Roster:
            raise DecodeError("genesis field 'roster' must be a roster")
        _bytes("genesis", "sig", self.sig, keys.SIGNATURE_SIZE)

    @classmethod
    def create(cls, node_key: keys.SigningKey, roster: Roster) -> Genesis:
        unsigned = cls(node=node_key.public, roster=roster, sig=bytes(keys.SIGNATURE_SIZE))
        sig = node_key.sign(GENESIS_DOMAIN, encoding.encode(unsigned._body()))
        return cls(node=node_key.public, roster=roster, sig=sig)

    def _body(self) -> dict[str, Any]:
        return {"type": GENESIS_TYPE, "v": VERSION, "node": self.node, "roster": self.roster.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        return {**self._body(), "sig": self.sig}

    @cached_property
    def _encoded(self) -> bytes:
        return encoding.encode(self.to_dict())

    def encode(self) -> bytes:
        return self._encoded

    @cached_property
    def id(self) -> bytes:
        return ids.digest(self._encoded)

    def verify(self) -> None:
        keys.verify(self.node, GENESIS_DOMAIN, encoding.encode(self._body()), self.sig)

    @classmethod
    def decode(cls, data: bytes, *, verify: bool = True) -> Genesis:
        m = _open_map(data, GENESIS_TYPE, MAX_GENESIS_BYTES, _GENESIS_FIELDS)
        genesis = cls(node=m["node"], roster=Roster.from_dict(m["roster"]), sig=m["sig"])
        genesis.__dict__["_encoded"] = bytes(data)
        if verify:
            genesis.verify()
        return genesis
