"""The admin HTTP endpoint (aiohttp): bearer-token auth, JSON errors, the core routes.

Every answer to a caller's mistake is a 4xx with `{"error": "<one sentence>"}`; an unexpected
failure is logged with its traceback and answered with a generic 500 sentence, never the
traceback (which could carry paths or secrets). Route groups that belong to a feature register
themselves from their own modules through `ROUTE_MODULES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from communs.node import __version__
from communs.node.services.peernames import PeerNames, name_of
from communs.protocol import keys
from communs.storage.errors import CatalogDamaged

if TYPE_CHECKING:
    from communs.node.node import Node

log = logging.getLogger("communs.admin")

NODE_KEY: web.AppKey[Node] = web.AppKey("node")
PEER_NAMES: web.AppKey[PeerNames] = web.AppKey("peer_names", PeerNames)
PUBLIC_PATHS = frozenset({"/healthz"})
ROUTE_MODULES: list[str] = [
    "communs.node.http.datasets",
    "communs.node.http.lifecycle",
    "communs.node.http.governance",
    "communs.node.http.replication",
    "communs.node.http.copies",
    "communs.node.http.limits",
    "communs.node.http.verification",
    "communs.node.http.dashboard.routes",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(web.HTTPException):
    """A caller's mistake, answered as JSON with its status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(text=json.dumps({"error": message}), content_type="application/json", headers=headers)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def node_of(request: web.Request) -> Node:
    return request.app[NODE_KEY]


