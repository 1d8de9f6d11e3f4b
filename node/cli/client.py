"""A small synchronous client of the admin API, for the CLI.

The CLI finds the running node through `DIR/node.json` and authenticates with `DIR/admin.token`,
so an operator never copies a URL or a token by hand. It uses urllib (stdlib): a CLI call is one
or two requests, and importing aiohttp's client would double the command's start-up time.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from communs.node.config import ADMIN_TOKEN_FILE, NODE_JSON
from communs.node.folder import DataFolder


class ClientError(Exception):
    """The node could not be reached or refused the request; one sentence says why."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def for_folder(cls, root: Path, timeout: float = 30.0) -> AdminClient:
        info_path = root / NODE_JSON
        if not DataFolder(root).holds_a_node():
            raise ClientError(f"{root} is not a Communs node folder (run 'communs init --data {root}')")
        try:
            info = json.loads(info_path.read_text("utf-8"))
            url = str(info["admin_url"])
            pid = int(info["pid"])
        except FileNotFoundError:
            raise ClientError(f"the node in {root} is not running (start it with 'communs run --data {root}')") \
                from None
        except (OSError, ValueError, KeyError, TypeError):
            raise ClientError(f"{info_path} is damaged; restart the node to rewrite it") from None
        if not _alive(pid):
            raise ClientError(f"the node in {root} is not running (its node.json names pid {pid}, which has "
                              "exited); start it with 'communs run'")
        try:
            token = (root / ADMIN_TOKEN_FILE).read_text("utf-8").strip()
        except OSError as exc:
            raise ClientError(f"cannot read the admin token: {exc.strerror}") from None
        return cls(url, token, timeout)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                message = f"the node answered HTTP {exc.code}"
            raise ClientError(str(message), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach the node's admin API at {self.base_url}: {reason}") from None
        if not raw:
            return None
        return json.loads(raw)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, body, headers)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
