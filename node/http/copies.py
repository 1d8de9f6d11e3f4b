"""Admin route for copies across the federation: who holds a dataset version, from signed holding claims."""

from __future__ import annotations

from aiohttp import web
from communs.node.http.app import ApiError, json_response, node_of
from communs.node.http.datasets import resolve_id


async def holders(request: web.Request) -> web.Response:
    """The holders of one version: a manifest id, a dataset id (its latest version here) or a unique prefix."""
    node = node_of(request)
    mid = (await resolve_id(request, request.match_info["id"])).manifest
    if mid is None or await node.storage.catalog.get_manifest(mid) is None:
        raise ApiError(404, "no manifest with that id is known here")
    return json_response(await node.copies.holders(mid))


def register(app: web.Application) -> None:
    app.router.add_get("/api/v1/datasets/{id}/holders", holders)
