"""Which digests a prefix of an id's text form can name: the digest range behind `bafkr4i...`.

People copy ids by hand and tools print them shortened (`communs status` shows 16 characters and
an ellipsis), so a prefix of the CIDv1 text (ids.py) is accepted wherever an id is. Every Communs id
starts with the same 7 characters (`b` + the base32 of the CID header 0x01 0x55 0x1e 0x20), so a
prefix of at least 8 characters (MIN_PREFIX_CHARS) names at least 3 bits of the digest.

The text of a prefix maps to one contiguous range of 32-byte digests, so a catalog finds the
candidates with a range query on its id column, whatever its size.
"""

from __future__ import annotations

from .errors import DecodeError

MIN_PREFIX_CHARS = 8
FULL_CHARS = 59  # "b" + 58 base32 characters for the 36 bytes of header and digest
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_HEADER = 0x01551E20  # CID version 1, codec raw, multihash blake3, length 32
_BITS = (FULL_CHARS - 1) * 5  # 290: 288 bits of header and digest, then 2 zero bits
_ELLIPSES = ("\u2026", "...")


def clean(text: str) -> str:
    """The prefix as typed, without surrounding spaces or the ellipsis a shortened id is printed with."""
    text = text.strip()
    for tail in _ELLIPSES:
        if text.endswith(tail):
            text = text[: -len(tail)]
    return text.lower()


def digest_range(text: str) -> tuple[bytes, bytes]:
    """The lowest and highest 32-byte digests whose id text starts with `text` (after `clean`).

    DecodeError with one sentence when `text` is shorter than MIN_PREFIX_CHARS, longer than an id,
    not base32, or cannot begin any Communs id."""
    prefix = clean(text)
    if not prefix.startswith("b"):
        raise DecodeError("an id starts with 'b' (a base32 CIDv1, e.g. bafkr4i...)")
    if len(prefix) < MIN_PREFIX_CHARS:
        raise DecodeError(f"an id prefix needs at least {MIN_PREFIX_CHARS} characters")
    if len(prefix) > FULL_CHARS:
        raise DecodeError(f"an id has {FULL_CHARS} characters, this has {len(prefix)}")
    value = 0
    for ch in prefix[1:]:
        pos = _ALPHABET.find(ch)
        if pos < 0:
            raise DecodeError(f"an id holds only the characters a-z and 2-7, not {ch!r}")
        value = (value << 5) | pos
    free = _BITS - 5 * (len(prefix) - 1)
    low = (value << free) >> 2
    high = ((value << free) | ((1 << free) - 1)) >> 2
    first, last = _HEADER << 256, (_HEADER << 256) | ((1 << 256) - 1)
    low, high = max(low, first), min(high, last)
    if low > high:
        raise DecodeError("this is not the beginning of a Communs id (they start with 'bafkr4i')")
    return (low - first).to_bytes(32, "big"), (high - first).to_bytes(32, "big")
