"""What the admin app's auth middleware asks of the dashboard: which paths are public, and whether a
request's session cookie admits it. Imports nothing of the admin app (which imports this)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from aiohttp import web
from communs.node.http.dashboard import sessions as sess

if TYPE_CHECKING:
    from communs.node.node import Node

STATIC_PREFIX = "/dashboard/static/"
PUBLIC = frozenset({"/", "/login"})  # they check the session themselves (a page, not a 401, when signed out)


class Gate:
    """The node's session table and the name of its cookie."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.sessions = sess.SessionTable()

    @property
    def cookie(self) -> str:
        return sess.cookie_name(self.node.peer_id)


GATE: web.AppKey[Gate] = web.AppKey("dashboard_gate", Gate)


def is_dashboard_path(path: str) -> bool:
    """The routes that are not part of the JSON API's description (pages, sign-in, the event stream)."""
    return path in PUBLIC or path == "/logout" or path.startswith("/dashboard/")


def is_public(path: str) -> bool:
    """Routes the auth middleware lets through: the sign-in page and the (secret-free) assets."""
    return path in PUBLIC or path.startswith(STATIC_PREFIX)


def session_of(request: web.Request) -> sess.Session | None:
    gate = request.app[GATE]
    sid = request.cookies.get(gate.cookie)
    return gate.sessions.find(sid, time.monotonic()) if sid else None


def has_cookie(request: web.Request) -> bool:
    gate = request.app.get(GATE)
    return gate is not None and gate.cookie in request.cookies


def cookie_auth(request: web.Request) -> str | None:
    """None if the session cookie admits this request, else why not (a sentence). Used only when the
    request carries no Authorization header."""
    origin_ok = sess.same_origin(request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"),
                                 request.host, request.scheme)
    return sess.cookie_refusal(session_of(request), request.method, request.headers.get(sess.CSRF_HEADER),
                               origin_ok)
