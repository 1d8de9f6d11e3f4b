"""Issue 20: `scripts/bench/federation.py` with 12 nodes and small sizes, so that the benchmark cannot rot.

No timing is asserted (the machine is shared): every announcement must reach every node, the last line
must be the contract's JSON object, and every node the benchmark started must be gone afterwards.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "federation.py"
KEYS = {"nodes", "reach", "p50_ms", "p95_ms", "late_join_manifests", "late_join_s", "fanout_s",
        "rss_mb_per_node", "idle_cpu_pct_per_node"}


def lock_free(folder: Path) -> bool:
    """No process holds the node's run lock (a node still running would)."""
    path = folder / "node.lock"
    if not path.exists():
        return True
    with open(path) as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return True


def test_twelve_nodes_every_announcement_reaches_every_node(tmp_path: Path) -> None:
    fed = tmp_path / "fed"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--nodes", "12", "--manifests", "3000", "--fanout-mib", "4",
         "--announcements", "4", "--idle-s", "2", "--dir", str(fed),
         "--phase-timeout", "240", "--announce-timeout", "60", "--fanout-timeout", "300",
         "--late-join-timeout", "300"],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"benchmark failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert KEYS <= set(result), sorted(KEYS - set(result))
    assert result["nodes"] == 12
    assert result["reach"] == 1.0
    assert result["late_join_manifests"] == 3000
    assert 0 < result["p50_ms"] <= result["p95_ms"]
    assert result["late_join_s"] > 0 and result["fanout_s"] > 0
    assert result["rss_mb_per_node"] > 10 and result["idle_cpu_pct_per_node"] >= 0
    folders = [p for p in fed.iterdir() if (p / "config.toml").exists()]
    assert len(folders) == 14  # 12 nodes, the archive and the late joiner
    assert all(lock_free(p) for p in folders), "a node the benchmark started is still running"
