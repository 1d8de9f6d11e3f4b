from __future__ import annotations

from communs.node.services.publish_report import same_content, stored_report
from communs.protocol.ids import digest
from communs.protocol.records import FileEntry


def c(n: int, size: int = 10) -> tuple[bytes, int]:
    return digest(b"%d" % n), size


def test_same_content_compares_paths_sizes_and_chunks_in_any_order() -> None:
    a = [FileEntry.of("x", [c(1), c(2)]), FileEntry.of("y", [])]
    assert same_content(a, list(reversed(a)))
    assert not same_content(a, [FileEntry.of("x", [c(1), c(2)])])  # a file less
    assert not same_content(a, [FileEntry.of("x", [c(2), c(1)]), FileEntry.of("y", [])])  # other bytes
    assert not same_content(a, [FileEntry.of("z", [c(1), c(2)]), FileEntry.of("y", [])])  # renamed
    assert same_content([], [])


def test_stored_report_counts_new_chunks_once_and_the_rest_as_deduplicated() -> None:
    files = [FileEntry.of("a", [c(1), c(2), c(1)]), FileEntry.of("b", [c(3, 5)])]
    sizes = dict([c(1), c(2), c(3, 5)])
    r = stored_report(files, sizes, [c(2)[0], c(2)[0], digest(b"not in this publish")])
    assert (r.files, r.bytes, r.chunks, r.new_chunks, r.new_bytes) == (2, 35, 3, 1, 10)
    assert r.deduplicated_bytes == 25  # chunk 1 twice in a, stored before; chunk 3 stored before
    assert "1 new chunk(s) of 3" in r.sentence() and r.to_json()["deduplicated_bytes"] == 25
