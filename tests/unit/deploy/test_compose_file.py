"""compose.yaml cannot be run here (no Docker engine): check that it stays consistent with the CLI and
the Dockerfile, so that a change to either is caught before an operator's `docker compose up` is."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from communs.node.cli.main import build_parser

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[3]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return doc


def test_every_service_runs_a_command_the_cli_accepts() -> None:
    services = compose()["services"]
    assert sorted(services) == ["node1", "node2", "node3"]
    for name, svc in services.items():
        args = build_parser().parse_args(svc["command"])
        assert args.command == "run" and args.init_if_missing and args.data == "/data", name
        assert args.name == name
        assert f"{name}-data:/data" in svc["volumes"]


def test_node2_and_node3_bootstrap_from_node1s_node_json_by_its_service_name() -> None:
    services = compose()["services"]
    for name in ("node2", "node3"):
        svc = services[name]
        args = build_parser().parse_args(svc["command"])
        assert args.bootstrap == ["/dns4/node1/tcp/7470"]  # completed with /p2p/<id> at first start
        mount = next(v for v in svc["volumes"] if v.startswith("node1-data:"))
        _, target, mode = mount.split(":")
        assert mode == "ro" and args.bootstrap_from == f"{target}/node.json"
        assert svc["depends_on"]["node1"]["condition"] == "service_healthy"


def test_health_check_and_volumes_match_the_dockerfile() -> None:
    doc = compose()
    dockerfile = (ROOT / "Dockerfile").read_text()
    m = re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])", dockerfile)
    assert m, "the Dockerfile has no exec-form HEALTHCHECK"
    for svc in doc["services"].values():
        assert svc["healthcheck"]["test"] == ["CMD", *json.loads(m.group(1))]
        assert svc["build"] == "."
    assert 'VOLUME ["/data"]' in dockerfile and "EXPOSE 7470" in dockerfile
    assert set(doc["volumes"]) == {"node1-data", "node2-data", "node3-data"}
