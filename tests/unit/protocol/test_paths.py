from __future__ import annotations

import os
from pathlib import Path

import pytest
from communs.protocol import paths
from communs.protocol.errors import RecordError
from communs.protocol.paths import PathError, check_path, check_tree, safe_join
from hypothesis import given
from hypothesis import strategies as st

GOOD = [
    "a",
    "a/b/c.csv",
    "données/été 2024.csv",
    "2024-01-01T10:00:00.csv",
    ".hidden",
    "a/.b/..c",
    "x" * 255,
    "/".join(["d" * 200] * 20),
    "CONSOLE.txt",
    "com10",
    "~tmp",
]

BAD = {
    "": "empty",
    "/etc/passwd": "absolute",
    "../x": "'..'",
    "a/../../x": "'..'",
    "a/..": "'..'",
    "./a": "'.'",
    "a/./b": "'.'",
    "a//b": "empty segment",
    "a/": "empty segment",
    "a\\b": "backslash",
    "..\\x": "backslash",
    "a\x00b": "U+0000",
    "a\nb": "U+000A",
    "a\x7f": "U+007F",
    "a\x85": "U+0085",
    "C:/x": "drive",
    "c:x": "drive",
    "a/D:b": "drive",
    "CON": "reserved",
    "con.txt": "reserved",
    "a/Nul": "reserved",
    "lpt1.log": "reserved",
    "COM\u00b9": "reserved",
    "a.": "dot or a space",
    "a ": "dot or a space",
    "...": "dot or a space",
    "x" * 256: "255 bytes",
    "é" * 128: "255 bytes",
    "/".join(["d" * 250] * 17): "4096 bytes",
    "e\u0301": "NFC",
    "\ud800": "U+D800",
}


@pytest.mark.parametrize("path", GOOD)
def test_good_paths_accepted(path: str) -> None:
    assert check_path(path) == path
    assert paths.is_safe_path(path)


@pytest.mark.parametrize(("path", "reason"), sorted(BAD.items()))
def test_bad_paths_refused_with_reason(path: str, reason: str) -> None:
    with pytest.raises(PathError) as err:
        check_path(path)
    assert reason in str(err.value)
    assert isinstance(err.value, RecordError)
    assert not paths.is_safe_path(path)


@pytest.mark.parametrize("value", [None, b"a", 3, ["a"]])
def test_non_strings_refused(value: object) -> None:
    with pytest.raises(PathError, match="string"):
        check_path(value)


def test_tree_accepts_distinct_paths() -> None:
    check_tree(["a/b", "a/c", "b", "c/d/e", "c/d/f", "ab", "a.b"])
    check_tree([])


@pytest.mark.parametrize(
    ("tree", "reason"),
    [
        (["a", "a"], "appears twice"),
        (["a", "a/b"], "both a file and a folder"),
        (["a/b", "a"], "both a file and a folder"),
        (["a/b/c", "a/b"], "both a file and a folder"),
        (["README", "readme"], "differ only by case"),
        (["Data/x", "data/y"], "differ only by case"),
        (["A", "a/b"], "differ only by case"),
        (["straße", "STRASSE"], "differ only by case"),
        (["ok", "../x"], "'..'"),
    ],
)
def test_tree_collisions_refused(tree: list[str], reason: str) -> None:
    with pytest.raises(PathError, match=reason):
        check_tree(tree)


def test_safe_join_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "dest"
    root.mkdir()
    target = safe_join(root, "a/b/c.txt")
    assert target == root.resolve() / "a" / "b" / "c.txt"
    assert root.resolve() in target.parents


@pytest.mark.parametrize("rel", ["../escape", "/etc/passwd", "a/../../x", "", "a\\..\\..\\x"])
def test_safe_join_refuses_unsafe(tmp_path: Path, rel: str) -> None:
    with pytest.raises(PathError):
        safe_join(tmp_path, rel)


def test_safe_join_refuses_symlink_leading_outside(tmp_path: Path) -> None:
    root = tmp_path / "dest"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(PathError, match="outside the destination"):
        safe_join(root, "link/file")
    # a symlink that stays inside is fine, and the resolved target is returned
    (root / "real").mkdir()
    os.symlink(root / "real", root / "inner")
    assert safe_join(root, "inner/f") == (root / "real" / "f").resolve()


@given(st.text(max_size=60))
def test_check_path_never_raises_anything_else(text: str) -> None:
    try:
        result = check_path(text)
    except PathError:
        return
    assert result == text
    segments = text.split("/")
    assert all(s not in ("", ".", "..") for s in segments)
    assert not text.startswith("/")
    assert "\\" not in text


@given(st.lists(st.text(alphabet="aAbB/.", min_size=1, max_size=6), max_size=8))
def test_check_tree_only_raises_path_error(tree: list[str]) -> None:
    try:
        check_tree(tree)
    except PathError:
        return
    folded = [paths.fold(p) for p in tree]
    assert len(set(folded)) == len(folded)
    for p in folded:
        assert not any(q.startswith(p + "/") for q in folded)
