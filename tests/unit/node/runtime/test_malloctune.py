"""The allocator settings: with them, a thread that keeps allocating and freeing ~1 MiB buffers (a node
receiving chunks) reuses memory instead of faulting in fresh pages for every buffer."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CHURN = """
import resource, sys, threading
if sys.argv[1] == "tuned":
    from communs.node.runtime.malloctune import tune_malloc
    assert tune_malloc()
def churn():
    keep = []
    for i in range(300):  # 300 buffers of 1 MiB and a little more each time, three alive at once
        keep.append(b"x" * ((1 << 20) + i * 4096))
        if len(keep) > 3:
            keep.pop(0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = threading.Thread(target=churn)
t.start()
t.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="the settings are glibc's")


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True, timeout=60)
    return int(out.stdout)


@glibc
def test_tuned_allocator_reuses_large_buffers() -> None:
    default, tuned = faults("default"), faults("tuned")
    # 300 MiB churned: about 77,000 page faults when each buffer gets fresh pages, a few thousand when reused
    assert tuned * 5 < default, (tuned, default)


def test_tune_malloc_is_harmless_where_it_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    from communs.node.runtime import malloctune

    monkeypatch.setattr(malloctune.platform, "system", lambda: "Darwin")
    assert malloctune.tune_malloc() is False


KEPT = """
import sys, threading
from pathlib import Path
from communs.node.runtime import malloctune
if sys.argv[1] == "tuned":
    assert malloctune.tune_malloc()
else:  # the thresholds alone, as before one arena: each thread allocates in an arena of its own
    import ctypes
    libc = ctypes.CDLL("libc.so.6")
    assert libc.mallopt(malloctune.M_MMAP_THRESHOLD, malloctune.MMAP_THRESHOLD)
    assert libc.mallopt(malloctune.M_TRIM_THRESHOLD, malloctune.TRIM_THRESHOLD)
def rss():
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:")).split()[1])
def churn():  # a thread other than the main one, as libp2p's and the catalog's are
    keep = [bytearray(1 << 20) for _ in range(48)]  # 48 MiB freed below the 64 MiB trim threshold
    del keep
t = threading.Thread(target=churn)
t.start()
t.join()
kept = rss()
malloctune.trim_free_memory()
print(kept, rss())
"""


def returned_kib(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", KEPT, mode], capture_output=True, text=True, check=True, timeout=60)
    kept, after = out.stdout.split()
    return int(kept) - int(after)


@glibc
def test_memory_a_thread_freed_is_returned_by_the_trim() -> None:
    assert returned_kib("thresholds-only") < 4096  # a thread arena's free top stays mapped (48 MiB kept)
    assert returned_kib("tuned") > 40_000  # one arena: the trim hands the 48 MiB back
