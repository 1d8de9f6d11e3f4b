"""Receipts: signed by the node, checked against the log; forged, dropped or moved records are named."""

from __future__ import annotations

import json

import pytest
from communs.governance.ledger import Ledger
from communs.governance.receipts import Receipt, check_receipt, read_receipt
from communs.governance.records import Ballot, Proposal, Roster
from communs.protocol import ids, keys
from communs.protocol.errors import DecodeError, SignatureError

NODE = keys.SigningKey(bytes([9]) * 32)
A, B, C = (keys.SigningKey(bytes([i]) * 32) for i in range(1, 4))
ROSTER = Roster.of([(A.public, "Ana"), (B.public, "Ben"), (C.public, "Cleo")])


def ledger_with_ballot() -> tuple[Ledger, Ballot]:
    ledger = Ledger.found(NODE, ROSTER, at=50)
    p = Proposal.create(A, kind="quota", body={"storage_quota_bytes": 5}, roster=ROSTER.hash, opens=100,
                        closes=1000, nonce=bytes(16))
    ledger.submit_proposal(p.encode(), 100)
    b = Ballot.create(B, proposal=p.id, choice="yes", ts=110)
    ledger.submit_ballot(b.encode(), 110)
    return ledger, b


def receipt_for(ledger: Ledger, record: bytes, key: keys.SigningKey = NODE) -> Receipt:
    entry = next(e for e in ledger.entries if e.kind == "ballot" and ids.digest(e.body) == record)
    return Receipt.create(key, kind="ballot", record=record, seq=entry.seq, entry=entry.hash, at=entry.at)


def test_an_honoured_receipt_round_trips_through_its_file() -> None:
    ledger, b = ledger_with_ballot()
    r = receipt_for(ledger, b.id)
    assert check_receipt(r, NODE.public, ledger.entries) is None
    again = read_receipt(json.dumps(r.to_json()).encode())
    assert again == r and read_receipt(r.encode()) == r


def test_dropped_moved_and_foreign_receipts_are_reported() -> None:
    ledger, b = ledger_with_ballot()
    good = receipt_for(ledger, b.id)
    dropped = Receipt.create(NODE, kind="ballot", record=ids.digest(b"x"), seq=good.seq, entry=good.entry, at=good.at)
    assert "does not hold ballot" in (check_receipt(dropped, NODE.public, ledger.entries) or "")
    beyond = Receipt.create(NODE, kind="ballot", record=b.id, seq=99, entry=good.entry, at=good.at)
    assert "has no entry 99" in (check_receipt(beyond, NODE.public, ledger.entries) or "")
    redated = Receipt.create(NODE, kind="ballot", record=b.id, seq=good.seq, entry=good.entry, at=good.at + 5)
    assert "not the entry the node acknowledged" in (check_receipt(redated, NODE.public, ledger.entries) or "")
    wrong_kind = Receipt.create(NODE, kind="proposal", record=b.id, seq=good.seq, entry=good.entry, at=good.at)
    assert check_receipt(wrong_kind, NODE.public, ledger.entries) is not None
    other = receipt_for(ledger, b.id, key=A)
    assert "not by the node that wrote this log" in (check_receipt(other, NODE.public, ledger.entries) or "")


def test_a_forged_or_damaged_receipt_does_not_decode() -> None:
    ledger, b = ledger_with_ballot()
    raw = bytearray(receipt_for(ledger, b.id).encode())
    raw[-70] ^= 1  # inside the signature or a field
    with pytest.raises((SignatureError, DecodeError)):
        Receipt.decode(bytes(raw))
    with pytest.raises(DecodeError, match="not a receipt file"):
        read_receipt(b'{"no": 1}')
