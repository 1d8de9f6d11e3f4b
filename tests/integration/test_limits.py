"""Issue 20: bandwidth limits through config.toml and `GET/PUT /api/v1/limits` on a running node."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nodes import NodeProc

pytestmark = pytest.mark.slow


def test_limits_start_from_config_and_change_at_run_time(tmp_path: Path) -> None:
    node = NodeProc.init(tmp_path, "a")
    with open(node.data / "config.toml", "a", encoding="utf-8") as fh:
        fh.write("\n[limits]\nupload_bytes_per_s = 1000000\n")
    node.start()
    try:
        assert node.get("/api/v1/limits") == {"upload_bytes_per_s": 1_000_000, "download_bytes_per_s": 0}
        status, body = node.api("PUT", "/api/v1/limits", {"download_bytes_per_s": 5_000_000})
        assert status == 200, body
        assert body == {"upload_bytes_per_s": 1_000_000, "download_bytes_per_s": 5_000_000}
        assert node.get("/api/v1/limits") == body
        for bad, message in [({"upload_bytes_per_s": -1}, "must be from 0"),
                             ({"upload_bytes_per_s": "fast"}, "whole number"),
                             ({"upload_bytes_per_s": 1, "download_bytes_per_s": 2.5}, "whole number"),
                             ({"download_bytes_per_s": None}, "whole number"),
                             ({"upload": 1}, "unknown field"),
                             ({}, "give upload_bytes_per_s")]:
            status, answer = node.api("PUT", "/api/v1/limits", bad)
            assert status == 400 and message in answer["error"], (bad, status, answer)
        assert node.get("/api/v1/limits") == body  # a refused change changes nothing
        status, _ = node.api("PUT", "/api/v1/limits", {"upload_bytes_per_s": 0}, token="")
        assert status == 401
        spec = node.get("/api/v1/openapi.json")
        assert set(spec["paths"]["/api/v1/limits"]) == {"get", "put"}
    finally:
        assert node.stop() == 0
