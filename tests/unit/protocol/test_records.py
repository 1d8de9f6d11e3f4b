from __future__ import annotations

from typing import Any

import msgpack
import pytest
from communs.protocol import encoding, ids, keys, paths, records, signed
from communs.protocol.errors import DecodeError, RecordError, SignatureError
from communs.protocol.paths import PathError
from communs.protocol.records import (
    Announcement,
    ChunkRef,
    FileEntry,
    Manifest,
    StaleError,
    check_announces,
    check_fresh,
    check_next_version,
    new_dataset_id,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KEY = keys.SigningKey(bytes(range(32)))
OTHER = keys.SigningKey(bytes(range(1, 33)))
DATASET = new_dataset_id(KEY.public, b"n" * 16)


def chunk(n: int, size: int = 1000) -> tuple[bytes, int]:
    return (ids.digest(n.to_bytes(4, "big")), size)


def make_manifest(key: keys.SigningKey = KEY, **over: Any) -> Manifest:
    args: dict[str, Any] = {
        "dataset": DATASET,
        "version": 1,
        "prev": None,
        "seq": 1,
        "log_prev": None,
        "title": "Arbres d'alignement",
        "licence": "CC-BY-4.0 OR ODbL-1.0",
        "created": 1_700_000_000,
        "files": [FileEntry.of("b.csv", [chunk(1), chunk(2, 5)]), FileEntry.of("a/x.csv", [chunk(1)])],
        "description": "Trees.\nAll of them.",
        "keywords": ["arbres", "ville"],
    }
    args.update(over)
    return Manifest.create(key, **args)


def sign_map(key: keys.SigningKey, body: dict[str, Any], domain: str = records.MANIFEST_DOMAIN) -> bytes:
    """A correctly signed encoding of an arbitrary map, to reach the field checks behind the signature."""
    body = {k: v for k, v in body.items() if k != "sig"}
    return encoding.encode({**body, "sig": key.sign(domain, encoding.encode(body))})


def manifest_map(**over: Any) -> dict[str, Any]:
    m = make_manifest().to_dict()
    m.update(over)
    return m


# --- strategies ----------------------------------------------------------------------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzé0123456789-_", min_size=1, max_size=12).filter(
    lambda n: paths.is_safe_path(n + ".f")
)
texts = st.text(min_size=1, max_size=40).filter(lambda t: not signed.has_control(t))
chunk_lists = st.lists(
    st.tuples(st.binary(min_size=32, max_size=32), st.integers(1, records.MAX_CHUNK_SIZE)), max_size=4
)


@st.composite
def file_trees(draw: st.DrawFn) -> list[FileEntry]:
    dirs = draw(st.lists(names, max_size=3, unique_by=paths.fold))
    files: dict[str, FileEntry] = {}
    for i, name in enumerate(draw(st.lists(names, max_size=6))):
        folder = dirs[i % len(dirs)] + "/" if dirs else ""
        path = f"{folder}{name}.f"
        files.setdefault(paths.fold(path), FileEntry.of(path, draw(chunk_lists)))
    return list(files.values())


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    key = keys.SigningKey(draw(st.binary(min_size=32, max_size=32)))
    version = draw(st.integers(1, 2**40))
    seq = draw(st.integers(1, records.MAX_UINT))
    return Manifest.create(
        key,
        dataset=draw(st.binary(min_size=32, max_size=32)),
        version=version,
        prev=None if version == 1 else draw(st.binary(min_size=32, max_size=32)),
        seq=seq,
        log_prev=None if seq == 1 else draw(st.binary(min_size=32, max_size=32)),
        title=draw(texts),
        licence=draw(texts),
        created=draw(st.integers(0, records.MAX_UINT)),
        files=draw(file_trees()),
        description=draw(st.text(max_size=60).filter(lambda t: not signed._TEXT_BAD.search(t))),
        keywords=draw(st.lists(texts.map(lambda t: t[:64]), max_size=5, unique=True)),
    )


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- manifests: round trips ---------------------------------------------------------------------


