"""The retraction: a publisher's signed withdrawal of a dataset, all of its versions.

A retraction names one dataset id and is signed by the publisher's node key. A node accepts it only
for a dataset whose manifests it holds from that same publisher (`check_applies`): a key cannot
withdraw another publisher's dataset (a forged retraction), and the signature covers the dataset
id, so a retraction cannot be replayed onto another dataset. It is final: there is no "unretract",
and a second retraction of the same dataset changes nothing.

It travels like a manifest: on the announce topic (the gossip data is decoded by its `type`, see
`decode_gossip`) and with catalog sync (a `retractions` request on /communs/sync/1, protocol/README.md
section 5.6), so a node that was offline when it was gossiped learns it at its next sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import encoding, keys
from .errors import DecodeError
from .ids import DIGEST_SIZE
from .records import ANNOUNCE_MAX_AGE, ANNOUNCE_MAX_SKEW, MAX_ANNOUNCE_BYTES, Announcement, StaleError
from .signed import SignedRecord, check_bytes, check_line, check_uint

RETRACTION_TYPE = "retract"
RETRACTION_VERSION = 1
RETRACTION_DOMAIN = "retract/1"
MAX_RETRACTION_BYTES = 1024
MAX_REASON_CHARS = 200


class UnknownDataset(DecodeError):
    """A retraction of a dataset none of whose manifests is held here: not applied now (the manifests may
    come later, and the retraction with them at a later catalog sync); not a fault of the sender."""


@dataclass(frozen=True)
class Retraction(SignedRecord):
    """`publisher` withdraws every version of `dataset`, for `reason` (may be empty), at `created`."""

    TYPE = RETRACTION_TYPE
    VERSION = RETRACTION_VERSION
    MAX_BYTES = MAX_RETRACTION_BYTES
    NAME = "retraction"

    dataset: bytes
    publisher: bytes
    reason: str
    created: int
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        r = "retraction"
        check_bytes(r, "dataset", self.dataset, DIGEST_SIZE)
        check_bytes(r, "publisher", self.publisher, keys.PUBLIC_KEY_SIZE)
        check_line(r, "reason", self.reason, 0, MAX_REASON_CHARS)
        check_uint(r, "created", self.created)
        check_bytes(r, "sig", self.sig, keys.SIGNATURE_SIZE)

    @classmethod
    def create(cls, key: keys.SigningKey, *, dataset: bytes, reason: str, created: int) -> Retraction:
        """Sign the withdrawal of `dataset` by `key`'s node (its publisher)."""
        return cls.sign(key, dataset=dataset, publisher=key.public, reason=reason, created=created)

    def signer(self) -> bytes:
        return self.publisher

    def payload(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "publisher": self.publisher, "reason": self.reason,
                "created": self.created}


def check_applies(retraction: Retraction, dataset_publisher: bytes | None) -> None:
    """Raise DecodeError unless `retraction` may withdraw its dataset here, where the dataset is bound to
    `dataset_publisher` (the publisher of the manifests held for it; None when none is held)."""
    if dataset_publisher is None:
        raise UnknownDataset("the retracted dataset is not known here")
    if dataset_publisher != retraction.publisher:
        raise DecodeError("the retraction is signed by another key than the dataset's publisher")


def check_fresh_retraction(retraction: Retraction, now: int, max_age: int = ANNOUNCE_MAX_AGE,
                           max_skew: int = ANNOUNCE_MAX_SKEW) -> None:
    """Gossip relays only fresh retractions (as announcements): older ones travel by catalog sync."""
    if retraction.created > now + max_skew:
        raise StaleError(f"retraction is dated {retraction.created - now} s in the future")
    if retraction.created < now - max_age:
        raise StaleError(f"retraction is {now - retraction.created} s old, over the gossip limit of {max_age} s")


def gossip_type(data: bytes) -> str:
    """The `type` of a gossip message's record (decoded canonically, size checked first)."""
    if len(data) > max(MAX_ANNOUNCE_BYTES, MAX_RETRACTION_BYTES):
        raise DecodeError(f"gossip record is {len(data)} bytes, over {MAX_ANNOUNCE_BYTES}")
    value = encoding.decode(bytes(data), max_bytes=max(MAX_ANNOUNCE_BYTES, MAX_RETRACTION_BYTES))
    if not isinstance(value, dict):
        raise DecodeError("a gossip record must be a map")
    kind = value.get("type")
    if kind not in ("announce", RETRACTION_TYPE):
        raise DecodeError(f"gossip record type {str(kind)[:40]!r} is neither 'announce' nor 'retract'")
    return str(kind)


def decode_gossip(data: bytes) -> Announcement | Retraction:
    """One gossip message's record, decoded and verified by its type."""
    return Retraction.decode(data) if gossip_type(data) == RETRACTION_TYPE else Announcement.decode(data)
