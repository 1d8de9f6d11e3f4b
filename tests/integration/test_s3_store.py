"""The S3 chunk store against a real SeaweedFS server."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from communs.protocol.ids import cid_str, digest
from communs.storage import chunker
from communs.storage.errors import ChunkCorrupt, ChunkMissing, StorageError, StorageFull
from communs.storage.s3chunks import S3ChunkStore, S3Settings, classify, read_credentials_file, retry_delay

from tests.s3server import ACCESS_KEY, READ_KEY, READ_SECRET, SECRET_KEY, WeedServer


def settings(weed: WeedServer, bucket: str, **kw: object) -> S3Settings:
    base: dict[str, object] = {"endpoint": weed.endpoint, "bucket": bucket, "access_key": ACCESS_KEY,
                               "secret_key": SECRET_KEY, "prefix": "node-a"}
    base.update(kw)
    return S3Settings(**base)  # type: ignore[arg-type]


def test_put_get_has_delete_round_trip(weed: WeedServer, bucket: str) -> None:
    with S3ChunkStore(settings(weed, bucket)) as s:
        data = os.urandom(300_000)
        d = digest(data)
        assert s.put(d, data) is True
        assert s.put(d, data) is False
        assert s.key_of(d) == "node-a/" + cid_str(d)
        head = weed.client().head_object(Bucket=bucket, Key="node-a/" + cid_str(d))
        assert head["ContentLength"] == len(data)
        assert s.has(d) and s.size_of(d) == len(data)
        assert s.get(d) == data
        assert list(s.iter_digests()) == [d]
        assert s.total_bytes() == len(data)
        assert s.delete(d) is True and s.delete(d) is False
        assert not s.has(d) and s.total_bytes() == 0
        with pytest.raises(ChunkMissing, match="not stored here"):
            s.get(d)
        with pytest.raises(ChunkMissing):
            s.size_of(d)


def test_data_that_does_not_match_its_digest_is_refused(weed: WeedServer, bucket: str) -> None:
    with S3ChunkStore(settings(weed, bucket)) as s:
        d = digest(b"right")
        with pytest.raises(ChunkCorrupt, match="nothing was stored"):
            s.put(d, b"wrong")
        with pytest.raises(ChunkCorrupt):
            s.put(d, b"wrong", durable=False)
        assert not s.has(d)


def test_deferred_puts_are_stored_at_flush_and_put_many(weed: WeedServer, bucket: str) -> None:
    with S3ChunkStore(settings(weed, bucket, concurrency=3)) as s:
        items = [os.urandom(50_000 + i) for i in range(20)]
        for data in items:
            s.put(digest(data), bytearray(data), durable=False)
        s.flush()
        assert all(s.get(digest(x)) == x for x in items)
        more = [os.urandom(1000) for _ in range(5)]
        assert s.put_many([(digest(x), x) for x in [*more, items[0]]]) == [True] * 5 + [False]
        assert sorted(s.iter_digests()) == sorted(digest(x) for x in items + more)


def test_ingest_file_stores_every_chunk_byte_exact(weed: WeedServer, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(9 * 1024 * 1024 + 123))
    seen: list[int] = []
    with S3ChunkStore(settings(weed, bucket)) as s:
        chunks = s.ingest_file(src, lambda done, total: seen.append(done))
        assert sum(n for _, n in chunks) == src.stat().st_size
        assert b"".join(s.get(d) for d, _ in chunks) == src.read_bytes()
        with open(src, "rb") as f:
            expected = [digest(p.data) for p in chunker.iter_pieces(f)]
        assert [d for d, _ in chunks] == expected
        assert seen[-1] == src.stat().st_size


def test_an_object_altered_behind_the_store_is_found_and_quarantined(weed: WeedServer, bucket: str) -> None:
    with S3ChunkStore(settings(weed, bucket)) as s:
        good, bad = os.urandom(4000), os.urandom(4000)
        s.put(digest(good), good)
        s.put(digest(bad), bad)
        weed.client().put_object(Bucket=bucket, Key=s.key_of(digest(bad)), Body=b"rotten")
        assert s.scrub() == [digest(bad)]
        assert not s.has(digest(bad)) and s.get(digest(good)) == good
        assert len(s.quarantined()) == 1 and s.quarantined()[0].startswith(cid_str(digest(bad)))
        assert list(s.iter_digests()) == [digest(good)]  # quarantine is not listed as chunks


def test_bad_credentials_are_one_sentence(weed: WeedServer, bucket: str) -> None:
    with pytest.raises(StorageError, match=r"refused the credentials .* check AWS_ACCESS_KEY_ID"):
        S3ChunkStore(settings(weed, bucket, secret_key="not-the-secret"))
    with pytest.raises(StorageError, match="refused the credentials"):
        S3ChunkStore(settings(weed, bucket, access_key="nobody"))


def test_a_missing_bucket_is_one_sentence(weed: WeedServer) -> None:
    with pytest.raises(StorageError, match="the bucket 'no-such-bucket' does not exist at http"):
        S3ChunkStore(settings(weed, "no-such-bucket"))


def test_a_read_only_bucket_is_one_sentence_and_nothing_is_stored(weed: WeedServer, bucket: str) -> None:
    with S3ChunkStore(settings(weed, bucket, access_key=READ_KEY, secret_key=READ_SECRET)) as s:
        data = b"x" * 1000
        with pytest.raises(StorageError, match="read-only for these credentials"):
            s.put(digest(data), data)
        s.put(digest(data), data, durable=False)
        with pytest.raises(StorageError, match="read-only"):
            s.flush()
        assert not s.has(digest(data))


def test_free_space_comes_from_the_configured_capacity(weed: WeedServer, bucket: str) -> None:
    with S3ChunkStore(settings(weed, bucket)) as s:
        assert s.space() is None
    with S3ChunkStore(settings(weed, bucket, capacity_bytes=10_000)) as s:
        s.put(digest(b"a" * 4000), b"a" * 4000)
        assert s.space() == (6000, 10_000)
        big = os.urandom(7000)
        with pytest.raises(StorageFull, match=r"capacity_bytes is 10000: chunk .* does not fit"):
            s.put(digest(big), big)
        s.put(digest(big), big, durable=False)
        with pytest.raises(StorageFull):
            s.flush()
        assert not s.has(digest(big)) and s.space() == (6000, 10_000)


@pytest.mark.slow
def test_a_stopped_server_is_waited_for_then_work_resumes(weed_bin: str, tmp_path: Path) -> None:
    server = WeedServer(weed_bin, tmp_path / "w").start()
    try:
        server.make_bucket("chunks")
        with S3ChunkStore(S3Settings(endpoint=server.endpoint, bucket="chunks", access_key=ACCESS_KEY,
                                     secret_key=SECRET_KEY, wait_s=120)) as s:
            first = os.urandom(100_000)
            s.put(digest(first), first)
            server.stop()
            data = os.urandom(200_000)
            result: list[object] = []
            t = threading.Thread(target=lambda: result.append(s.put(digest(data), data)))
            t.start()
            deadline = time.monotonic() + 30
            while s.waiting is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert s.waiting is not None and "does not answer" in s.waiting
            assert t.is_alive()
            server.start()
            t.join(timeout=120)
            assert not t.is_alive() and result == [True]
            assert s.waiting is None
            assert s.get(digest(data)) == data and s.get(digest(first)) == first
    finally:
        server.stop()


@pytest.mark.slow
def test_a_server_gone_for_longer_than_the_wait_is_one_sentence(weed_bin: str, tmp_path: Path) -> None:
    server = WeedServer(weed_bin, tmp_path / "w").start()
    try:
        server.make_bucket("chunks")
        s = S3ChunkStore(S3Settings(endpoint=server.endpoint, bucket="chunks", access_key=ACCESS_KEY,
                                    secret_key=SECRET_KEY, wait_s=2))
    finally:
        server.stop()
    with pytest.raises(StorageError, match=r"could not be used for 2 s while reading chunk .* does not answer"):
        s.get(digest(b"x"))
    s.close()


def test_error_classification_and_backoff_are_pure() -> None:
    assert classify("InvalidAccessKeyId", 403) == "auth"
    assert classify("SignatureDoesNotMatch", 403) == "auth"
    assert classify("NoSuchBucket", 404) == "bucket"
    assert classify("XMinioStorageFull", 507) == "full" and classify("", 507) == "full"
    assert classify("NoSuchKey", 404) == "missing" and classify("404", 404) == "missing"
    assert classify("AccessDenied", 403) == "denied"
    assert classify("SlowDown", 503) == "retry" and classify("InternalError", 500) == "retry"
    assert classify("InvalidArgument", 400) == "other"
    assert [retry_delay(n) for n in (1, 2, 3, 10)] == [0.25, 0.5, 1.0, 10.0]
    assert issubclass(StorageFull, StorageError)


def test_credentials_file_must_be_private(tmp_path: Path) -> None:
    f = tmp_path / "creds"
    f.write_text("[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n")
    f.chmod(0o644)
    with pytest.raises(StorageError, match="readable by others; run 'chmod 600"):
        read_credentials_file(f)
    f.chmod(0o600)
    assert read_credentials_file(f) == ("AK", "SK")
    f.write_text("aws_access_key_id = AK\n")
    with pytest.raises(StorageError, match="needs aws_access_key_id and aws_secret_access_key"):
        read_credentials_file(f)


@pytest.mark.slow
def test_space_never_waits_for_a_store_that_does_not_answer(weed_bin: str, tmp_path: Path) -> None:
    """The node asks for free space on its event loop (status, metrics, each replication round): with a
    capacity configured and the bucket not counted yet, a store that does not answer must give None at once
    (the count runs in the background), then the figure once the store answers again."""
    server = WeedServer(weed_bin, tmp_path / "w").start()
    try:
        server.make_bucket("chunks")
        s3 = dict(endpoint=server.endpoint, bucket="chunks", access_key=ACCESS_KEY, secret_key=SECRET_KEY)
        with S3ChunkStore(S3Settings(**s3)) as plain:  # type: ignore[arg-type]
            plain.put(digest(b"a" * 4000), b"a" * 4000)
        with S3ChunkStore(S3Settings(**s3, capacity_bytes=10_000, wait_s=120)) as s:  # type: ignore[arg-type]
            server.stop()
            answers: list[tuple[int, int] | None] = []
            asking = threading.Thread(target=lambda: answers.append(s.space()), daemon=True)
            asking.start()
            asking.join(20)
            assert not asking.is_alive(), "space() waited for the object store"
            assert answers == [None]
            server.start()
            deadline = time.monotonic() + 120
            while s.space() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert s.space() == (6000, 10_000)
    finally:
        server.stop()
def test_the_client_pages_listings_signs_odd_keys_and_sends_content_md5(weed: WeedServer, bucket: str) -> None:
    """The store's own S3 client (s3http.py) on SeaweedFS: listings over several pages, keys that need
    percent-encoding, and a body that does not match its Content-MD5 refused (bodies are UNSIGNED-PAYLOAD,
    so the MD5 is what lets the store refuse a body damaged on the way)."""
    import base64
    import hashlib

    from communs.storage.s3http import S3Answer, S3Http, S3Unreachable

    def md5(b: bytes) -> str:
        return base64.b64encode(hashlib.md5(b, usedforsecurity=False).digest()).decode("ascii")

    c = S3Http(weed.endpoint, bucket, ACCESS_KEY, SECRET_KEY, "us-east-1")
    keys = [f"odd/a key+{i}~=,.x" for i in range(5)]
    try:
        for k in keys:
            c.request("PUT", k, body=k.encode(), headers={"content-md5": md5(k.encode())})
        seen: list[tuple[str, int]] = []
        token: str | None = None
        pages = 0
        while True:
            page = c.list_page("odd/", token, max_keys=2)
            seen += page.objects
            pages += 1
            token = page.next_token
            if token is None:
                break
        assert pages == 3 and sorted(seen) == sorted((k, len(k)) for k in keys)
        assert c.request("GET", keys[0]).body == keys[0].encode()
        with pytest.raises(S3Answer) as refused:
            c.request("PUT", "odd/damaged", body=b"what arrived", headers={"content-md5": md5(b"what was sent")})
        assert refused.value.status == 400
        with pytest.raises(S3Answer) as missing:
            c.request("HEAD", "odd/damaged")
        assert missing.value.status == 404
    finally:
        c.close()
    with pytest.raises(S3Unreachable, match="closed"):
        c.request("GET", keys[0])
