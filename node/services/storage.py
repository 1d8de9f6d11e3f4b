"""Opens the catalog and the chunk store for the node, and closes them last."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from communs.node.config import CATALOG_FILE
from communs.storage.catalog import Catalog
from communs.storage.chunkstore import ChunkStore, FsChunkStore
from communs.storage.errors import StorageError

if TYPE_CHECKING:
    from communs.node.node import Node

STORE_DIR = "store"

log = logging.getLogger("communs.storage")


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
        self.chunks: FsChunkStore

    async def start(self) -> None:
        from communs.node.errors import StartupError

        try:
            self.catalog = await Catalog.open(self.node.root / CATALOG_FILE)
        except StorageError as exc:
            raise StartupError(str(exc)) from None
        try:
            self.chunks = await asyncio.to_thread(FsChunkStore, self.node.root / STORE_DIR,
                                                  direct=self.node.config.direct_io)
        except StorageError as exc:
            await self.catalog.close()
            raise StartupError(str(exc)) from None
        why = "storage.direct_io" if self.node.config.direct_io is not None else "probed"
        log.info("chunk files are written %s (%s)",
                 "with O_DIRECT" if self.chunks.direct else "through the page cache", why)

    async def stop(self) -> None:
        await asyncio.to_thread(self.chunks.close)
        await self.catalog.close()
