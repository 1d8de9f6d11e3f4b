"""The verification's sentence and which file each finding belongs to (pure parts of dataset_verify)."""

from __future__ import annotations

from communs.node.services.dataset_verify import VerifyJob, findings_by_file, verdict
from communs.protocol import ids
from communs.protocol.records import ChunkRef, FileEntry


def _job(**kw: object) -> VerifyJob:
    base: dict[str, object] = dict(id="m", dataset="d", version=1, title="t", state="own", chunks_total=10,
                                   bytes_total=100, started=1.0)
    base.update(kw)
    return VerifyJob(**base)  # type: ignore[arg-type]


def test_verdict() -> None:
    assert verdict(_job()).startswith("Verifying: 0 of 10")
    assert verdict(_job(finished=2.0, chunks_done=10)) == \
        "All 10 stored chunks verified: every one hashes to its name."
    assert "(2 not stored here now, so not checked)" in verdict(_job(finished=2.0, not_here=2))
    assert verdict(_job(finished=2.0, not_here=10)).startswith("No chunk of this version is stored here")
    found = verdict(_job(finished=2.0, bad=["x"], missing=["y", "z"]))
    assert found.startswith("1 corrupt (quarantined) and 2 missing of 10 stored chunks")
    assert "fetches them again" in found
    assert "fetches it again" in verdict(_job(finished=2.0, bad=["x"]))
    assert verdict(_job(finished=2.0, error="the object store does not answer")) == \
        "The verification stopped: the object store does not answer."
    job = _job(finished=2.0, chunks_done=10)
    assert job.to_json()["ok"] is True and _job(finished=2.0, bad=["x"]).to_json()["ok"] is False
    assert _job().to_json()["ok"] is False  # running: not ok yet


def test_findings_by_file() -> None:
    a, b, c = (ids.digest(bytes([i])) for i in range(3))
    files = [FileEntry(path="one.bin", size=3, chunks=(ChunkRef(a, 1), ChunkRef(b, 1), ChunkRef(a, 1))),
             FileEntry(path="two.bin", size=1, chunks=(ChunkRef(b, 1),)),
             FileEntry(path="three.bin", size=1, chunks=(ChunkRef(c, 1),))]
    rows = findings_by_file(files, {a: "corrupt", b: "missing"})
    assert rows == [{"path": "one.bin", "chunk": ids.cid_str(a), "problem": "corrupt"},
                    {"path": "one.bin", "chunk": ids.cid_str(b), "problem": "missing"},
                    {"path": "two.bin", "chunk": ids.cid_str(b), "problem": "missing"}]
    assert findings_by_file(files, {}) == []
