"""The one form every signed record takes, and the field checks its schemas are made of.

A signed record is a canonical msgpack map with a `"type"`, a schema version `"v"`, an exact set
of fields, and an Ed25519 signature in `"sig"` over the same map without `"sig"`, in the domain
`"<type>/<v>"` (see keys.signing_bytes), so that a signature on one kind of record can never be
shown as another. Its id is the BLAKE3 digest of its full encoding, signature included: Ed25519
is deterministic, so one signed value has one id.

`SignedRecord` holds that form once: encoding with its size limit, id, CID, signing, verifying,
and decoding untrusted bytes (size first, then canonical form, then the exact field set, then the
fields' own checks, and the signature last, since it is the most expensive). A record type says
only what is its own: its type name, limits, fields, who signs, and how its fields map to values.
"""

from __future__ import annotations

import re
from dataclasses import fields as dataclass_fields
from functools import cached_property
from typing import Any, ClassVar, Self

import msgpack

from . import encoding, ids, keys
from .errors import DecodeError

MAX_UINT = 2**63 - 1

_LINE_BAD = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TEXT_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


# --- field checks ---------------------------------------------------------------------------------


def check_bytes(rec: str, name: str, value: object, size: int) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise DecodeError(f"{rec} field '{name}' must be {size} bytes")
    return value


def check_opt_bytes(rec: str, name: str, value: object, size: int) -> bytes | None:
    return None if value is None else check_bytes(rec, name, value, size)


def check_uint(rec: str, name: str, value: object, low: int = 0, high: int = MAX_UINT) -> int:
    if type(value) is not int:
        raise DecodeError(f"{rec} field '{name}' must be an integer")
    if not low <= value <= high:
        raise DecodeError(f"{rec} field '{name}' must be between {low} and {high}")
    return value


def has_control(value: str) -> bool:
    """Whether a one-line text holds a control character (or a lone surrogate)."""
    return _LINE_BAD.search(value) is not None


def check_line(rec: str, name: str, value: object, low: int, high: int) -> str:
    """A one-line text: no control characters at all."""
    if type(value) is not str:
        raise DecodeError(f"{rec} field '{name}' must be a string")
    if not low <= len(value) <= high:
        raise DecodeError(f"{rec} field '{name}' must be {low} to {high} characters long")
    if has_control(value):
        raise DecodeError(f"{rec} field '{name}' must not contain control characters")
    return value


def check_text(rec: str, name: str, value: object, high: int) -> str:
    """A multi-line text: tab, line feed and carriage return allowed, no other control character."""
    if type(value) is not str:
        raise DecodeError(f"{rec} field '{name}' must be a string")
    if len(value) > high:
        raise DecodeError(f"{rec} field '{name}' must be at most {high} characters long")
    if _TEXT_BAD.search(value):
        raise DecodeError(f"{rec} field '{name}' must not contain control characters other than newlines")
    return value


def as_tuple(rec: str, name: str, value: object) -> tuple[Any, ...]:
    if isinstance(value, tuple):
        return value
    if isinstance(value, list):
        return tuple(value)
    raise DecodeError(f"{rec} field '{name}' must be a list")


def short(value: object) -> str:
    """A value quoted in an error message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def exact_map(rec: str, what: str, value: object, fields: frozenset[str]) -> dict[str, Any]:
    """`value` as a map holding exactly `fields`."""
    if not isinstance(value, dict):
        raise DecodeError(f"{rec} {what} must be a map")
    missing = fields - set(value)
    if missing:
        raise DecodeError(f"{rec} {what} lacks field '{min(missing)}'")
    unknown = set(value) - fields
    if unknown:
        raise DecodeError(f"{rec} {what} has unknown field {short(min(unknown))}")
    return value


def open_map(data: object, rec: str, max_bytes: int, fields: frozenset[str], version: int) -> dict[str, Any]:
    """Decode canonical bytes into a map of type `rec`, schema `version`, with exactly `fields` besides."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"a {rec} record must be given as bytes")
    value = encoding.decode(bytes(data), max_bytes=max_bytes)
    if not isinstance(value, dict):
        raise DecodeError(f"a {rec} record must be a map")
    if value.get("type") != rec:
        raise DecodeError(f"record type is {short(value.get('type'))}, expected {rec!r}")
    if value.get("v") != version or type(value.get("v")) is not int:
        raise DecodeError(f"unsupported {rec} schema version {short(value.get('v'))}")
    exact_map(rec, "record", {k: None for k in value if k not in ("type", "v")}, fields)
    return value


