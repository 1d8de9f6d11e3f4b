"""Creating and opening a node's data folder: keys, token, config, and the run lock."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from communs.node.config import (
    ADMIN_TOKEN_FILE,
    CONFIG_FILE,
    LOCK_FILE,
    NODE_JSON,
    NODE_KEY_FILE,
    OPERATOR_KEY_FILE,
    Config,
    ConfigError,
    fsync_dir,
    load_config,
    write_atomic,
    write_private,
)
from communs.node.folder import DataFolder
from communs.protocol import keys
from communs.protocol.errors import DecodeError


@dataclass
class NodeFiles:
    root: Path
    config: Config
    node_key: keys.SigningKey
    admin_token: str


def read_private_key(path: Path, what: str) -> keys.SigningKey:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror if isinstance(exc, OSError) else exc}") \
            from None
    try:
        return keys.parse_private(text)
    except DecodeError as exc:
        raise ConfigError(f"{what} {path} is not usable: {exc}") from None


def read_public_key(path: Path) -> bytes:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"public key file {path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read public key file {path}: {exc}") from None
    try:
        return keys.parse_public(text)
    except DecodeError:
        pass
    try:  # a private key file also names its public key
        return keys.parse_private(text).public
    except DecodeError:
        raise ConfigError(f"{path} is not a Communs public key file") from None


def init_folder(root: Path, cfg: Config, founders: list[tuple[bytes, str]] | None) -> list[tuple[bytes, str]]:
    """Create a new node folder. Refuses a folder that already holds a node, or any non-empty one.

    Returns the founding roster (public key, name). Without founders, an operator member key
    is created in the folder and its member is the sole founder. A config without a name gets
    `default_node_name` of the new node key's peer id.
    """
    node_key = keys.SigningKey.generate()
    if not cfg.name:
        cfg.name = default_node_name(keys.peer_id(node_key.public))
    cfg.validate()
    if (root / CONFIG_FILE).exists() or (root / NODE_KEY_FILE).exists():
        raise ConfigError(f"{root} already holds a Communs node; refusing to overwrite it")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        raise ConfigError(f"{root} is not empty; choose an empty or new folder for a new node")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    fsync_dir(root.parent)  # the folder itself survives a power cut (its files are synced as written)
    write_private(root / NODE_KEY_FILE, keys.format_private(node_key))
    write_private(root / ADMIN_TOKEN_FILE, secrets.token_urlsafe(32) + "\n")
    if not founders:
        operator = keys.SigningKey.generate()
        write_private(root / OPERATOR_KEY_FILE, keys.format_private(operator))
        write_atomic(root / (OPERATOR_KEY_FILE + ".pub"), keys.format_public(operator.public))
        founders = [(operator.public, "operator")]
    write_atomic(DataFolder(root).founders, json.dumps(
        [{"key": k.hex(), "name": n} for k, n in founders], indent=2) + "\n")
    # config.toml last: its presence is what marks the folder as a complete node.
    write_atomic(root / CONFIG_FILE, cfg.to_toml())
    return founders


def default_node_name(peer_id: str) -> str:
    """A name that tells nodes apart: the end of the peer id (its start, 12D3KooW, is the same for all)."""
    return f"communs-{peer_id[-8:]}"


def read_founders(root: Path) -> list[tuple[bytes, str]]:
    path = DataFolder(root).founders
    try:
        doc = json.loads(path.read_text("utf-8"))
        out = [(bytes.fromhex(m["key"]), str(m["name"])) for m in doc]
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing: the folder is incomplete") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is damaged: {exc}") from None
    if not out or any(len(k) != 32 for k, _ in out):
        raise ConfigError(f"{path} is damaged: it must list founders' 32-byte keys")
    return out


def open_folder(root: Path) -> NodeFiles:
    cfg = load_config(root)
    node_key = read_private_key(root / NODE_KEY_FILE, "node key")
    token_path = root / ADMIN_TOKEN_FILE
    try:
        token = token_path.read_text("utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"admin token {token_path} is missing") from None
    except OSError as exc:
        raise ConfigError(f"cannot read admin token {token_path}: {exc.strerror}") from None
    if len(token) < 16:
        raise ConfigError(f"admin token {token_path} is damaged (too short)")
    return NodeFiles(root, cfg, node_key, token)


class RunLock:
    """An exclusive lock on the folder, so two node processes never share one catalog."""

    def __init__(self, root: Path) -> None:
        self._path = root / LOCK_FILE
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        fh = open(self._path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise ConfigError(f"another node is already running on {self._path.parent}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def write_node_json(root: Path, doc: dict[str, object]) -> None:
    write_atomic(root / NODE_JSON, json.dumps(doc, indent=2) + "\n")


def remove_node_json(root: Path) -> None:
    try:
        (root / NODE_JSON).unlink()
    except FileNotFoundError:
        pass
