from __future__ import annotations

import itertools
from typing import Any, Literal

import msgpack
import pytest
from communs.protocol import encoding, ids, keys, records, wire
from communs.protocol.errors import DecodeError, RecordError
from communs.protocol.wire import (
    CHUNKS_PROTOCOL,
    MANIFEST_PROTOCOL,
    SYNC_PROTOCOL,
    Chunk,
    ChunkHeader,
    ChunksGet,
    End,
    ErrorAnswer,
    FrameReader,
    Heads,
    HeadsRequest,
    ManifestGet,
    ManifestRecord,
    RangeRequest,
    RawBytes,
    Records,
)
from hypothesis import given, settings
from hypothesis import strategies as st

KEY = keys.SigningKey(bytes(range(32)))
D = [ids.digest(bytes([i])) for i in range(8)]
PK = [bytes([i]) * 32 for i in range(1, 4)]

Side = Literal["request", "response"]


def read_all(protocol: str, side: Side, data: bytes, step: int | None = None, **kw: Any) -> list[Any]:
    """Feed `data` in pieces of `step` bytes (all at once if None) and collect every event."""
    reader = FrameReader(protocol, side, **kw)
    events: list[Any] = []
    pieces = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        reader.feed(piece)
        while (ev := reader.next_event()) is not None:
            events.append(ev)
    reader.close()
    return events


def test_varint() -> None:
    assert wire.encode_varint(0) == b"\x00"
    assert wire.encode_varint(127) == b"\x7f"
    assert wire.encode_varint(128) == b"\x80\x01"
    assert wire.encode_varint(300) == b"\xac\x02"
    with pytest.raises(ValueError):
        wire.encode_varint(-1)


def test_frame_layout_is_varint_then_canonical_map() -> None:
    data = ManifestGet((D[0],)).encode()
    payload = encoding.encode({"t": "get", "ids": [D[0]]})
    assert data == wire.encode_varint(len(payload)) + payload


REQUESTS: list[tuple[str, wire.Message]] = [
    (MANIFEST_PROTOCOL, ManifestGet(tuple(D))),
    (CHUNKS_PROTOCOL, ChunksGet(tuple(D[:3]))),
    (SYNC_PROTOCOL, HeadsRequest()),
    (SYNC_PROTOCOL, RangeRequest(PK[0], 1, 1000)),
]
RESPONSES: list[tuple[str, wire.Message]] = [
    (MANIFEST_PROTOCOL, ManifestRecord(D[0], b"record bytes")),
    (MANIFEST_PROTOCOL, ErrorAnswer("not-found", "no such manifest", D[1])),
    (CHUNKS_PROTOCOL, ErrorAnswer("busy", "too many streams")),
    (CHUNKS_PROTOCOL, End()),
    (SYNC_PROTOCOL, Heads(((PK[0], 3), (PK[1], 1)))),
    (SYNC_PROTOCOL, Records((b"a", b"bc"))),
    (SYNC_PROTOCOL, ErrorAnswer("too-large", "")),
]


@pytest.mark.parametrize(("protocol", "msg"), REQUESTS)
def test_request_round_trip(protocol: str, msg: wire.Message) -> None:
    assert read_all(protocol, "request", msg.encode()) == [msg]
    assert read_all(protocol, "request", msg.encode(), step=1) == [msg]


@pytest.mark.parametrize(("protocol", "msg"), RESPONSES)
def test_response_round_trip(protocol: str, msg: wire.Message) -> None:
    assert read_all(protocol, "response", msg.encode()) == [msg]
    assert read_all(protocol, "response", msg.encode(), step=1) == [msg]


def test_requests_and_responses_are_not_confused() -> None:
    with pytest.raises(DecodeError, match="unexpected response message type 'get'"):
        read_all(MANIFEST_PROTOCOL, "response", ManifestGet((D[0],)).encode())
    with pytest.raises(DecodeError, match="unexpected request message type 'chunk'"):
        read_all(CHUNKS_PROTOCOL, "request", ChunkHeader(D[0], 4).encode())
    with pytest.raises(DecodeError, match="unexpected response message type 'manifest'"):
        read_all(CHUNKS_PROTOCOL, "response", ManifestRecord(D[0], b"x").encode())


