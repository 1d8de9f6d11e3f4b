"""Names for peers, so that an operator reads "Fablab Nord" rather than 12D3KooW…, as Syncthing shows device names.

Nodes do not tell each other their names on the wire (libp2p identify carries none, and no Communs record does),
so a peer's name comes from what this node knows: the name its operator gave the peer when connecting it (kept
in DIR/peer-names.json, like Syncthing's device names, set on the side that adds the device), else the name of
the governance member whose key is the peer's key. Without either, pages show a short id.

`check_name`, `with_name` and `name_of` are pure; `PeerNames` does the file I/O (read again only when the file
changed, so a page that lists peers every second costs one stat).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from communs.node.config import write_atomic
from communs.protocol.signed import has_control

NAMES_FILE = "peer-names.json"
MAX_NAME_CHARS = 64
MAX_NAMES = 1024


class PeerNameError(ValueError):
    """A peer name that cannot be kept; one sentence."""


def check_name(name: object) -> str:
    """The name as kept (spaces around it removed); "" means: forget the name."""
    if not isinstance(name, str):
        raise PeerNameError("'name' must be a string")
    name = name.strip()
    if len(name) > MAX_NAME_CHARS or has_control(name):
        raise PeerNameError(f"'name' must be one line of at most {MAX_NAME_CHARS} characters")
    return name


def with_name(names: Mapping[str, str], peer_id: str, name: str) -> dict[str, str]:
    """`names` with `peer_id` named `name` (an empty name removes it); at most MAX_NAMES are kept."""
    out = {k: v for k, v in names.items() if k != peer_id}
    if name:
        out[peer_id] = name
    return dict(list(out.items())[-MAX_NAMES:])


def name_of(peer_id: str, local: Mapping[str, str], members: Mapping[str, str]) -> str | None:
    """The operator's name for the peer, else the member name of its key, else None (show a short id)."""
    return local.get(peer_id) or members.get(peer_id) or None


class PeerNames:
    """DIR/peer-names.json: `{peer id: name}`, mode 0600."""

    def __init__(self, root: Path) -> None:
        self.path = root / NAMES_FILE
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._names: dict[str, str] = {}

    def load(self) -> dict[str, str]:
        """The kept names; an absent or unreadable file is no names (they are only labels)."""
        try:
            st = os.stat(self.path)
        except OSError:
            self._stamp, self._names = None, {}
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                doc = json.loads(self.path.read_text("utf-8"))
            except (OSError, ValueError):
                doc = {}
            self._names = {str(k): v for k, v in doc.items() if isinstance(v, str)} if isinstance(doc, dict) else {}
            self._stamp = stamp
        return dict(self._names)

    def set(self, peer_id: str, name: str) -> dict[str, str]:
        """Name a peer (blocking file I/O: call it from a thread); the names now kept."""
        with self._lock:
            names = with_name(self.load(), peer_id, name)
            write_atomic(self.path, json.dumps(names, indent=1, sort_keys=True, ensure_ascii=False), mode=0o600)
            self._stamp = None
            return names


__all__ = ["MAX_NAME_CHARS", "NAMES_FILE", "PeerNameError", "PeerNames", "check_name", "name_of", "with_name"]
