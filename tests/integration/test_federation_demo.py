"""Issue 8: `scripts/federation` — the walkthrough replicates as voted, and every way out cleans up.

The tests run `scripts/federation.py` with this interpreter (the `scripts/federation` wrapper only
sets up `.venv` and execs it; calling it here would reinstall the package under its own stamp).
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "federation.py"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def lock_free(folder: Path) -> bool:
    """No process holds the node's run lock (a node still running, or a stray child, would)."""
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


def test_demo_replicates_as_voted_and_stops_everything(tmp_path: Path) -> None:
    fed = tmp_path / "fed"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--demo", "--dir", str(fed), "--scan-mb", "16"],
                          capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"demo failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    states = result["states"]
    # the votes: B accepts CC-BY-4.0, ODbL-1.0, CC0-1.0 (two yes of three); C accepts ODbL-1.0 and CC-BY-NC-4.0
    assert states["coop-a"] == dict.fromkeys(states["coop-a"], "own") and len(states["coop-a"]) == 5
    assert states["coop-b"] == {"Street trees v1": "complete", "Neighbourhood map extract v1": "complete",
                                "Neighbourhood map extract v2": "complete", "Fablab tool list v1": "complete",
                                "School mobility survey v1": "not-wanted"}
    assert states["coop-c"] == {"Street trees v1": "not-wanted", "Neighbourhood map extract v1": "complete",
                                "Neighbourhood map extract v2": "complete", "Fablab tool list v1": "not-wanted",
                                "School mobility survey v1": "complete"}
    assert result["ok"] is True and result["audit_ok"] and result["verify_ok"] and result["get_identical"]
    # it said what happened as it happened
    out = proc.stdout
    for line in ("bob votes yes: 2 yes, 1 no, 0 abstain of 3 members", "stopped (SIGTERM; exit code 0)",
                 "learned 'Neighbourhood map extract' v2", "governance log intact", "Who holds what"):
        assert line in out, line
    # --dir: the folders stay, every node stopped cleanly (node.json removed, run lock free)
    for name in ("coop-a", "coop-b", "coop-c"):
        assert (fed / name / "config.toml").exists()
        assert not (fed / name / "node.json").exists(), f"{name} did not stop cleanly"
        assert lock_free(fed / name), f"{name} is still running"
    assert elapsed < 120, f"the demo took {elapsed:.0f} s"


def read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    """The output so far, once it holds `marker` (raw reads: a buffered reader would hide lines from select)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise AssertionError(f"no {marker!r} from scripts/federation within {timeout} s:\n{seen.decode()}")
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            seen += os.read(fd, 65536)
    return seen.decode()


def test_plain_federation_runs_until_ctrl_c_then_removes_everything(tmp_path: Path) -> None:
    env = dict(os.environ, COLUMNS="200", TMPDIR=str(tmp_path))  # the temporary folder lands in tmp_path
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--nodes", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    try:
        out = read_until(proc, "nodes running", 60)
        base = next(tmp_path.glob("communs-federation-*"))
        infos = [json.loads((base / name / "node.json").read_text()) for name in ("node1", "node2")]
        assert all(alive(i["pid"]) for i in infos)
        assert f"communs status --data {base / 'node1'}" in out or f"status --data {base / 'node1'}" in out
        node2 = subprocess.run([sys.executable, "-m", "communs.node.cli.main", "peers", "--json", "--data",
                                str(base / "node2")], capture_output=True, text=True, timeout=30)
        assert infos[0]["peer_id"] in {p["peer_id"] for p in json.loads(node2.stdout)}
        proc.send_signal(signal.SIGINT)
        code = proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert code == 0
    assert not base.exists(), "the temporary folder was not removed"
    deadline = time.monotonic() + 5
    while any(alive(i["pid"]) for i in infos) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(i["pid"]) for i in infos), "a node process survived Ctrl-C"