async def read_json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, "the request body must be JSON (Content-Type: application/json)")
    try:
        body = await request.json()
    except web.HTTPRequestEntityTooLarge:
        raise
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON") from None
    except RecursionError:  # json's decoder recurses once per level of nesting
        raise ApiError(400, "the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


_STATUS_SENTENCES = {
    404: "no such route; see /api/v1/openapi.json",
    405: "method not allowed on this route",
    413: "the request body is too large",
}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    node = node_of(request)
    try:
        response = await handler(request)
    except ApiError as exc:
        _count(node, exc.status)
        raise
    except web.HTTPException as exc:
        _count(node, exc.status)
        if exc.status >= 400 and exc.content_type != "application/json":
            sentence = _STATUS_SENTENCES.get(exc.status, exc.reason)
            # a 405 names the methods the route has (RFC 9110 15.5.6)
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            raise ApiError(exc.status, sentence, allow) from None
        raise
    except CatalogDamaged as exc:  # not a bug to trace: the file is damaged, and the sentence says what to do
        log.error("%s %s: %s", request.method, request.path, exc)
        _count(node, 503)
        raise ApiError(503, str(exc)) from None
    except Exception:
        log.exception("internal error answering %s %s", request.method, request.path)
        _count(node, 500)
        raise ApiError(500, "internal error; the node's log has the details") from None
    _count(node, response.status)
    return response


def _count(node: Node, status: int) -> None:
    if node.metrics is not None:
        node.metrics.api_requests.labels(f"{status // 100}xx").inc()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    from communs.node.http.dashboard import gate as dashboard
    from communs.node.http.dashboard.sessions import EXPIRED

    if request.path in PUBLIC_PATHS or dashboard.is_public(request.path):
        return await handler(request)
    if "Authorization" not in request.headers and dashboard.has_cookie(request):
        # the dashboard's session cookie (with its CSRF token on unsafe requests) stands for the bearer token
        refusal = dashboard.cookie_auth(request)
        if refusal is not None:
            raise ApiError(401 if refusal == EXPIRED else 403, refusal)
        return await handler(request)
    node = node_of(request)
    assert node.files is not None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = node.files.admin_token
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(401, "missing or wrong bearer token (see admin.token in the node's data folder)")
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    """ok while the node can accept a new peer and its catalog is sound: a node that no peer can connect to
    is not healthy, even if its process and API are (issue 12: 300 connections once locked every new peer out),
    and once the catalog file was found damaged every query may fail."""
    node = node_of(request)
    damaged = node.storage.catalog.damaged if node.storage is not None else None
    if damaged:
        return json_response({"ok": False, "error": damaged}, status=503)
    overlay = node.overlay
    problem = overlay.reachability() if overlay is not None else None
    if problem is not None:
        return json_response({"error": problem}, status=503)
    return json_response({"ok": True})


async def status(request: web.Request) -> web.Response:
    node = node_of(request)
    overlay = node.overlay
    doc: dict[str, Any] = {
        "peer_id": node.peer_id,
        "name": node.config.name,
        "federation": node.config.federation,
        "listen_addrs": overlay.listen_addrs() if overlay else [],
        "version": __version__,
        "uptime_s": round(node.uptime(), 3),
        "peers": len(overlay.peers()) if overlay else 0,
    }
    if overlay is not None:
        problem = overlay.reachability()
        doc["inbound"] = {**overlay.inbound(), "reachable": problem is None, "problem": problem or ""}
    doc.update(await node.services.status())
    return json_response(doc)


def peer_namer(app: web.Application) -> Callable[[str], str | None]:
    """A peer's name as this node knows it (services/peernames.py), None when it knows none."""
    node = app[NODE_KEY]
    local = app[PEER_NAMES].load()
    members: dict[str, str] = {}
    with contextlib.suppress(RuntimeError):  # governance not started yet
        members = {keys.peer_id(m.key): m.name for m in node.governance.roster}
    return lambda peer_id: name_of(peer_id, local, members)


async def peers(request: web.Request) -> web.Response:
    node = node_of(request)
    name = peer_namer(request.app)
    out = [{"peer_id": p.peer_id, "name": name(p.peer_id), "addrs": p.addrs, "protocols": p.protocols}
           for p in (node.overlay.peers() if node.overlay else [])]
    return json_response(out)


async def connect_peer(request: web.Request) -> web.Response:
    """Dial a peer by full multiaddr, as `ipfs swarm connect` does, and keep it for good as a bootstrap address
    (config.toml, replacing an older address of the same peer): the node redials it whenever it is not
    connected, across restarts. With `"keep": false`, only dial. With `"name"`, the peer is shown by that name
    (kept in DIR/peer-names.json; an empty name forgets it)."""
    from communs.node.config import ConfigError, check_peer_multiaddr
    from communs.node.http.openapi import PEER_ADDR_PATTERN
    from communs.node.services.peernames import PeerNameError, check_name
    from communs.protocol.net import OverlayError

    body = await read_json(request)
    unknown = set(body) - {"addr", "keep", "name"}
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    addr = body.get("addr")
    if not isinstance(addr, str):
        raise ApiError(400, "'addr' must be a multiaddr string ending in /p2p/<peer id>")
    if not re.match(PEER_ADDR_PATTERN, addr):  # exactly what the OpenAPI description states
        raise ApiError(400, "'addr' must be /ip4/ADDR, /ip6/ADDR or /dns/NAME, then /tcp/PORT/p2p/PEER_ID with an "
                            "Ed25519 peer id (12D3KooW...)")
    keep = body.get("keep", True)
    if not isinstance(keep, bool):
        raise ApiError(400, "'keep' must be true or false")
    try:
        name = check_name(body["name"]) if "name" in body else None
    except PeerNameError as exc:
        raise ApiError(400, str(exc)) from None
    node = node_of(request)
    try:
        check_peer_multiaddr(addr)
        peer_id = await node.overlay.connect(addr)
    except (ConfigError, OverlayError) as exc:
        raise ApiError(400 if isinstance(exc, ConfigError) else 502, str(exc)) from None
    if keep:
        from communs.node.services.peerbook import add_bootstrap

        try:
            node.config.bootstrap = await asyncio.to_thread(add_bootstrap, node.root, addr)
        except (ConfigError, OSError) as exc:
            raise ApiError(400, f"connected, but could not keep the address in config.toml: {exc}") from None
    if name is not None:
        try:
            await asyncio.to_thread(request.app[PEER_NAMES].set, peer_id, name)
        except OSError as exc:
            raise ApiError(400, f"connected, but could not keep the peer's name: {exc.strerror}") from None
    return json_response({"peer_id": peer_id, "kept": keep, "name": peer_namer(request.app)(peer_id)}, status=200)


async def ping_peer(request: web.Request) -> web.Response:
    from communs.protocol.net import OverlayError

    node = node_of(request)
    peer_id = request.match_info["peer_id"]
    if not node.overlay.is_connected(peer_id):
        raise ApiError(404, f"peer {peer_id} is not connected")
    try:
        rtt = await node.overlay.ping(peer_id)
    except OverlayError as exc:
        raise ApiError(502, str(exc)) from None
    return json_response({"peer_id": peer_id, "rtt_ms": round(rtt * 1000, 3)})


async def metrics(request: web.Request) -> web.Response:
    node = node_of(request)
    await node.services.refresh_metrics()
    if node.overlay is not None:
        node.metrics.peers.set(len(node.overlay.peers()))
    return web.Response(body=node.metrics.render(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


async def openapi(request: web.Request) -> web.Response:
    from communs.node.http.openapi import spec

    return json_response(spec(__version__))


async def _open_peer_names(app: web.Application) -> None:
    app[PEER_NAMES] = PeerNames(app[NODE_KEY].root)


def build_app(node: Node) -> web.Application:
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware],
        client_max_size=node.config.max_request_bytes,
    )
    app[NODE_KEY] = node
    app.on_startup.append(_open_peer_names)  # before the dashboard's feed starts (it names peers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/peers", peers)
    app.router.add_post("/api/v1/peers", connect_peer)
    app.router.add_post("/api/v1/peers/{peer_id}/ping", ping_peer)
    app.router.add_get("/api/v1/openapi.json", openapi)
    for name in ROUTE_MODULES:
        importlib.import_module(name).register(app)
    return app
