"""Codec and per-peer limits of `/communs/governance/1`, without any I/O (protocol/README.md 5.6).

Framing is that of the other Communs stream protocols (wire.py): an unsigned LEB128 length, then
one canonical msgpack map whose `"t"` names the message, with exactly the fields listed for it.
Requests are small (at most a signed proposal plus a few bytes); answers carry signed records
as their bytes, so that the client verifies every signature itself and trusts the node for
nothing but availability.

`PeerRate` is the per-peer request budget (a sliding minute), a pure decision over `now`.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from . import encoding, ids, varint
from .errors import DecodeError

GOVERNANCE_PROTOCOL = "/communs/governance/1"

MAX_RECORD_BYTES = 512 * 1024  # the largest governance record a member signs (a proposal)
MAX_REQUEST_FRAME = MAX_RECORD_BYTES + 1024
MAX_ANSWER_FRAME = 16 * 1024 * 1024 + 4096
LIST_ANSWER_BYTES = 8 * 1024 * 1024  # a list answer carries the newest proposals up to this many bytes
MAX_ERROR_CHARS = 500
ERROR_CODES = ("not-found", "bad-request", "busy", "too-large", "refused")
STATUSES = ("open", "passed", "rejected")

READS_PER_MINUTE = 120
SUBMITS_PER_MINUTE = 30
MAX_STREAMS_PER_PEER = 4
REQUEST_TIMEOUT = 10.0
STREAM_IDLE_TIMEOUT = 60.0
_MAX_VARINT_BYTES = 4

# request "t" -> exactly its fields besides "t"
REQUESTS: dict[str, frozenset[str]] = {
    "list": frozenset(),
    "get": frozenset(["id"]),
    "policy": frozenset(),
    "submit": frozenset(["record"]),
}
ANSWERS: dict[str, frozenset[str]] = {
    "proposals": frozenset(["items", "now"]),
    "proposal": frozenset(["record", "roster", "ballots", "tally", "status", "now"]),
    "policy": frozenset(["policy", "version", "proposal", "roster", "now"]),
    "receipt": frozenset(["receipt", "tally"]),
    "error": frozenset(["code", "msg"]),
}
ITEM_FIELDS = frozenset(["id", "kind", "summary", "opens", "closes", "tally", "status", "record"])


def frame(message: dict[str, Any]) -> bytes:
    payload = encoding.encode(message)
    return varint.encode(len(payload)) + payload


def error(code: str, msg: str) -> bytes:
    """An error answer frame; the message is cut to the protocol's limit."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    return frame({"t": "error", "code": code, "msg": msg[:MAX_ERROR_CHARS]})


def _check(m: object, table: dict[str, frozenset[str]], side: str) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise DecodeError("a message must be a map")
    t = m.get("t")
    wanted = table.get(t) if type(t) is str else None
    if wanted is None:
        raise DecodeError(f"unexpected {side} message type {t!r:.40} on {GOVERNANCE_PROTOCOL}")
    have = set(m) - {"t"}
    if have - wanted:
        raise DecodeError(f"'{t}' message has unknown field {min(have - wanted)!r:.40}")
    if wanted - have:
        raise DecodeError(f"'{t}' message lacks field '{min(wanted - have)}'")
    return m


def decode_request(payload: bytes) -> dict[str, Any]:
    """One request (payload without its length prefix), its fields checked."""
    m = _check(encoding.decode(payload, max_bytes=MAX_REQUEST_FRAME), REQUESTS, "request")
    if m["t"] == "get" and (type(m["id"]) is not bytes or len(m["id"]) != ids.DIGEST_SIZE):
        raise DecodeError("a get request's id must be 32 bytes")
    if m["t"] == "submit" and (type(m["record"]) is not bytes or not 1 <= len(m["record"]) <= MAX_RECORD_BYTES):
        raise DecodeError(f"a submitted record must be 1 to {MAX_RECORD_BYTES} bytes")
    return m


def decode_answer(payload: bytes) -> dict[str, Any]:
    """One answer, its message type and field set checked (the client checks the records inside)."""
    m = _check(encoding.decode(payload, max_bytes=MAX_ANSWER_FRAME), ANSWERS, "answer")
    if m["t"] == "error" and (m["code"] not in ERROR_CODES or type(m["msg"]) is not str):
        raise DecodeError("an error answer must have a known code and a text message")
    return m


class FrameReader:
    """Splits fed bytes into frame payloads; the length prefix is checked before any payload is read."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_payload(self) -> bytes | None:
        """The next whole payload, None until more bytes come; DecodeError on a bad or oversized prefix."""
        value = 0
        for i, byte in enumerate(self._buf[:_MAX_VARINT_BYTES]):
            value |= (byte & 0x7F) << (7 * i)
            if value > self.max_frame:
                raise DecodeError(f"frame is over the limit of {self.max_frame} bytes on {GOVERNANCE_PROTOCOL}")
            if not byte & 0x80:
                if byte == 0 and i > 0:
                    raise DecodeError("frame length is not in its shortest form")
                if value == 0:
                    raise DecodeError("empty frame")
                if len(self._buf) < i + 1 + value:
                    return None
                payload = bytes(self._buf[i + 1:i + 1 + value])
                del self._buf[:i + 1 + value]
                return payload
        if len(self._buf) >= _MAX_VARINT_BYTES:
            raise DecodeError("frame length prefix is too long")
        return None


@dataclass
class PeerRate:
    """Requests per peer in the last 60 s: reads and submissions budgeted apart (submissions cost a
    signature check and a write, reads only memory). Pure: the caller passes `now` (seconds)."""

    reads_per_minute: int = READS_PER_MINUTE
    submits_per_minute: int = SUBMITS_PER_MINUTE
    max_peers: int = 10_000
    _seen: dict[tuple[str, bool], collections.deque[float]] = field(default_factory=dict)

    def admit(self, peer: str, submit: bool, now: float) -> bool:
        """Whether one more request from `peer` is within its budget now (and count it if so)."""
        key = (peer, submit)
        times = self._seen.get(key)
        if times is None:
            if len(self._seen) >= self.max_peers:
                self._prune(now)
            times = self._seen[key] = collections.deque()
        while times and times[0] <= now - 60.0:
            times.popleft()
        limit = self.submits_per_minute if submit else self.reads_per_minute
        if len(times) >= limit:
            return False
        times.append(now)
        return True

    def _prune(self, now: float) -> None:
        for key in [k for k, t in self._seen.items() if not t or t[-1] <= now - 60.0]:
            del self._seen[key]
        while len(self._seen) >= self.max_peers:  # all active: forget the oldest
            del self._seen[next(iter(self._seen))]
