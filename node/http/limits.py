"""Admin routes for the bandwidth limits: read them, change them while the node runs.

`PUT /api/v1/limits` takes either key or both; a change lasts until the node stops (config.toml's
`[limits]` is what a restart starts with), as a GUI change of rate in a download manager would.
"""

from __future__ import annotations

from aiohttp import web
from communs.node.exchange.bandwidth import LimitError, check_rate
from communs.node.http.app import ApiError, json_response, node_of, read_json

KEYS = ("upload_bytes_per_s", "download_bytes_per_s")


async def get_limits(request: web.Request) -> web.Response:
    return json_response(node_of(request).bandwidth.limits())


async def put_limits(request: web.Request) -> web.Response:
    body = await read_json(request)
    unknown = sorted(set(body) - set(KEYS))
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r} (expected upload_bytes_per_s and/or "
                            "download_bytes_per_s)")
    if not body:
        raise ApiError(400, "give upload_bytes_per_s and/or download_bytes_per_s (bytes per second, 0 for none)")
    bandwidth = node_of(request).bandwidth
    try:
        given = {key: check_rate(body[key], key) for key in KEYS if key in body}  # null is no rate either
        bandwidth.set_limits(given.get("upload_bytes_per_s"), given.get("download_bytes_per_s"))
    except LimitError as exc:
        raise ApiError(400, str(exc)) from None
    return json_response(bandwidth.limits())


def register(app: web.Application) -> None:
    app.router.add_get("/api/v1/limits", get_limits)
    app.router.add_put("/api/v1/limits", put_limits)
