"""Worker processes that die with the node.

The node verifies catalog-sync records in a `multiprocessing` worker (node/publishing.py). When the
node is killed (SIGKILL, the OOM killer, a power-cut-style stop of the service), nothing tells that
worker: it holds both ends of its task pipe, so it never sees an end of file, and it ran on as an
orphan for 19 minutes in a test. On Linux the kernel can send a signal to a child when its parent
dies (`PR_SET_PDEATHSIG`); each worker asks for SIGKILL as its first act, then checks that its
parent has not already gone in between.

The signal is sent when the *thread* that created the child exits, not the process: the pool is
created and fed from the event loop's thread (`run_in_executor`), which lives as long as the node.
This module imports nothing heavy: a spawned worker imports it first.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies; exit now if it already has.
    Returns whether the kernel took the request (False off Linux or if prctl failed)."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
    return armed


def init_worker(parent_pid: int, *gc_thresholds: int) -> None:
    """A ProcessPoolExecutor initializer: die with the node, collect garbage as rarely as the node does."""
    die_with_parent(parent_pid)
    if gc_thresholds:
        gc.set_threshold(*gc_thresholds)
