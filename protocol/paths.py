"""File paths inside a manifest, and the one safe way to turn them into filesystem paths.

A manifest comes from a peer, so each path in it is hostile until checked. The rules are
stricter than POSIX needs, so that a dataset unpacks to the same tree on Linux, macOS and
Windows and never outside the destination folder: relative, `/`-separated, NFC unicode, no
empty, `.` or `..` segment, no backslash, no control character, no Windows drive prefix,
reserved device name or trailing dot or space. A tree is also refused when two of its
paths would land on the same file on a case-insensitive filesystem, or when one file path
is a folder of another ("a" and "a/b").

Every check raises `PathError` (a `DecodeError`, so a `RecordError`) with one sentence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from .errors import DecodeError

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4096

# Cc (C0 controls, DEL, C1 controls) and lone surrogates, which UTF-8 cannot carry.
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{p}{d}" for p in ("COM", "LPT") for d in "0123456789\u00b9\u00b2\u00b3"]
)


class PathError(DecodeError):
    """A manifest path, or a tree of them, that is not safe to write anywhere."""


def _show(path: str) -> str:
    return repr(path if len(path) <= 80 else path[:77] + "...")


def check_segment(segment: str, path: str) -> None:
    """Raise PathError unless `segment` is a safe single file or folder name within `path`."""
    if segment == "":
        raise PathError(f"path {_show(path)} has an empty segment")
    if segment in (".", ".."):
        raise PathError(f"path {_show(path)} contains a '{segment}' segment")
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise PathError(f"path {_show(path)} has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    if segment[-1] in ". ":
        raise PathError(f"path {_show(path)} has a segment ending in a dot or a space")
    if _DRIVE.match(segment):
        raise PathError(f"path {_show(path)} has a segment that starts like a Windows drive")
    if segment.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        raise PathError(f"path {_show(path)} uses a reserved Windows device name")


def check_path(path: object) -> str:
    """Return `path` if it is a safe manifest file path; raise PathError (one sentence) otherwise."""
    if not isinstance(path, str):
        raise PathError("a file path must be a string")
    if path == "":
        raise PathError("a file path must not be empty")
    bad = _BAD_CHARS.search(path)
    if bad is not None:
        code = ord(bad.group())
        raise PathError(f"path {_show(path)} contains the control or invalid character U+{code:04X}")
    if "\\" in path:
        raise PathError(f"path {_show(path)} contains a backslash")
    if path.startswith("/"):
        raise PathError(f"path {_show(path)} is absolute")
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise PathError(f"path {_show(path)} is longer than {MAX_PATH_BYTES} bytes")
    if not unicodedata.is_normalized("NFC", path):
        raise PathError(f"path {_show(path)} is not in Unicode normal form NFC")
    for segment in path.split("/"):
        check_segment(segment, path)
    return path


def is_safe_path(path: object) -> bool:
    try:
        check_path(path)
    except PathError:
        return False
    return True


def fold(text: str) -> str:
    """The key under which case-insensitive filesystems (APFS, NTFS) would most likely store `text`."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())


def check_tree(paths: Iterable[str], *, each_checked: bool = False) -> None:
    """Raise PathError if these file paths cannot all exist side by side on every filesystem.

    Refused: the same path twice, a file that is also a folder of another file ("a", "a/b"),
    and two different names for one file or folder under case folding ("Data/x", "data/y").
    Each path is checked with `check_path` first, unless the caller did (`each_checked`).
    """
    # folded prefix -> (prefix as written, is a file)
    seen: dict[str, tuple[str, bool]] = {}
    for path in paths:
        if not each_checked:
            check_path(path)
        segments = path.split("/")
        written = ""
        folded = ""
        last = len(segments) - 1
        for i, segment in enumerate(segments):
            written = segment if i == 0 else written + "/" + segment
            folded = fold(segment) if i == 0 else folded + "/" + fold(segment)
            is_file = i == last
            prior = seen.get(folded)
            if prior is None:
                seen[folded] = (written, is_file)
                continue
            prior_written, prior_is_file = prior
            if prior_written != written:
                raise PathError(
                    f"paths {_show(prior_written)} and {_show(written)} differ only by case or normalisation"
                )
            if prior_is_file and is_file:
                raise PathError(f"path {_show(written)} appears twice")
            if prior_is_file or is_file:
                raise PathError(f"path {_show(written)} is both a file and a folder")


def safe_join(root: Path, rel: str) -> Path:
    """The resolved path of manifest path `rel` under `root`, guaranteed to lie inside `root`.

    The lexical checks already forbid escaping; resolving as well catches a symlink planted
    inside `root` that points elsewhere. The result is the resolved path, the one that was checked.
    """
    check_path(rel)
    base = Path(root).resolve()
    target = base.joinpath(*rel.split("/")).resolve()
    if base not in target.parents:
        raise PathError(f"path {_show(rel)} leads outside the destination folder")
    return target
