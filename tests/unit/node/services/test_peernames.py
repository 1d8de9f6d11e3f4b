"""Peers' names: checked, kept, looked up (the operator's name first, then a member's), stored 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from communs.node.services.peernames import (
    MAX_NAMES,
    NAMES_FILE,
    PeerNameError,
    PeerNames,
    check_name,
    name_of,
    with_name,
)


def test_check_name() -> None:
    assert check_name("  Fablab Nord ") == "Fablab Nord"
    assert check_name("") == ""
    assert check_name("x" * 64) == "x" * 64
    for bad in ("x" * 65, "a\nb", "tab\there", None, 3):
        with pytest.raises(PeerNameError):
            check_name(bad)


def test_with_name_and_name_of() -> None:
    names = with_name({}, "P1", "One")
    assert with_name(names, "P1", "Uno") == {"P1": "Uno"}
    assert with_name(names, "P1", "") == {}
    many: dict[str, str] = {}
    for i in range(MAX_NAMES + 5):
        many = with_name(many, f"P{i}", str(i))
    assert len(many) == MAX_NAMES and "P0" not in many and f"P{MAX_NAMES + 4}" in many
    assert name_of("P1", {"P1": "Local"}, {"P1": "Member"}) == "Local"
    assert name_of("P1", {}, {"P1": "Member"}) == "Member"
    assert name_of("P1", {}, {}) is None


def test_peer_names_file(tmp_path: Path) -> None:
    book = PeerNames(tmp_path)
    assert book.load() == {}
    book.set("P1", "Fablab")
    assert book.load() == {"P1": "Fablab"}
    assert stat.S_IMODE(os.stat(tmp_path / NAMES_FILE).st_mode) == 0o600
    assert PeerNames(tmp_path).load() == {"P1": "Fablab"}  # read back by a new reader
    (tmp_path / NAMES_FILE).write_text("{not json")
    assert book.load() == {}  # only labels: a damaged file is no names, never an error
    (tmp_path / NAMES_FILE).write_text('{"P2": "ok", "P3": 5}')
    assert book.load() == {"P2": "ok"}
