"""The `[storage]` section of config.toml: which chunk store the node uses, and opening it.

`backend = "fs"` (the default) keeps chunks in `DIR/store/`; `backend = "s3"` puts them in a bucket of an
S3-compatible object store, described by `[storage.s3]`. Credentials never go in config.toml: they come
from `credentials_file` (mode 0600) or the `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` variables.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from communs.node.folder import STORE_DIR  # noqa: F401 - re-exported
from communs.node.jsondoc import JsonDict
from communs.storage.chunkstore import ChunkStore, FsChunkStore
from communs.storage.errors import StorageError

if TYPE_CHECKING:
    from communs.storage.s3chunks import S3Settings

BACKENDS = ("fs", "s3")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StorageConfigError(ValueError):
    """A `[storage]` value is invalid; one sentence naming the key."""


@dataclass
class S3Config:
    endpoint: str = ""
    bucket: str = ""
    prefix: str = "communs/"
    region: str = "us-east-1"
    credentials_file: str | None = None
    capacity_bytes: int | None = None
    concurrency: int = 8
    wait_seconds: int = 300


@dataclass
class StorageConfig:
    backend: str = "fs"
    direct_io: bool | None = None
    s3: S3Config | None = None

    def to_doc(self) -> JsonDict:
        doc: JsonDict = {"backend": self.backend}
        if self.direct_io is not None:
            doc["direct_io"] = self.direct_io
        if self.s3 is not None:
            s3 = {k: v for k, v in vars(self.s3).items() if v is not None}
            doc["s3"] = s3
        return doc

    def is_default(self) -> bool:
        return self.backend == "fs" and self.direct_io is None and self.s3 is None

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise StorageConfigError(f"storage.backend must be 'fs' or 's3', not '{self.backend}'")
        if self.backend == "s3" and self.s3 is None:
            raise StorageConfigError("storage.backend is 's3' but there is no [storage.s3] section")
        if self.s3 is not None:
            check_s3(self.s3)


def check_s3(s3: S3Config) -> None:
    url = urlparse(s3.endpoint)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise StorageConfigError(f"storage.s3.endpoint '{s3.endpoint}' must be an http:// or https:// URL")
    if not _BUCKET_RE.match(s3.bucket) or ".." in s3.bucket:
        raise StorageConfigError(f"storage.s3.bucket '{s3.bucket}' is not a valid bucket name (3 to 63 lowercase "
                                 "letters, digits, '.' or '-')")
    if len(s3.prefix) > 200 or any(ord(c) < 32 for c in s3.prefix):
        raise StorageConfigError("storage.s3.prefix must be at most 200 printable characters")
    if not s3.region:
        raise StorageConfigError("storage.s3.region must not be empty")
    if s3.capacity_bytes is not None and s3.capacity_bytes <= 0:
        raise StorageConfigError("storage.s3.capacity_bytes must be positive")
    if not 1 <= s3.concurrency <= 64:
        raise StorageConfigError("storage.s3.concurrency must be from 1 to 64")
    if not 0 <= s3.wait_seconds <= 86400:
        raise StorageConfigError("storage.s3.wait_seconds must be from 0 to 86400")


_S3_KEYS: dict[str, type] = {"endpoint": str, "bucket": str, "prefix": str, "region": str,
                             "credentials_file": str, "capacity_bytes": int, "concurrency": int,
                             "wait_seconds": int}


def parse_storage(section: JsonDict) -> StorageConfig:
    """The `[storage]` table as read from TOML, checked."""
    cfg = StorageConfig()
    for key, value in section.items():
        if key == "backend":
            if not isinstance(value, str):
                raise StorageConfigError("storage.backend has the wrong type")
            cfg.backend = value
        elif key == "direct_io":
            if not isinstance(value, bool):
                raise StorageConfigError("storage.direct_io has the wrong type")
            cfg.direct_io = value
        elif key == "s3":
            if not isinstance(value, dict):
                raise StorageConfigError("storage.s3 must be a table")
            s3 = S3Config()
            for k, v in value.items():
                typ = _S3_KEYS.get(k)
                if typ is None:
                    raise StorageConfigError(f"unknown key storage.s3.{k}")
                if not isinstance(v, typ) or isinstance(v, bool):
                    raise StorageConfigError(f"storage.s3.{k} has the wrong type")
                setattr(s3, k, v)
            cfg.s3 = s3
        else:
            raise StorageConfigError(f"unknown key storage.{key}")
    cfg.validate()
    return cfg


def s3_settings(root: Path, s3: S3Config, *, wait_s: float | None = None) -> S3Settings:
    """The S3 store's settings with its credentials: `credentials_file` (relative to DIR) when set, else the
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables."""
    from communs.storage.s3chunks import S3Settings, read_credentials_file

    if s3.credentials_file:
        key, secret = read_credentials_file(root / s3.credentials_file)
    else:
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if not key or not secret:
            raise StorageError("the S3 chunk store needs credentials: set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY, or storage.s3.credentials_file in config.toml")
    return S3Settings(endpoint=s3.endpoint, bucket=s3.bucket, access_key=key, secret_key=secret, prefix=s3.prefix,
                      region=s3.region, capacity_bytes=s3.capacity_bytes, concurrency=s3.concurrency,
                      wait_s=float(s3.wait_seconds if wait_s is None else wait_s))


def open_chunk_store(root: Path, storage: StorageConfig, *, wait_s: float | None = None) -> ChunkStore:
    """The chunk store the config names (blocking: call it from a thread in the node). StorageError with one
    sentence when it cannot be opened."""
    if storage.backend == "s3":
        assert storage.s3 is not None
        from communs.storage.s3chunks import S3ChunkStore

        return S3ChunkStore(s3_settings(root, storage.s3, wait_s=wait_s))
    return FsChunkStore(root / STORE_DIR, direct=storage.direct_io)