def test_heads_request_and_answer_share_a_name_but_not_a_side() -> None:
    assert read_all(SYNC_PROTOCOL, "request", HeadsRequest().encode()) == [HeadsRequest()]
    with pytest.raises(DecodeError, match="lacks field 'heads'"):
        read_all(SYNC_PROTOCOL, "response", HeadsRequest().encode())


def chunk_stream(bodies: list[bytes]) -> bytes:
    out = b""
    for i, body in enumerate(bodies):
        if body:
            header, data = wire.chunk_frames(ids.digest(body), body)
            out += header + bytes(data)
        else:
            out += ErrorAnswer("not-found", "no such chunk", D[i]).encode()
    return out + End().encode()


BODIES = [b"x" * 1000, b"", bytes(range(256)) * 3, b"\x01"]


@pytest.mark.parametrize("step", [None, 1, 7, 1000])
def test_chunk_answers_as_pieces(step: int | None) -> None:
    events = read_all(CHUNKS_PROTOCOL, "response", chunk_stream(BODIES), step=step)
    got: list[Any] = []
    current = b""
    for ev in events:
        if isinstance(ev, RawBytes):
            current += ev.data
            if ev.remaining == 0:
                got.append(current)
                current = b""
        elif isinstance(ev, ErrorAnswer):
            got.append(None)
        elif isinstance(ev, ChunkHeader):
            assert ev.id == ids.digest(BODIES[len(got)]) and ev.size == len(BODIES[len(got)])
    assert got == [b"x" * 1000, None, bytes(range(256)) * 3, b"\x01"]
    assert events[-1] == End()


@pytest.mark.parametrize("step", [None, 1, 333])
def test_chunk_answers_assembled(step: int | None) -> None:
    events = read_all(CHUNKS_PROTOCOL, "response", chunk_stream(BODIES), step=step, assemble=True)
    assert events == [
        Chunk(ids.digest(BODIES[0]), BODIES[0]),
        ErrorAnswer("not-found", "no such chunk", D[1]),
        Chunk(ids.digest(BODIES[2]), BODIES[2]),
        Chunk(ids.digest(BODIES[3]), BODIES[3]),
        End(),
    ]


def test_raw_body_is_not_parsed_as_frames() -> None:
    # a body that looks like a frame stays a body
    body = End().encode() * 10
    header, data = wire.chunk_frames(D[0], body)
    events = read_all(CHUNKS_PROTOCOL, "response", header + bytes(data) + End().encode())
    assert events == [ChunkHeader(D[0], len(body)), RawBytes(body, 0), End()]


def test_big_chunk_within_limit() -> None:
    body = b"\xab" * wire.MAX_CHUNK_SIZE
    header, data = wire.chunk_frames(D[0], memoryview(body))
    assert isinstance(data, memoryview)  # handed back as given: no copy
    events = read_all(CHUNKS_PROTOCOL, "response", header + body, step=1 << 20, assemble=True)
    assert events == [Chunk(D[0], body)]


def test_oversized_chunk_header_rejected() -> None:
    with pytest.raises(DecodeError, match="chunk size"):
        ChunkHeader(D[0], wire.MAX_CHUNK_SIZE + 1)
    payload = encoding.encode({"t": "chunk", "id": D[0], "size": wire.MAX_CHUNK_SIZE + 1})
    with pytest.raises(DecodeError, match="chunk size"):
        read_all(CHUNKS_PROTOCOL, "response", wire.frame(payload))


def test_oversized_frame_rejected_from_its_length_alone() -> None:
    reader = FrameReader(CHUNKS_PROTOCOL, "request")
    reader.feed(wire.encode_varint(wire.MAX_REQUEST_FRAME[CHUNKS_PROTOCOL] + 1))
    with pytest.raises(DecodeError, match="over the limit"):
        reader.next_event()
    # and the reader stays failed
    reader.feed(HeadsRequest().encode())
    with pytest.raises(DecodeError, match="over the limit"):
        reader.next_event()


