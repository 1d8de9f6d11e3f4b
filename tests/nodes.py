"""Real node processes for integration tests: `communs init` + `communs run` on 127.0.0.1, port 0.

Every wait is bounded and polls; a node still running at teardown is stopped with SIGTERM and,
if it does not exit within the contract's 5 s, killed (and the test fails on its exit code where
the test cares).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

COMMUNS = [sys.executable, "-m", "communs.node.cli.main"]


def cli(data: Path | str, *args: str, check: bool = True, timeout: float = 120.0,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `communs ARGS --data DATA`; with check, fail loudly showing stderr."""
    cmd = [*COMMUNS, *args, "--data", str(data)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def cli_json(data: Path | str, *args: str, timeout: float = 120.0) -> Any:
    return json.loads(cli(data, *args, "--json", timeout=timeout).stdout)


def wait_for(pred: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class NodeProc:
    def __init__(self, data: Path, log_path: Path) -> None:
        self.data = data
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.env: dict[str, str] = {}  # added to the node's environment at every start (fault injection)

    @classmethod
    def init(cls, base: Path, name: str, *init_args: str) -> NodeProc:
        data = base / name
        cli(data, "init", "--name", name, "--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0",
            *init_args)
        return cls(data, base / f"{name}.log")

    def start(self, wait: bool = True, timeout: float = 30.0, extra: tuple[str, ...] = (),
              env: Mapping[str, str] | None = None) -> NodeProc:
        """`env`: variables added to this node's environment (e.g. `COMMUNS_FAULT_PAUSE_AT`), kept for its
        later starts."""
        if env is not None:
            self.env = dict(env)
        (self.data / "node.json").unlink(missing_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*COMMUNS, "run", "--data", str(self.data), *extra],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.data.name} exited with {self.proc.returncode}:\n{self.log()}")
            path = self.data / "node.json"
            if not path.exists():
                return False
            self.info = json.loads(path.read_text())
            return True

        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"node {self.data.name} not ready in {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    @property
    def addr(self) -> str:
        return str(self.info["listen_addrs"][0])

    @property
    def peer_id(self) -> str:
        return str(self.info["peer_id"])

    @property
    def token(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    def api(self, method: str, path: str, body: Any = None, token: str | None = None,
            raw: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        hdrs = {"Authorization": f"Bearer {self.token if token is None else token}"}
        if token == "":
            hdrs = {}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        req = urllib.request.Request(self.info["admin_url"] + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                text = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            text = exc.read()
            status = exc.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text.decode(errors="replace")

    def get(self, path: str) -> Any:
        status, body = self.api("GET", path)
        assert status == 200, (path, status, body)
        return body

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(f"node {self.data.name} did not stop within {timeout} s:\n{self.log()}")\
                    from None
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None
