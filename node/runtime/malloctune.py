"""glibc allocator settings for a node that moves large buffers between threads.

A replicating node allocates a fresh buffer of about 1 MiB for every chunk (py-libp2p's reads, the
assembled chunk) and frees it a moment later. glibc serves blocks above its mmap threshold with a
fresh mmap and returns them to the kernel on free, and trims a heap's free top beyond its trim
threshold: either way every byte received lands in new pages, one page fault per 4 KiB (measured:
262,000 faults for 1 GiB replicated, the receiving node's system time 2.2 s). Raising both
thresholds keeps those blocks in the heap, reused (11,000 faults; 1 GiB replicated in 5.6 s against
6.0-6.6 s). The cost is that up to `TRIM_THRESHOLD` of freed memory may stay mapped after a large
transfer, where it is reused by the next one.

That freed memory stayed mapped after a transfer: 160 MB per node before a fan-out, 193-196 MB after.
`malloc_trim(0)` returns it, but only from the main arena's top: glibc gives each thread that allocates
an arena of its own (up to 8 per core), and a thread arena's free top is returned only by a later free
in that thread beyond the trim threshold (measured: 48 MiB freed by a thread, 0 returned by
malloc_trim; with one arena, all of it). So the node uses one arena (`M_ARENA_MAX` = 1: its threads
allocate under Python's GIL, so they rarely contend for it) and trims every `TRIM_EVERY_S`
(`trim_free_memory`): a transfer keeps its pages while it runs, an idle node gives them back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger("communs.node")

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 << 20  # above the largest chunk (8 MiB) and glibc's ceiling for this setting
TRIM_THRESHOLD = 64 << 20
ARENA_MAX = 1
TRIM_EVERY_S = 30.0


def tune_malloc() -> bool:
    """Apply the settings when the C library is glibc; True if it took them. Elsewhere nothing changes.
    Before the process starts threads: a thread keeps the arena it was first given."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                        TRIM_THRESHOLD))
        ok = ok and bool(libc.mallopt(M_ARENA_MAX, ARENA_MAX))
    except (OSError, AttributeError) as exc:
        log.debug("could not tune the allocator: %s", exc)
        return False
    return ok


def trim_free_memory() -> bool:
    """Return the allocator's free pages to the kernel (glibc's malloc_trim); True if it released any.
    Elsewhere nothing happens (False)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False
