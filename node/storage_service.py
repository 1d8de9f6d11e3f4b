"""Opens the catalog and the chunk store for the node, and closes them last."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from communs.storage.catalog import Catalog
from communs.storage.chunkstore import ChunkStore
from communs.storage.errors import StorageError

from .config import CATALOG_FILE
from .storage_config import open_chunk_store

if TYPE_CHECKING:
    from .service import Node



class UsesStorage:
    """For services that work on the node's catalog and chunk store (opened by StorageService)."""

    node: Node

    @property
    def catalog(self) -> Catalog:
        catalog: Catalog = self.node.storage.catalog
        return catalog

    @property
    def chunks(self) -> ChunkStore:
        chunks: ChunkStore = self.node.storage.chunks
        return chunks


class StorageService:
    def __init__(self, node: Node) -> None:
        self.node = node
        node.storage = self
        self.catalog: Catalog
        self.chunks: ChunkStore

    async def start(self) -> None:
        from .service import StartupError

        try:
            self.catalog = await Catalog.open(self.node.root / CATALOG_FILE)
        except StorageError as exc:
            raise StartupError(str(exc)) from None
        try:
            self.chunks = await asyncio.to_thread(open_chunk_store, self.node.root, self.node.config.storage)
        except StorageError as exc:
            await self.catalog.close()
            raise StartupError(str(exc)) from None

    async def status(self) -> dict[str, Any]:
        """Which store holds the chunks, and why it is waiting for an object store that does not answer."""
        waiting = getattr(self.chunks, "waiting", None)
        return {"storage": {"backend": self.node.config.storage.backend, "waiting": waiting}}

    async def stop(self) -> None:
        await asyncio.to_thread(self.chunks.close)
        await self.catalog.close()
