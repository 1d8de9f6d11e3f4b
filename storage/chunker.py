"""Content-defined chunking (FastCDC 2020) of files, for deduplication across versions.

Why content-defined: a few bytes inserted into a file shift every fixed-size block after them, but only move
the cut points next to the edit, so a new version of a dataset re-uses almost every chunk of the last one.

Why plain reads rather than `mmap` (pyfastcdc's `cut_file`): a file that shrinks while it is mapped kills the
process with SIGBUS, and the node publishes files that users may still be editing. Reads into fresh windows
cost one extra kernel copy and keep memory bounded by the number of windows the caller holds on to.

The parameters are part of the format: two nodes (or two versions) only share chunks if they cut alike, so
they must never change without a new manifest version.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO, Literal, NamedTuple

from communs.protocol.ids import digest
from pyfastcdc import FastCDC

MIN_SIZE = 256 * 1024
AVG_SIZE = 1024 * 1024
MAX_SIZE = 4 * 1024 * 1024
# pyfastcdc's gear table is seeded by this; 0 is the reference table of the FastCDC paper.
_SEED = 0
_NORMALIZATION: Literal[1] = 1
# Big enough that read syscalls and the copied tail (< MAX_SIZE) are a small share of the work.
WINDOW_SIZE = 16 * 1024 * 1024


class Chunk(NamedTuple):
    """One chunk of a file: where it is, how long it is, and its BLAKE3-256 digest."""

    offset: int
    length: int
    digest: bytes


class Piece(NamedTuple):
    """A chunk's position and its bytes, before hashing.

    `data` is a view into a window that stays valid for as long as the view is referenced, so it can be handed
    to another thread.
    """

    offset: int
    length: int
    data: memoryview


def _fastcdc() -> FastCDC:
    return FastCDC(AVG_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE, normalized_chunking=_NORMALIZATION,
                   seed=_SEED)


def _read_full(stream: BinaryIO, view: memoryview) -> int:
    """Fill `view` as far as the stream allows; the count is short only at end of file."""
    filled = 0
    while filled < len(view):
        n = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not n:
            break
        filled += n
    return filled


def iter_pieces(stream: BinaryIO, window_size: int = WINDOW_SIZE) -> Iterator[Piece]:
    """Cut a binary stream into chunks, yielding their bytes.

    A chunk is only accepted while at least MAX_SIZE bytes follow its start in the window (or the stream has
    ended), because FastCDC only ever looks MAX_SIZE bytes ahead: the cuts are then exactly those of a single
    pass over the whole content, whatever the window size. The rest is carried into the next window.
    """
    if window_size < 2 * MAX_SIZE:
        raise ValueError("the chunking window must hold at least two maximal chunks")
    cdc = _fastcdc()
    base = 0  # offset in the stream of window[0]
    carry = memoryview(b"")
    while True:
        window = bytearray(window_size)
        view = memoryview(window)
        view[: len(carry)] = carry
        filled = len(carry) + _read_full(stream, view[len(carry):])
        eof = filled < window_size
        if filled == 0:
            return
        data = view[:filled]
        consumed = 0
        for cut in cdc.cut_buf(data):
            if not eof and filled - cut.offset < MAX_SIZE:
                break
            yield Piece(base + cut.offset, cut.length, data[cut.offset: cut.offset + cut.length])
            consumed = cut.offset + cut.length
        if eof:
            return
        carry = data[consumed:]
        base += consumed
        del data, view, window


def chunk_stream(stream: BinaryIO) -> Iterator[Chunk]:
    """The chunks of a binary stream with their digests."""
    for piece in iter_pieces(stream):
        yield Chunk(piece.offset, piece.length, digest(piece.data))


def chunk_file(path: str | os.PathLike[str]) -> Iterator[Chunk]:
    """The chunks of a file with their digests; an empty file has none."""
    with open(path, "rb", buffering=0) as stream:
        yield from chunk_stream(stream)


def chunk_bytes(data: bytes | bytearray | memoryview) -> list[Chunk]:
    """The chunks of an in-memory buffer, cut exactly as `chunk_file` would cut the same content."""
    view = memoryview(data)
    return [Chunk(c.offset, c.length, digest(view[c.offset: c.offset + c.length]))
            for c in _fastcdc().cut_buf(view)]
