"""Fault injection for crash tests: the node kills itself (SIGKILL) at a named point.

`COMMUNS_FAULT_CRASH_AT=NAME` makes `crash_point(NAME)` end the process at once, as a power cut or an
OOM kill would, with no cleanup, no flush and no `finally`. Crash tests use it to stop a real node
exactly between two steps (after an enactment commits, between a release's catalog update and its
file deletions, between a publish's chunk writes and its manifest) instead of hoping a timed SIGKILL
lands there. Unset, a crash point costs one dictionary lookup.

Points (grep `crash_point(` for where they sit):
- `enactment-committed`: a governance step that changed the policy is stored; re-evaluation not yet run.
- `release-unmarked`: a release recorded the chunks as gone; their files not yet deleted.
- `release-deleting`: a release deleted its first chunk file.
- `publish-chunks-written`: a publish stored its chunk files; its manifest not yet recorded.
"""

from __future__ import annotations

import os
import signal
import sys
import time

ENV = "COMMUNS_FAULT_CRASH_AT"
PAUSE_ENV = "COMMUNS_FAULT_PAUSE_AT"  # NAME:SECONDS: `pause_point(NAME)` sleeps that long (slows a step down)


def crash_point(name: str) -> None:
    """SIGKILL this process if the environment names this point."""
    if os.environ.get(ENV) == name:
        sys.stderr.write(f"fault injection: killed at {name}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str) -> None:
    """Sleep (in the calling thread) if `COMMUNS_FAULT_PAUSE_AT=NAME:SECONDS` names this point: tests use it
    to interrupt a step (a publish, between two chunks) at a moment they can choose.

    Points: `publish-chunk`: a publish stored one more chunk (called in the chunking thread);
    `replication-chunk`: a fetched chunk is about to be stored (in the storing thread); `verify-chunk`: a
    dataset verification re-hashed one more chunk (services/dataset_verify.py, in its thread)."""
    spec = os.environ.get(PAUSE_ENV)
    if spec is not None and spec.partition(":")[0] == name:
        try:
            time.sleep(min(float(spec.partition(":")[2]), 60.0))
        except ValueError:
            pass


__all__ = ["ENV", "PAUSE_ENV", "crash_point", "pause_point"]
