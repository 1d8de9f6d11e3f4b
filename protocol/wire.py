"""Codecs for Communs' request/response protocols on libp2p streams, without any I/O.

Every message is a frame: an unsigned LEB128 varint giving the payload length, then the
payload, a canonical msgpack map whose "t" names the message. The one exception is a chunk's
body on `/communs/chunks/1`: its header frame gives the size, and exactly that many raw bytes
follow, so a large chunk crosses the stream without being copied into a msgpack value.

Builders return bytes to write; `FrameReader` is fed whatever the stream returned and hands
back whole messages (h11-style), so the overlay's stream handlers stay a loop of
read -> feed -> next_event. Every limit is checked as early as the bytes allow (a frame's
declared length before its payload arrives). Anything wrong raises DecodeError, and nothing else.
See protocol/README.md for the normative description.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from . import encoding, ids, keys, records, varint
from . import publog as log
from .errors import DecodeError

MANIFEST_PROTOCOL = "/communs/manifest/1"
CHUNKS_PROTOCOL = "/communs/chunks/1"
SYNC_PROTOCOL = "/communs/sync/1"
PROTOCOLS = (MANIFEST_PROTOCOL, CHUNKS_PROTOCOL, SYNC_PROTOCOL)

MAX_MANIFEST_IDS = 256
MAX_CHUNK_IDS = 1024
MAX_CHUNK_SIZE = records.MAX_CHUNK_SIZE
MAX_RANGE = log.MAX_RANGE
MAX_HEADS = 100_000
MAX_ERROR_CHARS = 500
RECORDS_FRAME_BUDGET = 1024 * 1024  # records per frame are packed up to about this many bytes
# A range answer carries records until their bytes reach this budget (the record that reaches it is the
# last one sent), so a client holds at most RANGE_ANSWER_BYTES + one record of a range at once; a client
# refuses more, and asks again from the next seq when an answer stopped short at the budget.
RANGE_ANSWER_BYTES = 8 * 1024 * 1024
ERROR_CODES = ("not-found", "bad-request", "busy", "too-large")
_MAX_VARINT_BYTES = 4  # 2**28: above every frame limit

# Largest payload (bytes after the length prefix) each side may send, per protocol.
MAX_REQUEST_FRAME = {MANIFEST_PROTOCOL: 16 * 1024, CHUNKS_PROTOCOL: 64 * 1024, SYNC_PROTOCOL: 1024}
MAX_RESPONSE_FRAME = {
    MANIFEST_PROTOCOL: records.MAX_MANIFEST_BYTES + 4096,
    CHUNKS_PROTOCOL: 4096,
    SYNC_PROTOCOL: records.MAX_MANIFEST_BYTES + 4096,
}

# Timeouts and per-peer limits the stream handlers apply (seconds); README.md states them as the protocol's.
OPEN_TIMEOUT = 10.0  # open a stream and negotiate the protocol
REQUEST_TIMEOUT = 10.0  # server: a whole request frame; client: the first frame of the answer
IDLE_TIMEOUT = 30.0  # no byte at all for this long in the middle of an answer: reset the stream
STREAM_IDLE_TIMEOUT = 60.0  # server: close a stream that carries no new request for this long
MAX_STREAMS_PER_PEER = 8  # per protocol; more concurrent streams from one peer are answered "busy"

Side = Literal["request", "response"]
_FEDERATION = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def announce_topic(federation: str) -> str:
    """The gossipsub topic carrying one encoded Announcement per message."""
    if not isinstance(federation, str) or not _FEDERATION.match(federation):
        raise DecodeError("a federation name is 1 to 63 lowercase letters, digits, '.', '_' or '-'")
    return f"/communs/{federation}/announce/1"


# --- varints -----------------------------------------------------------------------------------


encode_varint = varint.encode


def frame(payload: bytes) -> bytes:
    return encode_varint(len(payload)) + payload


# --- field checks ------------------------------------------------------------------------------


def _digest(value: object, what: str) -> bytes:
    if type(value) is not bytes or len(value) != ids.DIGEST_SIZE:
        raise DecodeError(f"{what} must be 32 bytes")
    return value


def _int(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise DecodeError(f"{what} must be an integer from {low} to {high}")
    return value


def _ids(value: object, most: int, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= most:
        raise DecodeError(f"{what} must list 1 to {most} ids")
    out = tuple(_digest(v, "every id") for v in value)
    if len(set(out)) != len(out):
        raise DecodeError(f"{what} must not repeat an id")
    return out


def _fields(m: dict[str, Any], t: str, required: frozenset[str], optional: frozenset[str]) -> None:
    have = set(m) - {"t"}
    missing = required - have
    if missing:
        raise DecodeError(f"'{t}' message lacks field '{min(missing)}'")
    unknown = have - required - optional
    if unknown:
        raise DecodeError(f"'{t}' message has unknown field {min(unknown)!r:.40}")


# --- messages ---------------------------------------------------------------------------------


class Message:
    """A framed message: `to_map()` is its canonical map; `T` its "t" value."""

    T: ClassVar[str]
    FIELDS: ClassVar[frozenset[str]] = frozenset()
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    def to_map(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Message:
        raise NotImplementedError

    def encode(self) -> bytes:
        """The whole frame: length prefix and payload."""
        return frame(encoding.encode(self.to_map()))


@dataclass(frozen=True)
class ManifestGet(Message):
    """Request on /communs/manifest/1: the manifests with these ids, answered one frame per id, in order."""

    ids: tuple[bytes, ...]
    T: ClassVar[str] = "get"
    FIELDS: ClassVar[frozenset[str]] = frozenset(["ids"])
    MAX_IDS: ClassVar[int] = MAX_MANIFEST_IDS

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", _ids(self.ids, self.MAX_IDS, "a get request"))

    def to_map(self) -> dict[str, Any]:
        return {"t": self.T, "ids": list(self.ids)}

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Message:
        return cls(m["ids"])


@dataclass(frozen=True)
class ChunksGet(ManifestGet):
    """Request on /communs/chunks/1: these chunks, streamed in order, then "end"."""

    MAX_IDS: ClassVar[int] = MAX_CHUNK_IDS


@dataclass(frozen=True)
class ManifestRecord(Message):
    """One requested manifest: its id and its encoding (the receiver decodes and checks both)."""

    id: bytes
    record: bytes
    T: ClassVar[str] = "manifest"
    FIELDS: ClassVar[frozenset[str]] = frozenset(["id", "record"])

    def __post_init__(self) -> None:
        _digest(self.id, "a manifest id")
        if type(self.record) is not bytes or not 1 <= len(self.record) <= records.MAX_MANIFEST_BYTES:
            raise DecodeError(f"a manifest record must be 1 to {records.MAX_MANIFEST_BYTES} bytes")

    def to_map(self) -> dict[str, Any]:
        return {"t": self.T, "id": self.id, "record": self.record}

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Message:
        return cls(m["id"], m["record"])


@dataclass(frozen=True)
class ErrorAnswer(Message):
    """An error. With `id`: that one id failed and the answer goes on; without: the answer ends here."""

    code: str
    msg: str
    id: bytes | None = None
    T: ClassVar[str] = "error"
    FIELDS: ClassVar[frozenset[str]] = frozenset(["code", "msg"])
    OPTIONAL: ClassVar[frozenset[str]] = frozenset(["id"])

    def __post_init__(self) -> None:
        if type(self.code) is not str or self.code not in ERROR_CODES:
            raise DecodeError(f"an error code must be one of {', '.join(ERROR_CODES)}")
        if type(self.msg) is not str or len(self.msg) > MAX_ERROR_CHARS:
            raise DecodeError(f"an error message must be a string of at most {MAX_ERROR_CHARS} characters")
        if self.id is not None:
            _digest(self.id, "an error's id")

    def to_map(self) -> dict[str, Any]:
        m: dict[str, Any] = {"t": self.T, "code": self.code, "msg": self.msg}
        if self.id is not None:
            m["id"] = self.id
        return m

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Message:
        if "id" in m and m["id"] is None:
            raise DecodeError("an error's id is left out, not null, when there is none")
        return cls(m["code"], m["msg"], m.get("id"))


@dataclass(frozen=True)
class ChunkHeader(Message):
    """Announces exactly `size` raw bytes, the chunk named `id`, right after this frame."""

    id: bytes
    size: int
    T: ClassVar[str] = "chunk"
    FIELDS: ClassVar[frozenset[str]] = frozenset(["id", "size"])

    def __post_init__(self) -> None:
        _digest(self.id, "a chunk id")
        _int(self.size, "a chunk size", 1, MAX_CHUNK_SIZE)

    def to_map(self) -> dict[str, Any]:
        return {"t": self.T, "id": self.id, "size": self.size}

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Message:
        return cls(m["id"], m["size"])


@dataclass(frozen=True)
class End(Message):
    """Closes a multi-frame answer (chunks, sync range)."""

    T: ClassVar[str] = "end"

    def to_map(self) -> dict[str, Any]:
        return {"t": self.T}

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Message:
        return cls()


@dataclass(frozen=True)
class HeadsRequest(Message):
    """Request on /communs/sync/1: the sender's contiguous log head per publisher."""

    T: ClassVar[str] = "heads"

    def to_map(self) -> dict[str, Any]:
        return {"t": self.T}

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Message:
        return cls()


