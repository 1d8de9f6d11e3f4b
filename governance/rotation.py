"""Member key rotation: a member replaces their key without a vote, by a record both keys sign.

A `Rotation` names the old key, the new key and the roster in force it applies to (its hash), and is
signed by the old key (the record's `sig`, domain `rotation/1`); `proof` is the new key's signature
(domain `rotation-accept/1`) over the old key, the new key and that roster hash, so nobody can hand a
member's seat to a key they do not hold, and the new key's holder agreed. It needs no proposal: the
member keeps their seat, only the key changes. It is a `rotation` entry of the governance log
(ledger.py): the roster in force then lists the new key with the same name, and the old key is
rotated away for good: no ballot, proposal or further rotation with it is accepted afterwards, on any
proposal. Proposals already open keep the roster they are voted under; a ballot the member cast
before still counts there, and the new key votes on proposals opened after the rotation.

A lost key cannot be rotated (nothing can sign for it): that stays a member-remove and a member-add vote.
Naming the roster hash makes a rotation single-use: once applied, the roster in force has changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from communs.protocol import ids, keys
from communs.protocol.errors import DecodeError
from communs.protocol.signed import SignedRecord, check_bytes, check_uint

ROTATION_TYPE = "rotation"
ACCEPT_DOMAIN = "rotation-accept/1"
MAX_ROTATION_BYTES = 1024


@dataclass(frozen=True)
class Rotation(SignedRecord):
    """`old` hands its seat on roster `roster` to `new`; signed by `old`, accepted (`proof`) by `new`."""

    TYPE = ROTATION_TYPE
    MAX_BYTES = MAX_ROTATION_BYTES
    NAME = "key rotation"

    old: bytes
    new: bytes
    roster: bytes
    ts: int
    proof: bytes = field(repr=False)
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_bytes("rotation", "old", self.old, keys.PUBLIC_KEY_SIZE)
        check_bytes("rotation", "new", self.new, keys.PUBLIC_KEY_SIZE)
        if self.old == self.new:
            raise DecodeError("a key rotation must name a new key different from the old one")
        check_bytes("rotation", "roster", self.roster, ids.DIGEST_SIZE)
        check_uint("rotation", "ts", self.ts)
        check_bytes("rotation", "proof", self.proof, keys.SIGNATURE_SIZE)
        check_bytes("rotation", "sig", self.sig, keys.SIGNATURE_SIZE)

    @staticmethod
    def accept_message(old: bytes, new: bytes, roster: bytes) -> bytes:
        return old + new + roster

    @classmethod
    def create(cls, old: keys.SigningKey, new: keys.SigningKey, *, roster: bytes, ts: int) -> Rotation:
        proof = new.sign(ACCEPT_DOMAIN, cls.accept_message(old.public, new.public, roster))
        return cls.sign(old, old=old.public, new=new.public, roster=roster, ts=ts, proof=proof)

    def signer(self) -> bytes:
        return self.old

    def payload(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "roster": self.roster, "ts": self.ts, "proof": self.proof}

    def verify_proof(self) -> None:
        """SignatureError unless the new key signed its acceptance (decode checks the old key's signature)."""
        keys.verify(self.new, ACCEPT_DOMAIN, self.accept_message(self.old, self.new, self.roster), self.proof)

    @classmethod
    def decode_verified(cls, data: bytes) -> Rotation:
        """Decode untrusted bytes and check both signatures."""
        record = cls.decode(data)
        record.verify_proof()
        return record