@pytest.mark.parametrize("protocol", wire.PROTOCOLS)
@pytest.mark.parametrize("side", ["request", "response"])
def test_frame_limits_hold_per_protocol(protocol: str, side: Side) -> None:
    limit = (wire.MAX_REQUEST_FRAME if side == "request" else wire.MAX_RESPONSE_FRAME)[protocol]
    reader = FrameReader(protocol, side)
    reader.feed(wire.encode_varint(limit))
    assert reader.next_event() is None  # at the limit: waits for the payload
    reader = FrameReader(protocol, side)
    reader.feed(wire.encode_varint(limit + 1))
    with pytest.raises(DecodeError):
        reader.next_event()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00", "empty frame"),
        (b"\x81\x00", "shortest form"),
        (b"\xff\xff\xff\xff\x01", "too long|over the limit"),
        (wire.frame(b"\xc1"), "not valid msgpack"),
        (wire.frame(encoding.encode([1])), "must be a map"),
        (wire.frame(encoding.encode({"t": "get"})), "lacks field 'ids'"),
        (wire.frame(encoding.encode({"t": "get", "ids": [], "x": 1})), "unknown field"),
        (wire.frame(encoding.encode({"t": "get", "ids": []})), "1 to 256 ids"),
        (wire.frame(encoding.encode({"t": "get", "ids": [b"short"]})), "32 bytes"),
        (wire.frame(encoding.encode({"t": "get", "ids": [D[0], D[0]]})), "repeat"),
        (wire.frame(encoding.encode({"t": "get", "ids": [D[0]] * 257})), "1 to 256 ids"),
        (wire.frame(encoding.encode({"t": 5})), "unexpected request message type 5"),
        (wire.frame(msgpack.packb({"t": "get", "ids": [D[0]]}, use_bin_type=True)), "not canonical"),
    ],
)
def test_bad_manifest_requests(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        read_all(MANIFEST_PROTOCOL, "request", data)


def test_chunk_request_limit_is_1024() -> None:
    many = tuple(ids.digest(i.to_bytes(2, "big")) for i in range(1024))
    assert read_all(CHUNKS_PROTOCOL, "request", ChunksGet(many).encode()) == [ChunksGet(many)]
    with pytest.raises(DecodeError, match="1 to 1024 ids"):
        ChunksGet((*many, D[0]))
    with pytest.raises(DecodeError, match="1 to 256 ids"):
        ManifestGet(many)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: RangeRequest(PK[0], 0, 5), "'from'"),
        (lambda: RangeRequest(PK[0], 5, 4), "'to'"),
        (lambda: RangeRequest(PK[0], 1, 1001), "at most 1000"),
        (lambda: RangeRequest(b"x", 1, 2), "publisher must be 32 bytes"),
        (lambda: RangeRequest(PK[0], True, 2), "'from'"),
        (lambda: Heads(((PK[1], 1), (PK[0], 1))), "sorted"),
        (lambda: Heads(((PK[0], 1), (PK[0], 2))), "sorted"),
        (lambda: Heads(((PK[0], 0),)), "seq"),
        (lambda: Heads(((PK[0],),)), "pair"),
        (lambda: Records(()), "1 to 1000 records"),
        (lambda: Records((b"",)), "each record"),
        (lambda: ErrorAnswer("teapot", "x"), "error code"),
        (lambda: ErrorAnswer("busy", "x" * 501), "at most 500"),
        (lambda: ErrorAnswer("not-found", "x", b"bad"), "32 bytes"),
        (lambda: ManifestRecord(D[0], b""), "manifest record"),
    ],
)
def test_message_rules(make: Any, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        make()


def test_error_id_is_left_out_not_null() -> None:
    data = wire.frame(encoding.encode({"t": "error", "code": "busy", "msg": "m", "id": None}))
    with pytest.raises(DecodeError, match="left out"):
        read_all(MANIFEST_PROTOCOL, "response", data)
    assert "id" not in ErrorAnswer("busy", "m").to_map()


def test_heads_of_map() -> None:
    heads = Heads.of({PK[2]: 4, PK[0]: 9, PK[1]: 0})
    assert heads.heads == ((PK[0], 9), (PK[2], 4))
    assert heads.to_map() == {"t": "heads", "heads": [[PK[0], 9], [PK[2], 4]]}


def manifest_chain(n: int) -> list[bytes]:
    out: list[records.Manifest] = []
    for seq in range(1, n + 1):
        prev = out[-1].id if out else None
        out.append(records.Manifest.create(
            KEY, dataset=D[0], version=seq, prev=prev, seq=seq, log_prev=prev, title=f"t{seq}",
            licence="CC0-1.0", created=0, files=[],
        ))
    return [m.encode() for m in out]


def test_records_frames_split_by_budget_and_end() -> None:
    encoded = manifest_chain(12)
    frames = wire.records_frames(encoded, budget=max(map(len, encoded)) * 5)
    events = read_all(SYNC_PROTOCOL, "response", b"".join(frames), step=100)
    assert events[-1] == End()
    batches = [ev.records for ev in events[:-1]]
    assert [len(b) for b in batches] == [5, 5, 2]
    assert [r for b in batches for r in b] == encoded
    decoded = [records.Manifest.decode(r) for b in batches for r in b]
    assert [m.seq for m in decoded] == list(range(1, 13))
    assert wire.records_frames([]) == [End().encode()]


def test_records_frames_never_exceed_max_range() -> None:
    frames = wire.records_frames([b"r"] * 2500)
    events = read_all(SYNC_PROTOCOL, "response", b"".join(frames))
    assert [len(ev.records) for ev in events[:-1]] == [1000, 1000, 500]


def test_several_requests_on_one_stream() -> None:
    data = HeadsRequest().encode() + RangeRequest(PK[0], 1, 10).encode() + HeadsRequest().encode()
    assert read_all(SYNC_PROTOCOL, "request", data, step=3) == [
        HeadsRequest(), RangeRequest(PK[0], 1, 10), HeadsRequest(),
    ]


def test_close_in_the_middle_is_an_error() -> None:
    data = ManifestGet((D[0],)).encode()
    reader = FrameReader(MANIFEST_PROTOCOL, "request")
    reader.feed(data[:-1])
    assert reader.next_event() is None
    with pytest.raises(DecodeError, match="middle of a frame"):
        reader.close()
    reader = FrameReader(CHUNKS_PROTOCOL, "response")
    header, _ = wire.chunk_frames(D[0], b"abcdef")
    reader.feed(header + b"abc")
    assert isinstance(reader.next_event(), ChunkHeader)
    assert reader.next_event() == RawBytes(b"abc", 3)
    assert reader.next_event() is None
    with pytest.raises(DecodeError, match="middle of a chunk"):
        reader.close()


def test_unknown_protocol_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        FrameReader("/communs/nope/1", "request")


def test_announce_topic() -> None:
    assert wire.announce_topic("communs") == "/communs/communs/announce/1"
    for bad in ["", "Upper", "a/b", "-x", "x" * 64]:
        with pytest.raises(DecodeError):
            wire.announce_topic(bad)


# --- fuzzing: garbage never raises anything but RecordError ------------------------------------

SIDES: tuple[Side, Side] = ("request", "response")
ALL_READERS = [(p, s) for p in wire.PROTOCOLS for s in SIDES]


def _drain(protocol: str, side: Side, data: bytes, step: int, assemble: bool) -> None:
    reader = FrameReader(protocol, side, assemble=assemble)
    try:
        for i in range(0, len(data), step):
            reader.feed(data[i:i + step])
            while reader.next_event() is not None:
                pass
        reader.close()
    except RecordError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 50), st.booleans())