@dataclass(frozen=True)
class Heads(Message):
    """Answer to HeadsRequest: (publisher key, contiguous head seq), sorted by key, each key once."""

    heads: tuple[tuple[bytes, int], ...]
    T: ClassVar[str] = "heads"
    FIELDS: ClassVar[frozenset[str]] = frozenset(["heads"])

    def __post_init__(self) -> None:
        raw = self.heads
        if not isinstance(raw, list | tuple) or len(raw) > MAX_HEADS:
            raise DecodeError(f"heads must be a list of at most {MAX_HEADS} entries")
        out = []
        previous = b""
        for entry in raw:
            if not isinstance(entry, list | tuple) or len(entry) != 2:
                raise DecodeError("each head must be a [publisher, seq] pair")
            pk, seq = entry
            if type(pk) is not bytes or len(pk) != keys.PUBLIC_KEY_SIZE:
                raise DecodeError("a head's publisher must be 32 bytes")
            _int(seq, "a head's seq", 1, records.MAX_UINT)
            if pk <= previous:
                raise DecodeError("heads must be sorted by publisher, each publisher once")
            previous = pk
            out.append((pk, seq))
        object.__setattr__(self, "heads", tuple(out))

    @classmethod
    def of(cls, heads: dict[bytes, int]) -> Heads:
        """From a publisher -> head map, leaving out empty logs."""
        return cls(tuple(sorted((pk, seq) for pk, seq in heads.items() if seq > 0)))

    def to_map(self) -> dict[str, Any]:
        return {"t": self.T, "heads": [[pk, seq] for pk, seq in self.heads]}

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Message:
        return cls(m["heads"])


