"""The one varint codec: shortest form both ways, bounded length."""

from __future__ import annotations

import pytest
from communs.protocol import varint
from hypothesis import given
from hypothesis import strategies as st


@given(st.integers(0, 2**63 - 1))
def test_round_trip(n: int) -> None:
    data = varint.encode(n) + b"rest"
    assert varint.decode(data) == (n, len(data) - 4)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "cut off"),
    (b"\x80", "cut off"),
    (b"\x80\x00", "minimally"),
    (b"\xff" * 9 + b"\x01", "too long"),
])
def test_refuses_bad_prefixes(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        varint.decode(data)


def test_negative_refused() -> None:
    with pytest.raises(ValueError):
        varint.encode(-1)
