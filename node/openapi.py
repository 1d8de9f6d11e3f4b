"""The OpenAPI 3 description of the admin API (filled as routes land)."""

from __future__ import annotations

from typing import Any


def spec(version: str) -> dict[str, Any]:
    return {"openapi": "3.0.3", "info": {"title": "Communs admin API", "version": version}, "paths": {}}
