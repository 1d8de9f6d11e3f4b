"""The governance log: the append-only, hash-chained history of everything governance decided.

Each entry is a canonical msgpack map

    {"seq": int, "prev": 32-byte hash of entry seq-1 | nil at seq 0,
     "kind": "genesis" | "proposal" | "ballot" | "tally" | "enactment",
     "at": unix seconds (never decreasing), "body": ..., "sig": 64 bytes}

and its hash is the BLAKE3 digest of that encoding. Bodies: genesis, proposal and ballot hold
the signed record's bytes (so every member signature can be re-verified); tally and enactment
hold the computed result as a map, which an auditor recomputes and compares.

Every entry is also signed by the node key named in the genesis record (domain `govlog/1`).
The hash chain alone proves order and completeness up to the last entry, but it cannot say
which of two adjacent entries was altered, nor notice a change to the last entry's `at` or
`kind`; the signature pins every byte of every entry to the node that wrote it, so an audit
names exactly the entry that was changed.

`Ledger` is the sans-I/O state machine the node drives: it validates submissions against the
state replayed so far, appends entries, and hands the new entries to the caller to store
(`drain`). Replaying a log and running the node go through the same code path (`_apply`), so
what the node accepted is exactly what an audit accepts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from communs.protocol import encoding, ids, keys, varint
from communs.protocol.errors import DecodeError, RecordError

from .errors import GovernanceError, RejectedError
from .records import Ballot, Genesis, Member, Proposal, Roster
from .rotation import Rotation
from .tally import GovernanceState, Tally, check_changes_vote, enact, tally, validate_ballot, validate_proposal

LOG_DOMAIN = "govlog/1"
ENTRY_KINDS = ("genesis", "proposal", "ballot", "tally", "enactment", "rotation")
EntryKind = Literal["genesis", "proposal", "ballot", "tally", "enactment", "rotation"]
MAX_ENTRY_BYTES = 1024 * 1024
MAX_UINT = 2**63 - 1
EXPORT_MAGIC = b"communs-govlog/1\n"

_ENTRY_FIELDS = frozenset(["seq", "prev", "kind", "at", "body", "sig"])
_ENACTMENT_FIELDS = frozenset(["proposal", "applied", "state"])


class AuditError(GovernanceError):
    """The log is not intact; `seq` is the first bad entry (its position in the log)."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"governance log entry {seq} is bad: {reason}")
        self.seq = seq
        self.reason = reason


