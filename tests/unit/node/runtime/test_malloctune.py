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
