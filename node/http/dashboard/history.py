"""What the dashboard's charts draw and its warnings say: pure functions over plain data, given `now`.

`History` keeps one point per `STEP_S` for the last hour (stored bytes, cumulative bytes fetched from
peers); the throughput series is the difference between neighbouring points. `warnings` turns a
snapshot of the node's state into sentences an operator can act on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

WINDOW_S = 3600.0
STEP_S = 5.0
QUOTA_WARN_RATIO = 0.9


@dataclass
class History:
    points: deque[tuple[float, int, int]] = field(default_factory=deque)  # (unix time, stored, fetched total)

    def add(self, now: float, stored: int, fetched_total: int) -> bool:
        """Record a point if the last one is at least STEP_S old; drop points older than the window.
        True if the series changed."""
        if self.points and now - self.points[-1][0] < STEP_S:
            return False
        self.points.append((now, stored, fetched_total))
        while self.points and now - self.points[0][0] > WINDOW_S:
            self.points.popleft()
        return True

    def series(self) -> dict[str, list[list[float]]]:
        """`stored`: [[t, bytes]...]; `throughput`: [[t, bytes per second]...] between neighbouring points
        (a counter that went down, as after a restart, counts as zero rather than negative)."""
        pts = list(self.points)
        stored = [[t, float(s)] for t, s, _ in pts]
        rate = [[t1, max(0.0, (f1 - f0) / (t1 - t0))] for (t0, _, f0), (t1, _, f1) in pairwise(pts) if t1 > t0]
        return {"stored": stored, "throughput": rate}


def warnings(snapshot: dict[str, Any]) -> list[str]:
    """Sentences about what needs the operator's attention, most serious first."""
    out: list[str] = []
    status = snapshot.get("status", {})
    if status.get("catalog_damaged"):
        out.append(f"The catalog is damaged: {status['catalog_damaged']}")
    inbound = status.get("inbound") or {}
    if inbound.get("problem"):
        out.append(f"Peers cannot connect to this node: {inbound['problem']}")
    storage = status.get("storage") or {}
    if storage.get("waiting"):
        out.append(f"The chunk store is not answering: {storage['waiting']}")
    disk = snapshot.get("disk") or {}
    used, quota = disk.get("used"), disk.get("quota")
    if isinstance(used, int) and isinstance(quota, int) and quota > 0 and used >= QUOTA_WARN_RATIO * quota:
        out.append(f"Storage is {100 * used / quota:.0f} % of the quota the members set.")
    counts = snapshot.get("datasets") or {}
    for state, sentence in (("damaged", "damaged here and waiting for repair"),
                            ("endangered", "held by too few nodes")):
        n = counts.get(state, 0)
        if n:
            out.append(f"{n} dataset{'s' if n > 1 else ''} {sentence}.")
    for w in (snapshot.get("replication") or {}).get("waiting", []):
        if w.get("reason"):
            out.append(f"“{w.get('title', '')}” waits: {w['reason']}")
    extras = snapshot.get("node_status") or {}
    bootstrap = extras.get("bootstrap", status.get("bootstrap"))
    for b in bootstrap if isinstance(bootstrap, list) else []:
        if isinstance(b, dict) and b.get("error"):
            out.append(f"Bootstrap peer {b.get('addr', '')} fails: {b['error']}")
    if snapshot.get("peers") == [] and status.get("listen_addrs"):
        out.append("No peer is connected: nothing can be replicated until one is (Peers page).")
    return out
