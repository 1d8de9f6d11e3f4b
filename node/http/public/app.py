"""The public listener: a separate aiohttp app, read-only, without token, started and stopped with the node.

It reads the catalog and the chunk store and nothing else; it serves only versions whose state is in
an allow-list (`own`, plus `complete` with `[public] datasets = "held"`), so versions in progress, not
wanted, retracted or in any state added later are never public unless added here on purpose.

Downloads stream chunk by chunk: each chunk is read and verified against its hash (the chunk store's
`get`) in a worker thread, then only the requested slice is written, with a deadline per write so a
client that stops reading is dropped (`[public] slow_client_s`). Memory per download is one chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import blake3
from aiohttp import web
from communs.node.config import Config, parse_host_port
from communs.node.http.public import archive, dcat, pages
from communs.node.http.public.checksum_worker import ChecksumWorker
from communs.node.http.public.files import (
    PublicFile,
    PublicVersion,
    Refused,
    chunk_plan,
    content_disposition,
    content_type,
    etag,
    resolve_file,
    resolve_id,
)
from communs.node.http.public.limits import DownloadSlots, RateLimiter
from communs.node.http.public.ranges import Unsatisfiable, parse_range
from communs.node.http.server import AdminRunner
from communs.protocol import ids, keys
from communs.protocol.records import Manifest
from communs.storage.catalog import Catalog
from communs.storage.chunkstore import ChunkStore
from communs.storage.errors import StorageError

log = logging.getLogger("communs.public")

ALLOWED_STATES = {"own": frozenset({"own"}), "held": frozenset({"own", "complete"})}
_PAGE = re.compile(r"^[1-9][0-9]{0,8}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Pages have no script and load nothing from elsewhere; a published file (it may be HTML) is never run as a
# page of this origin: it is an attachment, sandboxed, and its type is not sniffed.
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                     "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}
_DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
                     "Referrer-Policy": "no-referrer"}


class PublicData:
    """The public versions, read from the catalog; each manifest decoded once and kept while it stays public."""

    def __init__(self, catalog: Catalog, states: frozenset[str]) -> None:
        self.catalog = catalog
        self.states = states
        self._decoded: dict[bytes, PublicVersion] = {}

    async def versions(self) -> list[PublicVersion]:
        """Newest first. One cheap listing per call; only manifests not seen before are read and decoded."""
        infos = []
        for state in sorted(self.states):  # by the state index: not-wanted manifests of a big federation cost nothing
            infos.extend(await self.catalog.list_manifests(state=state))
        infos.sort(key=lambda i: (-i.created, i.id))  # newest first, as one listing would be
        keep = {i.id for i in infos}
        for gone in set(self._decoded) - keep:
            del self._decoded[gone]
        out = []
        for info in infos:
            v = self._decoded.get(info.id)
            if v is None or v.state != info.state:
                full = await self.catalog.get_manifest(info.id)
                if full is None or full.raw is None or full.state not in self.states:
                    continue
                v = _plain(Manifest.decode(full.raw, verify=False), full.state)
                self._decoded[info.id] = v
            out.append(v)
        return out


def _plain(m: Manifest, state: str) -> PublicVersion:
    return PublicVersion(
        id=ids.cid_str(m.id), dataset=ids.cid_str(m.dataset), version=m.version, title=m.title,
        description=m.description, keywords=tuple(m.keywords), licence=m.licence,
        publisher=keys.peer_id(m.publisher), created=m.created, size=m.size,
        files=tuple(PublicFile(f.path, f.size, tuple((c.digest, c.size) for c in f.chunks)) for f in m.files),
        prev=ids.cid_str(m.prev) if m.prev else None, state=state)


class PublicSite:
    """The public listener's app and server. `start()` returns the URL it listens on."""

    def __init__(self, *, catalog: Catalog, chunks: ChunkStore, config: Config, peer_id: str) -> None:
        self.config = config
        self.chunks = chunks
        self.catalog = catalog
        self.peer_id = peer_id
        self.data = PublicData(catalog, ALLOWED_STATES[config.public_datasets])
        self.sums = ChecksumWorker(catalog, chunks, self.data.versions)  # whole-file SHA-256, computed once
        self._seen: tuple[str, ...] = ()  # the public version ids the last request saw
        self.rate = RateLimiter(config.public_requests_per_minute)
        self.slots = DownloadSlots(config.public_downloads_per_ip)
        self._exports: dict[tuple[Any, ...], bytes] = {}  # serialised catalog pages, by what they depend on
        self.runner: web.AppRunner | None = None
        self.url = ""

    # ---- lifecycle -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=1024)
        r = app.router
        r.add_get("/", self.index)
        r.add_get("/catalog", self.catalog_negotiated)
        r.add_get("/catalog.{fmt:ttl|jsonld|rdf}", self.catalog_export)
        r.add_get("/datasets/{id}", self.dataset)
        r.add_get("/datasets/{id}/files/{path:.+}", self.download)
        r.add_get("/datasets/{id}/archive.tar", self.archive)
        return app

    async def start(self) -> str:
        from communs.node.errors import StartupError

        host, port = parse_host_port(self.config.public_listen, "public.listen")
        runner = AdminRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise StartupError(f"could not open the public listener on {host}:{port}: {exc.strerror}") from None
        self.runner = runner
        self.sums.start()
        sockets = getattr(site._server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        self.url = f"http://{local if ':' not in local else f'[{local}]'}:{bound}"
        log.info("public face at %s (serving %s datasets, read-only)", self.url, self.config.public_datasets)
        return self.url

    async def stop(self) -> None:
        await self.sums.stop()
        if self.runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.runner.cleanup(), 1.5)
            self.runner = None

    # ---- helpers ---------------------------------------------------------------------------------

    async def versions(self) -> list[PublicVersion]:
        """The public versions; when they changed since the last request, the checksum worker is woken and
        the checksums already in the catalog for the new ones are read."""
        versions = await self.data.versions()
        seen = tuple(v.id for v in versions)
        if seen != self._seen:
            self._seen = seen
            await self.sums.load(versions)
            self.sums.wake()
        return versions

    async def copies(self, versions: list[PublicVersion]) -> dict[str, int]:
        """Copies per version id, as `communs whereis` counts them (live holding claims not refuted by a
        challenge, node/services/copies.py), read from the catalog; 0 for a version nobody claims."""
        counts = await self.catalog.claim_counts(int(time.time()), [ids.parse_cid(v.id) for v in versions])
        return {v.id: counts.get(ids.parse_cid(v.id), 0) for v in versions}

    def base_url(self, request: web.Request) -> str:
        return (self.config.public_base_url or str(request.url.origin())).rstrip("/")

    def meta(self, request: web.Request) -> dcat.CatalogMeta:
        cfg = self.config
        name = cfg.public_publisher_name or cfg.name
        return dcat.CatalogMeta(
            base_url=self.base_url(request), title=cfg.public_title or f"{name}: open data",
            description=cfg.public_description or f"Datasets published by {name} through a Communs node.",
            publisher_name=name, homepage=cfg.public_homepage, contact_email=cfg.public_contact,
            own_peer_id=self.peer_id, publisher_type=cfg.public_publisher_type, licence=cfg.public_licence,
            language=cfg.public_language)

    def publisher_name(self, v: PublicVersion) -> str:
        return self.config.public_publisher_name or self.config.name if v.publisher == self.peer_id \
            else f"Communs node {v.publisher}"

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        client = request.remote or "?"
        wait = self.rate.allow(client, time.monotonic())
        if wait > 0:
            return _error(request, 429, "too many requests from this address; slow down",
                          {"Retry-After": str(max(1, math.ceil(wait)))})
        if request.method not in ("GET", "HEAD"):
            return _error(request, 405, "the public face is read-only: only GET and HEAD",
                          {"Allow": "GET, HEAD"})
        try:
            resp = await handler(request)
        except Refused as exc:
            return _error(request, exc.status, str(exc))
        except web.HTTPException as exc:
            if exc.status >= 400:
                sentence = {404: "no such page here", 405: "only GET and HEAD"}.get(exc.status, exc.reason)
                return _error(request, exc.status, sentence)
            raise
        except StorageError as exc:
            log.warning("public request %s failed on storage: %s", request.path, exc)
            return _error(request, 503, "this file cannot be read here right now; try again later")
        if not resp.prepared:  # streamed downloads set their own before their first byte
            resp.headers.update(_SECURITY_HEADERS)
        return resp

    def page_number(self, request: web.Request) -> int:
        text = request.query.get("page", "1")
        if not _PAGE.match(text):
            raise Refused(400, "'page' must be a whole number from 1 to 999999999")
        return int(text)

    # ---- catalog ---------------------------------------------------------------------------------

    async def catalog_negotiated(self, request: web.Request) -> web.StreamResponse:
        return await self._export(request, dcat.negotiate(request.headers.get("Accept")))

    async def catalog_export(self, request: web.Request) -> web.StreamResponse:
        return await self._export(request, request.match_info["fmt"])

    async def _export(self, request: web.Request, fmt: str) -> web.StreamResponse:
        number = self.page_number(request)
        versions = await self.versions()
        size = self.config.public_page_size
        count = max(1, math.ceil(len(versions) / size))
        if number > count:
            raise Refused(404, f"there {'is' if count == 1 else 'are'} only {count} page(s)")
        meta = self.meta(request)
        path = "/catalog" if request.path == "/catalog" else f"/catalog.{fmt}"
        copies = await self.copies(versions[(number - 1) * size:number * size])
        key = (fmt, number, path, meta, tuple(v.id for v in versions), self.sums.generation,
               tuple(sorted(copies.items())))
        body = self._exports.get(key)
        if body is None:
            body = await self._build_export(meta, versions, number, count, path, fmt, copies)
            self._exports[key] = body
            while len(self._exports) > 32:  # a few pages in three formats; rebuilt when a version comes or goes,
                # a checksum is computed or a count of copies changes
                self._exports.pop(next(iter(self._exports)))
        return web.Response(body=body, headers={"Content-Type": dcat.FORMATS[fmt][1] + "; charset=utf-8",
                                                "Vary": "Accept"})

    async def _build_export(self, meta: dcat.CatalogMeta, versions: list[PublicVersion], number: int, count: int,
                            path: str, fmt: str, copies: dict[str, int]) -> bytes:
        size = self.config.public_page_size
        page = dcat.Page(number=number, count=count, total_items=len(versions),
                         url=lambda n: f"{meta.base_url}{path}?page={n}", per_page=size)
        latest: dict[str, PublicVersion] = {}
        for v in versions:
            if v.dataset not in latest or v.version > latest[v.dataset].version:
                latest[v.dataset] = v
        chosen = versions[(number - 1) * size:number * size]
        graph = dcat.catalog_graph(meta, chosen, page, all_ids=frozenset(v.id for v in versions),
                                   latest={d: v.id for d, v in latest.items()},
                                   modified=max((v.created for v in versions), default=None),
                                   issued=min((v.created for v in versions), default=None),
                                   checksums=self.sums.lookup, copies=copies, copies_at=int(time.time()))
        return await asyncio.to_thread(dcat.serialize, graph, fmt)

    # ---- human pages -----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        number = self.page_number(request)
        query = request.query.get("q", "")[:200].strip()
        versions = await self.versions()
        counts: dict[str, int] = {}
        latest: dict[str, PublicVersion] = {}
        for v in versions:
            counts[v.dataset] = counts.get(v.dataset, 0) + 1
            if v.dataset not in latest or v.version > latest[v.dataset].version:
                latest[v.dataset] = v
        shown = list(latest.values())
        if query:
            needle = query.casefold()
            shown = [v for v in shown if needle in v.title.casefold() or any(needle in k.casefold()
                                                                            for k in v.keywords)]
        size = self.config.public_page_size
        count = max(1, math.ceil(len(shown) / size))
        if number > count:
            raise Refused(404, f"there {'is' if count == 1 else 'are'} only {count} page(s)")
        meta = self.meta(request)
        listed = shown[(number - 1) * size:number * size]
        text = pages.index(title=meta.title, description=meta.description, publisher=meta.publisher_name,
                           versions=listed, query=query, page=number, pages=count, counts=counts,
                           copies=await self.copies(listed))
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    async def dataset(self, request: web.Request) -> web.StreamResponse:
        versions = await self.versions()
        v = resolve_id(request.match_info["id"], versions)
        siblings = [o for o in versions if o.dataset == v.dataset]
        meta = self.meta(request)
        copies = await self.copies(siblings)
        if "application/json" in request.headers.get("Accept", ""):
            doc = {"id": v.id, "dataset": v.dataset, "version": v.version, "title": v.title,
                   "description": v.description, "keywords": list(v.keywords), "licence": v.licence,
                   "publisher": v.publisher, "publisher_name": self.publisher_name(v), "size": v.size,
                   "created": v.created, "prev": v.prev, "state": v.state, "copies": copies[v.id],
                   "versions": [{"id": o.id, "version": o.version, "copies": copies[o.id]} for o in siblings],
                   "files": [{"path": f.path, "size": f.size, "sha256": self.sums.lookup(f),
                              "url": dcat.download_url(meta, v.id, f.path)} for f in v.files]}
            return web.json_response(doc, dumps=lambda d: json.dumps(d, ensure_ascii=False))
        text = pages.dataset(v, site_title=meta.title, publisher=self.publisher_name(v), versions=siblings,
                             base_url=meta.base_url, copies=copies, checksums=self.sums.lookup)
        return web.Response(text=text, content_type="text/html", charset="utf-8")

    # ---- gateway ---------------------------------------------------------------------------------

    async def download(self, request: web.Request) -> web.StreamResponse:
        versions = await self.versions()
        v = resolve_id(request.match_info["id"], versions)
        entry = resolve_file(v, request.match_info["path"])
        tag = etag(entry)
        headers = {**_DOWNLOAD_HEADERS, "ETag": tag, "Accept-Ranges": "bytes", "Content-Type": content_type(entry.path),
                   "Content-Disposition": content_disposition(entry.path),
                   "Cache-Control": "public, max-age=31536000, immutable" if request.match_info["id"] == v.id
                   else "public, max-age=60"}
        if request.headers.get("If-None-Match") in (tag, "*"):
            return web.Response(status=304, headers={"ETag": tag})
        range_header = request.headers.get("Range")
        if_range = request.headers.get("If-Range")
        if if_range is not None and if_range != tag:
            range_header = None
        try:
            wanted = parse_range(range_header, entry.size)
        except Unsatisfiable:
            return _error(request, 416, f"the range asked for is outside the file ({entry.size} bytes)",
                          {"Content-Range": f"bytes */{entry.size}"})
        start, end = (wanted.start, wanted.end) if wanted else (0, entry.size - 1)
        status = 206 if wanted else 200
        if wanted:
            headers["Content-Range"] = wanted.content_range()
        length = end - start + 1 if entry.size else 0
        if request.method == "HEAD":
            headers["Content-Length"] = str(length)
            return web.Response(status=status, headers=headers)
        if await self._missing(v, entry):
            raise Refused(503, "not every part of this file is stored here right now; try again later")
        client = request.remote or "?"
        refusal = self.slots.take(client)
        if refusal is not None:
            return _error(request, 429, refusal, {"Retry-After": "1"})
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = length
        try:
            plan = chunk_plan(entry.chunks, start, end) if length else []
            first = await asyncio.to_thread(self.chunks.get, plan[0][0]) if plan else b""  # verified, before 200
            await resp.prepare(request)
            if await self._send(request, resp, plan, first, f"{v.id}/{entry.path}", client):
                await resp.write_eof()
            return resp
        except StorageError as exc:
            return self._broken(request, resp, exc, f"{v.id}/{entry.path}")
        finally:
            self.slots.give(client)

    async def archive(self, request: web.Request) -> web.StreamResponse:
        """The whole version as one tar, streamed (archive.py lays it out; no Range on it)."""
        versions = await self.versions()
        v = resolve_id(request.match_info["id"], versions)
        members, total = archive.layout(v.files, v.created)
        tag = '"' + blake3.blake3("".join(etag(f) + f.path for f in v.files).encode()).hexdigest()[:32] + '"'
        headers = {**_DOWNLOAD_HEADERS, "ETag": tag, "Content-Type": "application/x-tar", "Accept-Ranges": "none",
                   "Content-Disposition": content_disposition(f"{v.id}.tar")}
        if request.headers.get("If-None-Match") in (tag, "*"):
            return web.Response(status=304, headers={"ETag": tag})
        if request.method == "HEAD":
            headers["Content-Length"] = str(total)
            return web.Response(headers=headers)
        if await self.catalog.missing_chunks(ids.parse_cid(v.id)):
            raise Refused(503, "not every part of this dataset is stored here right now; try again later")
        client = request.remote or "?"
        refusal = self.slots.take(client)
        if refusal is not None:
            return _error(request, 429, refusal, {"Retry-After": "1"})
        resp = web.StreamResponse(headers=headers)
        resp.content_length = total
        try:
            await resp.prepare(request)
            for m in members:
                await resp.write(m.header)
                plan = chunk_plan(m.file.chunks, 0, m.file.size - 1) if m.file.size else []
                first = await asyncio.to_thread(self.chunks.get, plan[0][0]) if plan else b""
                if not await self._send(request, resp, plan, first, f"{v.id}.tar", client):
                    return resp
                if m.padding:
                    await resp.write(b"\0" * m.padding)
            await resp.write(archive.END)
            await resp.write_eof()
            return resp
        except StorageError as exc:
            return self._broken(request, resp, exc, f"{v.id}.tar")
        finally:
            self.slots.give(client)

    async def _send(self, request: web.Request, resp: web.StreamResponse, plan: list[tuple[bytes, int, int]],
                    first: bytes, what: str, client: str) -> bool:
        """Write each planned slice, each chunk read and verified first; False when the client was dropped
        for reading nothing for `slow_client_s`."""
        deadline = float(self.config.public_slow_client_s)
        for n, (digest, skip, take) in enumerate(plan):
            data = first if n == 0 else await asyncio.to_thread(self.chunks.get, digest)
            piece = memoryview(data)[skip:skip + take]
            try:
                await asyncio.wait_for(resp.write(piece), deadline)
            except TimeoutError:
                log.info("public download of %s dropped: %s read nothing for %.0f s", what, client, deadline)
                if request.transport is not None:
                    request.transport.abort()
                return False
            del data, piece
        return True

    def _broken(self, request: web.Request, resp: web.StreamResponse, exc: StorageError,
                what: str) -> web.StreamResponse:
        if not resp.prepared:
            raise exc  # nothing sent yet: the middleware answers 503 with a sentence
        log.error("public download of %s stopped: %s", what, exc)
        if request.transport is not None:
            request.transport.abort()  # the client sees a short body, never unverified bytes
        return resp

    async def _missing(self, v: PublicVersion, entry: PublicFile) -> bool:
        needed = {d for d, _ in entry.chunks}
        if not needed:
            return False
        missing = await self.catalog.missing_chunks(ids.parse_cid(v.id))
        return any(d in needed for d, _ in missing)


def _error(request: web.Request, status: int, sentence: str, headers: dict[str, str] | None = None) -> web.Response:
    """One sentence: HTML for a browser, JSON for anyone else."""
    if "text/html" in request.headers.get("Accept", ""):
        return web.Response(status=status, text=pages.error(status, sentence), content_type="text/html",
                            charset="utf-8", headers=headers)
    return web.Response(status=status, text=json.dumps({"error": sentence}), content_type="application/json",
                        headers=headers)


__all__ = ["ALLOWED_STATES", "PublicData", "PublicSite"]
