"""The claim gate: forged, absurd, replayed and flooding claims; the per-peer challenge budget."""

from __future__ import annotations

import pytest
from communs.node.services.claim_gate import AnswerGate, ClaimGate
from communs.protocol import encoding, keys
from communs.protocol.errors import RecordError
from communs.protocol.holding import HoldingClaim
from communs.protocol.ids import digest

NOW = 1_800_000_000
KEY = keys.SigningKey.generate()


def claim(i: int = 0, *, issued: int = NOW * 1000, withdrawn: bool = False, key: keys.SigningKey = KEY) -> HoldingClaim:
    return HoldingClaim.create(key, manifest=digest(i.to_bytes(4, "big")), since=NOW, issued_ms=issued,
                               withdrawn=withdrawn)


def msg(*claims: HoldingClaim) -> bytes:
    return encoding.encode([c.encode() for c in claims])


def test_a_batch_with_one_forged_claim_is_refused_whole() -> None:
    good = claim(1)
    other = keys.SigningKey.generate()
    forged = HoldingClaim(node=other.public, manifest=good.manifest, since=good.since, issued=good.issued,
                          expires=good.expires, withdrawn=False, sig=good.sig)
    gate = ClaimGate()
    with pytest.raises(RecordError):
        gate.admit(msg(good, forged), NOW)
    assert gate.admit(msg(good), NOW) == [good]


def test_absurd_expiry_and_malformed_messages_are_refused() -> None:
    absurd = HoldingClaim.sign(KEY, node=KEY.public, manifest=digest(b"m"), since=NOW, issued=NOW * 1000,
                               expires=NOW + 10 * 365 * 86400, withdrawn=False)
    gate = ClaimGate()
    with pytest.raises(RecordError, match="over the limit"):
        gate.admit(msg(absurd), NOW)
    for bad in (encoding.encode([]), encoding.encode({"a": 1}), encoding.encode([1]),
                encoding.encode([claim(i).encode() for i in range(65)])):
        with pytest.raises(RecordError):
            gate.admit(bad, NOW)


def test_replays_are_left_out_even_after_a_withdrawal() -> None:
    gate = ClaimGate()
    first = claim(1)
    withdrawal = claim(1, issued=NOW * 1000 + 10, withdrawn=True)
    assert gate.admit(msg(first), NOW) == [first]
    assert gate.admit(msg(first), NOW) == []
    assert gate.admit(msg(withdrawal), NOW) == [withdrawal]
    assert gate.admit(msg(first), NOW) == []  # the old claim, replayed after the withdrawal
    assert gate.counts["replayed"] == 2


def test_a_flood_from_one_claimer_is_cut_at_its_rate_others_pass() -> None:
    gate = ClaimGate(rate=1.0, burst=10.0)
    flood = [claim(i) for i in range(64)]
    taken = gate.admit(msg(*flood), NOW)
    assert len(taken) == 10 and gate.counts["over_rate"] == 54
    other = claim(1, key=keys.SigningKey.generate())
    assert gate.admit(msg(other), NOW) == [other]
    assert len(gate.admit(msg(*[claim(i) for i in range(100, 110)]), NOW + 5)) == 5  # refilled at 1/s


def test_challenges_answered_per_peer_are_bounded() -> None:
    gate = AnswerGate(per_minute=30, burst=10)
    assert sum(gate.allow("p", 0.0) for _ in range(50)) == 10
    assert gate.allow("q", 0.0)
    assert gate.allow("p", 2.0) and not gate.allow("p", 2.0)  # 30 a minute: one every 2 s
