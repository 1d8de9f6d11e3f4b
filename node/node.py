"""The running node: wires the overlay, storage, governance and admin endpoint, and owns their lifecycle.

Start order is chosen so that a failure (port in use, damaged catalog) is reported before the
node advertises itself: open the folder and lock it, open storage, start libp2p, start the admin
endpoint, then write `node.json` and log that the node is ready. Stop runs the same steps
backwards and is bounded, so SIGTERM always ends the process within the contract's 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from communs.node import __version__
from communs.node.config import ConfigError, is_loopback, parse_host_port
from communs.node.datadir import NodeFiles, RunLock, open_folder, remove_node_json, write_node_json
from communs.node.errors import StartupError
from communs.node.exchange.bandwidth import Bandwidth
from communs.node.runtime import systemd
from communs.protocol import keys

log = logging.getLogger("communs.node")

BOOTSTRAP_BACKOFF_MIN = 1.0
BOOTSTRAP_BACKOFF_MAX = 60.0


class Node:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: NodeFiles | None = None
        self.lock = RunLock(root)
        self.overlay: Any = None
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self._admin_runner: Any = None
        self.admin_url = ""
        self.services: list[Any] = []  # started in order, stopped in reverse
        self.metrics: Any = None
        # chunk bytes per second, [limits] in config.toml, changed at run time by PUT /api/v1/limits
        self.bandwidth = Bandwidth()
        # set by the services of wiring.py
        self.storage: Any = None
        self.governance: Any = None
        self.datasets: Any = None
        self.exchange: Any = None
        self.replication: Any = None

    # ---- properties used by the API --------------------------------------------------------------

    @property
    def config(self) -> Any:
        assert self.files is not None
        return self.files.config

    @property
    def key(self) -> keys.SigningKey:
        assert self.files is not None
        return self.files.node_key

    @property
    def peer_id(self) -> str:
        return keys.peer_id(self.key.public)

    def uptime(self) -> float:
        return time.monotonic() - self.started_mono

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """A background task that is cancelled at stop and whose failure is logged, never lost."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                log.error("background task %s failed: %s", name, exc, exc_info=exc)

        task.add_done_callback(done)
        return task

    def request_stop(self) -> None:
        self._stop.set()

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self.files = open_folder(self.root)
        except ConfigError as exc:
            raise StartupError(str(exc)) from None
        self.lock.acquire()
        self.bandwidth.set_limits(self.config.limit_upload_bytes_per_s, self.config.limit_download_bytes_per_s)
        from communs.node.http.metrics import Metrics

        self.metrics = Metrics()
        from communs.node.main import build_services

        try:
            for service in build_services(self):
                await service.start()
                self.services.append(service)
            await self._start_overlay()
            for service in self.services:
                hook = getattr(service, "overlay_ready", None)
                if hook is not None:
                    await hook()
            await self._start_admin()
        except BaseException:
            await self._shutdown()
            raise
        doc = {
            "pid": os.getpid(),
            "peer_id": self.peer_id,
            "listen_addrs": self.overlay.listen_addrs(),
            "admin_url": self.admin_url,
        }
        write_node_json(self.root, doc)
        self.spawn(self._bootstrap_loop(), "bootstrap")
        log.info("node %s ready: peer id %s, listening on %s, admin API at %s",
                 self.config.name, self.peer_id, ", ".join(doc["listen_addrs"]), self.admin_url)
        systemd.notify(f"READY=1\nSTATUS=peer id {self.peer_id}, admin API at {self.admin_url}")

    async def run_until_stopped(self) -> None:
        await self._stop.wait()
        log.info("stopping")
        systemd.notify("STOPPING=1")
        await self._shutdown()
        log.info("stopped cleanly")

    async def _shutdown(self) -> None:
        remove_node_json(self.root)
        if self._admin_runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._admin_runner.cleanup(), 1.5)
            self._admin_runner = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(service.stop(), 2.0)
        self.services.clear()
        if self.overlay is not None:
            await self.overlay.stop()
            self.overlay = None
        self.lock.release()

    async def _start_overlay(self) -> None:
        from communs.protocol.libp2p.connlimits import EXEMPT, ConnLimits
        from communs.protocol.libp2p.gossipguard import GossipLimits
        from communs.protocol.libp2p.overlay import Overlay, OverlayError

        cfg = self.config
        for addr in cfg.listen:
            _probe_listen(addr)
        limits = ConnLimits(max_inbound=cfg.conn_max_inbound, per_ip=cfg.conn_per_ip,
                            handshake_s=float(cfg.conn_handshake_s), exempt=() if cfg.conn_limit_loopback else EXEMPT)
        gossip_limits = GossipLimits(colocation_threshold=cfg.ip_colocation_threshold,
                                     colocation_exempt=tuple(str(n) for n in cfg.ip_colocation_exempt))
        self.overlay = Overlay(self.key.seed, cfg.listen, enable_dht=cfg.dht, enable_mdns=cfg.mdns,
                               conn_limits=limits, gossip_limits=gossip_limits)
        if self.metrics is not None:
            self.metrics.watch_limits(self.overlay.limit_counts)
        try:
            await self.overlay.start()
        except (OverlayError, OSError) as exc:
            self.overlay = None
            raise StartupError(f"could not listen on {', '.join(cfg.listen)}: {_reason(exc)}") from None
        except Exception as exc:
            self.overlay = None
            raise StartupError(f"could not start libp2p on {', '.join(cfg.listen)}: {_reason(exc)}") from None

    async def _start_admin(self) -> None:
        from aiohttp import web
        from communs.node.http.app import build_app
        from communs.node.http.server import AdminRunner

        host, port = parse_host_port(self.config.admin)
        app = build_app(self)
        runner = AdminRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise StartupError(f"could not open the admin endpoint on {host}:{port}: {exc.strerror}") from None
        self._admin_runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound_port = sockets[0].getsockname()[1] if sockets else port
        # A wildcard bind is reached locally through loopback; node.json names where the CLI should connect.
        local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        shown = local if ":" not in local else f"[{local}]"
        self.admin_url = f"http://{shown}:{bound_port}"
        if not is_loopback(host):
            log.warning("the admin API listens on %s:%d, beyond this machine (admin.allow_remote = true); "
                        "anyone who holds admin.token can control this node", host, bound_port)

    # ---- bootstrap -------------------------------------------------------------------------------

    async def _bootstrap_loop(self) -> None:
        """Keep every bootstrap peer connected; retry unreachable ones with jittered exponential backoff."""
        addrs = list(self.config.bootstrap)
        if not addrs:
            return
        backoff = dict.fromkeys(addrs, BOOTSTRAP_BACKOFF_MIN)
        next_try = dict.fromkeys(addrs, 0.0)
        reported: set[str] = set()
        while True:
            now = time.monotonic()
            for addr in addrs:
                peer = addr.rsplit("/p2p/", 1)[-1]
                if self.overlay.is_connected(peer) or now < next_try[addr]:
                    continue
                try:
                    await self.overlay.connect(addr)
                except Exception as exc:
                    if addr not in reported:
                        log.info("bootstrap peer %s unreachable (%s); retrying with backoff", addr,
                                    _reason(exc))
                        reported.add(addr)
                    next_try[addr] = now + backoff[addr] * random.uniform(0.8, 1.2)
                    backoff[addr] = min(backoff[addr] * 2, BOOTSTRAP_BACKOFF_MAX)
                else:
                    log.info("connected to bootstrap peer %s", peer)
                    reported.discard(addr)
                    backoff[addr] = BOOTSTRAP_BACKOFF_MIN
            await asyncio.sleep(0.5)


def _probe_listen(addr: str) -> None:
    """Bind the libp2p listen address once ourselves, to report 'address in use' precisely."""
    import socket

    parts = addr.strip("/").split("/")
    family = socket.AF_INET6 if parts[0] == "ip6" else socket.AF_INET
    host, port = parts[1], int(parts[3])
    if port == 0:
        return
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise StartupError(f"could not listen on {addr}: {exc.strerror}") from None
    finally:
        sock.close()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return text.splitlines()[0] if text else type(exc).__name__


async def run_node(root: Path, on_ready: Callable[[Node], None] | None = None) -> int:
    import signal

    node = Node(root)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, node.request_stop)
    await node.start()
    if on_ready is not None:
        on_ready(node)
    await node.run_until_stopped()
    return 0


__all__ = ["Node", "StartupError", "__version__", "run_node"]
