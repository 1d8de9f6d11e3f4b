"""The admin endpoint's HTTP server: aiohttp's, with JSON answers to requests that are not valid HTTP.

aiohttp answers a request it cannot parse (a request line or header over 8190 bytes, a bad method,
a broken chunked body) before any middleware runs: with a text/plain body and the exception's
traceback in the log. Here such a request gets what every other bad request gets, `{"error": "<one
sentence>"}` with its 4xx status, and the log gets one line. The request itself is never echoed
(aiohttp's messages quote the raw request line, which may carry anything).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("communs.admin")


def error_sentence(status: int, exc: BaseException | None) -> str:
    """The one sentence answered for a request aiohttp could not parse (or failed on outside a handler)."""
    if isinstance(exc, http_exceptions.LineTooLong):
        return "the request line or a header line is too long"
    if isinstance(exc, http_exceptions.BadHttpMethod):
        return "the request method is not valid HTTP"
    if isinstance(exc, http_exceptions.InvalidURLError):
        return "the request target is not a valid URL path"
    if isinstance(exc, http_exceptions.InvalidHeader):
        return "a request header is not valid HTTP"
    if isinstance(exc, http_exceptions.PayloadEncodingError):
        return "the request body's encoding is not valid"
    if status == 413:
        return "the request body is too large"
    if 400 <= status < 500:
        return "the request is not valid HTTP"
    return "internal error; the node's log has the details"


class _JsonErrorHandler(RequestHandler):
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        sentence = error_sentence(status, exc)
        if status >= 500:
            log.error("internal error outside a handler: %s", exc, exc_info=exc)
        else:
            log.info("refused a request from %s that is not valid HTTP (%d): %s", request.remote, status, sentence)
        if request.writer.output_size > 0:  # as aiohttp: an answer was under way, the connection is broken
            raise ConnectionError("an answer was already being sent; cannot send the error")
        resp = web.Response(status=status, text=json.dumps({"error": sentence}), content_type="application/json")
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class AdminRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer unparseable requests as JSON (see the module docstring)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer  # same object and state; only how it makes handlers differs
        return server
