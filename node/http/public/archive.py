"""A whole dataset version as one streamed tar, laid out in advance without I/O.

The layout (every member's header, then its bytes, then zero padding to 512, then two zero blocks) is
computed from the manifest alone, so the answer has an exact `Content-Length` before the first chunk is
read, and the bytes themselves stream chunk by chunk like any download (flat memory). Headers are POSIX
pax, so non-ASCII and long paths survive; every member is a regular file, mode 0644, owned by nobody in
particular, with the version's creation time.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

from communs.node.http.public.files import PublicFile

BLOCK = 512
END = b"\0" * (2 * BLOCK)


@dataclass(frozen=True)
class Member:
    header: bytes
    file: PublicFile
    padding: int


def layout(files: Sequence[PublicFile], mtime: int) -> tuple[list[Member], int]:
    """The members of the tar and its total length in bytes."""
    members: list[Member] = []
    total = 0
    for f in files:
        info = tarfile.TarInfo(f.path)
        info.size = f.size
        info.mtime = mtime
        info.mode = 0o644
        info.type = tarfile.REGTYPE
        header = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")
        padding = -f.size % BLOCK
        members.append(Member(header, f, padding))
        total += len(header) + f.size + padding
    return members, total + len(END)


__all__ = ["END", "Member", "layout"]
