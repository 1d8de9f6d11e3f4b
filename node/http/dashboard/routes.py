"""The dashboard's routes on the admin app: pages, sign-in and sign-out, the session's CSRF token,
the server-sent events, and the security headers of every answer.

Pages and assets are files of this package (`static/`), served as they are: no templating of data into
HTML (the front end builds its DOM from the JSON API with textContent), no inline script or style, so the
Content-Security-Policy can forbid both. The JSON API is the same one the CLI uses; the page calls it
with the session cookie, and the admin app's auth middleware applies `sessions.cookie_refusal`.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from importlib import resources
from pathlib import Path

from aiohttp import web
from communs.node.http.app import ApiError, json_response, node_of
from communs.node.http.dashboard import sessions as sess
from communs.node.http.dashboard.feed import Feed
from communs.node.http.dashboard.gate import GATE, STATIC_PREFIX, Gate, session_of

FEED: web.AppKey[Feed] = web.AppKey("dashboard_feed", Feed)
KEEPALIVE_S = 15.0

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make form posts send `Origin: null`
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
          ".ico": "image/x-icon"}


def _static_root() -> Path:
    return Path(str(resources.files("communs.node.http.dashboard") / "static"))


def _asset(name: str) -> bytes:
    return (_static_root() / name).read_bytes()


def _page(name: str, status: int = 200, error: str = "") -> web.Response:
    text = _asset(name).decode()
    if error:  # the one piece of server text in a page: escaped, in a paragraph the page already has
        text = text.replace('<p id="error" role="alert" hidden></p>',
                            f'<p id="error" role="alert">{html.escape(error)}</p>')
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store"})


async def index(request: web.Request) -> web.StreamResponse:
    if session_of(request) is None:
        raise web.HTTPSeeOther("/login")
    return _page("index.html")


async def login_page(request: web.Request) -> web.StreamResponse:
    if session_of(request) is not None:
        raise web.HTTPSeeOther("/")
    return _page("login.html")


async def login(request: web.Request) -> web.StreamResponse:
    """The sign-in form's POST (application/x-www-form-urlencoded, field `token`)."""
    node = node_of(request)
    if not sess.same_origin(request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"),
                            request.host, request.scheme):
        return _page("login.html", 403, "Sign in from this node's own page.")
    if request.content_type != "application/x-www-form-urlencoded":
        return _page("login.html", 415, "Sign in with the form on this page.")
    form = await request.post()
    token = form.get("token")
    assert node.files is not None
    if not isinstance(token, str) or not sess.token_matches(token, node.files.admin_token):
        await asyncio.sleep(0.5)  # a wrong guess costs the guesser time
        return _page("login.html", 401, "That is not this node's admin token (admin.token in its data folder).")
    s = request.app[GATE].sessions.open(time.monotonic())
    resp = web.HTTPSeeOther("/")
    resp.set_cookie(request.app[GATE].cookie, s.id, httponly=True, samesite="Strict", path="/",
                    secure=request.secure, max_age=int(sess.MAX_AGE_S))
    raise resp


async def logout(request: web.Request) -> web.Response:
    """Ends the session (the middleware has checked its CSRF token) and clears the cookie."""
    sid = request.cookies.get(request.app[GATE].cookie)
    if sid:
        request.app[GATE].sessions.close(sid)
    resp = json_response({"signed_out": True})
    resp.del_cookie(request.app[GATE].cookie, path="/")
    return resp


async def session_info(request: web.Request) -> web.Response:
    """The CSRF token the page sends with unsafe requests (readable only by same-origin scripts)."""
    s = session_of(request)
    if s is None:
        raise ApiError(401, sess.EXPIRED)
    return json_response({"csrf": s.csrf, "csrf_header": sess.CSRF_HEADER})


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: a `state` event with everything at first, then one with each change."""
    feed = request.app[FEED]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await resp.prepare(request)
    q = feed.subscribe()
    try:
        first = json.dumps(await feed.snapshot(q), ensure_ascii=False)
        await resp.write(f"retry: 2000\nevent: state\ndata: {first}\n\n".encode())
        while True:
            try:
                data = await asyncio.wait_for(q.get(), KEEPALIVE_S)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
                if session_of(request) is None and not request.headers.get("Authorization"):
                    break  # signed out elsewhere or expired: the page reconnects and is sent to sign-in
                continue
            await resp.write(f"event: state\ndata: {data}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        feed.unsubscribe(q)
    return resp


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    root = _static_root()
    path = (root / name).resolve()
    if root.resolve() not in path.parents or not path.is_file() or path.suffix not in _TYPES:
        raise ApiError(404, "no such dashboard file")
    return web.Response(body=path.read_bytes(), content_type=_TYPES[path.suffix],
                        charset="utf-8" if path.suffix != ".ico" else None,
                        headers={"Cache-Control": "no-cache"})


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for k, v in SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)


async def _start_feed(app: web.Application) -> None:
    app[FEED].start()


async def _stop_feed(app: web.Application) -> None:
    await app[FEED].stop()


def register(app: web.Application) -> None:
    from communs.node.http.app import NODE_KEY, peer_namer

    app[GATE] = Gate(app[NODE_KEY])
    app[FEED] = Feed(app[NODE_KEY], lambda: peer_namer(app))
    app.on_response_prepare.append(_security_headers)
    app.on_startup.append(_start_feed)
    app.on_cleanup.append(_stop_feed)
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/dashboard/session", session_info)
    app.router.add_get("/dashboard/events", events)
    app.router.add_get(STATIC_PREFIX + "{name:[A-Za-z0-9_/-]+\\.[a-z]+}", static)


