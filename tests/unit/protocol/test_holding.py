"""Holding claims and challenges: the record, the acceptance rules, the proof and the framing."""

from __future__ import annotations

import blake3
import pytest
from communs.protocol import holding, keys
from communs.protocol.errors import DecodeError, SignatureError
from communs.protocol.holding import Challenge, ClaimRefused, HoldingClaim, check_claim, supersedes
from communs.protocol.ids import digest

KEY = keys.SigningKey.generate()
MID = digest(b"manifest")
NOW = 1_800_000_000


def claim(**kw: object) -> HoldingClaim:
    args: dict[str, object] = {"manifest": MID, "since": NOW - 10, "issued_ms": NOW * 1000}
    args.update(kw)
    return HoldingClaim.create(KEY, **args)  # type: ignore[arg-type]


def test_a_claim_round_trips_and_is_small() -> None:
    c = claim()
    back = HoldingClaim.decode(c.encode())
    assert back == c and back.node_peer_id == keys.peer_id(KEY.public)
    assert back.expires == NOW + holding.DEFAULT_TTL and not back.withdrawn
    assert len(c.encode()) <= 230
    check_claim(back, NOW)


def test_a_forged_claim_is_refused() -> None:
    c = claim()
    other = keys.SigningKey.generate()
    forged = HoldingClaim(node=other.public, manifest=c.manifest, since=c.since, issued=c.issued,
                          expires=c.expires, withdrawn=False, sig=c.sig)
    with pytest.raises(SignatureError):
        HoldingClaim.decode(forged.encode())


def test_expired_future_and_absurd_claims_are_refused() -> None:
    with pytest.raises(ClaimRefused, match="expired"):
        check_claim(claim(ttl=60), NOW + 61)
    with pytest.raises(ClaimRefused, match="future"):
        check_claim(claim(issued_ms=(NOW + 3600) * 1000), NOW)
    absurd = HoldingClaim.sign(KEY, node=KEY.public, manifest=MID, since=NOW, issued=NOW * 1000,
                               expires=NOW + 365 * 86400, withdrawn=False)
    with pytest.raises(ClaimRefused, match="over the limit"):
        check_claim(absurd, NOW)


def test_a_withdrawal_outlives_every_earlier_claim_and_replays_are_refused() -> None:
    c = claim()
    w = claim(issued_ms=NOW * 1000 + 5, withdrawn=True)
    assert w.expires >= c.expires and w.withdrawn
    assert supersedes(w, c.issued) and not supersedes(c, w.issued) and not supersedes(c, c.issued)
    assert supersedes(c, None)


def test_the_proof_depends_on_nonce_chunks_and_order() -> None:
    a, b = b"x" * 100, b"y" * 50
    n1, n2 = b"1" * 32, b"2" * 32
    p = holding.proof(n1, [a, b])
    assert p == holding.proof(n1, [a, b])
    assert p != holding.proof(n2, [a, b]) and p != holding.proof(n1, [b, a]) and p != holding.proof(n1, [a])
    h = blake3.blake3(key=n1)
    for part in (a, b):
        h.update(len(part).to_bytes(8, "big") + part)
    assert p == h.digest()


def test_challenge_positions_are_bounded_and_checked_against_the_manifest() -> None:
    ch = Challenge(b"n" * 32, MID, (0, 5))
    assert Challenge.from_dict(ch.to_dict()) == ch
    holding.check_positions((0, 5), 6)
    with pytest.raises(DecodeError, match="out of range"):
        holding.check_positions((0, 6), 6)
    with pytest.raises(DecodeError):
        Challenge(b"n" * 32, MID, tuple(range(holding.MAX_POSITIONS + 1)))
    with pytest.raises(DecodeError):
        Challenge(b"n" * 32, MID, ())
    with pytest.raises(DecodeError):
        Challenge.from_dict({"nonce": b"n" * 32, "manifest": MID, "positions": [1], "more": 1})


def test_positions_are_distinct_and_in_range() -> None:
    for count in (1, 3, 10):
        pos = holding.choose_positions(b"r" * 16, count)
        assert len(set(pos)) == len(pos) == min(3, count) and all(0 <= p < count for p in pos)
    with pytest.raises(DecodeError):
        holding.choose_positions(b"r", 0)


def test_framing_waits_for_a_whole_frame_and_refuses_oversized_ones() -> None:
    data = holding.frame({"a": 1})
    assert holding.unframe(data[:2], 100) == (None, 0)
    assert holding.unframe(data + b"rest", 100) == ({"a": 1}, len(data))
    with pytest.raises(DecodeError, match="over the limit"):
        holding.unframe(holding.frame({"a": b"x" * 200}), 100)