@dataclass(frozen=True)
class Entry:
    """One signed, chained entry of the governance log."""

    seq: int
    prev: bytes | None
    kind: EntryKind
    at: int
    body: Any = field(repr=False)
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if type(self.seq) is not int or not 0 <= self.seq <= MAX_UINT:
            raise DecodeError("log entry field 'seq' must be a non-negative integer")
        if self.prev is not None and (type(self.prev) is not bytes or len(self.prev) != ids.DIGEST_SIZE):
            raise DecodeError("log entry field 'prev' must be 32 bytes or nil")
        if (self.prev is None) != (self.seq == 0):
            raise DecodeError("log entry field 'prev' must be nil at seq 0 and a hash after")
        if self.kind not in ENTRY_KINDS:
            raise DecodeError(f"log entry kind must be one of {', '.join(ENTRY_KINDS)}")
        if (self.kind == "genesis") != (self.seq == 0):
            raise DecodeError("the genesis entry must be entry 0, and only entry 0")
        if type(self.at) is not int or not 0 <= self.at <= MAX_UINT:
            raise DecodeError("log entry field 'at' must be a non-negative integer")
        if self.kind in ("genesis", "proposal", "ballot", "rotation"):
            if type(self.body) is not bytes:
                raise DecodeError(f"a {self.kind} entry's body must be the record's bytes")
        elif not isinstance(self.body, dict):
            raise DecodeError(f"a {self.kind} entry's body must be a map")
        if type(self.sig) is not bytes or len(self.sig) != keys.SIGNATURE_SIZE:
            raise DecodeError("log entry field 'sig' must be 64 bytes")

    def _unsigned(self) -> dict[str, Any]:
        return {"seq": self.seq, "prev": self.prev, "kind": self.kind, "at": self.at, "body": self.body}

    def to_dict(self) -> dict[str, Any]:
        return {**self._unsigned(), "sig": self.sig}

    @cached_property
    def _encoded(self) -> bytes:
        data = encoding.encode(self.to_dict())
        if len(data) > MAX_ENTRY_BYTES:
            raise DecodeError(f"log entry is over the limit of {MAX_ENTRY_BYTES} bytes")
        return data

    def encode(self) -> bytes:
        return self._encoded

    @cached_property
    def hash(self) -> bytes:
        """BLAKE3 of the full encoding: what the next entry's `prev` holds."""
        return ids.digest(self._encoded)

    def verify(self, node: bytes) -> None:
        keys.verify(node, LOG_DOMAIN, encoding.encode(self._unsigned()), self.sig)

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        """Parse an entry (signature not checked here: the node key comes from the genesis entry)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError("a log entry must be given as bytes")
        value = encoding.decode(bytes(data), max_bytes=MAX_ENTRY_BYTES)
        if not isinstance(value, dict):
            raise DecodeError("a log entry must be a map")
        missing = _ENTRY_FIELDS - set(value)
        if missing:
            raise DecodeError(f"log entry lacks field '{min(missing)}'")
        unknown = set(value) - _ENTRY_FIELDS
        if unknown:
            raise DecodeError(f"log entry has unknown field {min(unknown)!r}")
        entry = cls(seq=value["seq"], prev=value["prev"], kind=value["kind"], at=value["at"],
                    body=value["body"], sig=value["sig"])
        entry.__dict__["_encoded"] = bytes(data)
        return entry


def append(prev: Entry | None, kind: EntryKind, body: Any, at: int, key: keys.SigningKey) -> Entry:
    """The entry following `prev` (None for the genesis entry), signed by the node `key`."""
    if prev is not None and at < prev.at:
        raise ValueError(f"log time must not go backwards ({at} < {prev.at})")
    seq = 0 if prev is None else prev.seq + 1
    link = None if prev is None else prev.hash
    placeholder = bytes(keys.SIGNATURE_SIZE)
    unsigned = Entry(seq=seq, prev=link, kind=kind, at=at, body=body, sig=placeholder)
    sig = key.sign(LOG_DOMAIN, encoding.encode(unsigned._unsigned()))
    entry = Entry(seq=seq, prev=link, kind=kind, at=at, body=body, sig=sig)
    entry.encode()  # enforce the size limit now
    return entry


# --- the state machine --------------------------------------------------------------------------


@dataclass
class ProposalStatus:
    """One proposal as the log knows it. `tally` is the recorded closing tally (None while open)."""

    proposal: Proposal
    roster: Roster
    ballots: list[Ballot] = field(default_factory=list)
    tally: Tally | None = None
    enacted: bool | None = None
    """True once enacted, False if it passed but no longer applied, None otherwise."""

    def current(self, now: int) -> Tally:
        """The tally now: the recorded one once closed, else the count so far."""
        if self.tally is not None:
            return self.tally
        return tally(self.proposal, self.roster, self.ballots, now)

    def to_json(self, now: int) -> dict[str, Any]:
        """The proposal for the admin API and `communs proposals`: ids as CIDv1, keys as peer ids."""
        p = self.proposal
        body = dict(p.body)
        if "key" in body:
            body["key"] = keys.peer_id(body["key"])
        return {
            "id": p.cid,
            "kind": p.kind,
            "summary": p.summary(),
            "body": body,
            "proposer": keys.peer_id(p.proposer),
            "proposer_name": self.roster.name_of(p.proposer),
            "roster": ids.cid_str(p.roster),
            "opens": p.opens,
            "closes": p.closes,
            "ballots": [{"id": b.cid, "member": keys.peer_id(b.member), "choice": b.choice, "ts": b.ts}
                        for b in sorted(self.ballots, key=lambda b: (b.ts, b.id))],
            "tally": self.current(now).to_json(),
            "enacted": self.enacted,
        }


class Ledger:
    """The governance log and the state it implies; the node's only way to change governance.

    Every change appends entries to the in-memory log; the caller stores them, in order, from
    `drain()` after every call, also after a call that raised (a submission is refused after
    any due closings were recorded). If storing fails, drop the Ledger and `load` it again from
    what was stored.
    """

    def __init__(self, key: keys.SigningKey | None = None) -> None:
        self._key = key
        self.entries: list[Entry] = []
        self._unsaved: list[Entry] = []
        self.node: bytes = b""
        self.state: GovernanceState | None = None
        self.proposals: dict[bytes, ProposalStatus] = {}
        self.rotated: dict[bytes, int] = {}
        """Member keys rotated away (rotation.py), and the log entry that did it: refused from then on."""

    # -- building

    @classmethod
    def found(cls, node_key: keys.SigningKey, roster: Roster, at: int) -> Ledger:
        """A new log whose genesis entry holds the founding `roster`, signed by the node key."""
        ledger = cls(node_key)
        genesis = Genesis.create(node_key, roster)
        ledger._commit(append(None, "genesis", genesis.encode(), at, node_key))
        return ledger

    @classmethod
    def load(cls, entries: Iterable[bytes | Entry], node_key: keys.SigningKey | None = None) -> Ledger:
        """Replay stored entries, re-checking everything; AuditError names the first bad entry.

        With `node_key`, the log must have been written by that key, and the Ledger can append.
        """
        ledger = cls(node_key)
        for index, item in enumerate(entries):
            try:
                entry = item if isinstance(item, Entry) else Entry.decode(item)
            except RecordError as exc:
                raise AuditError(index, f"it is not a valid log entry ({exc})") from exc
            try:
                ledger._check_link(index, entry)
                ledger._apply(entry, replay=True)
            except (RecordError, GovernanceError) as exc:
                if isinstance(exc, AuditError):
                    raise
                raise AuditError(index, f"{entry.kind} entry: {exc}") from exc
            ledger.entries.append(entry)
        if not ledger.entries:
            raise AuditError(0, "the log is empty (no genesis entry)")
        if node_key is not None and node_key.public != ledger.node:
            raise AuditError(0, "the log was written by another node key")
        return ledger

    # -- reading

    @property
    def head(self) -> Entry:
        return self.entries[-1]

    @property
    def current(self) -> GovernanceState:
        assert self.state is not None
        return self.state

    def proposal(self, proposal_id: bytes) -> ProposalStatus:
        status = self.proposals.get(proposal_id)
        if status is None:
            raise RejectedError(f"unknown proposal {_cid(proposal_id)}")
        return status

    def next_deadline(self) -> int | None:
        """The earliest closing time of a proposal still open: when to call `close_due` next."""
        times = [s.proposal.closes for s in self.proposals.values() if s.tally is None]
        return min(times) if times else None

    def drain(self) -> list[Entry]:
        """The entries appended since the last call, in order: store them all."""
        out, self._unsaved = self._unsaved, []
        return out

    # -- changing

    def submit_proposal(self, data: bytes, now: int) -> Proposal:
        """Check and record a member's signed proposal (bytes as the member's CLI sent them)."""
        self.close_due(now)
        proposal = Proposal.decode(data)
        self._commit(self._next("proposal", proposal.encode(), now))
        return proposal

    def submit_ballot(self, data: bytes, now: int, proposal_id: bytes | None = None) -> Tally:
        """Check and record a member's signed ballot; returns the proposal's tally after it.

        `proposal_id`: the proposal the ballot was sent to (the API route's id), if any; a ballot
        signed for another proposal is refused. A ballot that completes the vote closes the
        proposal at once (tally and enactment are recorded in the same call).
        """
        self.close_due(now)
        ballot = Ballot.decode(data)
        if proposal_id is not None and ballot.proposal != proposal_id:
            self.proposal(proposal_id)  # unknown proposal first
            raise RejectedError(f"ballot is for proposal {_cid(ballot.proposal)}, not {_cid(proposal_id)}")
        if ballot.proposal not in self.proposals:
            raise RejectedError(f"ballot is for unknown proposal {_cid(ballot.proposal)}")
        entry = self._next("ballot", ballot.encode(), now)
        self._commit(entry)
        self.close_due(entry.at)
        return self.proposals[ballot.proposal].current(entry.at)

    def submit_rotation(self, data: bytes, now: int) -> Rotation:
        """Check and record a member's key rotation (signed by the old key and the new one)."""
        self.close_due(now)
        rotation = Rotation.decode_verified(data)
        self._commit(self._next("rotation", rotation.encode(), now))
        return rotation

    def close_due(self, now: int) -> list[Tally]:
        """Record the closing tally (and enactment, if passed) of every proposal closed by `now`.

        Proposals are closed in the order of their closing moment (then id), so a node that was
        stopped across several closings enacts them in the order they closed.
        """
        due = []
        for status in self.proposals.values():
            if status.tally is None:
                t = status.current(now)
                if t.closed:
                    due.append((t.closed_at or 0, status.proposal.id, status))
        closed = []
        for _, _, status in sorted(due, key=lambda d: (d[0], d[1])):
            self._commit(self._next("tally", status.current(now).to_dict(), now))
            assert status.tally is not None
            closed.append(status.tally)
            if status.tally.outcome == "passed":
                self._commit(self._next("enactment", self._enactment(status), now))
        for status in list(self.proposals.values()):  # passed but not enacted: only after a partial write
            if status.tally is not None and status.tally.outcome == "passed" and status.enacted is None:
                self._commit(self._next("enactment", self._enactment(status), now))
        return closed

    # -- internals

    def _next(self, kind: EntryKind, body: Any, now: int) -> Entry:
        if self._key is None:
            raise RuntimeError("this Ledger was loaded without the node key and cannot append")
        at = max(now, self.head.at)
        return append(self.head, kind, body, at, self._key)

    def _commit(self, entry: Entry) -> None:
        """Apply a new entry (raising if it is refused) and only then keep it."""
        self._apply(entry, replay=False)
        self.entries.append(entry)
        self._unsaved.append(entry)

    def _check_link(self, index: int, entry: Entry) -> None:
        if entry.seq != index:
            raise AuditError(index, f"it has sequence number {entry.seq}")
        if index == 0:
            genesis = Genesis.decode(entry.body)  # verifies the genesis signature
            self.node = genesis.node
        entry.verify(self.node)
        if index > 0:
            prev = self.entries[-1]
            if entry.prev != prev.hash:
                raise AuditError(index, f"it does not link to entry {index - 1} (hash mismatch)")
            if entry.at < prev.at:
                raise AuditError(index, f"its time {entry.at} is before entry {index - 1}'s time {prev.at}")

    def _enactment(self, status: ProposalStatus) -> dict[str, Any]:
        state = self.current
        try:
            new_state = enact(state, status.proposal)
        except (RejectedError, RecordError):
            return {"proposal": status.proposal.id, "applied": False, "state": state.to_dict()}
        return {"proposal": status.proposal.id, "applied": True, "state": new_state.to_dict()}

    def _apply(self, entry: Entry, *, replay: bool) -> None:
        """Check `entry` against the state so far and fold it in; raise if it is not acceptable."""
        if entry.kind == "genesis":
            genesis = Genesis.decode(entry.body)
            self.node = genesis.node
            self.state = GovernanceState(genesis.roster)
            return
        state = self.current
        now = entry.at
        if entry.kind == "proposal":
            proposal = Proposal.decode(entry.body)
            if proposal.id in self.proposals:
                raise RejectedError(f"proposal {proposal.cid} is already recorded")
            validate_proposal(proposal, state.roster, now)
            self.proposals[proposal.id] = ProposalStatus(proposal, state.roster)
        elif entry.kind == "rotation":
            rotation = Rotation.decode_verified(entry.body)
            self.state = dataclasses.replace(state, roster=rotated_roster(rotation, state.roster, self.rotated))
            self.rotated[rotation.old] = entry.seq
        elif entry.kind == "ballot":
            ballot = Ballot.decode(entry.body)
            if ballot.member in self.rotated:
                raise RejectedError(f"key {keys.peer_id(ballot.member)} was rotated away (log entry "
                                    f"{self.rotated[ballot.member]}); ballots must use the member's new key")
            status = self.proposals.get(ballot.proposal)
            if status is None:
                raise RejectedError(f"ballot is for unknown proposal {_cid(ballot.proposal)}")
            if status.tally is not None:
                raise RejectedError(f"proposal {status.proposal.cid} is closed")
            validate_ballot(ballot, status.proposal, status.roster, now, status.ballots)
            if not replay:  # logs recorded before this rule may hold repeats; they replay as they were
                check_changes_vote(ballot, status.ballots)
            status.ballots.append(ballot)
        elif entry.kind == "tally":
            status = self._status_of(entry.body)
            if status.tally is not None:
                raise RejectedError(f"proposal {status.proposal.cid} is already tallied")
            computed = tally(status.proposal, status.roster, status.ballots, now)
            if not computed.closed:
                raise RejectedError(f"proposal {status.proposal.cid} was still open at {now}")
            if encoding.encode(computed.to_dict()) != encoding.encode(entry.body):
                raise RejectedError(f"the recorded tally of proposal {status.proposal.cid} differs from "
                                    f"the recount ({computed.describe()})")
            status.tally = computed
        else:  # enactment
            if not isinstance(entry.body, dict) or set(entry.body) != _ENACTMENT_FIELDS:
                raise DecodeError("an enactment body must be a map of proposal, applied and state")
            status = self._status_of(entry.body)
            if status.tally is None or status.tally.outcome != "passed":
                raise RejectedError(f"proposal {status.proposal.cid} did not pass, so it cannot be enacted")
            if status.enacted is not None:
                raise RejectedError(f"proposal {status.proposal.cid} is already enacted")
            expected = self._enactment(status)
            if encoding.encode(expected) != encoding.encode(entry.body):
                raise RejectedError(f"the recorded enactment of proposal {status.proposal.cid} differs "
                                    "from the recomputed one")
            status.enacted = bool(expected["applied"])
            self.state = GovernanceState.from_dict(expected["state"])

    def _status_of(self, body: Any) -> ProposalStatus:
        pid = body.get("proposal") if isinstance(body, dict) else None
        if type(pid) is not bytes or len(pid) != ids.DIGEST_SIZE:
            raise DecodeError("the entry body must name a 32-byte proposal id")
        status = self.proposals.get(pid)
        if status is None:
            raise RejectedError(f"unknown proposal {_cid(pid)}")
        return status


def rotated_roster(rotation: Rotation, roster: Roster, rotated: dict[bytes, int]) -> Roster:
    """The roster after `rotation`; RejectedError (one sentence) if it does not apply to `roster`."""
    who = keys.peer_id(rotation.old)
    if rotation.roster != roster.hash:
        raise RejectedError("the key rotation names a roster that is not the roster in force")
    if rotation.old not in roster:
        raise RejectedError(f"{who} is not a member of the roster, so its key cannot be rotated")
    if rotation.new in roster or rotation.new in rotated:
        raise RejectedError(f"the new key {keys.peer_id(rotation.new)} is already on the roster or was used before")
    name = roster.name_of(rotation.old) or who
    return Roster.of([*(m for m in roster if m.key != rotation.old), Member(rotation.new, name)])


def _cid(raw: bytes) -> str:
    return ids.cid_str(raw) if len(raw) == ids.DIGEST_SIZE else raw.hex()


# --- audit, replay and export -------------------------------------------------------------------


@dataclass(frozen=True)
class AuditResult:
    """What `audit` found: ok, or the first bad entry (position and reason)."""

    ok: bool
    entries: int
    bad_seq: int | None = None
    reason: str | None = None
    node: str | None = None
    head: bytes | None = None
    state: GovernanceState | None = None

    def describe(self) -> str:
        if self.ok:
            return (f"governance log intact: {self.entries} entries, signed by node {self.node}, "
                    f"head {ids.cid_str(self.head) if self.head else '-'}")
        return f"governance log entry {self.bad_seq} is bad: {self.reason}"


def replay(entries: Iterable[bytes | Entry]) -> GovernanceState:
    """The state a log leads to; AuditError names the first bad entry."""
    return Ledger.load(entries).current


def audit(entries: Iterable[bytes | Entry]) -> AuditResult:
    """Re-verify every signature and link, recompute every tally and enactment; never raises."""
    items = list(entries)
    try:
        ledger = Ledger.load(items)
    except AuditError as exc:
        return AuditResult(False, exc.seq, exc.seq, exc.reason)
    return AuditResult(True, len(items), node=keys.peer_id(ledger.node), head=ledger.head.hash,
                       state=ledger.current)


def export_log(entries: Iterable[bytes | Entry]) -> bytes:
    """The export file: EXPORT_MAGIC, then each entry's encoding prefixed by its length (unsigned LEB128)."""
    parts = [EXPORT_MAGIC]
    for item in entries:
        data = item.encode() if isinstance(item, Entry) else bytes(item)
        parts += [varint.encode(len(data)), data]
    return b"".join(parts)


def read_export(data: bytes) -> list[bytes]:
    """The entries of an export file; AuditError naming the entry where the framing breaks."""
    entries, error = _split_export(data)
    if error is not None:
        raise error
    return entries


def _split_export(data: bytes) -> tuple[list[bytes], AuditError | None]:
    """The entries framed before any framing fault, and that fault."""
    out: list[bytes] = []
    if not data.startswith(EXPORT_MAGIC):
        return out, AuditError(0, "the file is not a Communs governance log export (bad header)")
    pos = len(EXPORT_MAGIC)
    while pos < len(data):
        index = len(out)
        try:
            length, pos = varint.decode(data, pos, max_bytes=5)
        except ValueError as exc:
            reason = str(exc).removeprefix("the length prefix ")
            return out, AuditError(index, f"its length prefix {reason}")
        if length > MAX_ENTRY_BYTES or pos + length > len(data):
            return out, AuditError(index, "its length runs past the end of the file or over the limit")
        out.append(data[pos:pos + length])
        pos += length
    return out, None


def audit_export(data: bytes) -> AuditResult:
    """Audit an export file from its bytes alone.

    The entries framed before a framing fault are audited first: a damaged length prefix
    usually shows as a damaged entry at that place, which is the place to name.
    """
    entries, error = _split_export(data)
    result = audit(entries)
    if error is None or (not result.ok and result.bad_seq is not None and result.bad_seq < error.seq):
        return result
    return AuditResult(False, error.seq, error.seq, error.reason)