@dataclass(frozen=True)
class RangeRequest(Message):
    """Request on /communs/sync/1: `publisher`'s log records from seq `first` to `last` inclusive."""

    publisher: bytes
    first: int
    last: int
    T: ClassVar[str] = "range"
    FIELDS: ClassVar[frozenset[str]] = frozenset(["publisher", "from", "to"])

    def __post_init__(self) -> None:
        if type(self.publisher) is not bytes or len(self.publisher) != keys.PUBLIC_KEY_SIZE:
            raise DecodeError("a range's publisher must be 32 bytes")
        _int(self.first, "a range's 'from'", 1, records.MAX_UINT)
        _int(self.last, "a range's 'to'", self.first, records.MAX_UINT)
        if self.last - self.first + 1 > MAX_RANGE:
            raise DecodeError(f"a range covers at most {MAX_RANGE} records")

    def to_map(self) -> dict[str, Any]:
        return {"t": self.T, "publisher": self.publisher, "from": self.first, "to": self.last}

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Message:
        return cls(m["publisher"], m["from"], m["to"])


@dataclass(frozen=True)
class Records(Message):
    """Part of the answer to a RangeRequest: encoded manifests in ascending seq."""

    records: tuple[bytes, ...]
    T: ClassVar[str] = "records"
    FIELDS: ClassVar[frozenset[str]] = frozenset(["records"])

    def __post_init__(self) -> None:
        raw = self.records
        if not isinstance(raw, list | tuple) or not 1 <= len(raw) <= MAX_RANGE:
            raise DecodeError(f"a records frame must hold 1 to {MAX_RANGE} records")
        for rec in raw:
            if type(rec) is not bytes or not 1 <= len(rec) <= records.MAX_MANIFEST_BYTES:
                raise DecodeError(f"each record must be 1 to {records.MAX_MANIFEST_BYTES} bytes")
        object.__setattr__(self, "records", tuple(raw))

    def to_map(self) -> dict[str, Any]:
        return {"t": self.T, "records": list(self.records)}

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Message:
        return cls(m["records"])


MAX_RETRACTIONS = 1000  # retractions per answer to a RetractionsRequest


@dataclass(frozen=True)
class RetractionsRequest(Message):
    """Request on /communs/sync/1: the retractions the server holds for dataset ids after `after`
    (all when nil), in ascending dataset id, at most MAX_RETRACTIONS; answered as Records, then End."""

    after: bytes | None
    T: ClassVar[str] = "retractions"
    FIELDS: ClassVar[frozenset[str]] = frozenset(["after"])

    def __post_init__(self) -> None:
        if self.after is not None:
            _digest(self.after, "'after'")

    def to_map(self) -> dict[str, Any]:
        return {"t": self.T, "after": self.after}

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Message:
        return cls(m["after"])


