"""Pure parts of the exchange: the DHT key, the cheap record read used by sync, and frame reading deadlines
(the sentence a sync session's limits are reported in is tested in test_syncplan.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from communs.node.exchange.dhtkeys import provider_key, text_key
from communs.node.exchange.facts import record_facts
from communs.node.exchange.streamio import FrameTimeout, next_event
from communs.protocol import ids, keys, wire
from communs.protocol.errors import DecodeError
from communs.protocol.records import FileEntry, Manifest


def test_provider_key_is_the_sha256_cid_of_the_manifest_cid_text() -> None:
    mid = bytes(range(32))
    key = provider_key(mid)
    assert key == text_key(ids.cid_str(mid))
    assert key.startswith("bafkrei")  # CIDv1, raw codec, sha2-256 multihash: what js-libp2p builds from text
    import base64

    raw = base64.b32decode(key[1:].upper() + "=" * (-len(key[1:]) % 8))
    assert raw[:4] == bytes([0x01, 0x55, 0x12, 0x20])
    assert raw[4:] == hashlib.sha256(ids.cid_str(mid).encode()).digest()


def test_record_facts_reads_a_manifest_and_refuses_junk() -> None:
    key = keys.SigningKey.generate()
    m = Manifest.create(key, dataset=os.urandom(32), version=1, prev=None, seq=1, log_prev=None, title="t",
                        licence="CC0-1.0", created=1, files=[FileEntry.of("a", [(os.urandom(32), 3)])])
    facts = record_facts(m.encode())
    assert (facts.id, facts.publisher, facts.seq, facts.log_prev, facts.dataset, facts.size) == \
        (m.id, key.public, 1, None, m.dataset, 3)
    for junk in (b"", b"\xc1", os.urandom(50), b"\x80", b"\x91\x01"):
        with pytest.raises(DecodeError):
            record_facts(junk)


class FakeStream:
    """Hands out scripted reads; None means 'block forever'."""

    def __init__(self, pieces: list[bytes | None]) -> None:
        self.pieces = list(pieces)

    async def read(self, n: int = 65536, min_bytes: int = 0) -> bytes:
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        if piece is None:
            await asyncio.sleep(3600)
            return b""
        return piece


async def test_next_event_reads_frames_split_anywhere() -> None:
    frame = wire.ManifestGet((bytes(32),)).encode()
    stream = FakeStream([frame[:1], frame[1:5], frame[5:] + wire.HeadsRequest().encode()[:0]])
    reader = wire.FrameReader(wire.MANIFEST_PROTOCOL, "request")
    ev = await next_event(stream, reader, idle_timeout=1, frame_timeout=1)
    assert ev == wire.ManifestGet((bytes(32),))
    assert await next_event(stream, reader, idle_timeout=1, frame_timeout=1) is None


async def test_next_event_deadlines_and_truncation() -> None:
    reader = wire.FrameReader(wire.SYNC_PROTOCOL, "request")
    with pytest.raises(FrameTimeout):  # nothing at all
        await next_event(FakeStream([None]), reader, idle_timeout=0.05, frame_timeout=1)
    reader = wire.FrameReader(wire.SYNC_PROTOCOL, "request")
    with pytest.raises(FrameTimeout):  # half a frame, then silence
        await next_event(FakeStream([b"\x05\x81", None]), reader, idle_timeout=1, frame_timeout=0.05)
    reader = wire.FrameReader(wire.SYNC_PROTOCOL, "request")
    with pytest.raises(DecodeError):  # the stream ends inside a frame
        await next_event(FakeStream([b"\x05\x81"]), reader, idle_timeout=1, frame_timeout=1)
    reader = wire.FrameReader(wire.SYNC_PROTOCOL, "request")
    with pytest.raises(DecodeError):  # over the frame limit: refused from the length prefix alone
        await next_event(FakeStream([wire.encode_varint(5000)]), reader, idle_timeout=1, frame_timeout=1)


async def test_stall_timeout_lets_a_slow_but_steady_answer_through() -> None:
    header, body = wire.chunk_frames(ids.digest(b"x" * 4000), b"x" * 4000)
    pieces: list[bytes | None] = [header] + [body[i:i + 500] for i in range(0, 4000, 500)]

    class Slow(FakeStream):
        async def read(self, n: int = 65536, min_bytes: int = 0) -> bytes:
            await asyncio.sleep(0.03)
            return await super().read(n, min_bytes)

    reader = wire.FrameReader(wire.CHUNKS_PROTOCOL, "response", assemble=True)
    ev = await next_event(Slow(pieces), reader, idle_timeout=1, frame_timeout=0.1, stall_timeout=0.1)
    assert isinstance(ev, wire.Chunk) and ev.data == b"x" * 4000