@FAST
@given(manifests())
def test_manifest_round_trip(m: Manifest) -> None:
    data = m.encode()
    back = Manifest.decode(data)
    assert back == m
    assert back.encode() == data
    assert back.id == m.id == ids.digest(data)
    assert back.size == sum(f.size for f in back.files)
    assert signed.unsigned_bytes(data, encoding.decode(data)) == encoding.encode(m.signed_map())


def test_manifest_fields_and_helpers() -> None:
    m = make_manifest()
    assert [f.path for f in m.files] == ["a/x.csv", "b.csv"]  # sorted at create
    assert m.size == 2005
    assert m.publisher == KEY.public
    assert m.publisher_peer_id == keys.peer_id(KEY.public)
    assert m.chunk_digests() == (chunk(1)[0], chunk(2)[0])
    assert m.cid == ids.cid_str(m.id) and ids.parse_cid(m.cid) == m.id
    d = m.to_dict()
    assert d["type"] == "manifest" and d["v"] == 1 and d["files"][0]["chunks"] == [[chunk(1)[0], 1000]]
    assert m.files[0].chunks[0] == ChunkRef(*chunk(1))
    assert "Manifest(id=b" in repr(m)


def test_ed25519_is_deterministic_so_ids_are_stable() -> None:
    assert make_manifest().id == make_manifest().id
    assert make_manifest().id != make_manifest(title="other").id


def test_empty_dataset_and_empty_file_are_valid() -> None:
    m = make_manifest(files=[])
    assert Manifest.decode(m.encode()).size == 0
    m = make_manifest(files=[FileEntry.of("empty", [])])
    assert Manifest.decode(m.encode()).files[0].chunks == ()


# --- manifests: tampering -------------------------------------------------------------------------

SIGNED = make_manifest().encode()


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(SIGNED) - 1), st.integers(1, 255))
def test_any_single_byte_alteration_is_rejected(pos: int, delta: int) -> None:
    data = bytearray(SIGNED)
    data[pos] = (data[pos] + delta) % 256
    with pytest.raises(RecordError):
        Manifest.decode(bytes(data))


@FAST
@given(manifests(), st.data())
def test_single_byte_alteration_of_any_manifest_is_rejected(m: Manifest, data: st.DataObject) -> None:
    raw = bytearray(m.encode())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(RecordError):
        Manifest.decode(bytes(raw))


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=64, max_size=64))
def test_altered_signature_rejected(sig: bytes) -> None:
    forged = encoding.encode({**make_manifest().to_dict(), "sig": sig})
    with pytest.raises(SignatureError, match="bad manifest/1 signature"):
        Manifest.decode(forged)


def test_signature_by_another_key_rejected() -> None:
    body = make_manifest().to_dict()
    with pytest.raises(SignatureError):
        Manifest.decode(sign_map(OTHER, body))


def test_signature_from_another_domain_rejected() -> None:
    with pytest.raises(SignatureError):
        Manifest.decode(sign_map(KEY, make_manifest().to_dict(), domain=records.ANNOUNCE_DOMAIN))


def test_verify_false_skips_only_the_signature() -> None:
    forged = encoding.encode({**make_manifest().to_dict(), "sig": bytes(64)})
    assert Manifest.decode(forged, verify=False).title == "Arbres d'alignement"
    with pytest.raises(SignatureError):
        Manifest.decode(forged, verify=False).verify()


def test_truncated_rejected() -> None:
    for n in range(len(SIGNED)):
        with pytest.raises(DecodeError):
            Manifest.decode(SIGNED[:n])


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        Manifest.decode(SIGNED + b"\x00")


def test_oversized_rejected_at_decode_and_create(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DecodeError, match="over the limit"):
        Manifest.decode(b"\x00" * (records.MAX_MANIFEST_BYTES + 1))
    monkeypatch.setattr(Manifest, "MAX_BYTES", 300)
    with pytest.raises(DecodeError, match="over the limit"):
        Manifest.decode(SIGNED)
    with pytest.raises(DecodeError, match="over the limit"):
        make_manifest()


