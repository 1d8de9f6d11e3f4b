"""Canonical msgpack: one value, one encoding, and nothing else accepted.

Signatures and content ids are computed over bytes, so two nodes must agree on the bytes
of a value. Rather than a hand-written canonical encoder and a matching validator, we
encode with msgpack's packer (which always picks the shortest integer and length forms),
sort map keys, and on decoding re-encode the value and require the very same bytes. That
single comparison rejects unsorted or duplicate keys, over-long integer forms, str/bin
confusion and trailing bytes, without a second grammar to keep in step.

Values allowed: None, bool, int (64-bit), str, bytes, list, and maps with str keys.
Floats and extension types are refused: they have several encodings of one value.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import DecodeError

MAX_RECORD_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 16
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def _canonical(value: Any, depth: int) -> Any:
    """Check that `value` has a canonical form and return it with every map's keys sorted (one pass:
    this runs on every record a node receives)."""
    if depth > MAX_DEPTH:
        raise DecodeError("value is nested too deeply")
    t = type(value)
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise DecodeError("integer out of 64-bit range")
        return value
    if t is dict:
        out = {}
        for key in sorted(value, key=_key_bytes):
            out[key] = _canonical(value[key], depth + 1)
        return out
    if t is list or t is tuple:
        return [_canonical(item, depth + 1) for item in value]
    # subclasses (IntEnum, StrEnum, bytes subclasses...): encoded as their plain value
    for base, plain in _PLAIN:
        if isinstance(value, base):
            return _canonical(plain(value), depth)
    raise DecodeError(f"type {type(value).__name__} cannot be encoded canonically")


_PLAIN: tuple[tuple[type, Any], ...] = (
    (bool, bool), (int, int.__index__), (str, str.__str__), (bytes, bytes), (dict, dict), (list, list),
    (tuple, list),
)


def _key_bytes(key: Any) -> bytes:
    if type(key) is not str:
        raise DecodeError("map keys must be strings")
    return key.encode()


def encode(value: Any) -> bytes:
    """Encode `value` canonically; raises DecodeError for values with no canonical form."""
    out: bytes = msgpack.packb(_canonical(value, 0), use_bin_type=True)
    return out


def decode(data: bytes, max_bytes: int = MAX_RECORD_BYTES) -> Any:
    """Decode canonical bytes; anything not byte-for-byte canonical raises DecodeError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise DecodeError(f"encoding is {len(data)} bytes, over the limit of {max_bytes}")
    if not data:
        raise DecodeError("empty input")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=max_bytes,
            max_ext_len=0,
        )
    except msgpack.ExtraData as exc:
        raise DecodeError("trailing bytes after the value") from exc
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        raise DecodeError(f"not valid msgpack: {exc}") from exc
    # The same rule as `encode`, checked without building a sorted copy (this runs on every record a node
    # receives: a third of the time of decoding a manifest went to the copy): the value's maps must already
    # be in key order and hold only allowed types; then msgpack's packer, which keeps that order, must give
    # back the very same bytes (shortest forms, str/bin, no duplicate keys, nothing trailing).
    _check_decoded(value, 0)
    if msgpack.packb(value, use_bin_type=True) != data:
        raise DecodeError("encoding is not canonical")
    return value


def _check_decoded(value: Any, depth: int) -> None:
    """Raise DecodeError unless a freshly unpacked value has only allowed types and sorted map keys."""
    if depth > MAX_DEPTH:
        raise DecodeError("value is nested too deeply")
    t = type(value)
    if t is dict:
        previous = b""
        for n, (key, item) in enumerate(value.items()):
            if type(key) is not str:
                raise DecodeError("map keys must be strings")
            kb = key.encode()
            if n and kb <= previous:
                raise DecodeError("encoding is not canonical")
            previous = kb
            if type(item) in _CONTAINERS:
                _check_decoded(item, depth + 1)
            elif type(item) not in _SCALARS:
                raise DecodeError(f"type {type(item).__name__} cannot be encoded canonically")
    elif t is list:
        for item in value:
            if type(item) in _CONTAINERS:
                _check_decoded(item, depth + 1)
            elif type(item) not in _SCALARS:
                raise DecodeError(f"type {type(item).__name__} cannot be encoded canonically")
    elif t not in _SCALARS:
        raise DecodeError(f"type {t.__name__} cannot be encoded canonically")


# What msgpack's unpacker can hand back that a canonical value may hold (its ints are always in range).
_SCALARS = frozenset({str, bytes, bool, int, type(None)})
_CONTAINERS = frozenset({dict, list})
