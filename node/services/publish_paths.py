"""Which files the admin API may publish: only those under the folders the operator allowed.

The node reads the path it is given itself, so without a limit whoever holds the admin token could
publish any file the node's process can read (`/proc/self/environ`, the node's own key) to the whole
federation. `[publish] allowed_paths` in config.toml lists the folders publishing may read from; by
default the home folder of the user running the node and the system's temporary folder (where the
CLI's normal use, publishing your own files, takes them from). Whatever is configured, the node's
own data folder and the kernel's pseudo-file systems (/proc, /sys, /dev) are never published.
Paths are compared after resolving symbolic links, so a link cannot lead outside.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

NEVER = (Path("/proc"), Path("/sys"), Path("/dev"))


def default_allowed() -> list[str]:
    """The folders publishing may read from when config.toml does not say."""
    return [str(Path.home()), tempfile.gettempdir()]


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def refusal(path: str, allowed: Sequence[str], data_dir: Path | None) -> str | None:
    """Why `path` may not be published (one sentence), or None when it may. `path` must be absolute."""
    real = _real(path)
    for bad in NEVER:
        if real == bad or real.is_relative_to(bad):
            return f"{path} is a kernel pseudo-file; it cannot be published"
    if data_dir is not None:
        data = _real(data_dir)
        if real == data or real.is_relative_to(data) or data.is_relative_to(real):
            return (f"{path} is in (or holds) the node's own data folder, with its keys and token; "
                    "it cannot be published")
    for folder in allowed:
        top = _real(folder)
        if real == top or real.is_relative_to(top):
            return None
    return (f"{path} is outside the folders publishing is allowed from ({', '.join(allowed) or 'none'}); "
            "add its folder to [publish] allowed_paths in the node's config.toml")
