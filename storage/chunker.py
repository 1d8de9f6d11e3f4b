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
import threading
from collections.abc import Generator, Iterator
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


class Piece:
    """A chunk's position and its bytes, before hashing.

    `data` is a view into a read window. Without a `WindowPool` the window is a fresh buffer that lives as
    long as any view of it, so a piece can be handed to another thread freely. With a pool, the window is
    reused once every piece cut from it was `release()`d: the consumer must release each piece when done.
    """

    __slots__ = ("_window", "data", "length", "offset")

    def __init__(self, offset: int, length: int, data: memoryview, window: _Window | None) -> None:
        self.offset = offset
        self.length = length
        self.data = data
        self._window = window

    def release(self) -> None:
        """Give the piece's bytes back to the pool (no-op without a pool); `data` must not be used after."""
        window, self._window = self._window, None
        if window is not None:
            self.data = memoryview(b"")
            window.unref()


class _Window:
    __slots__ = ("buf", "pool", "refs", "view")

    def __init__(self, pool: WindowPool, size: int) -> None:
        self.pool = pool
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.refs = 0

    def ref(self) -> None:
        with self.pool.cond:
            self.refs += 1

    def unref(self) -> None:
        with self.pool.cond:
            self.refs -= 1
            if self.refs == 0:
                self.pool.free.append(self)
                self.pool.cond.notify()


class WindowPool:
    """A fixed set of read windows that chunking reuses.

    Why: a fresh 16 MiB buffer per window costs page faults (glibc returns large freed blocks to the kernel),
    about a third of the CPU time of publishing; a pool also bounds memory to `count * size` bytes, since
    reading waits until a window is free.
    """

    def __init__(self, count: int = 4, size: int = WINDOW_SIZE) -> None:
        if count < 2:
            raise ValueError("a window pool needs at least two windows (one is read while the other drains)")
        self.size = size
        self.cond = threading.Condition()
        self.free: list[_Window] = [_Window(self, size) for _ in range(count)]

    def acquire(self) -> _Window:
        with self.cond:
            while not self.free:
                self.cond.wait()
            window = self.free.pop()
            window.refs = 1  # the reader's own reference, dropped when it moves to the next window
            return window


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


def iter_pieces(stream: BinaryIO, window_size: int = WINDOW_SIZE, *,
                pool: WindowPool | None = None, size_hint: int | None = None) -> Generator[Piece, None, None]:
    """Cut a binary stream into chunks, yielding their bytes.

    A chunk is only accepted while at least MAX_SIZE bytes follow its start in the window (or the stream has
    ended), because FastCDC only ever looks MAX_SIZE bytes ahead: the cuts are then exactly those of a single
    pass over the whole content, whatever the window size. The rest is carried into the next window.
    `size_hint` (the file's size, when known) lets a small file be read into a small buffer when there is no
    pool; a wrong hint only costs a second window.
    """
    if pool is not None:
        window_size = pool.size
    if window_size < 2 * MAX_SIZE:
        raise ValueError("the chunking window must hold at least two maximal chunks")
    cdc = _fastcdc()
    base = 0  # offset in the stream of the window's first byte
    carry = memoryview(b"")
    held: list[_Window] = []  # the reader's references: the current window, and the previous one until copied
    try:
        while True:
            if pool is not None:
                window: _Window | None = pool.acquire()
                assert window is not None
                held.append(window)
                view = window.view
            else:
                window = None
                size = window_size
                if base == 0 and not carry and size_hint is not None and 0 <= size_hint < window_size:
                    size = size_hint + 1
                view = memoryview(bytearray(size))
            view[: len(carry)] = carry
            while len(held) > 1:
                held.pop(0).unref()
            filled = len(carry) + _read_full(stream, view[len(carry):])
            eof = filled < len(view)
            data = view[:filled]
            consumed = 0
            for cut in cdc.cut_buf(data):
                if not eof and filled - cut.offset < MAX_SIZE:
                    break
                if window is not None:
                    window.ref()
                yield Piece(base + cut.offset, cut.length, data[cut.offset: cut.offset + cut.length], window)
                consumed = cut.offset + cut.length
            if eof:
                return
            carry = data[consumed:]
            base += consumed
    finally:
        for window in held:
            window.unref()


def chunk_stream(stream: BinaryIO, size_hint: int | None = None) -> Iterator[Chunk]:
    """The chunks of a binary stream with their digests."""
    for piece in iter_pieces(stream, size_hint=size_hint):
        yield Chunk(piece.offset, piece.length, digest(piece.data))


def chunk_file(path: str | os.PathLike[str]) -> Iterator[Chunk]:
    """The chunks of a file with their digests; an empty file has none."""
    with open(path, "rb", buffering=0) as stream:
        yield from chunk_stream(stream, size_hint=os.fstat(stream.fileno()).st_size)


def chunk_bytes(data: bytes | bytearray | memoryview) -> list[Chunk]:
    """The chunks of an in-memory buffer, cut exactly as `chunk_file` would cut the same content."""
    view = memoryview(data)
    return [Chunk(c.offset, c.length, digest(view[c.offset: c.offset + c.length]))
            for c in _fastcdc().cut_buf(view)]
