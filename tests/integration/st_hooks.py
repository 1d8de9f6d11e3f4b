"""Schemathesis hooks for the CLI run in test_api_hardening.py (`SCHEMATHESIS_HOOKS=tests.integration.st_hooks`).

Two operations are never given what schemathesis draws as-is, as in the in-process fuzz test: a drawn
publish path is swapped for a small file or a missing path in the test's folder (the node would read
whatever it is given), and a drawn address that would be dialled is swapped for a closed loopback
port (the node would dial it). Everything else in those requests stays as drawn.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import schemathesis

SAFE_DIR = os.environ.get("COMMUNS_ST_SAFE_DIR", "/nonexistent")
NOBODY = os.environ.get("COMMUNS_ST_NOBODY", "")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    body = case.body
    if not isinstance(body, dict) or case.method.upper() != "POST":
        return
    path = case.operation.path
    if path == "/api/v1/datasets" and isinstance(body.get("path"), str) and body["path"]:
        digest = hashlib.blake2b(body["path"].encode(), digest_size=1).digest()[0]
        body["path"] = os.path.join(SAFE_DIR, "small.txt" if digest % 2 else "missing/nothing")
    if path == "/api/v1/peers" and isinstance(body.get("addr"), str):
        from communs.node.http.openapi import PEER_ADDR_PATTERN

        if re.match(PEER_ADDR_PATTERN, body["addr"]):  # it would be dialled
            body["addr"] = f"/ip4/127.0.0.1/tcp/1/p2p/{NOBODY}"