def test_non_canonical_rejected() -> None:
    m = make_manifest().to_dict()
    unsorted = msgpack.packb(dict(sorted(m.items(), reverse=True)), use_bin_type=True)
    with pytest.raises(DecodeError, match="canonical"):
        Manifest.decode(unsorted)
    # the same map with one integer in a longer form than needed
    canonical = make_manifest().encode()
    long_v = canonical.replace(b"\xa1v\x01", b"\xa1v\xcc\x01")
    assert long_v != canonical
    with pytest.raises(DecodeError, match="canonical"):
        Manifest.decode(long_v)


def test_crafted_signed_manifest_with_dotdot_path_rejected() -> None:
    files = [{"path": "../../etc/cron.d/x", "size": 5, "chunks": [[chunk(1)[0], 5]]}]
    with pytest.raises(PathError, match=r"'\.\.'"):
        Manifest.decode(sign_map(KEY, manifest_map(files=files, size=5)))


@pytest.mark.parametrize("path", ["/etc/passwd", "a/../b", "C:/x", "a\\b", "a//b", "x/./y"])
def test_crafted_signed_manifest_with_unsafe_path_rejected(path: str) -> None:
    files = [{"path": path, "size": 5, "chunks": [[chunk(1)[0], 5]]}]
    with pytest.raises(PathError):
        Manifest.decode(sign_map(KEY, manifest_map(files=files, size=5)))


def _file(path: str) -> dict[str, Any]:
    return {"path": path, "size": 1, "chunks": [[chunk(1)[0], 1]]}


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"v": 3}, "schema version"),
        ({"v": 2}, "lacks field .folders."),  # a v2 manifest has folders and file times (test_records_v2.py)
        ({"v": True}, "schema version"),
        ({"type": "announce"}, "expected 'manifest'"),
        ({"extra": 1}, "unknown field"),
        ({"version": True}, "'version' must be an integer"),
        ({"version": 0}, "'version' must be between"),
        ({"version": 2}, "'prev' must be absent"),
        ({"prev": ids.digest(b"p")}, "'prev' must be absent"),
        ({"prev": b"short", "version": 2}, "'prev' must be 32 bytes"),
        ({"seq": 2}, "'log_prev' must be absent"),
        ({"seq": -1}, "'seq' must be between"),
        ({"dataset": "text"}, "'dataset' must be 32 bytes"),
        ({"publisher": OTHER.public}, "signature"),
        ({"title": ""}, "'title' must be 1 to 200"),
        ({"title": "x" * 201}, "'title' must be 1 to 200"),
        ({"title": "a\nb"}, "control characters"),
        ({"description": "d" * 10_001}, "at most 10000"),
        ({"description": "bell\x07"}, "control characters"),
        ({"keywords": ["k"] * 2}, "must not repeat"),
        ({"keywords": [str(i) for i in range(51)]}, "more than 50 keywords"),
        ({"keywords": ["x" * 65]}, "'keywords' must be 1 to 64"),
        ({"keywords": "k"}, "'keywords' must be a list"),
        ({"keywords": [1]}, "'keywords' must be a string"),
        ({"licence": ""}, "'licence' must be 1 to 500"),
        ({"created": -5}, "'created' must be between"),
        ({"size": 1}, "sum of its file sizes"),
        ({"files": {}}, "'files' must be a list"),
        ({"files": [_file("b"), _file("a")], "size": 2}, "sorted by path"),
        ({"files": [_file("a"), _file("a")], "size": 2}, "sorted by path"),
        ({"files": [_file("a"), _file("a/b")], "size": 2}, "both a file and a folder"),
        ({"files": [_file("A"), _file("a")], "size": 2}, "differ only by case"),
        ({"files": [{"path": "a", "size": 2, "chunks": [[chunk(1)[0], 1]]}], "size": 2}, "sum of its chunk"),
        ({"files": [{"path": "a", "size": 0, "chunks": [[chunk(1)[0], 0]]}], "size": 0}, "chunk size"),
        ({"files": [{"path": "a", "size": 1, "chunks": [[b"x", 1]]}], "size": 1}, "chunk digest"),
        ({"files": [{"path": "a", "size": 1, "chunks": [[chunk(1)[0]]]}], "size": 1}, "pair"),
        ({"files": [{"path": "a", "size": 1}], "size": 1}, "exactly path, size and chunks"),
        ({"files": [["a", 1, []]], "size": 1}, "exactly path, size and chunks"),
        ({"files": [{"path": "a", "size": 0, "chunks": {}}], "size": 0}, "chunks must be a list"),
        ({"sig": b"x" * 63}, "'sig' must be 64 bytes"),
    ],
)
def test_field_rules_enforced_behind_a_valid_signature(over: dict[str, Any], reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        if "sig" in over:
            Manifest.decode(encoding.encode(manifest_map(**over)))
        else:
            Manifest.decode(sign_map(KEY, manifest_map(**over)))


def test_missing_field_rejected() -> None:
    m = manifest_map()
    del m["licence"]
    with pytest.raises(DecodeError, match="lacks field 'licence'"):
        Manifest.decode(sign_map(KEY, m))


def test_limits_on_file_and_chunk_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "MAX_FILES", 1)
    with pytest.raises(DecodeError, match="more than 1 files"):
        make_manifest()
    monkeypatch.setattr(records, "MAX_CHUNKS_PER_FILE", 1)
    with pytest.raises(DecodeError, match="more than 1 chunks"):
        FileEntry.of("a", [chunk(1), chunk(2)])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_only_raises_record_error(data: bytes) -> None:
    for decode in (Manifest.decode, Announcement.decode):
        with pytest.raises(RecordError):
            decode(data)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(sorted(Manifest.field_names() | {"type", "v", "path", "size", "chunks"}))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(field_names, values, max_size=6))
