"""Files the node or the CLI write whole (config, node.json, `communs get`'s output) survive a power cut:
the file is fsynced before its rename and its folder after it (issue 12, item 11)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from communs.node import config


def test_write_atomic_fsyncs_the_file_then_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("rename", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(config.os, "fsync", fsync)
    monkeypatch.setattr(config.os, "replace", replace)
    target = tmp_path / "node.json"
    config.write_atomic(target, "{}")
    assert target.read_text() == "{}"
    assert [e[0] for e in events] == ["fsync", "rename", "fsync"]
    assert events[1] == ("rename", str(target)) and events[2] == ("fsync", str(tmp_path))
