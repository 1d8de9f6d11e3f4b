"""Reading a folder to publish (issue 18): times, executable bits, empty folders, links and specials left out
and listed (or refused), case collisions reported all at once (or the first of each kept). Real folders."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from communs.node.services.folderscan import ScanError, case_collision_groups, leaf_folders, scan


def test_case_collision_groups_are_all_found_and_outermost_only() -> None:
    names = ["README", "readme", "Data/x", "data/y", "data/Y", "ok", "Caf\u00e9", "Cafe\u0301"]
    assert case_collision_groups(names) == [["Cafe\u0301", "Caf\u00e9"], ["Data", "data"], ["README", "readme"]]
    assert case_collision_groups(["a", "b/c"]) == []


def test_leaf_folders_are_those_with_nothing_below() -> None:
    assert leaf_folders(["a", "a/b", "c", "d"], ["c/f"]) == ["a/b", "d"]


def test_a_folder_with_times_modes_empty_folders_and_a_dangling_link(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "bin").mkdir(parents=True)
    (root / "empty" / "deeper").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "notes.txt").write_text("n")
    os.utime(root / "notes.txt", ns=(0, 1_234_567_891_000_000_123))
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    (root / "link-to-notes").symlink_to(root / "notes.txt")
    (root / "bin-link").symlink_to(root / "bin")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(root / "sock"))
    try:
        got = scan(root)
        assert {f.rel: (f.executable, f.size) for f in got.files} == {"bin/tool": (True, 10), "notes.txt": (False, 1)}
        assert next(f for f in got.files if f.rel == "notes.txt").mtime_ns == 1_234_567_891_000_000_123
        assert got.folders == ["empty/deeper"]
        assert got.skipped == [("bin-link", "symbolic link"), ("dangling", "dangling symbolic link"),
                               ("link-to-notes", "symbolic link"), ("sock", "socket")]
        with pytest.raises(ScanError, match=r"bin-link is a symbolic link.*--refuse-special"):
            scan(root, refuse_special=True)
    finally:
        s.close()


def test_case_collisions_are_reported_at_once_or_the_first_kept(tmp_path: Path) -> None:
    root = tmp_path / "src"
    for name in ("README", "readme", "Readme", "docs/A.txt", "docs/a.txt", "Docs/b.txt", "fine.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    with pytest.raises(ScanError) as err:
        scan(root)
    text = str(err.value)
    assert "Docs / docs" in text and "README / Readme / readme" in text and "--skip-case-collisions" in text
    got = scan(root, skip_case_collisions=True)
    assert sorted(f.rel for f in got.files) == ["Docs/b.txt", "README", "fine.txt"]
    assert [p for p, _ in got.skipped] == ["Readme", "docs/A.txt", "docs/a.txt", "readme"]


def test_a_link_given_as_the_path_is_followed_and_a_dangling_one_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "f")
    assert [f.rel for f in scan(tmp_path / "l").files] == ["f"]
    (tmp_path / "d").symlink_to(tmp_path / "none")
    with pytest.raises(ScanError, match="dangling"):
        scan(tmp_path / "d")
