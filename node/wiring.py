"""Which services a node runs, in start order. Each has async `start()`/`stop()` and may have
`overlay_ready()`, called once libp2p listens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .service import Node


def build_services(node: Node) -> list[Any]:
    return []
