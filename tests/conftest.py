"""Shared fixtures: a factory of real node processes, all stopped at teardown."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.nodes import NodeProc

# The SeaweedFS fixtures (weed_bin, weed, bucket) of the S3 chunk store's tests.
pytest_plugins = ["tests.s3server"]


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[NodeProc]]:
    started: list[NodeProc] = []
    yield started
    for n in started:
        n.kill()


@pytest.fixture
def make_node(tmp_path: Path, nodes: list[NodeProc]):  # type: ignore[no-untyped-def]
    def make(name: str, *init_args: str, start: bool = True, env: Mapping[str, str] | None = None) -> NodeProc:
        """`env`: added to the node's environment, at this start and later ones (fault injection)."""
        node = NodeProc.init(tmp_path, name, *init_args)
        nodes.append(node)
        if env is not None:
            node.env = dict(env)
        if start:
            node.start()
        return node

    return make
