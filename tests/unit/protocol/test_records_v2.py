"""Manifest schema v2 (issue 18): empty folders, executable bits and modification times, beside v1."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from communs.protocol import encoding, ids, keys, records
from communs.protocol.errors import RecordError
from communs.protocol.records import FileEntry, Manifest, ManifestV2
from communs.protocol.signed import SignedRecord

KEY = keys.SigningKey(bytes(range(32)))
HELLO = (ids.digest(b"hello"), 5)


def v2(files: list[FileEntry] | None = None, folders: list[str] | None = None) -> Manifest:
    return Manifest.create(
        KEY, dataset=records.new_dataset_id(KEY.public, bytes(16)), version=1, prev=None, seq=1, log_prev=None,
        title="Example", licence="CC0-1.0", created=1700000000, keywords=["example"],
        files=files if files is not None else [
            FileEntry.of("data/a.csv", [HELLO], executable=False, mtime_ns=1700000000123456789),
            FileEntry.of("bin/run", [HELLO], executable=True, mtime_ns=1699999999000000000)],
        folders=["data/empty"] if folders is None else folders)


def signed(body: dict[str, Any]) -> bytes:
    body = {k: v for k, v in body.items() if k != "sig"}
    return encoding.encode({**body, "sig": KEY.sign(records.MANIFEST_V2_DOMAIN, encoding.encode(body))})


def test_v2_round_trips_through_bytes_and_pickle_and_signs_in_its_own_domain() -> None:
    m = v2()
    assert type(m) is ManifestV2 and m.VERSION == 2 and m.domain() == "manifest/2"
    back = Manifest.decode(m.encode())
    assert type(back) is ManifestV2 and back.id == m.id and back.folders == ("data/empty",)
    assert [(f.path, f.executable, f.mtime_ns) for f in back.files] == [
        ("bin/run", True, 1699999999000000000), ("data/a.csv", False, 1700000000123456789)]
    again = pickle.loads(pickle.dumps(back))
    assert type(again) is ManifestV2 and again.encode() == m.encode() and again.files == back.files
    assert again.empty_folders == ("data/empty",)


def test_v1_manifests_stay_v1_and_valid() -> None:
    m = Manifest.create(KEY, dataset=bytes(32), version=1, prev=None, seq=1, log_prev=None, title="t",
                        licence="CC0-1.0", created=1, files=[FileEntry.of("a", [HELLO])])
    back = Manifest.decode(m.encode())
    assert type(back) is Manifest and back.empty_folders == () and back.files[0].executable is None
    assert type(pickle.loads(pickle.dumps(back))) is Manifest


def test_a_v1_only_decoder_refuses_v2_in_one_sentence() -> None:
    """What a node of an older release does with a v2 manifest: its decoder knows only v1."""
    with pytest.raises(RecordError, match="unsupported manifest schema version 2"):
        SignedRecord.decode.__func__(Manifest, v2().encode())  # type: ignore[attr-defined]


def test_a_v1_signature_does_not_verify_as_v2() -> None:
    body = v2().to_dict()
    raw = encoding.encode({**body, "sig": KEY.sign(records.MANIFEST_DOMAIN,
                                                     encoding.encode({k: v for k, v in body.items() if k != "sig"}))})
    with pytest.raises(RecordError, match="signature"):
        Manifest.decode(raw)


def _file(path: str, **extra: Any) -> dict[str, Any]:
    return {"path": path, "size": 5, "chunks": [[HELLO[0], 5]], "exec": False, "mtime": 1, **extra}


@pytest.mark.parametrize(("over", "reason"), [
    ({"folders": ["b", "a"]}, "sorted"),
    ({"folders": ["a", "a"]}, "sorted"),
    ({"folders": ["data"]}, "not empty"),
    ({"folders": ["bin/run"]}, "both a file and a folder|appears twice"),
    ({"folders": ["DATA/empty"]}, "differ only by case"),
    ({"folders": ["../x"]}, ".."),
    ({"folders": "x"}, "'folders' must be a list"),
    ({"files": [{"path": "a", "size": 5, "chunks": [[HELLO[0], 5]]}], "size": 5}, "exactly path, size, chunks"),
    ({"files": [_file("a", exec=1)], "size": 5}, "true or false"),
    ({"files": [_file("a", mtime=-1)], "size": 5}, "'mtime' must be between"),
    ({"files": [_file("a", mtime=None)], "size": 5}, "both 'exec' and 'mtime'"),
])
def test_v2_rules_behind_a_valid_signature(over: dict[str, Any], reason: str) -> None:
    body = {**v2().to_dict(), **over}
    with pytest.raises(RecordError, match=reason):
        Manifest.decode(signed(body))


def test_entries_with_and_without_times_do_not_mix() -> None:
    with pytest.raises(RecordError, match="must have 'exec' and 'mtime' in a v2"):
        v2(files=[FileEntry.of("a", [HELLO])])
    with pytest.raises(RecordError, match="must not have 'exec' and 'mtime' in a v1"):
        Manifest.create(KEY, dataset=bytes(32), version=1, prev=None, seq=1, log_prev=None, title="t",
                        licence="CC0-1.0", created=1, files=[FileEntry.of("a", [HELLO], executable=True, mtime_ns=1)])


def test_an_empty_dataset_of_empty_folders_is_valid() -> None:
    m = v2(files=[], folders=["x", "y/z"])
    assert Manifest.decode(m.encode()).folders == ("x", "y/z") and m.size == 0
