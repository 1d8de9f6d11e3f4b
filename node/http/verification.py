"""Admin routes for verifying one dataset's stored chunks on the running node (services/dataset_verify.py).

`POST /api/v1/datasets/{id}/verification` re-hashes the version's stored chunks and answers when done, with
what it found; `GET /api/v1/verifications` lists the running and recent verifications with their progress, as
`/api/v1/publishing` does for publishing.
"""

from __future__ import annotations

from aiohttp import web
from communs.node.http.app import ApiError, json_response, node_of, read_json
from communs.node.http.datasets import resolve_id


async def verify_dataset(request: web.Request) -> web.Response:
    if request.can_read_body:  # no field is taken; an empty object is fine
        body = await read_json(request)
        if body:
            raise ApiError(400, f"unknown field(s): {', '.join(sorted(body))}")
    target = await resolve_id(request, request.match_info["id"])
    if target.manifest is None:
        raise ApiError(404, "no manifest with that id is known here")
    job = await node_of(request).services.verifications.verify(target.manifest)
    if job is None:
        raise ApiError(404, "no manifest with that id is known here")
    return json_response(job.to_json())


async def verifications(request: web.Request) -> web.Response:
    return json_response(node_of(request).services.verifications.list())


def register(app: web.Application) -> None:
    app.router.add_post("/api/v1/datasets/{id}/verification", verify_dataset)
    app.router.add_get("/api/v1/verifications", verifications)
