"""Issue 18, faithful folders: `get` gives back the folder as it was published (executable bits, times,
empty folders), links and special files are left out and listed, case collisions are named all at once."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from tests.nodes import cli, cli_json


def tree(root: Path) -> dict[str, Any]:
    """Every entry under `root`, by relative path: folders, and files with bytes, executable bit and time."""
    out: dict[str, Any] = {}
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(folder) / name
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link"
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "folder"
            else:
                out[rel] = (p.read_bytes(), bool(st.st_mode & 0o111), st.st_mtime_ns)
    return out


def make_folder(root: Path) -> None:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "bin" / "run.sh").chmod(0o750)
    (root / "data" / "2024").mkdir(parents=True)
    (root / "data" / "2024" / "a.csv").write_text("x,y\n1,2\n")
    (root / "empty" / "nested" / "deep").mkdir(parents=True)
    (root / "also-empty").mkdir()
    (root / "README").write_text("upper")
    (root / "readme").write_text("lower")
    (root / "Notes").mkdir()
    (root / "Notes" / "n.txt").write_text("n")
    (root / "notes").mkdir()
    (root / "notes" / "m.txt").write_text("m")
    (root / "dangling").symlink_to(root / "gone")
    for i, p in enumerate(sorted(q for q in root.rglob("*") if q.is_file() and not q.is_symlink())):
        os.utime(p, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000 + i * 1_000_000_007))


def test_get_gives_the_folder_back_as_it_was(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = make_node("a")
    src = tmp_path / "src"
    make_folder(src)
    refused = cli(a.data, "publish", str(src), "--title", "t", "--licence", "CC0-1.0", check=False)
    # every collision named at once, not one per attempt; no traceback for the dangling link
    assert refused.returncode != 0 and "Notes / notes" in refused.stderr and "README / readme" in refused.stderr
    assert "internal error" not in refused.stderr and a.get("/api/v1/datasets") == []
    r = cli_json(a.data, "publish", str(src), "--title", "Folder", "--licence", "CC0-1.0", "--skip-case-collisions")
    assert {s["path"] for s in r["skipped"]} == {"dangling", "notes/m.txt", "readme"}
    shown = a.get(f"/api/v1/datasets/{r['id']}")
    assert shown["schema"] == 2 and shown["folders"] == ["also-empty", "empty/nested/deep"]
    out = tmp_path / "out"
    got = cli_json(a.data, "get", r["dataset"], str(out))
    assert got["folders"] == 2
    want = tree(src)
    for left_out in ("dangling", "notes", "notes/m.txt", "readme"):
        del want[left_out]
    assert tree(out) == want
    assert want["bin/run.sh"][1] is True and want["README"][1] is False  # the walk compares what matters