@dataclass(frozen=True)
class RawBytes:
    """Event: a piece of a chunk body; `remaining` bytes of it are still to come (0: complete)."""

    data: bytes
    remaining: int


@dataclass(frozen=True)
class Chunk:
    """Event (FrameReader with `assemble=True`): a whole chunk body, not yet verified against its id."""

    id: bytes
    data: bytes


Event = Message | RawBytes | Chunk

_REQUESTS: dict[str, dict[str, type[Message]]] = {
    MANIFEST_PROTOCOL: {"get": ManifestGet},
    CHUNKS_PROTOCOL: {"get": ChunksGet},
    SYNC_PROTOCOL: {"heads": HeadsRequest, "range": RangeRequest, "retractions": RetractionsRequest},
}
_RESPONSES: dict[str, dict[str, type[Message]]] = {
    MANIFEST_PROTOCOL: {"manifest": ManifestRecord, "error": ErrorAnswer},
    CHUNKS_PROTOCOL: {"chunk": ChunkHeader, "error": ErrorAnswer, "end": End},
    SYNC_PROTOCOL: {"heads": Heads, "records": Records, "end": End, "error": ErrorAnswer},
}


def decode_message(protocol: str, side: Side, payload: bytes) -> Message:
    """Decode one frame payload (without its length prefix) read on `protocol`."""
    table = (_REQUESTS if side == "request" else _RESPONSES).get(protocol)
    if table is None:
        raise ValueError(f"unknown protocol {protocol!r} or side {side!r}")
    limit = (MAX_REQUEST_FRAME if side == "request" else MAX_RESPONSE_FRAME)[protocol]
    m = encoding.decode(payload, max_bytes=limit)
    if not isinstance(m, dict):
        raise DecodeError("a message must be a map")
    t = m.get("t")
    cls = table.get(t) if type(t) is str else None
    if cls is None:
        raise DecodeError(f"unexpected {side} message type {t!r:.40} on {protocol}")
    _fields(m, cls.T, cls.FIELDS, cls.OPTIONAL)
    return cls.from_map(m)


# --- builders for multi-frame answers ------------------------------------------------------


def chunk_frames(chunk_id: bytes, data: bytes | memoryview) -> tuple[bytes, bytes | memoryview]:
    """The header frame and the body of one chunk answer: write both, in order, without joining them."""
    return ChunkHeader(chunk_id, len(data)).encode(), data


def within_answer_budget(encoded: Sequence[bytes], budget: int = RANGE_ANSWER_BYTES) -> Sequence[bytes]:
    """The records of a range answer: the first ones until their bytes reach `budget` (at least one)."""
    total = 0
    for n, rec in enumerate(encoded):
        total += len(rec)
        if total >= budget:
            return encoded[:n + 1]
    return encoded


def answer_was_cut(received_bytes: int, budget: int = RANGE_ANSWER_BYTES) -> bool:
    """Whether a range answer that holds fewer records than asked stopped at the byte budget (ask on
    from the next seq) rather than at the end of what the peer holds."""
    return received_bytes >= budget


def records_frames(encoded: Sequence[bytes], budget: int = RECORDS_FRAME_BUDGET) -> list[bytes]:
    """The answer to a range request: records frames of about `budget` bytes, then "end"."""
    frames: list[bytes] = []
    batch: list[bytes] = []
    size = 0
    for rec in encoded:
        if batch and (size + len(rec) > budget or len(batch) == MAX_RANGE):
            frames.append(Records(tuple(batch)).encode())
            batch, size = [], 0
        batch.append(rec)
        size += len(rec)
    if batch:
        frames.append(Records(tuple(batch)).encode())
    frames.append(End().encode())
    return frames


# --- the reader ---------------------------------------------------------------------------------


