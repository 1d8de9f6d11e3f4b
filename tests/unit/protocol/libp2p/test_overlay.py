"""The overlay's replacements for three of py-libp2p's internals (protocol/overlay.py): they must behave
exactly as the originals do, minus the copies."""

from __future__ import annotations

import types
from typing import Any

import pytest
import trio
from communs.protocol.libp2p import overlay
from libp2p.io import utils as io_utils
from libp2p.io.exceptions import IncompleteReadError


class Pieces:
    """A reader handing out scripted pieces (b"" once they run out, as a closed connection does)."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)
        self.asked: list[int] = []

    async def read(self, n: int) -> bytes:
        self.asked.append(n)
        if not self.pieces:
            return b""
        piece = self.pieces.pop(0)
        assert len(piece) <= n, "a reader never returns more than asked"
        return piece


def read_exactly(reader: Pieces, n: int, retry: int = io_utils.DEFAULT_RETRY_READ_COUNT) -> bytes:
    return trio.run(overlay._read_exactly, reader, n, retry)


def test_read_exactly_returns_a_whole_first_read_as_it_is() -> None:
    data = bytes(range(200))
    got = read_exactly(Pieces(data), 200)
    assert got is data  # no copy


@pytest.mark.parametrize("cut", [1, 7, 149])
def test_read_exactly_assembles_short_reads(cut: int) -> None:
    data = bytes(range(200))
    reader = Pieces(data[:cut], data[cut:150], data[150:])
    assert read_exactly(reader, 200) == data
    assert reader.asked == [200, 200 - cut, 50]


def test_read_exactly_raises_py_libp2p_s_error_when_the_connection_closes() -> None:
    with pytest.raises(IncompleteReadError) as info:
        read_exactly(Pieces(b"abc"), 10, retry=5)
    assert info.value.expected_bytes == 10 and info.value.received_bytes == 3
    assert not info.value.is_clean_close
    with pytest.raises(IncompleteReadError) as info:
        read_exactly(Pieces(), 10)
    assert info.value.is_clean_close  # nothing at all came: what Yamux takes for a clean close


def session() -> Any:
    s = types.SimpleNamespace()
    overlay._session_reset(s)
    return s


def test_session_buffer_hands_out_the_rest_of_a_message_uncopied() -> None:
    s = session()
    assert overlay._session_drain(s, 5) == b""
    body = bytes(range(256)) * 10
    overlay._session_fill(s, body)
    assert overlay._session_drain(s, None) is body
    assert overlay._session_drain(s, 1) == b""


def test_session_buffer_in_pieces() -> None:
    s = session()
    overlay._session_fill(s, bytearray(b"0123456789"))  # not bytes: kept as a copy
    assert overlay._session_drain(s, 3) == b"012"
    assert overlay._session_drain(s, 4) == b"3456"
    assert overlay._session_drain(s, 100) == b"789"
    assert (s.low_watermark, s.high_watermark) == (0, 0)
    assert overlay._session_drain(s, None) == b""


def test_the_replacements_are_in_place_once_applied() -> None:
    overlay.apply_patches()
    from libp2p.io import msgio
    from libp2p.security.secure_session import SecureSession
    from libp2p.stream_muxer.yamux import yamux

    # Yamux's is the same function, keeping each frame header for the receive window check (connlimits)
    assert yamux.read_exactly is overlay._yamux_read_exactly and msgio.read_exactly is overlay._read_exactly
    assert SecureSession._drain is overlay._session_drain and SecureSession._fill is overlay._session_fill
    assert yamux._py_yamux_env("RELEASE_ON_READ", "1") == "0"  # the overlay's setting, read once


def test_tcp_reads_ahead_and_hands_out_in_order() -> None:
    """The read-ahead TCP read returns at most what is asked, in order, the rest on later reads, and
    end of stream once the peer closed and nothing is left."""
    import trio.testing
    from libp2p.io.trio import TrioTCPStream

    async def main() -> None:
        send, receive = trio.testing.memory_stream_pair()
        tcp = TrioTCPStream(receive)  # type: ignore[arg-type]
        data = bytes(range(256)) * 1000
        await send.send_all(data)
        got = [await tcp.read(2), await tcp.read(300), await tcp.read(10)]
        assert b"".join(got) == data[:312] and [len(g) for g in got] == [2, 300, 10]
        rest = bytearray()
        while len(rest) < len(data) - 312:
            rest += await tcp.read(None)
        assert bytes(rest) == data[312:]
        await send.send_all(b"tail")
        await send.aclose()
        assert await tcp.read(100) == b"tail"
        assert await tcp.read(100) == b""
        assert await tcp.read(0) == b""

    trio.run(main)


def test_another_py_libp2p_version_is_refused_in_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overlay, "_patched", False)
    monkeypatch.setattr(overlay.importlib.metadata, "version", lambda name: "0.9.0")
    with pytest.raises(overlay.OverlayError, match=r"py-libp2p 0\.9\.0 is installed, .* install libp2p==0\.8\.1"):
        overlay.apply_patches()
