"""Admin routes for datasets: list, show, publish (with progress readable while it runs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web
from communs.node.http.app import ApiError, json_response, node_of, read_json
from communs.node.services import publish_paths
from communs.node.services.datasets import DiskFull, IdempotencyConflict, PublishError, PublishHeld, manifest_full
from communs.protocol import ids
from communs.protocol.errors import RecordError
from communs.protocol.records import Manifest


def parse_id(text: str, what: str = "manifest id") -> bytes:
    try:
        return ids.parse_cid(text)
    except RecordError:
        raise ApiError(400, f"'{text[:80]}' is not a valid {what} (expected a CIDv1 starting with 'b')") from None


async def list_datasets(request: web.Request) -> web.Response:
    node = node_of(request)
    items = await node.datasets.list()
    counts = await node.copies.counts_by_manifest() if node.copies is not None else {}
    for item in items:  # copies: distinct nodes with a live holding claim (node/services/copies.py)
        item["copies"] = counts.get(ids.parse_cid(item["id"]), 0)
    return json_response(items)


async def show_dataset(request: web.Request) -> web.Response:
    node = node_of(request)
    mid = parse_id(request.match_info["id"])
    info = await node.storage.catalog.get_manifest(mid)
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


_PUBLISH_KEYS = {"path", "title", "licence", "description", "keywords", "dataset"}


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
        dataset = parse_id(_text(body, "dataset"), "dataset id")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(400, "'Idempotency-Key' must be 1 to 128 letters, digits, '-', '_', '.' or ':'")
    if not path_text.startswith("/"):
        raise ApiError(400, "'path' must be an absolute path on the node's machine")
    refused = publish_paths.refusal(path_text, allowed_publish_paths(node), node.root)
    if refused is not None:
        raise ApiError(403, refused)
    job = node.datasets.new_job(path_text)
    try:
        manifest = await node.datasets.publish(Path(path_text), title=title, licence=licence,
                                               description=description, keywords=keywords, dataset=dataset,
                                               job=job, idempotency_key=key)
    except PublishError as exc:
        status = (507 if isinstance(exc, DiskFull) else 422 if isinstance(exc, IdempotencyConflict)
                  else 409 if isinstance(exc, PublishHeld) else 400)
        raise ApiError(status, str(exc)) from None
    return json_response({"id": manifest.cid, "dataset": ids.cid_str(manifest.dataset),
                          "version": manifest.version, "job": job.id}, status=201)


async def publishing(request: web.Request) -> web.Response:
    """Publish jobs, running and recently finished, with bytes done and total (the CLI's progress bar)."""
    return json_response([j.to_json() for j in node_of(request).datasets.jobs.values()])


def register(app: web.Application) -> None:
    app.router.add_get("/api/v1/datasets", list_datasets)
    app.router.add_post("/api/v1/datasets", publish)
    app.router.add_get("/api/v1/publishing", publishing)
    app.router.add_get("/api/v1/datasets/{id}", show_dataset)
