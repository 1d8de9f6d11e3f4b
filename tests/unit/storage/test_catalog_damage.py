"""Issue 12 item 10: a damaged catalog file (real SQLite pages overwritten) is detected, not used.

Each test builds a real catalog, closes it, damages one page the way a bad sector or a torn write would
(a table's root page, the free list's trunk page), and checks that opening it for the node, auditing it and
querying it say so in one sentence naming the file, instead of starting on it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from communs.storage.catalog import Catalog, ManifestRow, read_gov_log_readonly
from communs.storage.errors import CatalogDamaged

from tests.unit.storage.test_catalog import PUB_A, chunk, row


async def _catalog_with_data(path: Path, n: int = 40) -> None:
    cat = await Catalog.open(path)
    try:
        rows: list[ManifestRow] = [row(PUB_A, i, state="own", chunks=[chunk(i)]) for i in range(1, n + 1)]
        await cat.put_manifests_batch(rows)
        await cat.kv_set("filler", b"x" * 200_000)  # pages that become the free list once deleted
        await cat.kv_delete("filler")
        await cat.gov_append(0, b"h" * 32, None, "genesis", b"raw-genesis", 1)
    finally:
        await cat.close()


def _write_page(path: Path, page: int) -> None:
    size = _page_size(path)
    with open(path, "r+b") as fh:
        fh.seek((page - 1) * size)
        fh.write(bytes([0xA5]) * size)


def _page_size(path: Path) -> int:
    with open(path, "rb") as fh:
        header = fh.read(100)
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


def _root_page(path: Path, table: str) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0])
    finally:
        db.close()


def _free_list_trunk(path: Path) -> int:
    with open(path, "rb") as fh:
        header = fh.read(100)
    return int.from_bytes(header[32:36], "big")


async def test_damaged_table_root_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    await _catalog_with_data(path)
    _write_page(path, _root_page(path, "manifests"))
    with pytest.raises(CatalogDamaged) as err:
        await Catalog.open(path)
    text = str(err.value)
    assert str(path) in text and "communs repair" in text and "\n" not in text


async def test_damaged_free_list_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    await _catalog_with_data(path)
    trunk = _free_list_trunk(path)
    assert trunk > 0, "the test needs a free list"
    _write_page(path, trunk)
    with pytest.raises(CatalogDamaged) as err:
        await Catalog.open(path)
    assert str(path) in str(err.value)
    with pytest.raises(CatalogDamaged):  # audit reads the log from intact pages, but must not call it intact
        read_gov_log_readonly(path)


async def test_damage_met_while_running_is_remembered_for_health(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    await _catalog_with_data(path)
    cat = await Catalog.open(path, check=False)
    try:
        _write_page(path, _root_page(path, "manifests"))
        assert cat.damaged is None
        with pytest.raises(CatalogDamaged):
            await cat.list_manifests()
        assert cat.damaged is not None and "communs repair" in cat.damaged
    finally:
        await cat.close()


async def test_sound_catalog_opens(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    await _catalog_with_data(path)
    cat = await Catalog.open(path)
    try:
        assert await cat.quick_check() == [] and cat.damaged is None
        assert len(await cat.list_manifests()) == 40
    finally:
        await cat.close()
