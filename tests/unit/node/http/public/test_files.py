from __future__ import annotations

import random

import pytest
from communs.node.http.public.files import (
    PublicFile,
    PublicVersion,
    Refused,
    chunk_plan,
    content_disposition,
    content_type,
    etag,
    resolve_file,
    resolve_id,
)


def v(id_: str, dataset: str, version: int, files: tuple[PublicFile, ...] = ()) -> PublicVersion:
    return PublicVersion(id=id_, dataset=dataset, version=version, title="t", description="", keywords=(),
                         licence="CC0-1.0", publisher="p", created=0, size=0, files=files)


FILES = (PublicFile("a.csv", 1, ()), PublicFile("dir/b c.txt", 1, ()), PublicFile("%2e%2e", 1, ()))
VERSIONS = [v("bmanifestaaaab", "bdatasetxxxx", 1, FILES), v("bmanifestaaaac", "bdatasetxxxx", 2),
            v("bmanifestbbbbb", "bdatasetyyyy", 1)]


def test_ids_exact_dataset_prefix() -> None:
    assert resolve_id("bmanifestaaaab", VERSIONS).id == "bmanifestaaaab"
    assert resolve_id("bdatasetxxxx", VERSIONS).id == "bmanifestaaaac"  # latest version
    assert resolve_id("bmanifestb", VERSIONS).id == "bmanifestbbbbb"
    assert resolve_id("bdatasety", VERSIONS).id == "bmanifestbbbbb"


@pytest.mark.parametrize("text,status", [("bmanifes", 409), ("bmanifestaaaa", 409), ("bzzzzzzzzz", 404),
                                         ("bshort", 400), ("../../etc", 400), ("BMANIFESTAAAA1", 400),
                                         ("bmanifest%2e", 400), ("b" + "a" * 200, 400)])
def test_bad_ids(text: str, status: int) -> None:
    with pytest.raises(Refused) as exc:
        resolve_id(text, VERSIONS)
    assert exc.value.status == status


def test_files_only_through_the_manifest() -> None:
    assert resolve_file(VERSIONS[0], "dir/b c.txt").path == "dir/b c.txt"
    assert resolve_file(VERSIONS[0], "%2e%2e").path == "%2e%2e"  # a literal name in the manifest is served


@pytest.mark.parametrize("path,status", [
    ("../a.csv", 400), ("dir/../a.csv", 400), ("./a.csv", 400), ("/etc/passwd", 400), ("dir//b c.txt", 400),
    ("a.csv/", 400), ("dir\\b c.txt", 400), ("a.csv\x00", 400), ("", 400), ("x" * 5000, 400),
    ("%2e%2e/a.csv", 400), ("dir%2f..%2fa.csv", 400), ("b.csv", 404), ("DIR/b c.txt", 404), ("dir", 404),
])
def test_traversal_and_unknown_paths_refused(path: str, status: int) -> None:
    with pytest.raises(Refused) as exc:
        resolve_file(VERSIONS[0], path)
    assert exc.value.status == status


def test_chunk_plan_is_byte_exact_at_random_offsets() -> None:
    rng = random.Random(7)
    sizes = [rng.randint(1, 50) for _ in range(40)]
    data = bytes(rng.randrange(256) for _ in range(sum(sizes)))
    chunks, pieces, pos = [], {}, 0
    for i, s in enumerate(sizes):
        d = i.to_bytes(32, "big")
        chunks.append((d, s))
        pieces[d] = data[pos:pos + s]
        pos += s
    for _ in range(300):
        a = rng.randrange(len(data))
        b = rng.randrange(a, len(data))
        out = b"".join(pieces[d][skip:skip + take] for d, skip, take in chunk_plan(chunks, a, b))
        assert out == data[a:b + 1]


def test_etag_depends_on_the_chunks_only() -> None:
    one = PublicFile("x", 3, ((b"\x01" * 32, 3),))
    assert etag(one) == etag(PublicFile("y", 3, ((b"\x01" * 32, 3),)))
    assert etag(one) != etag(PublicFile("x", 3, ((b"\x02" * 32, 3),)))


def test_headers() -> None:
    assert content_type("a/data.csv") == "text/csv"
    assert content_type("x.csv.gz") == "application/gzip"
    assert content_type("noext") == "application/octet-stream"
    cd = content_disposition('dir/données "x".csv')
    assert cd.startswith('attachment; filename="donn_es _x_.csv"')
    assert "filename*=UTF-8''donn%C3%A9es%20%22x%22.csv" in cd
