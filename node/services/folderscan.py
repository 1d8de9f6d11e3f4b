"""What a folder to publish holds, as a manifest can carry it: files with their executable bit and time,
empty folders, and what has to be left out.

A manifest (protocol/records.py) holds regular files and empty folders. Symbolic links (dangling or not),
sockets, pipes and devices have no place in it: by default they are skipped and listed (`Scan.skipped`),
or, with `refuse_special`, the publish is refused naming the first. Names that differ only by case (or
Unicode normalisation) cannot sit side by side on every filesystem: they are all reported at once, or, with
`skip_case_collisions`, the first of each group in byte order is kept and the others are left out and listed.

`scan` does the I/O (one walk, lstat only: a link is never followed, so a dangling one cannot fail the
publish); `case_collision_groups` and `leaf_folders` are pure.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from communs.protocol import paths
from communs.protocol.errors import RecordError


class ScanError(Exception):
    """The folder cannot be published as asked; one sentence says why."""


@dataclass(frozen=True)
class ScannedFile:
    rel: str  # its path in the manifest
    real: Path  # where it is read from
    size: int
    executable: bool
    mtime_ns: int


@dataclass
class Scan:
    files: list[ScannedFile] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)  # empty folders (leaves only)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why), in path order

    def skipped_json(self) -> list[dict[str, str]]:
        return [{"path": p, "why": why} for p, why in self.skipped]


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def case_collision_groups(names: Iterable[str]) -> list[list[str]]:
    """Groups of two or more paths (files or folders, with every folder prefix considered) whose names differ
    only by case or normalisation, each group sorted in byte order, groups in order of their first member."""
    by_fold: dict[str, set[str]] = {}
    for name in names:
        segments = name.split("/")
        for i in range(1, len(segments) + 1):
            written = "/".join(segments[:i])
            by_fold.setdefault("/".join(paths.fold(s) for s in segments[:i]), set()).add(written)
    groups = [sorted(g, key=str.encode) for g in by_fold.values() if len(g) > 1]
    # a clash of folders makes their contents clash too: report the outermost clash only
    outer = [g for g in groups
             if not any(o is not g and any(n.startswith(m + "/") for n in g for m in o) for o in groups)]
    return sorted(outer, key=lambda g: g[0].encode())


def leaf_folders(folders: Iterable[str], files: Iterable[str]) -> list[str]:
    """The folders with nothing (no file, no other folder) below them, in byte order."""
    folder_list = list(folders)
    above = {p.rsplit("/", i)[0] for p in (*files, *folder_list) for i in range(1, p.count("/") + 1)}
    return sorted((f for f in folder_list if f not in above), key=str.encode)


def _under(path: str, prefixes: set[str]) -> bool:
    return path in prefixes or any(path.startswith(p + "/") for p in prefixes)


def scan(root: Path, *, refuse_special: bool = False, skip_case_collisions: bool = False) -> Scan:
    """The files and empty folders to publish under `root` (a file or a folder); ScanError when refused."""
    try:
        st = root.lstat()
    except FileNotFoundError:
        raise ScanError(f"{root} does not exist") from None
    except OSError as exc:
        raise ScanError(f"cannot read {root}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):  # the path given may be a link: publish what it names
        try:
            root = root.resolve(strict=True)
            st = root.stat()
        except OSError:
            raise ScanError(f"{root} is a symbolic link to nothing (dangling); nothing to publish") from None
    if stat.S_ISREG(st.st_mode):
        _check_readable(root)
        try:
            paths.check_path(root.name)
        except RecordError as exc:
            raise ScanError(f"{root.name!r} cannot be published: {exc}") from None
        return Scan(files=[ScannedFile(root.name, root, st.st_size, _is_exec(st.st_mode), max(st.st_mtime_ns, 0))])
    if not stat.S_ISDIR(st.st_mode):
        raise ScanError(f"{root} is neither a regular file nor a folder")
    base = root.resolve()
    out = Scan()
    folders: list[str] = []
    for folder, dirnames, filenames in os.walk(base, onerror=_walk_error, followlinks=False):
        here = Path(folder)
        for name in sorted(dirnames + filenames):
            p = here / name
            rel = p.relative_to(base).as_posix()
            try:
                lst = p.lstat()
            except OSError as exc:
                raise ScanError(f"cannot read {p}: {exc.strerror}") from None
            if not (stat.S_ISREG(lst.st_mode) or stat.S_ISDIR(lst.st_mode)):
                kind = _kind(lst.st_mode)
                if stat.S_ISLNK(lst.st_mode) and not p.exists():
                    kind = "dangling symbolic link"
                if refuse_special:
                    raise ScanError(f"{p} is a {kind}, which a dataset cannot hold; remove it or publish "
                                    "without --refuse-special to skip such entries")
                out.skipped.append((rel, kind))
                continue
            try:
                paths.check_path(rel)
            except RecordError as exc:
                raise ScanError(f"{p} cannot be published: {exc}") from None
            if stat.S_ISDIR(lst.st_mode):
                folders.append(rel)
                continue
            _check_readable(p)
            out.files.append(ScannedFile(rel, p, lst.st_size, _is_exec(lst.st_mode), max(lst.st_mtime_ns, 0)))
    groups = case_collision_groups([f.rel for f in out.files] + folders)
    if groups and not skip_case_collisions:
        shown = "; ".join(" / ".join(g) for g in groups[:50])
        more = f" (and {len(groups) - 50} more groups)" if len(groups) > 50 else ""
        raise ScanError(f"{sum(len(g) for g in groups)} names differ only by case or normalisation from another, "
                        f"which not every filesystem can hold side by side: {shown}{more}; rename them, or "
                        "publish with --skip-case-collisions to keep the first of each group and leave out the rest")
    if groups:
        left_out = {name for g in groups for name in g[1:]}
        for f in [f for f in out.files if _under(f.rel, left_out)]:
            out.skipped.append((f.rel, "differs only by case from " + _kept(f.rel, groups)))
        out.files = [f for f in out.files if not _under(f.rel, left_out)]
        folders = [d for d in folders if not _under(d, left_out)]
    out.folders = leaf_folders(folders, [f.rel for f in out.files])
    try:
        paths.check_tree([f.rel for f in out.files] + out.folders)
    except RecordError as exc:
        raise ScanError(f"the folder cannot be published: {exc}") from None
    out.skipped.sort(key=lambda s: s[0].encode())
    return out


def _kept(rel: str, groups: list[list[str]]) -> str:
    for g in groups:
        for name in g[1:]:
            if rel == name or rel.startswith(name + "/"):
                return g[0]
    return "another name"


def _is_exec(mode: int) -> bool:
    return bool(mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


def _walk_error(exc: OSError) -> None:
    raise ScanError(f"cannot read {exc.filename}: {exc.strerror}")


def _check_readable(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ScanError(f"cannot read {path}: {exc.strerror}") from None