class FrameReader:
    """Incremental, sans-I/O parser of one direction of one stream protocol.

    `side="request"` parses what a client sends (a server's reader); `side="response"` what a
    server answers. Feed it the bytes read from the stream, then call `next_event()` until it
    returns None (it needs more bytes). On /communs/chunks/1 answers, a ChunkHeader is followed
    by RawBytes pieces of its body, or, with `assemble=True`, the header and body come as one
    Chunk event. Call `close()` at the stream's end: it raises if a frame or body was cut off.

    What is fed is kept as the pieces it came in (bytes by reference; other buffers, which their
    owner may reuse, as copies), not appended to one buffer: a chunk body of up to 8 MiB is then
    copied once at most, by the join that makes it one bytes object, and not at all when it was
    fed as exactly one piece.
    """

    def __init__(self, protocol: str, side: Side, *, assemble: bool = False) -> None:
        if protocol not in PROTOCOLS or side not in ("request", "response"):
            raise ValueError(f"unknown protocol {protocol!r} or side {side!r}")
        self.protocol = protocol
        self.side: Side = side
        self.max_frame = (MAX_REQUEST_FRAME if side == "request" else MAX_RESPONSE_FRAME)[protocol]
        self.assemble = assemble
        self._pieces: collections.deque[memoryview] = collections.deque()
        self._available = 0
        self._body: ChunkHeader | None = None  # a chunk body is being read
        self._body_left = 0
        self._failed: DecodeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes fed and not yet returned in an event (non-zero: a frame or body is in progress)."""
        return self._available

    def needed(self) -> int:
        """How many more bytes, at least, must be fed before the next event can come out (1 when
        unknown, 0 when one is ready). A reader may wait for that many before feeding, saving a
        round trip per piece."""
        if self._body is not None:
            if not self.assemble:
                return 0 if self._available else 1
            return max(self._body_left - self._available, 0)
        try:
            header = self._frame_length()
        except DecodeError:
            return 0  # next_event() raises it
        if header is None:
            return 1
        return max(header[0] + header[1] - self._available, 0)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if not len(data):
            return
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        self._pieces.append(view)
        self._available += len(view)

    def next_event(self) -> Event | None:
        """The next whole message or body piece, or None until more bytes are fed."""
        if self._failed is not None:
            raise self._failed
        try:
            return self._next()
        except DecodeError as exc:
            self._failed = exc  # the stream is out of step: every later call fails the same way
            raise

    def _next(self) -> Event | None:
        if self._body is not None:
            return self._body_event()
        header = self._frame_length()
        if header is None:
            return None
        prefix, length = header
        if self._available < prefix + length:
            return None
        self._take(prefix)
        msg = decode_message(self.protocol, self.side, _join(self._take(length)))
        if isinstance(msg, ChunkHeader):
            self._body, self._body_left = msg, msg.size
            if self.assemble:
                return self._body_event()
        return msg

    def _frame_length(self) -> tuple[int, int] | None:
        value = 0
        i = 0
        for piece in self._pieces:
            for byte in piece[:_MAX_VARINT_BYTES - i]:
                value |= (byte & 0x7F) << (7 * i)
                if value > self.max_frame:
                    raise DecodeError(f"frame is over the limit of {self.max_frame} bytes on {self.protocol}")
                if not byte & 0x80:
                    if byte == 0 and i > 0:
                        raise DecodeError("frame length is not in its shortest form")
                    if value == 0:
                        raise DecodeError("empty frame")
                    return i + 1, value
                i += 1
            if i >= _MAX_VARINT_BYTES:
                raise DecodeError("frame length prefix is too long")
        return None

    def _take(self, n: int) -> list[memoryview]:
        """The next `n` fed bytes (there are that many), as views of the pieces they came in."""
        out: list[memoryview] = []
        pieces = self._pieces
        while n:
            piece = pieces[0]
            if len(piece) <= n:
                out.append(pieces.popleft())
                n -= len(piece)
                self._available -= len(piece)
            else:
                out.append(piece[:n])
                pieces[0] = piece[n:]
                self._available -= n
                n = 0
        return out

    def _body_event(self) -> RawBytes | Chunk | None:
        assert self._body is not None
        if self.assemble:
            if self._available < self._body_left:
                return None
            chunk = Chunk(self._body.id, _join(self._take(self._body_left)))
            self._body, self._body_left = None, 0
            return chunk
        if not self._available:
            return None
        data = _join(self._take(min(self._available, self._body_left)))
        self._body_left -= len(data)
        if self._body_left == 0:
            self._body = None
        return RawBytes(data, self._body_left)

    def close(self) -> None:
        """The stream ended: fine between frames, an error in the middle of one."""
        if self._failed is not None:
            raise self._failed
        if self._body is not None:
            raise DecodeError("stream ended in the middle of a chunk")
        if self.buffered:
            raise DecodeError("stream ended in the middle of a frame")


def _join(views: list[memoryview]) -> bytes:
    """The bytes of `views`: the fed object itself when one view covers all of it, else one copy."""
    if len(views) == 1:
        view = views[0]
        obj = view.obj
        if isinstance(obj, bytes) and len(view) == len(obj):
            return obj
        return view.tobytes()
    return b"".join(views)
