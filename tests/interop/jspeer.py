"""Drive the real js-libp2p peer of ../shared/interop from tests (JSON lines out, commands in)."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

INTEROP_SRC = Path(__file__).resolve().parents[2].parent / "shared" / "interop"


def install(dest: Path) -> Path:
    """Copy the read-only peer to `dest` and `npm ci` there (about 5 s with a warm npm cache)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("Node.js and npm are needed for interop tests")
    if not INTEROP_SRC.is_dir():
        raise RuntimeError(f"{INTEROP_SRC} is missing: interop tests need ../shared/interop beside the repo")
    target = dest / "peer"
    shutil.copytree(INTEROP_SRC, target)
    for p in [target, *target.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target, check=True,
                   capture_output=True, timeout=300)
    return target


class JsPeer:
    def __init__(self, folder: Path, *args: str, max_seconds: int = 120) -> None:
        self.events: list[dict[str, Any]] = []
        self._q: queue.Queue[dict[str, Any]] = queue.Queue()
        self.proc = subprocess.Popen(
            ["node", str(folder / "peer.mjs"), "0", *args, "--max-seconds", str(max_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ready = self.wait(lambda e: e.get("event") in ("ready", "fatal"), 60, "js peer ready")
        if ready.get("event") != "ready":
            raise RuntimeError(f"js peer failed to start: {ready}")
        self.peer_id: str = ready["peer_id"]
        self.addrs: list[str] = ready["multiaddrs"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "raw", "line": line}
            self.events.append(ev)
            self._q.put(ev)

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0, what: str = "event") \
            -> dict[str, Any]:
        for ev in list(self.events):
            if pred(ev):
                return ev
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                tail = self.events[-15:]
                raise AssertionError(f"timed out waiting for {what}; last js events: {tail}")
            try:
                ev = self._q.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if pred(ev):
                return ev

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ask(self, cmd: str, arg: str, event: str, timeout: float = 30.0) -> dict[str, Any]:
        start = len(self.events)
        self.command(f"!{cmd} {arg}".strip())
        return self.wait(lambda e: e.get("event") == event and self.events.index(e) >= start, timeout, event)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