def test_fuzz_random_bytes(data: bytes, step: int, assemble: bool) -> None:
    for protocol, side in ALL_READERS:
        _drain(protocol, side, data, step, assemble)


msg_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=6)
    | st.binary(max_size=40) | st.sampled_from(D + PK),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
msg_keys = st.sampled_from(["t", "ids", "id", "record", "code", "msg", "size", "heads", "publisher", "from",
                            "to", "records", "x"])
msg_types = st.sampled_from(["get", "manifest", "error", "chunk", "end", "heads", "range", "records", "?"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(msg_types, st.dictionaries(msg_keys, msg_values, max_size=4)), max_size=4),
       st.binary(max_size=20), st.integers(1, 64), st.booleans())
def test_fuzz_well_framed_wrong_messages(
    msgs: list[tuple[str, dict[str, Any]]], tail: bytes, step: int, assemble: bool
) -> None:
    data = b"".join(wire.frame(encoding.encode({**m, "t": t})) for t, m in msgs) + tail
    for protocol, side in ALL_READERS:
        _drain(protocol, side, data, step, assemble)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_streams(data: st.DataObject) -> None:
    valid = chunk_stream(BODIES)
    raw = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _drain(CHUNKS_PROTOCOL, "response", bytes(raw), data.draw(st.integers(1, 100)), data.draw(st.booleans()))


