"""Placeholder: this service is being written."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .service import Node


class StorageService:
    def __init__(self, node: Node) -> None:
        self.node = node
        node.storage = self

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
