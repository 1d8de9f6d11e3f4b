"""Whole-file SHA-256 for the public export's `spdx:checksum`, from bytes verified chunk by chunk.

A manifest states each chunk's BLAKE3, not the whole file's hash, and DCAT-AP allows one checksum per
distribution; harvesters and people check files with `sha256sum`. So the node computes each public
file's SHA-256 once, from its stored chunks, each read back and verified against its hash (the chunk
store's `get` refuses bytes that do not hash to their id), and keeps it in the catalog (`file_sha256`)
under the file's `file_key`. A file whose chunks cannot all be read and verified gets no checksum (it is
tried again later): the export never states a checksum for bytes not verified.

The decisions here are pure: which files still need a checksum, and the hashing over a `read` function.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

import blake3
from communs.node.http.public.files import PublicFile, PublicVersion

EMPTY_SHA256 = hashlib.sha256(b"").digest()  # an empty file's, known without reading anything


class NotVerified(Exception):
    """The bytes read for a file are not the manifest's: no checksum may be stated."""


def file_key(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """The 32-byte key of a file's content: BLAKE3 over its chunk digests and sizes, in order. Chunk ids
    are hashes of their bytes, so the same key means the same bytes, in every version and dataset."""
    h = blake3.blake3()
    for digest, size in chunks:
        h.update(digest)
        h.update(size.to_bytes(8, "big"))
    return h.digest()


def sha256_of(entry: PublicFile, read: Callable[[bytes], bytes]) -> bytes:
    """The SHA-256 of `entry`'s bytes, its chunks read in order with `read` (which must verify each chunk
    against its digest, as ChunkStore.get does); NotVerified when a chunk's length or the total is not
    what the manifest states. `read`'s own errors (missing, corrupt) pass through."""
    if entry.size == 0:
        return EMPTY_SHA256
    h = hashlib.sha256()
    total = 0
    for digest, size in entry.chunks:
        data = read(digest)
        if len(data) != size:
            raise NotVerified(f"a chunk of {entry.path} has {len(data)} bytes where the manifest says {size}")
        h.update(data)
        total += size
    if total != entry.size:
        raise NotVerified(f"the chunks of {entry.path} add up to {total} bytes, not {entry.size}")
    return h.digest()


def pending(versions: Iterable[PublicVersion], known: Mapping[bytes, bytes] | set[bytes],
            skip: Iterable[bytes] = ()) -> list[tuple[bytes, PublicVersion, PublicFile]]:
    """The files of `versions` whose checksum is not known yet, each content once, as (file_key, version,
    file): smallest first, so that many small files are listed soon and one huge file does not hold them
    back. Empty files need no computing (EMPTY_SHA256); keys in `skip` (failed recently) wait."""
    waiting = set(skip)
    out: dict[bytes, tuple[bytes, PublicVersion, PublicFile]] = {}
    for v in versions:
        for f in v.files:
            if f.size == 0:
                continue
            key = file_key(f.chunks)
            if key in known or key in waiting or key in out:
                continue
            out[key] = (key, v, f)
    return sorted(out.values(), key=lambda t: (t[2].size, t[0]))


def lookup(entry: PublicFile, known: Mapping[bytes, bytes]) -> str | None:
    """The lower-case hex SHA-256 to state for `entry`, or None while it is not computed from verified
    bytes."""
    if entry.size == 0:
        return EMPTY_SHA256.hex()
    found = known.get(file_key(entry.chunks))
    return found.hex() if found is not None else None


__all__ = ["EMPTY_SHA256", "NotVerified", "file_key", "lookup", "pending", "sha256_of"]
