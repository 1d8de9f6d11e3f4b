"""What catalog sync and announcement checks read of a manifest record before it is verified (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import msgpack
from communs.protocol.errors import DecodeError
from communs.protocol.ids import digest


@dataclass(frozen=True)
class RecordFacts:
    """What catalog sync and announcement checks need of a record, read without verifying it (the
    datasets service verifies everything before storing)."""

    id: bytes
    publisher: bytes
    seq: int
    log_prev: bytes | None
    dataset: bytes
    size: int


def record_facts(raw: bytes) -> RecordFacts:
    """Cheap structural read of a manifest record; DecodeError if it is not even shaped like one."""
    try:
        m = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except Exception as exc:
        raise DecodeError(f"record is not msgpack: {exc}") from None
    if not isinstance(m, dict):
        raise DecodeError("record is not a map")
    pub, seq, prev, ds, size = (m.get(k) for k in ("publisher", "seq", "log_prev", "dataset", "size"))
    if type(pub) is not bytes or len(pub) != 32 or type(seq) is not int or seq < 1 \
            or not (prev is None or (type(prev) is bytes and len(prev) == 32)) \
            or type(ds) is not bytes or len(ds) != 32 or type(size) is not int:
        raise DecodeError("record lacks a valid publisher, seq, log_prev, dataset or size")
    return RecordFacts(digest(raw), pub, seq, prev, ds, size)
