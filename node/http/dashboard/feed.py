"""The dashboard's live updates: one sampler per node that reads the node's state and pushes what
changed to every open dashboard over server-sent events.

While a dashboard is open, the in-memory state (replication, publishing, peers) is read every
`FAST_S` and the catalog (counts by state, bytes stored) every `SLOW_S`; a subscriber gets an event
only when something it shows changed (an idle node sends nothing but a keep-alive comment), so the cost
of an open dashboard does not depend on how often the page would have polled, nor on how many tabs are
open. With no dashboard open, only the bytes stored and fetched are read, every `history.STEP_S`, for the
charts' last hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from communs.node import __version__
from communs.node.http.dashboard import history as hist

if TYPE_CHECKING:
    from collections.abc import Callable

    from communs.node.node import Node
    from communs.storage.catalog import Catalog

log = logging.getLogger("communs.admin")

FAST_S = 1.0
SLOW_S = 5.0
QUEUE_MAX = 8  # a subscriber this far behind gets only the latest state


class Feed:
    def __init__(self, node: Node, peer_namer: Callable[[], Callable[[str], str | None]]) -> None:
        self.node = node
        self.peer_namer = peer_namer  # a peer's name as the node knows it (services/peernames.py)
        self.history = hist.History()
        self.subscribers: set[asyncio.Queue[str]] = set()
        self.state: dict[str, Any] = {}
        self.last_sent: dict[str, str] = {}  # section -> its last JSON
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._slow_at = 0.0
        self._sampling = asyncio.Lock()  # one sample at a time: each compares with what the one before sent

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dashboard-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self) -> asyncio.Queue[str]:
        q: asyncio.Queue[str] = asyncio.Queue(QUEUE_MAX)
        self.subscribers.add(q)
        self._wake.set()
        return q

    def unsubscribe(self, q: asyncio.Queue[str]) -> None:
        self.subscribers.discard(q)

    async def snapshot(self, new: asyncio.Queue[str] | None = None) -> dict[str, Any]:
        """Everything, now (the first event of the new subscriber `new`). What this sample found changed
        counts as sent from now on, so it goes to the other subscribers too: else they would never see it
        (a job's running state, or its end) until it changed again. Changes queued for `new` before it are
        older than this: dropped, so that none is applied after it."""
        async with self._sampling:
            changed = await self._sample(slow=True)
            if changed:
                self._publish(changed, skip=new)
            while new is not None and not new.empty():
                new.get_nowait()
            return {**self.state, "history": self.history.series()}

    async def _run(self) -> None:
        while True:
            try:
                if self.subscribers:
                    async with self._sampling:
                        changed = await self._sample(slow=time.monotonic() >= self._slow_at)
                        if changed:
                            self._publish(changed)
                else:
                    await self._history_point()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the dashboard feed could not read the node's state")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FAST_S if self.subscribers else hist.STEP_S)

    def _publish(self, changed: dict[str, Any], skip: asyncio.Queue[str] | None = None) -> None:
        data = json.dumps(changed, ensure_ascii=False)
        for q in list(self.subscribers):
            if q is skip:
                continue
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
                data_all = json.dumps({**self.state, "history": self.history.series()}, ensure_ascii=False)
                q.put_nowait(data_all)
            else:
                q.put_nowait(data)

    async def _history_point(self) -> None:
        """With no dashboard open, only the charts' points: the bytes stored and fetched. Reading the whole
        state (every service's status, each listing the catalog) every `STEP_S` cost an idle node with
        10,000 manifests a tenth of a second of CPU each time, for a page nobody was looking at."""
        catalog = self.node.storage.catalog if self.node.storage is not None else None
        if catalog is None or catalog.damaged:
            return
        used, fetched = await self._chart_figures(catalog)
        self.history.add(time.time(), used, fetched)

    async def _chart_figures(self, catalog: Catalog) -> tuple[int, int]:
        """What the charts draw: the bytes the storage quota counts, and the bytes fetched from peers so far."""
        used = await catalog.quota_used_bytes()
        fetched = 0
        if self.node.metrics is not None:
            fetched = int(self.node.metrics.registry.get_sample_value("communs_bytes_fetched_total") or 0)
        return used, fetched

    async def _sample(self, slow: bool) -> dict[str, Any]:
        """Read the node's state; return the sections that differ from what was last pushed (and record them
        as pushed: the caller sends them to every subscriber). Called under `_sampling`."""
        node = self.node
        sections: dict[str, Any] = {}
        overlay = node.overlay
        name = self.peer_namer()
        sections["peers"] = ([{"peer_id": p.peer_id, "name": name(p.peer_id), "addrs": p.addrs}
                              for p in overlay.peers()] if overlay else [])
        verifying: list[dict[str, Any]] = []
        with contextlib.suppress(RuntimeError):  # the services are not built yet
            verifying = [v for v in node.services.verifications.list() if v["running"]]
        sections["verifying"] = verifying
        if node.replication is not None:
            sections["replication"] = await node.replication.report()
        if node.datasets is not None:
            sections["publishing"] = [j.to_json() for j in node.datasets.jobs.values()]
        status: dict[str, Any] = {
            "peer_id": node.peer_id, "name": node.config.name, "federation": node.config.federation,
            "listen_addrs": overlay.listen_addrs() if overlay else [],
            "started_at": node.started_at, "version": __version__,
        }
        if overlay is not None:
            problem = overlay.reachability()
            status["inbound"] = {**overlay.inbound(), "reachable": problem is None, "problem": problem or ""}
        catalog = node.storage.catalog if node.storage is not None else None
        if catalog is not None and catalog.damaged:
            status["catalog_damaged"] = catalog.damaged
        if node.storage is not None:
            status.update(await node.storage.status())
        sections["status"] = status
        now = time.time()
        # a copy or a publish that started or ended changes the counts and the bytes stored: read them now
        # (only then: a publish's progress, every sample, would otherwise read the whole catalog every second)
        slow = slow or _jobs(sections) != _jobs_of(self.last_sent) or _fetches(sections) != _fetches_of(self.last_sent)
        if slow:
            self._slow_at = time.monotonic() + SLOW_S
            # what GET /api/v1/status adds from each service, kept whole so that fields other services add
            # later (bootstrap peers' health, copy counts) reach the page and its warnings without a change here
            extras: dict[str, Any] = {}
            with contextlib.suppress(RuntimeError):  # the services are not built yet
                extras.update(await node.services.status())
            for key in ("publishing", "replication"):  # sent whole, above
                extras.pop(key, None)
            sections["node_status"] = extras
            if "datasets" in extras:
                sections["datasets"] = extras["datasets"]
            if "governance" in extras:
                sections["governance"] = extras["governance"]
        if slow and catalog is not None and node.datasets is not None:
            quota = node.datasets.policy().storage_quota_bytes
            used, fetched = await self._chart_figures(catalog)
            sections["disk"] = {"used": used, "quota": quota}
            if self.history.add(now, used, fetched):
                sections["history"] = self.history.series()
        self.state.update({k: v for k, v in sections.items() if k != "history"})
        self.state["warnings"] = hist.warnings(self.state)
        sections["warnings"] = self.state["warnings"]
        changed = {}
        for key, value in sections.items():
            text = json.dumps(value, sort_keys=True, default=str)
            if self.last_sent.get(key) != text:
                self.last_sent[key] = text
                changed[key] = value
        return changed


def _jobs(sections: dict[str, Any]) -> list[tuple[int, str]]:
    """The publishing jobs and their states (not their progress)."""
    return sorted((j["id"], j["state"]) for j in sections.get("publishing") or [])


def _jobs_of(last_sent: dict[str, str]) -> list[tuple[int, str]]:
    text = last_sent.get("publishing")
    return _jobs({"publishing": json.loads(text)}) if text else []


def _fetches(sections: dict[str, Any]) -> list[str]:
    return sorted(f["id"] for f in (sections.get("replication") or {}).get("active", []))


def _fetches_of(last_sent: dict[str, str]) -> list[str]:
    text = last_sent.get("replication")
    return _fetches({"replication": json.loads(text)}) if text else []
