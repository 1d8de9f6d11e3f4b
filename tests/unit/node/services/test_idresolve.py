"""Choosing what an id names (pure), and the catalog query under it, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from communs.node.services.idresolve import IdError, choose, resolve
from communs.protocol import ids
from communs.storage.catalog import Catalog, ManifestInfo, ManifestRow


def info(tag: str, dataset: bytes, version: int, state: str = "complete") -> ManifestInfo:
    return ManifestInfo(id=ids.digest(tag.encode()), dataset=dataset, version=version, publisher=b"P" * 32,
                        seq=version, log_prev=None, title=f"title {tag}", licence="CC0-1.0", size=0, created=0,
                        received_at=0, own=False, state=state, reason="")


DS = ids.digest(b"dataset")
V1, V2, V3 = info("v1", DS, 1), info("v2", DS, 2), info("v3", DS, 3, "in-progress")


def test_a_manifest_match_names_that_manifest() -> None:
    r = choose("x", [V2], [])
    assert (r.manifest, r.dataset, r.via, r.version) == (V2.id, DS, "manifest", 2)


def test_a_dataset_match_names_its_latest_version_or_its_latest_complete_one() -> None:
    assert choose("x", [], [V1, V3, V2]).manifest == V3.id
    assert choose("x", [], [V1, V3, V2], "complete").manifest == V2.id
    r = choose("x", [], [V3, V1], "dataset")
    assert (r.dataset, r.via) == (DS, "dataset")


def test_a_dataset_without_a_complete_version_is_refused_for_get() -> None:
    with pytest.raises(IdError, match=r"no complete version here yet.*v3, is in-progress") as err:
        choose("x", [], [V3], "complete")
    assert err.value.status == 409


def test_nothing_matching_is_404_and_several_are_ambiguous_naming_each() -> None:
    with pytest.raises(IdError, match="no dataset or manifest") as err:
        choose("bafkr4iab", [], [])
    assert err.value.status == 404
    other = info("o1", ids.digest(b"other"), 1)
    with pytest.raises(IdError, match="ambiguous") as err:
        choose("bafkr4iab", [V1], [other])
    text = str(err.value)
    assert ids.cid_str(V1.id) in text and ids.cid_str(other.dataset) in text and err.value.status == 409


def test_an_ambiguous_error_names_a_bounded_number_of_candidates() -> None:
    many = [info(f"m{i}", DS, i + 1) for i in range(30)]
    with pytest.raises(IdError, match="and 24 more"):
        choose("bafkr4iab", many, [])


def row(tag: str, dataset: bytes, version: int, seq: int) -> ManifestRow:
    return ManifestRow(id=ids.digest(tag.encode()), dataset=dataset, version=version, publisher=b"P" * 32, seq=seq,
                       log_prev=None if seq == 1 else ids.digest(b"prev"), raw=b"raw", title=tag, licence="CC0-1.0",
                       size=0, created=seq, received_at=0, state="complete")


async def test_resolve_finds_by_full_id_by_dataset_id_and_by_prefix(tmp_path: Path) -> None:
    cat = await Catalog.open(tmp_path / "catalog.sqlite")
    try:
        dsets = [ids.digest(b"d%d" % i) for i in range(12)]
        for i, d in enumerate(dsets):
            await cat.put_manifest(row(f"a{i}", d, 1, 2 * i + 1))
            await cat.put_manifest(row(f"b{i}", d, 2, 2 * i + 2))
        first = ids.digest(b"a0")
        assert (await resolve(cat, ids.cid_str(first))).manifest == first
        r = await resolve(cat, ids.cid_str(dsets[0]))
        assert (r.manifest, r.via) == (ids.digest(b"b0"), "dataset")
        assert (await resolve(cat, ids.cid_str(first)[:20] + "\u2026")).manifest == first
        # 36 ids share 8 characters 'bafkr4i' + one of 8 letters: some 8-character prefix is ambiguous
        texts = [ids.cid_str(x) for x in dsets] + [ids.cid_str(ids.digest(f"{k}{i}".encode()))
                                                   for k in "ab" for i in range(12)]
        shared = next(t[:8] for t in texts if sum(u.startswith(t[:8]) for u in texts) > 1)
        with pytest.raises(IdError, match="ambiguous"):
            await resolve(cat, shared)
        with pytest.raises(IdError, match="at least 8 characters"):
            await resolve(cat, "bafkr4i")
        with pytest.raises(IdError, match="no dataset or manifest") as err:
            await resolve(cat, ids.cid_str(ids.digest(b"nothing")))
        assert err.value.status == 404
    finally:
        await cat.close()
