"""Admin route for replication progress."""

from __future__ import annotations

from aiohttp import web
from communs.node.http.app import json_response, node_of


async def replication(request: web.Request) -> web.Response:
    """What is being fetched (bytes done and total, sources in use) and what waits, with why."""
    return json_response(await node_of(request).replication.report())


def register(app: web.Application) -> None:
    app.router.add_get("/api/v1/replication", replication)
