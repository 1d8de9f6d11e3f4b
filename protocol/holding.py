"""Holding claims and proof-of-holding challenges: how nodes learn, and check, who keeps a copy.

A *holding claim* is a small signed record: node N says it holds manifest M complete, since `since`,
until `expires`. It is re-signed before it expires (a refresh), and a *withdrawal* (the same record with
`withdrawn` true) says N dropped M. Each claim carries `issued` (milliseconds, strictly increasing per
claimer and manifest): a receiver keeps only the highest `issued` it has seen for (N, M), so a claim
replayed after a withdrawal is older than the withdrawal and refused. A withdrawal's `expires` is
`issued + MAX_TTL`: it outlives every claim issued before it, so the tombstone is never forgotten while
a replayable claim could still be live.

A *challenge* asks a claimer to prove it holds M's chunks now: a fresh 32-byte nonce and a few chunk
positions (indexes into `Manifest.chunk_digests()`); the answer is BLAKE3 keyed by the nonce over those
chunks' bytes in the order asked. It cannot be precomputed (the nonce is fresh) nor answered without the
bytes of those chunks. The wire form of both messages is one length-prefixed canonical msgpack map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import blake3

from . import encoding, ids, keys, varint
from .errors import DecodeError, RecordError
from .signed import SignedRecord, check_bytes, check_uint, exact_map

CLAIM_TYPE = "hold-claim"
MAX_CLAIM_BYTES = 512
MAX_TTL = 2 * 86400  # the longest claim a node accepts: 2 days (nodes sign for DEFAULT_TTL)
DEFAULT_TTL = 86400
MAX_SKEW = 120  # seconds a claim may be dated in the future

CHALLENGE_PROTOCOL = "/communs/challenge/1"
CLAIMS_PROTOCOL = "/communs/claims/1"
NONCE_SIZE = 32
MAX_POSITIONS = 8
MAX_MESSAGE_BYTES = 4096
MAX_CLAIMS_PER_ANSWER = 2000  # claims in one /communs/claims/1 answer page
MAX_CLAIMS_MESSAGE_BYTES = MAX_CLAIMS_PER_ANSWER * MAX_CLAIM_BYTES + 1024


class ClaimRefused(RecordError):
    """A well-formed, correctly signed claim that must not be taken: expired, absurd, or replayed."""


@dataclass(frozen=True)
class HoldingClaim(SignedRecord):
    """`node` holds (or, withdrawn, no longer holds) manifest `manifest` complete."""

    TYPE = CLAIM_TYPE
    VERSION = 1
    MAX_BYTES = MAX_CLAIM_BYTES
    NAME = "holding claim"

    node: bytes
    manifest: bytes
    since: int
    issued: int  # milliseconds since the epoch; strictly increasing per (node, manifest)
    expires: int
    withdrawn: bool
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        r = "holding claim"
        check_bytes(r, "node", self.node, keys.PUBLIC_KEY_SIZE)
        check_bytes(r, "manifest", self.manifest, ids.DIGEST_SIZE)
        check_uint(r, "since", self.since)
        check_uint(r, "issued", self.issued, 1)
        check_uint(r, "expires", self.expires)
        if type(self.withdrawn) is not bool:
            raise DecodeError("holding claim field 'withdrawn' must be true or false")
        check_bytes(r, "sig", self.sig, keys.SIGNATURE_SIZE)

    @classmethod
    def create(cls, key: keys.SigningKey, *, manifest: bytes, since: int, issued_ms: int, ttl: int = DEFAULT_TTL,
               withdrawn: bool = False) -> HoldingClaim:
        """Sign a claim (or, `withdrawn`, a withdrawal, which lasts MAX_TTL) by `key`'s node."""
        issued_s = issued_ms // 1000
        expires = issued_s + (MAX_TTL if withdrawn else min(ttl, MAX_TTL))
        return cls.sign(key, node=key.public, manifest=manifest, since=min(since, issued_s), issued=issued_ms,
                        expires=expires, withdrawn=withdrawn)

    def signer(self) -> bytes:
        return self.node

    def payload(self) -> dict[str, Any]:
        return {"node": self.node, "manifest": self.manifest, "since": self.since, "issued": self.issued,
                "expires": self.expires, "withdrawn": self.withdrawn}

    @property
    def node_peer_id(self) -> str:
        return keys.peer_id(self.node)