# --- the README's test vectors stay true ------------------------------------------------------


def _readme_vector(name: str) -> tuple[bytes, str | None]:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "protocol" / "README.md").read_text()
    block = text.split(f"<!-- vector:{name} -->\n", 1)[1]
    lines = block.split("\n\n", 1)
    hexdata = "".join(line.strip() for line in lines[0].splitlines())
    rest = lines[1] if len(lines) > 1 else ""
    cid = rest.split("id: ", 1)[1].split()[0] if rest.lstrip().startswith("id: ") else None
    return bytes.fromhex(hexdata), cid


def test_readme_vectors() -> None:
    manifest_bytes, manifest_cid = _readme_vector("manifest")
    m = records.Manifest.decode(manifest_bytes)
    assert m.cid == manifest_cid
    assert m.publisher == KEY.public == bytes.fromhex(
        "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")
    assert m.publisher_peer_id == "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"
    assert m.dataset == records.new_dataset_id(KEY.public, bytes(16))
    rebuilt = records.Manifest.create(
        KEY, dataset=m.dataset, version=1, prev=None, seq=1, log_prev=None, title="Example",
        licence="CC0-1.0", created=1700000000, keywords=["example"],
        files=[records.FileEntry.of("data/a.csv", [(ids.digest(b"hello"), 5)])],
    )
    assert rebuilt.encode() == manifest_bytes
    assert encoding.encode(m.signed_map()).startswith(bytes.fromhex("8fa76372"))
    ann_bytes, ann_cid = _readme_vector("announce")
    ann = records.Announcement.decode(ann_bytes)
    assert ids.cid_str(ann.id) == ann_cid and ann.manifest == m.id and ann.ts == 1700000060
    get_frame, _ = _readme_vector("get")
    assert get_frame == ManifestGet((m.id,)).encode()


def test_readme_manifest_v2_vector() -> None:
    """Schema v2 (empty folders, executable bits, times) has its own vector; the v1 vectors above stay."""
    raw, cid = _readme_vector("manifest-v2")
    m = records.Manifest.decode(raw)
    assert type(m) is records.ManifestV2 and m.cid == cid and m.folders == ("data/empty",)
    hello = (ids.digest(b"hello"), 5)
    rebuilt = records.Manifest.create(
        KEY, dataset=records.new_dataset_id(KEY.public, bytes(16)), version=1, prev=None, seq=1, log_prev=None,
        title="Example", licence="CC0-1.0", created=1700000000, keywords=["example"], folders=["data/empty"],
        files=[records.FileEntry.of("data/a.csv", [hello], executable=False, mtime_ns=1700000000123456789),
               records.FileEntry.of("bin/run", [hello], executable=True, mtime_ns=1699999999000000000)])
    assert rebuilt.encode() == raw


