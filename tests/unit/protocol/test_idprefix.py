"""Prefixes of id text map to exactly the digests whose id starts with them."""

from __future__ import annotations

import os

import pytest
from communs.protocol import idprefix, ids
from communs.protocol.errors import DecodeError


def test_a_full_id_names_exactly_its_digest() -> None:
    for _ in range(50):
        d = os.urandom(32)
        assert idprefix.digest_range(ids.cid_str(d)) == (d, d)


@pytest.mark.parametrize("length", [8, 9, 12, 16, 30, 58])
def test_every_digest_in_the_range_starts_with_the_prefix_and_its_ends_are_tight(length: int) -> None:
    for _ in range(30):
        d = os.urandom(32)
        prefix = ids.cid_str(d)[:length]
        low, high = idprefix.digest_range(prefix)
        assert low <= d <= high
        assert ids.cid_str(low).startswith(prefix) and ids.cid_str(high).startswith(prefix)
        below = int.from_bytes(low, "big") - 1
        above = int.from_bytes(high, "big") + 1
        if below >= 0:
            assert not ids.cid_str(below.to_bytes(32, "big")).startswith(prefix)
        if above < 1 << 256:
            assert not ids.cid_str(above.to_bytes(32, "big")).startswith(prefix)


def test_the_ellipsis_of_a_shortened_id_spaces_and_capitals_are_ignored() -> None:
    d = os.urandom(32)
    short = ids.cid_str(d)[:16]
    assert idprefix.digest_range(short + "\u2026") == idprefix.digest_range(short)
    assert idprefix.digest_range(f"  {short.upper()}... ") == idprefix.digest_range(short)


@pytest.mark.parametrize(("text", "words"), [
    ("bafkr4i", "at least 8"),
    ("bafkr4ia" + "a" * 60, "59 characters"),
    ("xafkr4iaaaaa", "starts with 'b'"),
    ("bafkr4i1aaaa", "a-z and 2-7"),
    ("baaaaaaaaaaa", "not the beginning of a Communs id"),
    ("12D3KooWA4Xop1JaT3MHxwYMkCep", "starts with 'b'"),
])
def test_what_cannot_begin_an_id_is_refused_in_one_sentence(text: str, words: str) -> None:
    with pytest.raises(DecodeError, match=words):
        idprefix.digest_range(text)