def check_claim(claim: HoldingClaim, now: int, *, max_ttl: int = MAX_TTL, max_skew: int = MAX_SKEW) -> None:
    """Raise ClaimRefused unless `claim` may be taken at `now` (seconds): not expired, not issued in the
    future, not claiming further ahead than `max_ttl` from when it was issued."""
    issued_s = claim.issued // 1000
    if issued_s > now + max_skew:
        raise ClaimRefused(f"holding claim is issued {issued_s - now} s in the future")
    if claim.expires <= now:
        raise ClaimRefused("holding claim has expired")
    if claim.expires - issued_s > max_ttl:
        raise ClaimRefused(f"holding claim lasts {claim.expires - issued_s} s, over the limit of {max_ttl} s")
    if claim.since > issued_s + max_skew:
        raise ClaimRefused("holding claim holds since after it was issued")


def supersedes(claim: HoldingClaim, prior_issued: int | None) -> bool:
    """Whether `claim` replaces what is known of its (node, manifest): only a strictly newer one does, so a
    replayed claim (or a claim older than a withdrawal) is never taken back."""
    return prior_issued is None or claim.issued > prior_issued


# --- challenges -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """Prove you hold `manifest`: the keyed BLAKE3 over the chunks at `positions`, keyed by `nonce`."""

    nonce: bytes
    manifest: bytes
    positions: tuple[int, ...]

    def __post_init__(self) -> None:
        check_bytes("challenge", "nonce", self.nonce, NONCE_SIZE)
        check_bytes("challenge", "manifest", self.manifest, ids.DIGEST_SIZE)
        if not 1 <= len(self.positions) <= MAX_POSITIONS:
            raise DecodeError(f"a challenge asks for 1 to {MAX_POSITIONS} chunk positions")
        for p in self.positions:
            check_uint("challenge", "positions", p, 0, 2**32)

    def to_dict(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "manifest": self.manifest, "positions": list(self.positions)}

    @classmethod
    def from_dict(cls, value: object) -> Challenge:
        m = exact_map("challenge", "message", value, frozenset({"nonce", "manifest", "positions"}))
        if not isinstance(m["positions"], list):
            raise DecodeError("challenge field 'positions' must be a list")
        return cls(m["nonce"], m["manifest"], tuple(m["positions"]))


def check_positions(positions: tuple[int, ...], chunk_count: int) -> None:
    """DecodeError if a position is outside the manifest's chunk list (the holder refuses the challenge)."""
    bad = [p for p in positions if p >= chunk_count]
    if bad:
        raise DecodeError(f"chunk position {bad[0]} is out of range: the manifest has {chunk_count} chunks")


def proof(nonce: bytes, chunks: list[bytes]) -> bytes:
    """The answer to a challenge: BLAKE3 keyed by the nonce over the asked chunks, in the order asked.
    Each chunk is prefixed by its length so that two different splits never hash alike."""
    h = blake3.blake3(key=nonce)
    for data in chunks:
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.digest()


def choose_positions(rand: bytes, chunk_count: int, count: int = 3) -> tuple[int, ...]:
    """`count` distinct positions (fewer if the manifest has fewer chunks) drawn from random bytes `rand`."""
    if chunk_count <= 0:
        raise DecodeError("a manifest without chunks cannot be challenged")
    count = min(count, chunk_count, MAX_POSITIONS)
    out: list[int] = []
    i = 0
    while len(out) < count:
        pos = int.from_bytes(ids.digest(rand + i.to_bytes(4, "big"))[:8], "big") % chunk_count
        if pos not in out:
            out.append(pos)
        i += 1
    return tuple(out)


# --- framing: one length-prefixed canonical map each way ----------------------------------------------


def frame(value: dict[str, Any]) -> bytes:
    data = encoding.encode(value)
    return varint.encode(len(data)) + data


def unframe(data: bytes, max_bytes: int) -> tuple[dict[str, Any] | None, int]:
    """(the map, bytes used) from the front of `data`, or (None, 0) if it is not all there yet.
    DecodeError if the frame is larger than `max_bytes` or not a canonical map."""
    try:
        size, pos = varint.decode(data)
    except ValueError as exc:
        if "cut off" in str(exc):
            return None, 0
        raise DecodeError(str(exc)) from None
    if size > max_bytes:
        raise DecodeError(f"message of {size} bytes is over the limit of {max_bytes}")
    if len(data) < pos + size:
        return None, 0
    value = encoding.decode(data[pos:pos + size], max_bytes=max_bytes)
    if not isinstance(value, dict):
        raise DecodeError("a message must be a map")
    return value, pos + size
