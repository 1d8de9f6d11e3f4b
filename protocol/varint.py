"""Unsigned LEB128 varints, shortest form: the length prefix of every frame and of every exported log entry.

(The wire's FrameReader decodes its prefixes itself, across the pieces a stream delivers, without joining
them; it applies the same rules: shortest form, bounded length.)
"""

from __future__ import annotations

MAX_BYTES = 9  # 63 bits: more than any length this project accepts


def encode(n: int) -> bytes:
    """Unsigned LEB128, shortest form."""
    if n < 0:
        raise ValueError("a varint is unsigned")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode(data: bytes, pos: int = 0, max_bytes: int = MAX_BYTES) -> tuple[int, int]:
    """The varint at `data[pos:]` and the position after it.

    ValueError if it is cut off, longer than `max_bytes`, or not in its shortest form.
    """
    value = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            raise ValueError("the length prefix is cut off")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise ValueError("the length prefix is not minimally encoded")
            return value, pos + i + 1
    raise ValueError("the length prefix is too long")