def test_structured_garbage_behind_a_signature_only_raises_record_error(over: dict[str, Any]) -> None:
    with pytest.raises(RecordError):
        Manifest.decode(sign_map(KEY, manifest_map(**{**over, "title": ""})))  # an empty title is invalid
    try:
        decoded = Manifest.decode(sign_map(KEY, manifest_map(**over)))
    except RecordError:
        return
    assert decoded.encode() == sign_map(KEY, manifest_map(**over))


def test_constructor_validates_too() -> None:
    m = make_manifest()
    with pytest.raises(DecodeError, match="'title'"):
        Manifest(**{**{n: getattr(m, n) for n in Manifest.field_names()}, "title": 5})
    with pytest.raises(DecodeError, match="file entries"):
        Manifest(**{**{n: getattr(m, n) for n in Manifest.field_names()}, "files": ("a",)})


# --- versions and dataset ids --------------------------------------------------------------------


def test_new_dataset_id() -> None:
    a = new_dataset_id(KEY.public, b"\x01" * 16)
    assert len(a) == 32
    assert a == ids.digest(b"communs/dataset-id\x00" + KEY.public + b"\x01" * 16)
    assert a != new_dataset_id(KEY.public, b"\x02" * 16)
    assert a != new_dataset_id(OTHER.public, b"\x01" * 16)
    with pytest.raises(DecodeError, match="nonce"):
        new_dataset_id(KEY.public, b"short")
    with pytest.raises(DecodeError, match="publisher"):
        new_dataset_id(b"x", b"\x01" * 16)


def test_check_next_version() -> None:
    v1 = make_manifest()
    v2 = make_manifest(version=2, prev=v1.id, seq=2, log_prev=v1.id)
    check_next_version(v1, v2)
    with pytest.raises(DecodeError, match="expected 2"):
        check_next_version(v1, make_manifest(version=3, prev=v1.id))
    with pytest.raises(DecodeError, match="previous version"):
        check_next_version(v1, make_manifest(version=2, prev=ids.digest(b"x")))
    with pytest.raises(DecodeError, match="another publisher"):
        check_next_version(v1, make_manifest(OTHER, version=2, prev=v1.id))
    with pytest.raises(DecodeError, match="another dataset"):
        check_next_version(v1, make_manifest(version=2, prev=v1.id, dataset=ids.digest(b"d")))


