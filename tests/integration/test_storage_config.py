"""`[storage] direct_io` reaches the running node's chunk store (contract, "Storage backends")."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nodes import NodeProc, wait_for

pytestmark = pytest.mark.slow


def test_direct_io_false_writes_through_the_page_cache(tmp_path: Path, make_node) -> None:  # type: ignore[no-untyped-def]
    node = make_node("n", start=False)
    with open(node.data / "config.toml", "a") as f:
        f.write("\n[storage]\ndirect_io = false\n")
    node.start()
    wait_for(lambda: "chunk files are written through the page cache (storage.direct_io)" in node.log(), 10,
             what="the node to say how it writes chunks")
    assert isinstance(node, NodeProc) and node.stop() == 0
