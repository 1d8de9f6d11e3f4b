"""A small S3 client over aiohttp for the S3 chunk store: signed requests (storage/sigv4.py), path-style
addressing, one asyncio loop in a thread of its own, called from any thread.

Why not botocore (what the store used first): measured on this 2-core machine against SeaweedFS 4.48
(scripts/bench/s3_ceiling.py, README.md "Chunks on an S3-compatible object store"), botocore spent 4.0 to
4.9 s of client CPU per GiB of 1 MiB PUTs (it SHA-256-hashes every body sent over plain http, and its
transport is heavier) against 1.0 to 2.1 s here, and that CPU is taken from the object store, which runs on
the same cores: with 1 to 16 requests in flight, PUTs went from 52-58 MB/s to 61-79 MB/s, GETs from
173-274 MB/s to 274-433 MB/s.

The store needs five requests (HEAD, GET, PUT, PUT with a copy source, DELETE) and the list call; every
answer is returned whole (chunks are at most 4 MiB), an error answer becomes `S3Answer` (its S3 code, HTTP
status and message), a request that could not be completed (refused, reset, timed out, body cut short)
becomes `S3Unreachable`. Retrying is the caller's decision (s3chunks.S3ChunkStore._call).
"""

from __future__ import annotations

import asyncio
import threading
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from . import sigv4


class S3Answer(Exception):
    """The store answered with an error (`code`: S3's error code, or the HTTP status when there is none)."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(f"{code} ({status}): {message}" if message else f"{code} ({status})")
        self.code = code
        self.status = status
        self.message = message


class S3Unreachable(Exception):
    """The request did not complete: the store refused or dropped the connection, or did not answer in time."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_error(body: bytes, status: int) -> tuple[str, str]:
    """(code, message) of an S3 error answer; the status as the code when the body says nothing (HEAD)."""
    code, message = "", ""
    if body:
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return str(status), body[:200].decode("utf-8", "replace").strip()
        for child in root:
            if _local(child.tag) == "Code":
                code = (child.text or "").strip()
            elif _local(child.tag) == "Message":
                message = (child.text or "").strip()
    return code or str(status), message


@dataclass(frozen=True)
class Listing:
    """One page of ListObjectsV2."""

    objects: list[tuple[str, int]]  # (key, size)
    next_token: str | None


def parse_listing(body: bytes) -> Listing:
    """The objects of a ListObjectsV2 answer and the token of the next page (None on the last one)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise S3Answer("MalformedListing", 200, f"the listing is not XML: {exc}") from None
    objects: list[tuple[str, int]] = []
    truncated = False
    token: str | None = None
    for child in root:
        name = _local(child.tag)
        if name == "Contents":
            fields = {_local(c.tag): (c.text or "") for c in child}
            objects.append((fields.get("Key", ""), int(fields.get("Size", "0") or 0)))
        elif name == "IsTruncated":
            truncated = (child.text or "").strip().lower() == "true"
        elif name == "NextContinuationToken":
            token = (child.text or "").strip() or None
    return Listing(objects, token if truncated else None)


class S3Http:
    """Requests to one bucket. Thread-safe: `request()` may be called from any number of threads; each call
    waits for its answer while the loop thread runs all of them concurrently (at most `connections`)."""

    def __init__(self, endpoint: str, bucket: str, access_key: str, secret_key: str, region: str, *,
                 connections: int = 16, connect_timeout_s: float = 5.0, read_timeout_s: float = 60.0) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the S3 endpoint {endpoint!r} is not an http:// or https:// URL")
        self.endpoint = endpoint
        self.bucket = bucket
        self._base = f"{parts.scheme}://{parts.netloc}"
        self._root = parts.path.rstrip("/")
        netloc = parts.netloc.rpartition("@")[2]
        if parts.port == (443 if parts.scheme == "https" else 80):
            netloc = netloc.rsplit(":", 1)[0]
        self._host = netloc  # the Host header, signed: as sent, without a default port
        self._access_key = access_key
        self._secret_key = secret_key
        self._region = region
        self._keys: dict[tuple[str, str], bytes] = {}  # signing keys, used by the loop thread only
        self._connections = max(1, connections)
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="s3-client", daemon=True)
        self._thread.start()
        self._session = asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()
        self._closed = False

    async def _open(self) -> aiohttp.ClientSession:
        connect, read = self._timeouts
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read),
            auto_decompress=False, skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent"))

    def path_of(self, key: str) -> str:
        return f"{self._root}/{self.bucket}" + (f"/{key}" if key else "")

    def request(self, method: str, key: str = "", *, query: Mapping[str, str] | None = None, body: bytes = b"",
                headers: Mapping[str, str] | None = None) -> Response:
        """Send one request and return its (successful) answer; S3Answer or S3Unreachable otherwise."""
        if self._closed:
            raise S3Unreachable("the S3 client is closed")
        try:
            fut = asyncio.run_coroutine_threadsafe(self._request(method, key, query or {}, body, headers or {}),
                                                   self._loop)
        except RuntimeError:  # the loop was stopped by close() meanwhile
            raise S3Unreachable("the S3 client is closed") from None
        return fut.result()

    async def _request(self, method: str, key: str, query: Mapping[str, str], body: bytes,
                       headers: Mapping[str, str]) -> Response:
        path = self.path_of(key)
        extra = {k.lower(): v for k, v in headers.items()}
        if body or method in ("PUT", "POST"):
            extra["content-length"] = str(len(body))
        signed = sigv4.sign(method, self._host, path, query, extra, access_key=self._access_key,
                            secret_key=self._secret_key, region=self._region, now=datetime.now(UTC),
                            key_cache=self._keys)
        qs = sigv4.canonical_query(query)
        url = URL(self._base + sigv4.quote_path(path) + (f"?{qs}" if qs else ""), encoded=True)
        try:
            async with self._session.request(method, url, data=body if body else None,
                                             headers={"host": self._host, **extra, **signed}) as r:
                data = await r.read()
                status = r.status
                answer_headers = {k.lower(): v for k, v in r.headers.items()}
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise S3Unreachable(type(exc).__name__) from None
        if status >= 300:
            code, message = parse_error(data, status)
            raise S3Answer(code, status, message)
        return Response(status, answer_headers, data)

    def list_page(self, prefix: str, token: str | None, *, delimiter: str = "/", max_keys: int = 1000) -> Listing:
        query = {"list-type": "2", "prefix": prefix, "delimiter": delimiter, "max-keys": str(max_keys)}
        if token:
            query["continuation-token"] = token
        return parse_listing(self.request("GET", "", query=query).body)

    def copy_source(self, key: str) -> str:
        """The x-amz-copy-source header naming `key` in this bucket."""
        return quote(f"/{self.bucket}/{key}", safe="/~")

    def close(self) -> None:
        """Close the connections and stop the loop thread (requests still running fail as unreachable)."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(timeout=10)
        except Exception:  # noqa: BLE001 - closing is best effort: the process may be stopping
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
