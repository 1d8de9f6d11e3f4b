"""Opens the catalog and the chunk store for the node, and closes them last."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from communs.node.config import CATALOG_FILE
from communs.node.jsondoc import JsonDict
from communs.node.services.storage_config import open_chunk_store
from communs.storage.catalog import Catalog
from communs.storage.chunkstore import ChunkStore
from communs.storage.errors import StorageError

if TYPE_CHECKING:
    from communs.node.context import NodeContext


log = logging.getLogger("communs.storage")


class UsesStorage:
    """For services that work on the node's catalog and chunk store (opened by StorageService)."""

    storage: StorageService

    @property
    def catalog(self) -> Catalog:
        return self.storage.catalog

    @property
    def chunks(self) -> ChunkStore:
        return self.storage.chunks


class StorageService:
    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        # Set once the chunk store and the catalog agree after a start (replication reconciles them);
        # publishing waits for it.
        self.reconciled = asyncio.Event()
        self.catalog: Catalog
        self.chunks: ChunkStore

    async def start(self) -> None:
        from communs.node.errors import StartupError

        try:
            self.catalog = await Catalog.open(self.ctx.root / CATALOG_FILE)
        except StorageError as exc:
            raise StartupError(str(exc)) from None
        try:
            self.chunks = await asyncio.to_thread(open_chunk_store, self.ctx.root, self.ctx.config.storage)
        except StorageError as exc:
            await self.catalog.close()
            raise StartupError(str(exc)) from None
        if self.ctx.config.storage.backend == "fs" and self.ctx.config.storage.direct_io is not None:
            # (when probed, the store says so itself once its probe in the background has answered)
            log.info("chunk files are written %s (storage.direct_io)",
                     "with O_DIRECT" if getattr(self.chunks, "direct", False) else "through the page cache")

    async def status(self) -> JsonDict:
        """Which store holds the chunks, and why it is waiting for an object store that does not answer."""
        waiting = getattr(self.chunks, "waiting", None)
        return {"storage": {"backend": self.ctx.config.storage.backend, "waiting": waiting}}

    async def stop(self) -> None:
        await asyncio.to_thread(self.chunks.close)
        await self.catalog.close()
