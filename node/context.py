"""What a service needs of the running node, and nothing more: the node's runtime context.

The node (`node/node.py`) owns the lifecycle; its services need only a few things it holds: the data
folder, the node's key, the configuration, the metrics, the overlay, a way to start background tasks,
and the bandwidth limits. The composition root (`node/main.py`) puts exactly those in one frozen
`NodeContext` and hands it to the services that need it, so that no service holds the `Node` (and
reaches through it into other services): what a service uses of the node is written here, typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from communs.protocol import keys

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Coroutine
    from pathlib import Path

    from communs.node.config import Config
    from communs.node.exchange.bandwidth import Bandwidth
    from communs.node.http.metrics import Metrics
    from communs.protocol.libp2p.overlay import Overlay

T = TypeVar("T")


class Spawn(Protocol):
    """Start a background task that is cancelled at stop and whose failure is logged (`Node.spawn`)."""

    def __call__(self, coro: Coroutine[object, object, T], name: str) -> asyncio.Task[T]: ...


@dataclass(frozen=True)
class NodeContext:
    """The running node as its services see it; built once, at start, by `main.build_services`."""

    root: Path  # the data folder
    key: keys.SigningKey  # the node's own key (its peer id, its signatures)
    config: Config  # config.toml as read at start (`peers add` updates it in place)
    metrics: Metrics
    overlay: Overlay  # built before the services, started after them
    spawn: Spawn
    bandwidth: Bandwidth  # chunk bytes per second, both ways

    @property
    def peer_id(self) -> str:
        return keys.peer_id(self.key.public)