def _map_header(count: int) -> bytes:
    return bytes([0x80 | count]) if count <= 15 else b"\xde" + count.to_bytes(2, "big")


def unsigned_bytes(data: bytes, value: dict[str, Any]) -> bytes:
    """The canonical encoding of `value` without "sig", cut out of its canonical encoding `data`.

    Re-encoding the map would cost as much as decoding it. Because `data` is canonical (keys
    in byte order, shortest forms), the entries after "sig" are a few scalars whose encoding we
    know; what lies between the map header and the "sig" entry is copied unchanged.
    """
    names = list(value)  # decoded from canonical bytes: already in key order
    after = names[names.index("sig") + 1:] if "sig" in value else []
    tail = b"".join(msgpack.packb(k, use_bin_type=True) + msgpack.packb(value[k], use_bin_type=True) for k in after)
    sig_entry = msgpack.packb("sig", use_bin_type=True) + msgpack.packb(value["sig"], use_bin_type=True)
    head = _map_header(len(value))
    end = len(data) - len(tail) - len(sig_entry)
    if not data.startswith(head) or data[end:end + len(sig_entry)] != sig_entry:
        raise DecodeError("record encoding is not laid out canonically")
    return _map_header(len(value) - 1) + data[len(head):end] + tail


# --- the record form ------------------------------------------------------------------------------


class SignedRecord:
    """Encoding, id, CID, signing, verification and decoding for a frozen dataclass of a record type.

    A subclass is a `@dataclass(frozen=True)` whose last field is `sig: bytes`, and it sets:
    `TYPE` (the map's "type" and the signature domain's name), `VERSION`, `MAX_BYTES`, `NAME` (how
    errors call it), and implements `signer` (the public key that must have signed) and `payload`
    (its fields as canonical values, without type, v and sig). It overrides `from_map` only when a
    field is not stored as itself (a nested record, a list of entries).
    """

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    MAX_BYTES: ClassVar[int]
    NAME: ClassVar[str]

    sig: bytes

    @classmethod
    def domain(cls) -> str:
        return f"{cls.TYPE}/{cls.VERSION}"

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclass_fields(cls))  # type: ignore[arg-type]

    def signer(self) -> bytes:
        raise NotImplementedError

    def payload(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Self:
        """The record from its decoded map (fields checked by the constructor)."""
        return cls(**{name: m[name] for name in cls.field_names()})

    # -- derived

    def signed_map(self) -> dict[str, Any]:
        """The signed map: everything but the signature."""
        return {"type": self.TYPE, "v": self.VERSION, **self.payload()}

    def to_dict(self) -> dict[str, Any]:
        """The canonical map, signature included (bytes stay bytes)."""
        return {**self.signed_map(), "sig": self.sig}

    @cached_property
    def _encoded(self) -> bytes:
        data = encoding.encode(self.to_dict())
        if len(data) > self.MAX_BYTES:
            raise DecodeError(f"{self.NAME} encoding is {len(data)} bytes, over the limit of {self.MAX_BYTES}")
        return data

    def encode(self) -> bytes:
        return self._encoded

    @cached_property
    def id(self) -> bytes:
        """BLAKE3 of the full encoding: the record's identity everywhere."""
        return ids.digest(self._encoded)

    @property
    def cid(self) -> str:
        return ids.cid_str(self.id)

    def verify(self) -> None:
        """Raise SignatureError unless `sig` is the signer's signature of this record."""
        keys.verify(self.signer(), self.domain(), encoding.encode(self.signed_map()), self.sig)

    # -- building

    @classmethod
    def sign(cls, key: keys.SigningKey, **values: Any) -> Self:
        """Build the record from `values` (every field but sig) and sign it with `key`; its size limit is
        enforced now, not at first use."""
        unsigned = cls(**{**values, "sig": bytes(keys.SIGNATURE_SIZE)})
        sig = key.sign(cls.domain(), encoding.encode(unsigned.signed_map()))
        signed = cls(**{**values, "sig": sig})
        signed._encoded  # noqa: B018
        return signed

    @classmethod
    def decode(cls, data: bytes, *, verify: bool = True) -> Self:
        """Parse and check a record from untrusted bytes; `verify=False` only for bytes already verified."""
        m = open_map(data, cls.TYPE, cls.MAX_BYTES, cls.field_names(), cls.VERSION)
        record = cls.from_map(m)
        raw = bytes(data)
        record.__dict__["_encoded"] = raw
        if verify:
            keys.verify(record.signer(), cls.domain(), unsigned_bytes(raw, m), record.sig)
        return record
