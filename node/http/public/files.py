"""Which bytes a public request names, decided without I/O: ids, file paths, chunk plans, headers.

A file is found only by looking its path up, exactly, among the manifest's entries: nothing that is
not a key of that table can ever be served, whatever the URL's encoding. Paths that *look* like an
escape (`..`, a backslash, NUL, an absolute path) are refused with a sentence before the lookup, so
an attempt is answered 400 and logged as one, not as a mere 404.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

import blake3

_ID_TEXT = re.compile(r"^b[a-z2-7]{7,99}$")
MIN_PREFIX = 8
MAX_PATH = 4096


@dataclass(frozen=True)
class PublicFile:
    path: str
    size: int
    chunks: tuple[tuple[bytes, int], ...]  # (digest, size) in file order


@dataclass(frozen=True)
class PublicVersion:
    """One dataset version the public face may serve, as plain data (built from the catalog by app.py)."""

    id: str
    dataset: str
    version: int
    title: str
    description: str
    keywords: tuple[str, ...]
    licence: str
    publisher: str  # the publisher's peer id
    created: int  # unix seconds
    size: int
    files: tuple[PublicFile, ...]
    prev: str | None = None
    state: str = "own"


class Refused(Exception):
    """A request the public face answers with `status` and this one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def resolve_id(text: str, versions: Sequence[PublicVersion]) -> PublicVersion:
    """The version named by a manifest id, a dataset id (its latest public version), or a unique prefix of
    at least 8 characters of either; Refused(400) for text that is no id, (404) unknown, (409) ambiguous."""
    if not _ID_TEXT.match(text):
        raise Refused(400, "a dataset or version id is a base32 CID starting with 'b' (at least 8 characters)")
    exact = [v for v in versions if v.id == text]
    if exact:
        return exact[0]
    by_dataset = [v for v in versions if v.dataset == text]
    if by_dataset:
        return max(by_dataset, key=lambda v: v.version)
    hits = {v.id: v for v in versions if v.id.startswith(text)}
    datasets = {v.dataset for v in versions if v.dataset.startswith(text)}
    for d in datasets:
        latest = max((v for v in versions if v.dataset == d), key=lambda v: v.version)
        hits.setdefault(latest.id, latest)
    if len(hits) == 1:
        return next(iter(hits.values()))
    if len(hits) > 1:
        raise Refused(409, f"the prefix '{text}' is ambiguous: it matches {', '.join(sorted(hits)[:5])}")
    raise Refused(404, "no public dataset has that id")


def resolve_file(version: PublicVersion, path: str) -> PublicFile:
    """The manifest entry at `path` (already percent-decoded once by the router), or Refused."""
    if not path or len(path) > MAX_PATH:
        raise Refused(400, "the file path is empty or too long")
    for entry in version.files:  # an exact entry of the manifest is safe by construction, whatever it looks like
        if entry.path == path:
            return entry
    if _looks_escaping(path) or _looks_escaping(urllib.parse.unquote(path)):
        raise Refused(400, "the file path must be a path of the dataset's manifest, without '..', '.', "
                           "empty segments or backslashes")
    raise Refused(404, "this dataset version has no file at that path")


def _looks_escaping(decoded: str) -> bool:
    """A path that escapes or would once decoded again (`%2e%2e`, `%2f`, `%5c` sent double-encoded)."""
    return "\\" in decoded or "\x00" in decoded or decoded.startswith("/") or \
        any(s in ("", ".", "..") for s in decoded.split("/"))


def chunk_plan(chunks: Sequence[tuple[bytes, int]], start: int, end: int) -> list[tuple[bytes, int, int]]:
    """The chunks holding bytes `start`..`end` (inclusive), as (digest, skip, take) in order."""
    out: list[tuple[bytes, int, int]] = []
    offset = 0
    for digest, size in chunks:
        lo, hi = offset, offset + size - 1
        offset += size
        if size == 0 or hi < start:
            continue
        if lo > end:
            break
        skip = max(0, start - lo)
        take = min(hi, end) - (lo + skip) + 1
        out.append((digest, skip, take))
    return out


def etag(entry: PublicFile) -> str:
    """A strong ETag from the file's chunk list: the same bytes have the same ETag in every version."""
    h = blake3.blake3()
    for digest, size in entry.chunks:
        h.update(digest)
        h.update(size.to_bytes(8, "big"))
    return '"' + h.hexdigest()[:32] + '"'


def content_disposition(path: str, inline: bool = False) -> str:
    """`attachment; filename=...` with an ASCII fallback and the exact UTF-8 name (RFC 6266)."""
    name = path.rsplit("/", 1)[-1]
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;%' else "_" for c in name) or "download"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"


def content_type(path: str) -> str:
    import mimetypes

    kind, encoding = mimetypes.guess_type(path, strict=False)
    if kind is None or encoding is not None:  # data.csv.gz is gzip bytes, not CSV text
        return {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}.get(
            encoding or "", "application/octet-stream")
    return kind


__all__ = ["PublicFile", "PublicVersion", "Refused", "chunk_plan", "content_disposition", "content_type", "etag",
           "resolve_file", "resolve_id"]
