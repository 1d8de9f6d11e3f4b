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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from communs.node import __version__
from communs.node.config import ConfigError, is_loopback, parse_host_port
from communs.node.datadir import NodeFiles, RunLock, open_folder, remove_node_json, write_node_json
from communs.node.errors import StartupError
from communs.node.exchange.bandwidth import Bandwidth
from communs.node.http.metrics import Metrics
from communs.node.runtime import systemd
from communs.protocol import keys

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from communs.node.config import Config
    from communs.node.exchange.service import ExchangeService
    from communs.node.http.public.app import PublicSite
    from communs.node.http.server import AdminRunner
    from communs.node.main import Service, Services
    from communs.node.services.copies import CopiesService
    from communs.node.services.datasets import DatasetsService
    from communs.node.services.governance import GovernanceService
    from communs.node.services.prune import PruneService
    from communs.node.services.replication import ReplicationService
    from communs.node.services.retraction import RetractionService
    from communs.node.services.storage import StorageService
    from communs.protocol.libp2p.overlay import Overlay

T = TypeVar("T")
log = logging.getLogger("communs.node")

BOOTSTRAP_BACKOFF_MIN = 1.0
BOOTSTRAP_BACKOFF_MAX = 60.0
PEER_BOOK_SAVE_S = 5.0  # how often the addresses of connected peers are looked at, for DIR/peers.json
PEER_BOOK_REFRESH_S = 600.0  # how often peers.json is rewritten when only the times peers were seen changed


