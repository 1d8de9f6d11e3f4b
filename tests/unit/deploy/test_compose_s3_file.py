"""compose.s3.yaml cannot be run here (no Docker engine): check that its node commands are ones the CLI
accepts and that the node, SeaweedFS's identity and the bucket agree on names and keys."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from communs.node.cli.main import build_parser

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parents[3]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "compose.s3.yaml").read_text())
    return doc


def test_the_init_command_writes_an_s3_config_for_the_bucket_that_is_created() -> None:
    services = compose()["services"]
    script = services["node-init"]["command"][0]
    guard, _, init = script.partition("||")
    assert guard.split() == ["test", "-f", "/data/config.toml"]
    argv = shlex.split(init)
    assert argv[0] == "communs"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "init" and args.data == "/data" and args.storage == "s3"
    assert args.s3_endpoint == "http://seaweedfs:8333" and args.s3_bucket == "communs"
    assert "s3.bucket.create -name communs" in services["bucket"]["command"][0]
    run = build_parser().parse_args(services["node"]["command"])
    assert run.command == "run" and run.data == "/data"
    assert "node-data:/data" in services["node"]["volumes"] and "node-data:/data" in services["node-init"]["volumes"]


def test_the_node_signs_with_the_identity_seaweedfs_is_given() -> None:
    doc = compose()
    env = doc["services"]["node"]["environment"]
    identity = json.loads(doc["configs"]["s3-identities"]["content"])["identities"][0]["credentials"][0]
    assert env["AWS_ACCESS_KEY_ID"] == identity["accessKey"]
    assert env["AWS_SECRET_ACCESS_KEY"] == identity["secretKey"]
    assert doc["services"]["node-init"]["environment"] == env
    assert "-s3.config=/etc/seaweedfs/s3.json" in doc["services"]["seaweedfs"]["command"]
