"""glibc allocator settings for a node that moves large buffers between threads.

A replicating node allocates a fresh buffer of about 1 MiB for every chunk (py-libp2p's reads, the
assembled chunk) and frees it a moment later. glibc serves blocks above its mmap threshold with a
fresh mmap and returns them to the kernel on free, and trims a heap's free top beyond its trim
threshold: either way every byte received lands in new pages, one page fault per 4 KiB (measured:
262,000 faults for 1 GiB replicated, the receiving node's system time 2.2 s). Raising both
thresholds keeps those blocks in the heap, reused (11,000 faults; 1 GiB replicated in 5.6 s against
6.0-6.6 s). The cost is that up to `TRIM_THRESHOLD` of freed memory may stay mapped after a large
transfer, where it is reused by the next one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger("communs.node")

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # above the largest chunk (8 MiB) and glibc's ceiling for this setting
TRIM_THRESHOLD = 64 << 20


def tune_malloc() -> bool:
    """Apply the thresholds when the C library is glibc; True if it took them. Elsewhere nothing changes."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                        TRIM_THRESHOLD))
    except (OSError, AttributeError) as exc:
        log.debug("could not tune the allocator: %s", exc)
        return False
    return ok