# --- announcements -----------------------------------------------------------------------------------

MANIFEST = make_manifest()
ANN = Announcement.create(KEY, kind="publish", manifest=MANIFEST, ts=1_700_000_100)


def test_announcement_round_trip_and_size() -> None:
    data = ANN.encode()
    assert len(data) < 400
    back = Announcement.decode(data)
    assert back == ANN and back.id == ids.digest(data) == ANN.id
    assert back.manifest == MANIFEST.id and back.seq == 1 and back.size == MANIFEST.size
    assert back.node_peer_id == keys.peer_id(KEY.public)
    check_announces(back, MANIFEST)


def test_hold_announcement_by_another_node() -> None:
    hold = Announcement.create(OTHER, kind="hold", manifest=MANIFEST, ts=5)
    back = Announcement.decode(hold.encode())
    assert back.node == OTHER.public and back.publisher == KEY.public


def test_publish_announcement_by_another_node_rejected() -> None:
    with pytest.raises(DecodeError, match="publisher"):
        Announcement.create(OTHER, kind="publish", manifest=MANIFEST, ts=5)
    forged = sign_map(OTHER, {**ANN.to_dict(), "node": OTHER.public}, domain=records.ANNOUNCE_DOMAIN)
    with pytest.raises(DecodeError, match="publisher"):
        Announcement.decode(forged)


ANN_BYTES = ANN.encode()


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(ANN_BYTES) - 1), st.integers(1, 255))
def test_announcement_single_byte_alteration_rejected(pos: int, delta: int) -> None:
    data = bytearray(ANN_BYTES)
    data[pos] = (data[pos] + delta) % 256
    with pytest.raises(RecordError):
        Announcement.decode(bytes(data))


def test_announcement_rules() -> None:
    base = ANN.to_dict()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "steal"}, "'publish' or 'hold'"),
        ({"seq": 0}, "'seq' must be between"),
        ({"ts": "now"}, "'ts' must be an integer"),
        ({"manifest": b"x"}, "'manifest' must be 32 bytes"),
        ({"extra": 1}, "unknown field"),
    ]
    for over, reason in cases:
        with pytest.raises(DecodeError, match=reason):
            Announcement.decode(sign_map(KEY, {**base, **over}, domain=records.ANNOUNCE_DOMAIN))
    # a manifest signature can never pass as an announcement signature
    with pytest.raises(SignatureError):
        Announcement.decode(sign_map(KEY, base, domain=records.MANIFEST_DOMAIN))
    # an announcement is not a manifest, and the other way round
    with pytest.raises(DecodeError, match="expected 'manifest'"):
        Manifest.decode(ANN_BYTES)
    with pytest.raises(DecodeError, match="expected 'announce'"):
        Announcement.decode(SIGNED)
    with pytest.raises(DecodeError, match="over the limit"):
        Announcement.decode(sign_map(KEY, {**base, "padding": "x" * 1024}, domain=records.ANNOUNCE_DOMAIN))


def test_check_fresh() -> None:
    now = ANN.ts
    check_fresh(ANN, now)
    check_fresh(ANN, now + 600)
    check_fresh(ANN, now - 120)
    with pytest.raises(StaleError, match="old"):
        check_fresh(ANN, now + 601)
    with pytest.raises(StaleError, match="future"):
        check_fresh(ANN, now - 121)
    with pytest.raises(StaleError):
        check_fresh(ANN, now + 11, max_age=10)
    assert issubclass(StaleError, RecordError)


def test_check_announces_mismatch() -> None:
    other = make_manifest(title="another")
    with pytest.raises(DecodeError, match="does not match"):
        check_announces(ANN, other)
    lying = Announcement(**{**{k: getattr(ANN, k) for k in Announcement.field_names()}, "size": 1})
    with pytest.raises(DecodeError, match="facts"):
        check_announces(lying, MANIFEST)
