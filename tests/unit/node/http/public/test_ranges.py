from __future__ import annotations

import pytest
from communs.node.http.public.ranges import ByteRange, Unsatisfiable, parse_range


@pytest.mark.parametrize("header,expected", [
    ("bytes=0-0", (0, 0)), ("bytes=10-19", (10, 19)), ("bytes=90-", (90, 99)), ("bytes=-5", (95, 99)),
    ("bytes=-500", (0, 99)), ("bytes=50-5000", (50, 99)), ("BYTES = 1 - 2", (1, 2)),
])
def test_single_ranges(header: str, expected: tuple[int, int]) -> None:
    r = parse_range(header, 100)
    assert r is not None and (r.start, r.end) == expected and r.size == 100


@pytest.mark.parametrize("header", [None, "", "bytes", "bytes=", "bytes=-", "items=0-1", "bytes=a-b", "bytes=5-1",
                                    "bytes=0-1,5-6", "bytes=0-1, 2-3", "bytes=1-2;x", "x" * 5000,
                                    "bytes=99999999999999999999-"])
def test_malformed_or_multiple_ranges_are_ignored(header: str | None) -> None:
    assert parse_range(header, 100) is None


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, 100)


def test_empty_file_any_range_is_unsatisfiable() -> None:
    with pytest.raises(Unsatisfiable):
        parse_range("bytes=0-", 0)


def test_content_range() -> None:
    assert ByteRange(5, 9, 10).content_range() == "bytes 5-9/10"
    assert ByteRange(5, 9, 10).length == 5
