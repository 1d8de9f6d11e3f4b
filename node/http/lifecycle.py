"""Admin routes for a dataset's lifecycle: its retraction, pruning its older versions here, cancelling a publish."""

from __future__ import annotations

from aiohttp import web
from communs.node.http.app import ApiError, json_response, node_of, read_json
from communs.node.http.datasets import parse_id, resolve_id
from communs.node.services.retention import PruneRefused
from communs.node.services.retraction import RetractError
from communs.protocol import ids, keys


async def retract(request: web.Request) -> web.Response:
    """POST /api/v1/datasets/{id}/retraction `{"reason"?}`: withdraw a dataset published here (all versions).
    201 with the versions marked now; 200 when it was already retracted (nothing changes)."""
    node = node_of(request)
    any_id = parse_id(request.match_info["id"], "dataset or manifest id")
    body = await read_json(request)
    unknown = set(body) - {"reason"}
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ApiError(400, "'reason' must be a string")
    try:
        applied = await node.retractions.retract(any_id, reason)
    except RetractError as exc:
        raise ApiError(exc.status, str(exc)) from None
    r = applied.retraction
    return json_response({"id": r.cid, "dataset": ids.cid_str(r.dataset), "publisher": keys.peer_id(r.publisher),
                          "reason": r.reason, "created": r.created, "versions": len(applied.retracted)},
                         status=201 if applied.retracted else 200)


async def prune(request: web.Request) -> web.Response:
    """POST /api/v1/datasets/{id}/prune `{"keep"?: N}`: release here the versions of a dataset published here
    older than its latest N (default: the policy's keep_versions). 200 with what was released and kept."""
    node = node_of(request)
    body = await read_json(request)  # first: an oversized body is refused (413) whatever the id names
    unknown = set(body) - {"keep"}
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    keep = body.get("keep")
    if keep is not None and (type(keep) is not int or keep < 1):
        raise ApiError(400, "'keep' must be a whole number of at least 1")
    target = await resolve_id(request, request.match_info["id"], "dataset")
    try:
        done = await node.prune.prune(target.dataset, keep)
    except PruneRefused as exc:
        raise ApiError(exc.status, str(exc)) from None
    p = done.pruning
    return json_response({"dataset": ids.cid_str(done.dataset), "keep": p.keep,
                          "released": [ids.cid_str(m) for m in p.release],
                          "kept": [ids.cid_str(m) for m in p.kept], "store_bytes": done.store_bytes})


async def cancel_publish(request: web.Request) -> web.Response:
    """DELETE /api/v1/publishing/{job}: stop a running publish and keep nothing of it. 200 `{"job", "state":
    "cancelled"}` once it stopped (or had already failed); 409 when its manifest was recorded first."""
    datasets = node_of(request).datasets
    try:
        job = datasets.jobs[int(request.match_info["job"])]
    except (KeyError, ValueError):
        raise ApiError(404, "no publish job with that number is known here (finished ones are forgotten "
                            "after 20 more)") from None
    state = await datasets.cancel(job)
    if state == "done":
        raise ApiError(409, "the publish had already recorded its dataset "
                            f"({ids.cid_str(job.manifest) if job.manifest else 'unknown id'}); retract it instead")
    if state not in ("cancelled", "failed"):
        raise ApiError(409, f"the publish is still {state}; ask again")
    return json_response({"job": job.id, "state": state})


def register(app: web.Application) -> None:
    app.router.add_post("/api/v1/datasets/{id}/retraction", retract)
    app.router.add_post("/api/v1/datasets/{id}/prune", prune)
    app.router.add_delete("/api/v1/publishing/{job}", cancel_publish)