class Node:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: NodeFiles | None = None
        self.lock = RunLock(root)
        self._overlay: Overlay | None = None  # built at start, before the services
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self._tasks: set[asyncio.Task] = set()  # tasks of any result
        self._stop = asyncio.Event()
        self._admin_runner: AdminRunner | None = None
        self.admin_url = ""
        self._services: Services | None = None  # built by main.build_services at start
        self._started: list[Service] = []  # started in order, stopped in reverse
        self.metrics = Metrics()
        self._public: PublicSite | None = None  # the public listener, when [public] listen is set
        self.public_url = ""
        # chunk bytes per second, [limits] in config.toml, changed at run time by PUT /api/v1/limits
        self.bandwidth = Bandwidth()

    # ---- properties used by the API --------------------------------------------------------------

    @property
    def config(self) -> Config:
        assert self.files is not None
        return self.files.config

    @property
    def overlay(self) -> Overlay:
        """The libp2p overlay (built at start, before the services; started after them)."""
        if self._overlay is None:
            raise RuntimeError("libp2p is built at start")
        return self._overlay

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("the node's services are built at start")
        return self._services

    @property
    def storage(self) -> StorageService:
        return self.services.storage

    @property
    def governance(self) -> GovernanceService:
        return self.services.governance

    @property
    def datasets(self) -> DatasetsService:
        return self.services.datasets

    @property
    def retractions(self) -> RetractionService:
        return self.services.retractions

    @property
    def prune(self) -> PruneService:
        return self.services.prune

    @property
    def copies(self) -> CopiesService:
        return self.services.copies

    @property
    def exchange(self) -> ExchangeService:
        return self.services.exchange

    @property
    def replication(self) -> ReplicationService:
        return self.services.replication

    @property
    def key(self) -> keys.SigningKey:
        assert self.files is not None
        return self.files.node_key

    @property
    def peer_id(self) -> str:
        return keys.peer_id(self.key.public)

    def uptime(self) -> float:
        return time.monotonic() - self.started_mono

    def spawn(self, coro: Coroutine[object, object, T], name: str) -> asyncio.Task[T]:
        """A background task that is cancelled at stop and whose failure is logged, never lost."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)

        def done(t: asyncio.Task[T]) -> None:
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
        from communs.node.main import build_services

        try:
            self._overlay = self._build_overlay()
            self._services = build_services(self)
            for service in self._services.in_start_order():
                await service.start()
                self._started.append(service)
            await self._start_overlay()
            await self._services.overlay_ready()
            await self._start_admin()
            await self._start_public()
        except BaseException:
            await self._shutdown()
            raise
        doc = {
            "pid": os.getpid(),
            "peer_id": self.peer_id,
            "listen_addrs": self.overlay.listen_addrs(),
            "admin_url": self.admin_url,
        }
        if self.public_url:
            doc["public_url"] = self.public_url
        write_node_json(self.root, doc)
        self.spawn(self._bootstrap_loop(), "bootstrap")
        self.spawn(self._peer_book_loop(), "peer book")
        self.spawn(self._trim_loop(), "malloc trim")
        log.info("node %s ready: peer id %s, listening on %s, admin API at %s",
                 self.config.name, self.peer_id, ", ".join(self.overlay.listen_addrs()), self.admin_url)
        systemd.notify(f"READY=1\nSTATUS=peer id {self.peer_id}, admin API at {self.admin_url}")

    async def run_until_stopped(self) -> None:
        await self._stop.wait()
        log.info("stopping")
        systemd.notify("STOPPING=1")
        await self._shutdown()
        log.info("stopped cleanly")

    async def _shutdown(self) -> None:
        remove_node_json(self.root)
        if self._public is not None:
            await self._public.stop()
            self._public = None
        if self._admin_runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._admin_runner.cleanup(), 1.5)
            self._admin_runner = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for service in reversed(self._started):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(service.stop(), 2.0)
        self._started.clear()
        if self._overlay is not None:
            await self._overlay.stop()
            self._overlay = None
        self.lock.release()

    def _build_overlay(self) -> Overlay:
        from communs.protocol.libp2p.connlimits import EXEMPT, ConnLimits
        from communs.protocol.libp2p.gossipguard import GossipLimits
        from communs.protocol.libp2p.overlay import Overlay

        cfg = self.config
        for addr in cfg.listen:
            _probe_listen(addr)
        limits = ConnLimits(max_inbound=cfg.conn_max_inbound, per_ip=cfg.conn_per_ip,
                            handshake_s=float(cfg.conn_handshake_s), exempt=() if cfg.conn_limit_loopback else EXEMPT)
        gossip_limits = GossipLimits(colocation_threshold=cfg.ip_colocation_threshold,
                                     colocation_exempt=tuple(str(n) for n in cfg.ip_colocation_exempt))
        overlay = Overlay(self.key.seed, cfg.listen, enable_dht=cfg.dht, enable_mdns=cfg.mdns,
                          conn_limits=limits, gossip_limits=gossip_limits)
        self.metrics.watch_limits(overlay.limit_counts)
        return overlay

    async def _start_overlay(self) -> None:
        from communs.protocol.net import OverlayError

        listen = ", ".join(self.config.listen)
        try:
            await self.overlay.start()
        except (OverlayError, OSError) as exc:
            raise StartupError(f"could not listen on {listen}: {_reason(exc)}") from None
        except Exception as exc:
            raise StartupError(f"could not start libp2p on {listen}: {_reason(exc)}") from None

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

    async def _start_public(self) -> None:
        """The optional public face (README.md, "Publishing to portals"), beside the admin API."""
        if not self.config.public_listen:
            return
        from communs.node.http.public.app import PublicSite

        site = PublicSite(catalog=self.storage.catalog, chunks=self.storage.chunks, config=self.config,
                          peer_id=self.peer_id)
        self.public_url = await site.start()
        self._public = site

    # ---- bootstrap -------------------------------------------------------------------------------

    async def _bootstrap_loop(self) -> None:
        """Keep every bootstrap peer connected; retry unreachable ones with jittered exponential backoff."""
        backoff: dict[str, float] = {}
        next_try: dict[str, float] = {}
        reported: set[str] = set()
        while True:
            now = time.monotonic()
            addrs = list(self.config.bootstrap)  # `peers add` may add one while the node runs
            for addr in addrs:
                backoff.setdefault(addr, BOOTSTRAP_BACKOFF_MIN)
                next_try.setdefault(addr, 0.0)
                peer = addr.rsplit("/p2p/", 1)[-1]
                if self.overlay.is_connected(peer) or now < next_try[addr]:
                    continue
                try:
                    await self.overlay.connect(addr, keep_known=True)
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


    async def _trim_loop(self) -> None:
        """Hand freed memory back to the kernel now and then (runtime/malloctune.py: after a fan-out a node
        kept what its transfers had freed, 30-40 MB more than before it)."""
        from communs.node.runtime.malloctune import TRIM_EVERY_S, trim_free_memory

        while True:
            await asyncio.sleep(TRIM_EVERY_S)
            await asyncio.to_thread(trim_free_memory)

    async def _peer_book_loop(self) -> None:
        """Dial the peers this node was last connected to (their addresses may be all that is left of the
        federation after this node's own address changed), then keep the book of connected peers up to date
        (services/peerbook.py)."""
        from communs.node.services import peerbook

        book = await asyncio.to_thread(peerbook.load_book, self.root)
        connected = {p.peer_id for p in self.overlay.peers()}
        for addrs in peerbook.dial_list(book, connected, self.peer_id):
            self.spawn(self._dial_quietly(addrs), "peer book dial")
        saved_at = time.monotonic()
        while True:
            await asyncio.sleep(PEER_BOOK_SAVE_S)
            seen = {p.peer_id: [a if "/p2p/" in a else f"{a}/p2p/{p.peer_id}" for a in p.addrs]
                    for p in self.overlay.peers()}
            updated = peerbook.merge_seen(book, seen, int(time.time()))
            moved = peerbook.addresses(updated) != peerbook.addresses(book)
            book = updated
            # a peer or an address changed: at once; only the times seen: now and then (no fsync every 5 s)
            if moved or time.monotonic() - saved_at > PEER_BOOK_REFRESH_S:
                saved_at = time.monotonic()
                try:
                    await asyncio.to_thread(peerbook.save_book, self.root, book)
                except OSError as exc:
                    log.info("could not save the peer book: %s", exc)

    async def _dial_quietly(self, addrs: list[str]) -> None:
        """Try a peer of the last run at each address kept for it, until one answers."""
        peer = addrs[0].rsplit("/p2p/", 1)[-1]
        for addr in addrs:
            if self.overlay.is_connected(peer):
                return
            try:
                await self.overlay.connect(addr, keep_known=True)
            except Exception as exc:  # noqa: BLE001 - a hint from the last run; said at debug level
                log.debug("peer %s from the last run not reachable at %s (%s)", peer, addr, _reason(exc))
            else:
                log.info("reconnected to %s, a peer of the last run", peer)
                return


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
