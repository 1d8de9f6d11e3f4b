"""The `Range` header of a download (RFC 9110, section 14), decided without I/O.

Only single byte ranges are served. A header that is not a byte-range set at all, or that asks for
several ranges, is *ignored* as RFC 9110 allows, and the whole file is answered with 200: no
multipart answers, so a client can never make the node assemble many pieces of a file in one
request. A well-formed single range that starts past the end is unsatisfiable: 416 with
`Content-Range: bytes */SIZE`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*bytes\s*=\s*(.*)$", re.IGNORECASE)
_ONE = re.compile(r"^\s*(\d{0,19})\s*-\s*(\d{0,19})\s*$")
MAX_HEADER = 1024


@dataclass(frozen=True)
class ByteRange:
    """Bytes `start` to `end` inclusive of a file of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class Unsatisfiable(Exception):
    """A single, well-formed range that selects no byte of the file: 416."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range to serve, or None to serve the whole file; Unsatisfiable for a 416."""
    if header is None or len(header) > MAX_HEADER:
        return None
    m = _SPEC.match(header)
    if m is None:
        return None
    parts = m.group(1).split(",")
    if len(parts) != 1:
        return None
    one = _ONE.match(parts[0])
    if one is None:
        return None
    first, last = one.group(1), one.group(2)
    if not first and not last:
        return None
    if not first:  # suffix range: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - n), size - 1, size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid syntax per RFC 9110: ignored
    if start >= size:
        raise Unsatisfiable
    return ByteRange(start, min(end, size - 1), size)


__all__ = ["ByteRange", "Unsatisfiable", "parse_range"]
