"""Content-defined chunking: deterministic cuts, local effect of edits, bounded sizes."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from communs.protocol.ids import digest
from communs.storage import chunker

MiB = 1024 * 1024


def _random_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture(scope="module")
def content() -> bytes:
    return _random_bytes(20 * MiB, seed=1)


def test_same_content_gives_same_chunks(tmp_path: Path, content: bytes) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(content)
    b.write_bytes(content)
    first = list(chunker.chunk_file(a))
    assert first == list(chunker.chunk_file(b))
    assert first == list(chunker.chunk_file(a))


def test_chunks_tile_the_file_and_respect_size_limits(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "f"
    path.write_bytes(content)
    chunks = list(chunker.chunk_file(path))
    assert len(chunks) > 5
    offset = 0
    for c in chunks:
        assert c.offset == offset
        assert c.digest == digest(content[c.offset: c.offset + c.length])
        offset += c.length
    assert offset == len(content)
    for c in chunks[:-1]:
        assert chunker.MIN_SIZE <= c.length <= chunker.MAX_SIZE
    assert 0 < chunks[-1].length <= chunker.MAX_SIZE


def test_window_size_does_not_change_the_cuts(content: bytes) -> None:
    whole = chunker.chunk_bytes(content)
    for window in (2 * chunker.MAX_SIZE, 2 * chunker.MAX_SIZE + 12345, 64 * MiB):
        pieces = list(chunker.iter_pieces(io.BytesIO(content), window_size=window))
        assert [(p.offset, p.length) for p in pieces] == [(c.offset, c.length) for c in whole]
        assert [digest(p.data) for p in pieces] == [c.digest for c in whole]


def test_insertion_in_the_middle_leaves_most_chunks_unchanged(tmp_path: Path, content: bytes) -> None:
    middle = len(content) // 2
    edited = content[:middle] + b"a few new bytes" + content[middle:]
    before = [c.digest for c in chunker.chunk_bytes(content)]
    after = [c.digest for c in chunker.chunk_bytes(edited)]
    shared = set(before) & set(after)
    # Only the chunk holding the edit (and at most its neighbour) may differ.
    assert len(set(before) - shared) <= 2
    assert len(set(after) - shared) <= 2
    assert len(shared) >= len(before) - 2
    # The chunks before the edit are identical in place, the ones after are the same shifted by 15 bytes.
    assert before[:3] == after[:3]
    assert before[-3:] == after[-3:]


def test_empty_and_tiny_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert list(chunker.chunk_file(empty)) == []
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"x")
    assert list(chunker.chunk_file(tiny)) == [chunker.Chunk(0, 1, digest(b"x"))]


def test_a_too_small_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        list(chunker.iter_pieces(io.BytesIO(b"abc"), window_size=chunker.MAX_SIZE))


def test_a_window_pool_gives_the_same_cuts_and_bounds_memory(content: bytes) -> None:
    pool = chunker.WindowPool(count=2, size=2 * chunker.MAX_SIZE)
    seen = []
    for piece in chunker.iter_pieces(io.BytesIO(content), pool=pool):
        seen.append((piece.offset, piece.length, digest(piece.data)))
        piece.release()  # without this, reading would wait for a free window forever
        assert len(piece.data) == 0
    assert seen == [tuple(c) for c in chunker.chunk_bytes(content)]
    assert len(pool.free) == 2  # every window came back


def test_abandoning_the_iteration_returns_the_windows() -> None:
    pool = chunker.WindowPool(count=2, size=2 * chunker.MAX_SIZE)
    pieces = chunker.iter_pieces(io.BytesIO(_random_bytes(20 * MiB, seed=3)), pool=pool)
    first = next(pieces)
    first.release()
    pieces.close()
    assert len(pool.free) == 2
