"""Admin routes for datasets: list, show, publish (with progress readable while it runs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web
from communs.node.http.app import ApiError, json_response, node_of, read_json
from communs.node.services import publish_paths
from communs.node.services.datasets import (
    DiskFull,
    DuplicatePublish,
    IdempotencyConflict,
    PublishCancelled,
    PublishError,
    PublishHeld,
    manifest_full,
)
from communs.node.services.idresolve import IdError, Resolved, Want, resolve
from communs.protocol import ids
from communs.protocol.errors import RecordError
from communs.protocol.records import Manifest


def parse_id(text: str, what: str = "manifest id") -> bytes:
    try:
        return ids.parse_cid(text)
    except RecordError:
        raise ApiError(400, f"'{text[:80]}' is not a valid {what} (expected a CIDv1 starting with 'b')") from None


async def resolve_id(request: web.Request, text: str, want: Want = "latest") -> Resolved:
    """The manifest or dataset that `text` (an id or a unique prefix of 8 characters or more) names here;
    every route that takes a dataset or manifest id reads it through this."""
    try:
        return await resolve(node_of(request).storage.catalog, text, want)
    except IdError as exc:
        raise ApiError(exc.status, str(exc)) from None


async def list_datasets(request: web.Request) -> web.Response:
    node = node_of(request)
    items = await node.datasets.list()
    counts = await node.copies.counts_by_manifest()
    for item in items:  # copies: distinct nodes with a live holding claim (node/services/copies.py)
        item["copies"] = counts.get(ids.parse_cid(item["id"]), 0)
    return json_response(items)


async def show_dataset(request: web.Request) -> web.Response:
    node = node_of(request)
    target = await resolve_id(request, request.match_info["id"])
    info = None if target.manifest is None else await node.storage.catalog.get_manifest(target.manifest)
    if info is None or info.raw is None:
        raise ApiError(404, "no manifest with that id is known here")
    manifest = Manifest.decode(info.raw, verify=False)
    forked = info.publisher in await node.storage.catalog.forked_publishers()
    return json_response(manifest_full(info, manifest, forked))


def _text(body: dict[str, Any], key: str, required: bool = True, default: str = "") -> str:
    value = body.get(key, None)
    if value is None:
        if required:
            raise ApiError(400, f"'{key}' is required")
        return default
    if not isinstance(value, str):
        raise ApiError(400, f"'{key}' must be a string")
    return value


# A client-chosen key (the CLI sends a random one): a publish retried with it returns the first result.
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")

def allowed_publish_paths(node: Any) -> list[str]:
    configured = node.config.publish_allowed_paths
    return publish_paths.default_allowed() if configured is None else list(configured)


_PUBLISH_KEYS = {"path", "title", "licence", "description", "keywords", "dataset", "refuse_special",
                 "skip_case_collisions", "force"}


async def publish(request: web.Request) -> web.Response:
    node = node_of(request)
    body = await read_json(request)
    unknown = set(body) - _PUBLISH_KEYS
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    path_text = _text(body, "path")
    if not path_text or "\x00" in path_text:
        raise ApiError(400, "'path' must name a file or folder on the node's machine")
    title = _text(body, "title")
    licence = _text(body, "licence")
    description = _text(body, "description", required=False)
    keywords = body.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise ApiError(400, "'keywords' must be a list of strings")
    dataset = None
    if body.get("dataset") is not None:
        try:
            dataset = (await resolve(node.storage.catalog, _text(body, "dataset"), "dataset")).dataset
        except IdError as exc:  # a field of the request, not the resource asked for: 400 even when unknown
            raise ApiError(400, str(exc)) from None
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise ApiError(400, "'force' must be true or false")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(400, "'Idempotency-Key' must be 1 to 128 letters, digits, '-', '_', '.' or ':'")
    if not path_text.startswith("/"):
        raise ApiError(400, "'path' must be an absolute path on the node's machine")
    refused = publish_paths.refusal(path_text, allowed_publish_paths(node), node.root)
    if refused is not None:
        raise ApiError(403, refused)
    flags = {}
    for flag in ("refuse_special", "skip_case_collisions"):
        if not isinstance(body.get(flag, False), bool):
            raise ApiError(400, f"'{flag}' must be true or false")
        flags[flag] = bool(body.get(flag, False))
    job = node.datasets.new_job(path_text, key)
    job.refuse_special, job.skip_case_collisions = flags["refuse_special"], flags["skip_case_collisions"]
    try:
        manifest = await node.datasets.publish(Path(path_text), title=title, licence=licence,
                                               description=description, keywords=keywords, dataset=dataset,
                                               job=job, idempotency_key=key, force=force)
    except PublishError as exc:
        status = (507 if isinstance(exc, DiskFull) else 422 if isinstance(exc, IdempotencyConflict)
                  else 409 if isinstance(exc, PublishHeld | PublishCancelled | DuplicatePublish) else 400)
        raise ApiError(status, str(exc)) from None
    return json_response({"id": manifest.cid, "dataset": ids.cid_str(manifest.dataset),
                          "version": manifest.version, "job": job.id,
                          "skipped": [{"path": p, "why": why} for p, why in job.skipped],
                          "stored": job.stored.to_json() if job.stored is not None else None}, status=201)


async def publishing(request: web.Request) -> web.Response:
    """Publish jobs, running and recently finished, with bytes done and total (the CLI's progress bar)."""
    return json_response([j.to_json() for j in node_of(request).datasets.jobs.values()])


def register(app: web.Application) -> None:
    app.router.add_get("/api/v1/datasets", list_datasets)
    app.router.add_post("/api/v1/datasets", publish)
    app.router.add_get("/api/v1/publishing", publishing)
    app.router.add_get("/api/v1/datasets/{id}", show_dataset)
