"""Pure facts about a publish: whether it repeats a version already published, and what it stored.

Both are decided from plain data (file entries, chunk sizes), so that they are unit-tested without a
node: the datasets service only gathers the entries and calls these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from communs.node.jsondoc import JsonDict
from communs.protocol.records import FileEntry


def same_content(a: Sequence[FileEntry], b: Sequence[FileEntry]) -> bool:
    """Whether two file lists hold the same files (paths, sizes and bytes, by their chunks), in any order."""
    def key(files: Sequence[FileEntry]) -> list[tuple[str, int, tuple[bytes, ...]]]:
        return sorted((f.path, f.size, tuple(c.digest for c in f.chunks)) for f in files)

    return len(a) == len(b) and key(a) == key(b)


@dataclass(frozen=True)
class Stored:
    """What one publish stored: its files and bytes, the chunks it wrote anew, and the bytes it did not
    write because they were already stored (in an earlier dataset, or earlier in the same one)."""

    files: int
    bytes: int
    chunks: int
    new_chunks: int
    new_bytes: int

    @property
    def deduplicated_bytes(self) -> int:
        return self.bytes - self.new_bytes

    def to_json(self) -> JsonDict:
        return {"files": self.files, "bytes": self.bytes, "chunks": self.chunks, "new_chunks": self.new_chunks,
                "new_bytes": self.new_bytes, "deduplicated_bytes": self.deduplicated_bytes}

    def sentence(self) -> str:
        return (f"stored {self.files} file(s), {self.bytes} bytes: {self.new_chunks} new chunk(s) of "
                f"{self.chunks} ({self.new_bytes} bytes written), {self.deduplicated_bytes} bytes deduplicated")


def stored_report(entries: Sequence[FileEntry], sizes: Mapping[bytes, int], created: Iterable[bytes]) -> Stored:
    """The report of a publish of `entries`, given the sizes of its distinct chunks and the digests of
    those it wrote anew (`created`; repeats ignored)."""
    new = set(created) & set(sizes)
    return Stored(files=len(entries), bytes=sum(f.size for f in entries), chunks=len(sizes),
                  new_chunks=len(new), new_bytes=sum(sizes[d] for d in new))
