"""Signed receipts: a node's word that it recorded a member's proposal or ballot, and where.

When a node accepts a governance record it answers with a Receipt signed by its node key (the
key of the governance log's genesis entry): the record's id, the entry's position in the log,
that entry's hash and the time it was recorded. The member keeps it. Later, anyone holding the
log (`communs audit --receipt FILE`) checks that the entry at that position holds that record
with that hash: a node that dropped, reordered or back-dated a ballot it acknowledged is then
shown its own signature against its own log. A receipt whose signature is not the log's node
key is reported as forged.

Pure: `check_receipt` takes the decoded log entries and returns one sentence or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from communs.protocol import ids, keys
from communs.protocol.errors import DecodeError
from communs.protocol.signed import SignedRecord, check_bytes, check_uint, short

RECEIPT_TYPE = "receipt"
MAX_RECEIPT_BYTES = 1024
RECORD_KINDS = ("proposal", "ballot", "rotation")
RecordKind = Literal["proposal", "ballot", "rotation"]


@dataclass(frozen=True)
class Receipt(SignedRecord):
    """The node's signed acknowledgement that record `record` is entry `seq` of its governance log."""

    TYPE = RECEIPT_TYPE
    MAX_BYTES = MAX_RECEIPT_BYTES
    NAME = "receipt"

    node: bytes
    kind: RecordKind
    record: bytes
    seq: int
    entry: bytes
    at: int
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_bytes("receipt", "node", self.node, keys.PUBLIC_KEY_SIZE)
        if self.kind not in RECORD_KINDS:
            raise DecodeError(f"receipt kind must be proposal, ballot or rotation, not {short(self.kind)}")
        check_bytes("receipt", "record", self.record, ids.DIGEST_SIZE)
        check_uint("receipt", "seq", self.seq, 1)
        check_bytes("receipt", "entry", self.entry, ids.DIGEST_SIZE)
        check_uint("receipt", "at", self.at)
        check_bytes("receipt", "sig", self.sig, keys.SIGNATURE_SIZE)

    @classmethod
    def create(cls, node_key: keys.SigningKey, *, kind: RecordKind, record: bytes, seq: int, entry: bytes,
               at: int) -> Receipt:
        return cls.sign(node_key, node=node_key.public, kind=kind, record=record, seq=seq, entry=entry, at=at)

    def signer(self) -> bytes:
        return self.node

    def payload(self) -> dict[str, Any]:
        return {"node": self.node, "kind": self.kind, "record": self.record, "seq": self.seq,
                "entry": self.entry, "at": self.at}

    def to_json(self) -> dict[str, Any]:
        """For `--json` output and receipt files a person reads: ids as CIDs, the encoding in hex."""
        return {"node": keys.peer_id(self.node), "kind": self.kind, "record": ids.cid_str(self.record),
                "seq": self.seq, "entry": ids.cid_str(self.entry), "at": self.at, "encoded": self.encode().hex()}


def check_receipt(receipt: Receipt, node: bytes, entries: Sequence[Any]) -> str | None:
    """Why `receipt` is not honoured by the log of node key `node` (entries with .seq/.kind/.body/.hash,
    in order from the genesis entry), or None when the entry it names holds its record.

    The signature is the caller's to have checked (Receipt.decode does); a receipt signed by
    another key than the log's is reported here, since it proves nothing about this log.
    """
    if receipt.node != node:
        return (f"receipt for {receipt.kind} {ids.cid_str(receipt.record)} is signed by node "
                f"{keys.peer_id(receipt.node)}, not by the node that wrote this log ({keys.peer_id(node)})")
    what = f"{receipt.kind} {ids.cid_str(receipt.record)}"
    if receipt.seq >= len(entries):
        return f"the log has no entry {receipt.seq}, where the node acknowledged {what}"
    entry = entries[receipt.seq]
    held = ids.digest(entry.body) if entry.kind == receipt.kind and isinstance(entry.body, bytes) else None
    if held != receipt.record:
        return f"log entry {receipt.seq} does not hold {what}, which the node acknowledged recording there"
    if entry.hash != receipt.entry or entry.at != receipt.at:
        return f"log entry {receipt.seq} holding {what} is not the entry the node acknowledged (hash or time differ)"
    return None


def read_receipt(data: bytes) -> Receipt:
    """A receipt from a file: its canonical encoding, or the JSON `to_json` wrote (its "encoded" hex)."""
    import json

    raw = data
    text = data.lstrip()[:1]
    if text == b"{":
        try:
            doc = json.loads(data)
            raw = bytes.fromhex(doc["encoded"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(f"not a receipt file ({short(str(exc))})") from None
    return Receipt.decode(raw)
