"""Whole-file SHA-256 from chunks: the hashing, the keys, which files still wait (pure)."""

from __future__ import annotations

import hashlib

import pytest
from communs.node.http.public import checksums
from communs.node.http.public.files import PublicFile, PublicVersion
from communs.protocol import ids

PARTS = [b"first chunk " * 50, b"second " * 70, b"x"]
CHUNKS = tuple((ids.digest(p), len(p)) for p in PARTS)
STORE = {ids.digest(p): p for p in PARTS}
WHOLE = b"".join(PARTS)


def version(vid: str, *files: PublicFile) -> PublicVersion:
    return PublicVersion(id=vid, dataset="bds", version=1, title="t", description="", keywords=(), licence="CC0-1.0",
                         publisher="p", created=0, size=sum(f.size for f in files), files=files)


def test_sha256_of_a_file_of_several_chunks_is_hashlib_over_the_whole_file() -> None:
    entry = PublicFile("a.bin", len(WHOLE), CHUNKS)
    assert checksums.sha256_of(entry, STORE.__getitem__) == hashlib.sha256(WHOLE).digest()


def test_an_empty_file_needs_no_read() -> None:
    def never(_d: bytes) -> bytes:
        raise AssertionError("an empty file has nothing to read")

    assert checksums.sha256_of(PublicFile("e", 0, ()), never) == hashlib.sha256(b"").digest()
    assert checksums.lookup(PublicFile("e", 0, ()), {}) == hashlib.sha256(b"").hexdigest()


def test_bytes_that_are_not_the_manifests_give_no_checksum() -> None:
    short = dict(STORE)
    short[CHUNKS[1][0]] = PARTS[1][:-1]
    with pytest.raises(checksums.NotVerified):
        checksums.sha256_of(PublicFile("a.bin", len(WHOLE), CHUNKS), short.__getitem__)
    with pytest.raises(checksums.NotVerified):  # the manifest's size disagrees with its chunks
        checksums.sha256_of(PublicFile("a.bin", len(WHOLE) + 1, CHUNKS), STORE.__getitem__)
    with pytest.raises(KeyError):  # the reader's own refusal (a missing chunk) passes through
        checksums.sha256_of(PublicFile("a.bin", len(WHOLE), CHUNKS), {}.__getitem__)


def test_file_key_names_the_content_not_the_path() -> None:
    assert checksums.file_key(CHUNKS) == checksums.file_key(tuple(CHUNKS))
    assert checksums.file_key(CHUNKS) != checksums.file_key(CHUNKS[:2])
    assert checksums.file_key(CHUNKS) != checksums.file_key(tuple(reversed(CHUNKS)))
    assert len(checksums.file_key(CHUNKS)) == 32


def test_pending_lists_each_content_once_smallest_first_and_skips_known_empty_and_failed() -> None:
    big = PublicFile("big", len(WHOLE), CHUNKS)
    small = PublicFile("small", 1, (CHUNKS[2],))
    mid = PublicFile("mid", CHUNKS[0][1], (CHUNKS[0],))
    empty = PublicFile("empty", 0, ())
    versions = [version("b1", big, empty), version("b2", small, PublicFile("same as big", len(WHOLE), CHUNKS)),
                version("b3", mid)]
    got = checksums.pending(versions, {})
    assert [f.path for _k, _v, f in got] == ["small", "mid", "big"]
    assert [v.id for _k, v, f in got if f.path == "big"] == ["b1"]
    known = {checksums.file_key(small.chunks): b"\0" * 32}
    assert [f.path for _k, _v, f in checksums.pending(versions, known, skip=[checksums.file_key(mid.chunks)])] \
        == ["big"]
    assert checksums.lookup(small, known) == "00" * 32
    assert checksums.lookup(big, known) is None
