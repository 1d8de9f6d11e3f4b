"""node/logs.py: py-libp2p's per-attempt dial failures stay out of the node's log at info level."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from communs.node.runtime.logsetup import setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_failed_tcp_dials_are_debug_not_error(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    setup_logging("info")
    tcp = logging.getLogger("libp2p.transport.tcp.tcp")
    tcp.error("Failed to open TCP stream: %s", "[Errno 111] Connect call failed ('0.0.0.0', 7470)")
    tcp.error("could not listen on %s", "/ip4/0.0.0.0/tcp/7470")  # other errors still show
    logging.getLogger("communs.node").info("bootstrap peer X unreachable; retrying with backoff")
    host = logging.getLogger("libp2p.host.basic_host")
    host.error("Failed to open stream to peer 12D3KooWx:\n  Error: protocols not supported: tried "
               "['/ipfs/kad/1.0.0'], timeout=10s. Last error: protocol not supported: /ipfs/kad/1.0.0")
    host.error("Failed to open stream to peer 12D3KooWy:\n  Error: connection reset")  # not a refusal: shown
    err = capsys.readouterr().err
    assert "Failed to open TCP stream" not in err and "12D3KooWx" not in err
    assert "ERROR   libp2p.host.basic_host: Failed to open stream to peer 12D3KooWy" in err
    assert "ERROR   libp2p.transport.tcp.tcp: could not listen on /ip4/0.0.0.0/tcp/7470" in err
    assert "INFO    communs.node: bootstrap peer X unreachable" in err

    setup_logging("debug")  # asked for: shown, as what it is
    tcp.error("Failed to open TCP stream: %s", "refused")
    assert "DEBUG   libp2p.transport.tcp.tcp: Failed to open TCP stream: refused" in capsys.readouterr().err
