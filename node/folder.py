"""The files of a node's data folder: the one place that names them.

README.md ("Where data and keys live") documents each; `DataFolder(root).catalog` and the like are how
the rest of the code finds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "config.toml"
NODE_KEY_FILE = "node.key"
ADMIN_TOKEN_FILE = "admin.token"
OPERATOR_KEY_FILE = "operator.key"
FOUNDERS_FILE = "founders.json"
CATALOG_FILE = "catalog.sqlite"
NODE_JSON = "node.json"
LOCK_FILE = "node.lock"
STORE_DIR = "store"  # the folder chunk store (`[storage] backend = "fs"`)
CHUNKS_DIR = "chunks"  # inside STORE_DIR
JOURNAL_DIR = "publishing"  # the publish and release journal


@dataclass(frozen=True)
class DataFolder:
    """The paths of one node's data folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def node_key(self) -> Path:
        return self.root / NODE_KEY_FILE

    @property
    def admin_token(self) -> Path:
        return self.root / ADMIN_TOKEN_FILE

    @property
    def operator_key(self) -> Path:
        return self.root / OPERATOR_KEY_FILE

    @property
    def founders(self) -> Path:
        return self.root / FOUNDERS_FILE

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG_FILE

    @property
    def node_json(self) -> Path:
        return self.root / NODE_JSON

    @property
    def lock(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def store(self) -> Path:
        return self.root / STORE_DIR

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL_DIR

    def holds_a_node(self) -> bool:
        """Whether `init` made a node here (its config exists)."""
        return self.config.exists()