def test_assembled_chunk_needs_and_keeps_pieces_safely() -> None:
    """`needed()` tells a reader how many bytes complete the next event, and an assembled chunk is not
    changed when the caller reuses the buffer it fed (bytes are kept by reference, other buffers copied)."""
    body = bytes(range(256)) * 4096  # 1 MiB
    header, _ = wire.chunk_frames(ids.digest(body), body)
    stream = header + body + End().encode()
    reader = FrameReader(CHUNKS_PROTOCOL, "response", assemble=True)
    assert reader.needed() == 1  # nothing known yet
    reader.feed(header[:1])
    assert reader.needed() == len(header) - 1  # the length prefix tells the rest of the header frame
    reader.feed(header[1:] + body[:1000])
    assert reader.next_event() is None
    assert reader.needed() == len(body) - 1000
    shared = bytearray(body[1000:500_000])
    reader.feed(shared)
    shared[:] = bytes(len(shared))  # the caller reuses its buffer
    assert reader.needed() == len(body) - 500_000
    reader.feed(memoryview(stream)[len(header) + 500_000:])  # the rest of the body, then End, in one piece
    assert reader.next_event() == Chunk(ids.digest(body), body)
    assert reader.next_event() == End()
    assert reader.needed() == 1 and reader.buffered == 0
    reader.close()


def test_assembled_chunk_cut_off_is_an_error() -> None:
    body = b"z" * 5000
    header, _ = wire.chunk_frames(ids.digest(body), body)
    reader = FrameReader(CHUNKS_PROTOCOL, "response", assemble=True)
    reader.feed(header)
    assert reader.next_event() is None
    reader.feed(body[:4000])
    assert reader.buffered == 4000 and reader.next_event() is None
    with pytest.raises(DecodeError, match="middle of a chunk"):
        reader.close()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=5), st.lists(st.integers(1, 4000),
       max_size=12), st.sampled_from(["bytes", "bytearray", "memoryview"]))
def test_assembled_answers_are_the_same_however_the_stream_is_cut(bodies: list[bytes], cuts: list[int],
                                                                  kind: str) -> None:
    stream = b"".join(h + bytes(b) for h, b in (wire.chunk_frames(ids.digest(x), x) for x in bodies))
    stream += End().encode()
    points = sorted({c % len(stream) for c in cuts} | {0, len(stream)})
    reader = FrameReader(CHUNKS_PROTOCOL, "response", assemble=True)
    events: list[Any] = []
    for a, b in itertools.pairwise(points):
        piece: Any = stream[a:b]
        piece = bytearray(piece) if kind == "bytearray" else memoryview(piece) if kind == "memoryview" else piece
        reader.feed(piece)
        if isinstance(piece, bytearray):
            piece[:] = bytes(len(piece))  # a caller reusing its buffer changes nothing already fed
        while (ev := reader.next_event()) is not None:
            events.append(ev)
    reader.close()
    assert events == [Chunk(ids.digest(x), x) for x in bodies] + [End()]


def test_range_answer_budget() -> None:
    """Issue 12: a range answer stops once its records reach the byte budget (the record that reaches it is
    the last), so a client holds at most the budget and one record; a short answer at the budget says "ask on"."""
    recs = [b"x" * 400, b"y" * 400, b"z" * 400]
    assert list(wire.within_answer_budget(recs, budget=1000)) == recs
    assert list(wire.within_answer_budget(recs, budget=800)) == recs[:2]
    assert list(wire.within_answer_budget(recs, budget=10)) == recs[:1]  # always at least one record
    assert list(wire.within_answer_budget([], budget=10)) == []
    assert wire.answer_was_cut(800, budget=800) and not wire.answer_was_cut(799, budget=800)
    assert wire.RANGE_ANSWER_BYTES == 8 * 1024 * 1024
