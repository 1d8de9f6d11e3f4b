"""Placeholder: these admin routes are being written."""

from __future__ import annotations

from aiohttp import web


def register(app: web.Application) -> None:
    return None
