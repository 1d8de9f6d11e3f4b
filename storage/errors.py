"""The storage errors; `str(err)` is one sentence fit for an API answer."""

from __future__ import annotations


class StorageError(Exception):
    """A storage operation failed; nothing half-done was left visible."""


class ChunkMissing(StorageError, KeyError):
    """The chunk is not in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "chunk not found"


class ChunkCorrupt(StorageError):
    """The bytes stored under a digest (or offered for it) do not hash to that digest."""


class StorageFull(StorageError):
    """The disk or the quota of the filesystem is full (ENOSPC, EDQUOT); nothing partial was kept."""


class CatalogError(StorageError):
    """The catalog cannot be opened or used (not a Communs catalog, too new a schema, a failed migration)."""


class CatalogDamaged(CatalogError):
    """SQLite reports the catalog file itself damaged (a bad page, a broken index, a malformed record)."""
