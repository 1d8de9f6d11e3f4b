"""`/communs/governance/1` codec: framing limits checked before payloads, exact field sets, the per-peer rate."""

from __future__ import annotations

import pytest
from communs.protocol import encoding, govwire, varint
from communs.protocol.errors import DecodeError


def test_requests_round_trip_and_fields_are_exact() -> None:
    reader = govwire.FrameReader(govwire.MAX_REQUEST_FRAME)
    messages = [{"t": "list"}, {"t": "get", "id": b"\x01" * 32}, {"t": "policy"}, {"t": "submit", "record": b"r"}]
    data = b"".join(govwire.frame(m) for m in messages)
    for i in range(len(data)):  # fed one byte at a time
        reader.feed(data[i:i + 1])
    got = []
    while (payload := reader.next_payload()) is not None:
        got.append(govwire.decode_request(payload))
    assert got == messages and reader.buffered == 0
    for bad, phrase in [({"t": "list", "x": 1}, "unknown field"), ({"t": "get"}, "lacks field 'id'"),
                        ({"t": "get", "id": b"short"}, "32 bytes"), ({"t": "submit", "record": b""}, "1 to"),
                        ({"t": "vote"}, "unexpected request"), ([1, 2], "must be a map")]:
        with pytest.raises(DecodeError, match=phrase):
            govwire.decode_request(encoding.encode(bad))


def test_length_prefix_is_refused_before_the_payload() -> None:
    reader = govwire.FrameReader(govwire.MAX_REQUEST_FRAME)
    reader.feed(varint.encode(govwire.MAX_REQUEST_FRAME + 1))  # no payload at all
    with pytest.raises(DecodeError, match="over the limit"):
        reader.next_payload()
    for raw, phrase in [(b"\x00", "empty frame"), (b"\x80\x00", "shortest form"),
                        (b"\x80\x80\x80\x80\x01", "too long|over the limit")]:
        r = govwire.FrameReader(1 << 30)
        r.feed(raw)
        with pytest.raises(DecodeError, match=phrase):
            r.next_payload()


def test_non_canonical_payload_is_refused() -> None:
    payload = b"\x81\xa1t\xd9\x04list"  # "list" as str8: not the shortest form
    with pytest.raises(DecodeError):
        govwire.decode_request(payload)


def test_error_answers_carry_known_codes_and_short_messages() -> None:
    frame = govwire.error("refused", "x" * 2000)
    reader = govwire.FrameReader(govwire.MAX_ANSWER_FRAME)
    reader.feed(frame)
    answer = govwire.decode_answer(reader.next_payload() or b"")
    assert answer["code"] == "refused" and len(answer["msg"]) == govwire.MAX_ERROR_CHARS
    with pytest.raises(ValueError):
        govwire.error("teapot", "no")
    with pytest.raises(DecodeError, match="known code"):
        govwire.decode_answer(encoding.encode({"t": "error", "code": "teapot", "msg": "x"}))


def test_peer_rate_counts_reads_and_submissions_apart_over_a_sliding_minute() -> None:
    rate = govwire.PeerRate(reads_per_minute=3, submits_per_minute=2)
    assert [rate.admit("p", True, t) for t in (0, 1, 2)] == [True, True, False]
    assert [rate.admit("p", False, t) for t in (2, 3, 4, 5)] == [True, True, True, False]
    assert rate.admit("q", True, 5)  # another peer has its own budget
    assert not rate.admit("p", True, 59.9) and rate.admit("p", True, 60.5)  # the first one left the minute


def test_peer_rate_forgets_idle_peers_and_stays_bounded() -> None:
    rate = govwire.PeerRate(reads_per_minute=1, max_peers=10)
    for i in range(100):
        assert rate.admit(f"peer{i}", False, float(i))
    assert len(rate._seen) <= 10
