"""Content identifiers: BLAKE3-256 digests, written as CIDv1 so other tools can read them.

Inside records a digest travels as its 32 raw bytes; text (API, CLI, logs) uses the CIDv1
string: multibase base32 (`b`), version 1, codec raw (0x55), multihash blake3 (0x1e), 32 bytes.
"""

from __future__ import annotations

import base64

import blake3

from .errors import DecodeError

DIGEST_SIZE = 32
_CID_PREFIX = bytes([0x01, 0x55, 0x1E, 0x20])


def digest(data: bytes | bytearray | memoryview) -> bytes:
    """BLAKE3-256 of `data`."""
    return blake3.blake3(data).digest()


def cid_str(raw: bytes) -> str:
    """The CIDv1 text of a 32-byte BLAKE3 digest."""
    if len(raw) != DIGEST_SIZE:
        raise DecodeError("a digest is 32 bytes")
    return "b" + base64.b32encode(_CID_PREFIX + raw).decode("ascii").lower().rstrip("=")


def parse_cid(text: str) -> bytes:
    """The 32-byte digest named by a CIDv1 string; DecodeError for anything else."""
    if not isinstance(text, str) or not text.startswith("b") or len(text) > 100:
        raise DecodeError("not a Communs id (expected a base32 CIDv1 starting with 'b')")
    body = text[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as exc:
        raise DecodeError("not a Communs id (bad base32)") from exc
    if len(raw) != len(_CID_PREFIX) + DIGEST_SIZE or not raw.startswith(_CID_PREFIX):
        raise DecodeError("not a Communs id (expected CIDv1, raw codec, blake3-256 multihash)")
    if cid_str(raw[len(_CID_PREFIX):]) != text:
        raise DecodeError("not a Communs id (non-canonical text)")
    return raw[len(_CID_PREFIX):]
