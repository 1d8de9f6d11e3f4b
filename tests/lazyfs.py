"""LazyFS mounts for power-cut tests: a FUSE file system that keeps every write not yet fsynced in its own
cache and drops it on command, as a power cut drops the page cache (SIGKILL never does).

The binary is `../shared/tools/lazyfs/lazyfs` beside the repository (its README gives the semantics and
the measured pitfalls), or the path in `COMMUNS_LAZYFS`. It needs root, `/dev/fuse` and the fuse3
packages; where one is missing the tests are skipped with the reason. Every command to LazyFS goes
through its FIFO with a deadline (a FIFO write with no reader would block forever) and waits for
LazyFS's acknowledgement in its log.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from communs.protocol.ids import digest

ROOT = Path(__file__).resolve().parent.parent
CACHE = "256mb"  # preallocated by LazyFS at mount: it must hold every unsynced byte a test writes

CONFIG = """\
[faults]
fifo_path="{base}/faults.fifo"
[cache]
apply_eviction=false
[cache.simple]
custom_size="{cache}"
blocks_per_page=1
[filesystem]
log_all_operations=false
logfile="{base}/lazyfs.log"
"""


def lazyfs_binary() -> Path:
    env = os.environ.get("COMMUNS_LAZYFS")
    return Path(env) if env else ROOT.parent / "shared" / "tools" / "lazyfs" / "lazyfs"


def why_unavailable() -> str | None:
    """None when LazyFS can run here, else the reason (shown as the skip reason)."""
    binary = lazyfs_binary()
    if not binary.is_file():
        return f"LazyFS is not at {binary} (set COMMUNS_LAZYFS)"
    if not os.access(binary, os.X_OK):
        return f"{binary} is not executable"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (apt-get install fuse3 libfuse3-3)"
    if os.geteuid() != 0:
        return "LazyFS mounts need root here"
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
    except OSError as exc:
        return f"/dev/fuse cannot be opened ({exc.strerror}): no FUSE in this environment"
    os.close(fd)
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if "not found" in ldd.stdout:
        return "LazyFS's libraries are missing (apt-get install fuse3 libfuse3-3)"
    return None


class LazyFS:
    """One mount: `mnt` shows `root` through LazyFS's cache, all in a fresh folder of /tmp (`remove()`
    deletes it). Not under pytest's tmp_path: LazyFS's argument parser misreads a config path holding
    "-o" (as /tmp/pytest-of-root/... does) and falls back to a default config it cannot find."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="lazyfs_", dir="/tmp")).resolve()
        self.mnt = self.base / "mnt"
        self.root = self.base / "root"
        self.fifo = self.base / "faults.fifo"
        self.logfile = self.base / "lazyfs.log"
        self.conf = self.base / "lazyfs.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        for folder in (self.mnt, self.root):
            folder.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONFIG.format(base=self.base, cache=CACHE))

    def mount(self, timeout: float = 30.0) -> LazyFS:
        out = open(self.base / "lazyfs.out", "ab")
        # -f: stays in the foreground, so this process owns it and can wait for it.
        self.proc = subprocess.Popen(
            [str(lazyfs_binary()), str(self.mnt), "--config-path", str(self.conf), "-f",
             "-o", "allow_other", "-o", "modules=subdir", "-o", f"subdir={self.root}"],
            stdout=out, stderr=subprocess.STDOUT, cwd="/")
        out.close()
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.unmount()
                raise AssertionError(f"LazyFS did not mount {self.mnt}:\n{self.output()}")
            time.sleep(0.05)
        return self

    def output(self) -> str:
        try:
            return (self.base / "lazyfs.out").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def command(self, line: str, ack: str, timeout: float = 30.0) -> None:
        """Send one command through the FIFO and wait until the log holds `ack` (after what it held)."""
        assert self.proc is not None and self.proc.poll() is None, "LazyFS is not running"
        before = self._log_size()
        deadline = time.monotonic() + timeout
        while True:
            try:  # non-blocking: ENXIO while LazyFS has not opened its end yet, never a hang
                fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"LazyFS's FIFO {self.fifo} takes no command") from None
                time.sleep(0.05)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        while ack not in self._log_tail(before):
            if time.monotonic() > deadline:
                raise AssertionError(f"LazyFS did not acknowledge {line!r}:\n{self._log_tail(before)[-2000:]}")
            time.sleep(0.05)

    def power_cut(self) -> None:
        """Drop every write not yet fsynced, as a power cut drops the page cache."""
        self.command("lazyfs::clear-cache", "cache is cleared")

    def crash_at(self, timing: str, op: str, path_regex: str) -> None:
        """Arm a power cut at an exact point: LazyFS drops its unsynced writes and dies just `timing`
        ("before" or "after") the first `op` (write, fsync, rename, unlink, create...) on a backing path
        matching `path_regex`. The mount then answers "Transport endpoint is not connected"."""
        self.command(f"lazyfs::crash::timing={timing}::op={op}::from_rgx={path_regex}", "VALID crash fault")

    def wait_crashed(self, timeout: float = 120.0) -> None:
        """Wait until an armed crash has happened (LazyFS exited)."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the armed crash did not happen within {timeout} s") from None
        assert "Triggered fault condition" in self._log_tail(0), self._log_tail(0)[-2000:]

    def unmount(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        # Also after a crash: the dead mount stays until unmounted (os.path.ismount cannot see it then).
        done = subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True, check=False)
        if done.returncode != 0 and self.proc.poll() is None:  # busy (a test process holds a file): detach
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True, check=False)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def remove(self) -> None:
        """Unmount, then delete the whole folder."""
        self.unmount()
        shutil.rmtree(self.base, ignore_errors=True)

    def _log_size(self) -> int:
        try:
            return self.logfile.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_tail(self, offset: int) -> str:
        try:
            with open(self.logfile, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


def check_disk(data: Path) -> dict[str, Any]:
    """What a node folder holds after a power cut, read straight from the disk (the node stopped):
    the catalog passes `PRAGMA quick_check`, and every chunk it marks stored is there and hashes to its
    name. Returns the manifests' states and the stored chunk count, for the caller's own checks."""
    db = sqlite3.connect(data / "catalog.sqlite")
    try:
        check = [r[0] for r in db.execute("PRAGMA quick_check")]
        assert check == ["ok"], f"the catalog is damaged after the power cut: {check}"
        stored = [bytes(r[0]) for r in db.execute("SELECT digest FROM chunks WHERE stored = 1")]
        states = {bytes(r[0]): str(r[1]) for r in db.execute("SELECT id, state FROM manifests")}
        incomplete = [
            bytes(r[0]) for r in db.execute(
                "SELECT DISTINCT m.id FROM manifests m JOIN manifest_chunks mc ON mc.manifest = m.id "
                "JOIN chunks c ON c.digest = mc.digest WHERE m.state IN ('own', 'complete') AND c.stored = 0")]
    finally:
        db.close()
    assert not incomplete, f"{len(incomplete)} manifest(s) called own or complete miss chunks"
    missing, bad = [], []
    for d in stored:
        h = d.hex()
        path = data / "store" / "chunks" / h[:2] / h
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            missing.append(h)
            continue
        if digest(body) != d:
            bad.append(h)
    assert not missing, f"{len(missing)} of {len(stored)} chunks marked stored are missing after the power cut"
    assert not bad, f"{len(bad)} of {len(stored)} chunks marked stored do not hash to their name after the cut"
    return {"states": states, "stored": len(stored)}


def require_lazyfs() -> None:
    reason = why_unavailable()
    if reason is not None:
        pytest.skip(f"power-cut tests skipped: {reason}")
