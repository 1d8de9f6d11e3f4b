"""The signed records that cross the network: dataset manifests and gossip announcements.

A record is a canonical msgpack map with a `"type"` and a schema version `"v"`, an exact
set of fields, and an Ed25519 signature in `"sig"` over the same map without `"sig"`
(domain `"<type>/<v>"`, see keys.signing_bytes). Its id is the BLAKE3 digest of its full
encoding, signature included: Ed25519 is deterministic, so one signed value has one id.

Constructing a record object validates every field (types exact, sizes bounded), so an
instance is always well formed; `decode` adds the canonical-bytes and signature checks.
Everything wrong raises a RecordError subclass with one sentence, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from . import ids, keys
from .errors import DecodeError, RecordError
from .paths import check_path, check_tree
from .signed import MAX_UINT as MAX_UINT  # re-exported: the wire checks sequence numbers against it
from .signed import (
    SignedRecord,
    as_tuple,
    check_bytes,
    check_line,
    check_opt_bytes,
    check_text,
    check_uint,
)

MANIFEST_TYPE = "manifest"
MANIFEST_VERSION = 1
MANIFEST_DOMAIN = "manifest/1"
MANIFEST_V2 = 2  # v2 adds what a folder is made of beyond bytes: empty folders, executable bits, times
MANIFEST_V2_DOMAIN = "manifest/2"
ANNOUNCE_TYPE = "announce"
ANNOUNCE_VERSION = 1
ANNOUNCE_DOMAIN = "announce/1"
DATASET_ID_DOMAIN = b"communs/dataset-id\x00"

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_ANNOUNCE_BYTES = 1024
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 10_000
MAX_KEYWORDS = 50
MAX_KEYWORD_CHARS = 64
MAX_LICENCE_CHARS = 500
MAX_FILES = 100_000
MAX_FOLDERS = 100_000
MAX_CHUNKS_PER_FILE = 262_144
MAX_CHUNK_SIZE = 8 * 1024 * 1024
MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 64

ANNOUNCE_KINDS = ("publish", "hold")
ANNOUNCE_MAX_AGE = 600
ANNOUNCE_MAX_SKEW = 120

class StaleError(RecordError):
    """A well-formed, correctly signed record that is too old or dated too far in the future."""


# --- manifests --------------------------------------------------------------------------------


class ChunkRef(NamedTuple):
    """One content-defined chunk of a file: its BLAKE3 digest and its size in bytes."""

    digest: bytes
    size: int


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset: a checked relative path, its size, and its chunks in order."""

    path: str
    size: int
    chunks: tuple[ChunkRef, ...] = field(repr=False)
    # Manifest v2 only (both set, or both None in a v1 manifest): whether the file is executable, and its
    # modification time in nanoseconds since the Unix epoch.
    executable: bool | None = None
    mtime_ns: int | None = None

    def __post_init__(self) -> None:
        check_path(self.path)
        if (self.executable is None) != (self.mtime_ns is None):
            raise DecodeError(f"file {self.path!r} must have both 'exec' and 'mtime' or neither")
        if self.executable is not None:
            if type(self.executable) is not bool:
                raise DecodeError(f"the 'exec' of file {self.path!r} must be true or false")
            check_uint("manifest", "mtime", self.mtime_ns)
        raw = as_tuple("manifest", "chunks", self.chunks)
        if len(raw) > MAX_CHUNKS_PER_FILE:
            raise DecodeError(f"file {self.path!r} has more than {MAX_CHUNKS_PER_FILE} chunks")
        chunks = []
        total = 0
        for item in raw:
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise DecodeError(f"a chunk of file {self.path!r} must be a [digest, size] pair")
            digest, size = item
            if type(digest) is not bytes or len(digest) != ids.DIGEST_SIZE:
                raise DecodeError(f"a chunk digest of file {self.path!r} must be 32 bytes")
            if type(size) is not int or not 1 <= size <= MAX_CHUNK_SIZE:
                raise DecodeError(f"a chunk size of file {self.path!r} must be 1 to {MAX_CHUNK_SIZE} bytes")
            total += size
            chunks.append(item if type(item) is ChunkRef else ChunkRef(digest, size))
        object.__setattr__(self, "chunks", tuple(chunks))
        if type(self.size) is not int or self.size != total:
            raise DecodeError(f"file {self.path!r} size does not equal the sum of its chunk sizes")

    @classmethod
    def of(cls, path: str, chunks: Iterable[tuple[bytes, int]], *, executable: bool | None = None,
           mtime_ns: int | None = None) -> FileEntry:
        """A file entry whose size is the sum of its chunks (with `executable` and `mtime_ns`: for v2)."""
        chunk_list = [ChunkRef(d, s) for d, s in chunks]
        return cls(path, sum(c.size for c in chunk_list), tuple(chunk_list), executable, mtime_ns)

    @property
    def has_meta(self) -> bool:
        return self.executable is not None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size,
                               "chunks": [[c.digest, c.size] for c in self.chunks]}
        if self.executable is not None:
            out["exec"] = self.executable
            out["mtime"] = self.mtime_ns
        return out

    @classmethod
    def from_dict(cls, value: object, schema: int = MANIFEST_VERSION) -> FileEntry:
        keys_v1 = {"path", "size", "chunks"}
        if schema == MANIFEST_VERSION:
            if not isinstance(value, dict) or set(value) != keys_v1:
                raise DecodeError("a manifest file entry must be a map of exactly path, size and chunks")
        elif not isinstance(value, dict) or set(value) != keys_v1 | {"exec", "mtime"}:
            raise DecodeError("a v2 manifest file entry must be a map of exactly path, size, chunks, exec and mtime")
        chunks = value["chunks"]
        if not isinstance(chunks, list):
            raise DecodeError("a manifest file entry's chunks must be a list")
        return cls(value["path"], value["size"], tuple(chunks), value.get("exec"), value.get("mtime"))


@dataclass(frozen=True)
class Manifest(SignedRecord):
    """One signed version of a dataset, and one entry of its publisher's append-only log."""

    TYPE = MANIFEST_TYPE
    VERSION = MANIFEST_VERSION
    MAX_BYTES = MAX_MANIFEST_BYTES
    NAME = "manifest"

    dataset: bytes
    version: int
    prev: bytes | None
    publisher: bytes
    seq: int
    log_prev: bytes | None
    title: str
    description: str
    keywords: tuple[str, ...]
    licence: str
    created: int
    files: tuple[FileEntry, ...] = field(repr=False)
    size: int
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        r = "manifest"
        check_bytes(r, "dataset", self.dataset, ids.DIGEST_SIZE)
        check_uint(r, "version", self.version, 1)
        check_opt_bytes(r, "prev", self.prev, ids.DIGEST_SIZE)
        if (self.prev is None) != (self.version == 1):
            raise DecodeError("manifest field 'prev' must be absent for version 1 and present after")
        check_bytes(r, "publisher", self.publisher, keys.PUBLIC_KEY_SIZE)
        check_uint(r, "seq", self.seq, 1)
        check_opt_bytes(r, "log_prev", self.log_prev, ids.DIGEST_SIZE)
        if (self.log_prev is None) != (self.seq == 1):
            raise DecodeError("manifest field 'log_prev' must be absent for seq 1 and present after")
        check_line(r, "title", self.title, 1, MAX_TITLE_CHARS)
        check_text(r, "description", self.description, MAX_DESCRIPTION_CHARS)
        keywords = as_tuple(r, "keywords", self.keywords)
        if len(keywords) > MAX_KEYWORDS:
            raise DecodeError(f"manifest has more than {MAX_KEYWORDS} keywords")
        for word in keywords:
            check_line(r, "keywords", word, 1, MAX_KEYWORD_CHARS)
        if len(set(keywords)) != len(keywords):
            raise DecodeError("manifest keywords must not repeat")
        object.__setattr__(self, "keywords", keywords)
        check_line(r, "licence", self.licence, 1, MAX_LICENCE_CHARS)
        check_uint(r, "created", self.created)
        files = as_tuple(r, "files", self.files)
        if len(files) > MAX_FILES:
            raise DecodeError(f"manifest has more than {MAX_FILES} files")
        previous = None
        v2 = self.VERSION == MANIFEST_V2
        for entry in files:
            if type(entry) is not FileEntry:
                raise DecodeError("manifest field 'files' must hold file entries")
            if entry.has_meta != v2:
                raise DecodeError(f"file {entry.path!r} must {'' if v2 else 'not '}have 'exec' and 'mtime' in a "
                                  f"v{self.VERSION} manifest")
            if previous is not None and entry.path <= previous:
                raise DecodeError("manifest files must be sorted by path, without duplicates")
            previous = entry.path
        self._check_tree(files)
        object.__setattr__(self, "files", files)
        check_uint(r, "size", self.size)
        if self.size != sum(e.size for e in files):
            raise DecodeError("manifest size does not equal the sum of its file sizes")
        check_bytes(r, "sig", self.sig, keys.SIGNATURE_SIZE)

    def _check_tree(self, files: tuple[FileEntry, ...]) -> None:
        check_tree((e.path for e in files), each_checked=True)  # FileEntry checked each path

    @property
    def empty_folders(self) -> tuple[str, ...]:
        """Folders with nothing in them, which a v1 manifest cannot carry."""
        return ()

    # -- building and signing

    @classmethod
    def create(
        cls,
        key: keys.SigningKey,
        *,
        dataset: bytes,
        version: int,
        prev: bytes | None,
        seq: int,
        log_prev: bytes | None,
        title: str,
        licence: str,
        created: int,
        files: Iterable[FileEntry],
        description: str = "",
        keywords: Sequence[str] = (),
        folders: Iterable[str] | None = None,
    ) -> Manifest:
        """Build and sign a manifest for `key` (the publishing node); files and folders are sorted here.

        A v2 manifest when `folders` is given (empty folders, possibly none) and the files carry their
        executable bit and time; a v1 manifest otherwise."""
        file_list = tuple(files)
        if all(type(e) is FileEntry for e in file_list):
            file_list = tuple(sorted(file_list, key=lambda e: e.path.encode()))
        values = dict(dataset=dataset, version=version, prev=prev, publisher=key.public, seq=seq, log_prev=log_prev,
                      title=title, description=description, keywords=tuple(keywords), licence=licence,
                      created=created, files=file_list,
                      size=sum(e.size for e in file_list if type(e) is FileEntry))
        if folders is None:
            return cls.sign(key, **values)
        return ManifestV2.sign(key, **values, folders=tuple(sorted(folders, key=str.encode)))

    def signer(self) -> bytes:
        return self.publisher

    def payload(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "version": self.version,
            "prev": self.prev,
            "publisher": self.publisher,
            "seq": self.seq,
            "log_prev": self.log_prev,
            "title": self.title,
            "description": self.description,
            "keywords": list(self.keywords),
            "licence": self.licence,
            "created": self.created,
            "files": [e.to_dict() for e in self.files],
            "size": self.size,
        }

    @classmethod
    def decode(cls, data: bytes, *, verify: bool = True) -> Manifest:
        """Either schema from untrusted bytes: v1 (Manifest) or v2 (ManifestV2), by the record's "v"."""
        if cls is Manifest and _schema_hint(data) == MANIFEST_V2:
            return ManifestV2.decode(data, verify=verify)
        return super().decode(data, verify=verify)

    @classmethod
    def from_map(cls, m: dict[str, Any]) -> Manifest:
        files = m["files"]
        if not isinstance(files, list):
            raise DecodeError("manifest field 'files' must be a list")
        if len(files) > MAX_FILES:
            raise DecodeError(f"manifest has more than {MAX_FILES} files")
        keywords = m["keywords"]
        if not isinstance(keywords, list):
            raise DecodeError("manifest field 'keywords' must be a list")
        return cls(
            dataset=m["dataset"], version=m["version"], prev=m["prev"], publisher=m["publisher"],
            seq=m["seq"], log_prev=m["log_prev"], title=m["title"], description=m["description"],
            keywords=tuple(keywords), licence=m["licence"], created=m["created"],
            files=tuple(FileEntry.from_dict(f, cls.VERSION) for f in files), size=m["size"], sig=m["sig"],
            **cls._extra_from_map(m),
        )

    @classmethod
    def _extra_from_map(cls, m: dict[str, Any]) -> dict[str, Any]:
        return {}

    @property
    def publisher_peer_id(self) -> str:
        return keys.peer_id(self.publisher)

    def chunk_digests(self) -> tuple[bytes, ...]:
        """Every chunk digest the dataset needs, once each, in order of first use."""
        return tuple(dict.fromkeys(c.digest for e in self.files for c in e.chunks))

    def __repr__(self) -> str:
        return (f"Manifest(id={self.cid}, dataset={ids.cid_str(self.dataset)}, version={self.version}, "
                f"seq={self.seq}, files={len(self.files)}, size={self.size})")

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as plain tuples, and rebuilt without checking again: the node's verification worker
        sends thousands back per catalog sync range, and the default (a dict per object, a class call
        per chunk) cost as much as a third of the verification itself. Only ever unpickle what this
        process's own worker pickled."""
        files = tuple((e.path, e.size, tuple(map(tuple, e.chunks)), e.executable, e.mtime_ns) for e in self.files)
        return _rebuild_manifest, (self.dataset, self.version, self.prev, self.publisher, self.seq, self.log_prev,
                                   self.title, self.description, self.keywords, self.licence, self.created,
                                   files, self.size, self.sig, self._encoded, self.VERSION, self.empty_folders)


@dataclass(frozen=True)
class ManifestV2(Manifest):
    """A manifest of schema v2 (domain `manifest/2`): a v1 manifest whose files also carry their executable bit
    and modification time, plus the dataset's empty folders (protocol/README.md, 3.1). Decoded by
    `Manifest.decode` like a v1 manifest; everything that reads manifests handles both."""

    VERSION = MANIFEST_V2
    folders: tuple[str, ...] = ()

    def _check_tree(self, files: tuple[FileEntry, ...]) -> None:
        folders = as_tuple("manifest", "folders", self.folders)
        if len(folders) > MAX_FOLDERS:
            raise DecodeError(f"manifest has more than {MAX_FOLDERS} empty folders")
        previous = None
        for folder in folders:
            check_path(folder)
            if previous is not None and folder.encode() <= previous.encode():
                raise DecodeError("manifest folders must be sorted by path, without duplicates")
            previous = folder
        object.__setattr__(self, "folders", folders)
        # A folder listed is a leaf (nothing below it), and folders and files together form one portable tree.
        above = {p.rsplit("/", i)[0] for p in (*(e.path for e in files), *folders) for i in range(1, p.count("/") + 1)}
        for folder in folders:
            if folder in above:
                raise DecodeError(f"manifest folder {folder!r} is not empty: only empty folders are listed")
        check_tree([e.path for e in files] + list(folders), each_checked=True)

    @property
    def empty_folders(self) -> tuple[str, ...]:
        return self.folders

    def payload(self) -> dict[str, Any]:
        return {**super().payload(), "folders": list(self.folders)}

    @classmethod
    def _extra_from_map(cls, m: dict[str, Any]) -> dict[str, Any]:
        folders = m["folders"]
        if not isinstance(folders, list):
            raise DecodeError("manifest field 'folders' must be a list")
        return {"folders": tuple(folders)}


_V_TAIL = b"\xa1v"  # the key "v", then its value, then the key "version": the last keys of a canonical manifest
_VERSION_KEY = b"\xa7version"


def _schema_hint(data: object) -> int | None:
    """The schema version a manifest's bytes claim, read from their tail without decoding them (canonical maps
    end with "type", "v", "version"); None when not found. Only chooses the decoder: the decoder checks "v"."""
    if not isinstance(data, bytes | bytearray | memoryview):
        return None
    tail = bytes(data[-24:])
    at = tail.rfind(_VERSION_KEY)
    if at < 3 or tail[at - 3:at - 1] != _V_TAIL:
        return None
    return tail[at - 1] if tail[at - 1] < 0x80 else None


def _rebuild_manifest(dataset: bytes, version: int, prev: bytes | None, publisher: bytes, seq: int,
                      log_prev: bytes | None, title: str, description: str, keywords: tuple[str, ...],
                      licence: str, created: int,
                      files: tuple[tuple[str, int, tuple[tuple[bytes, int], ...], bool | None, int | None], ...],
                      size: int, sig: bytes, encoded: bytes, schema: int = MANIFEST_VERSION,
                      folders: tuple[str, ...] = ()) -> Manifest:
    entries = []
    for path, fsize, chunks, executable, mtime_ns in files:
        entry = object.__new__(FileEntry)
        entry.__dict__.update(path=path, size=fsize, chunks=tuple(ChunkRef(d, n) for d, n in chunks),
                              executable=executable, mtime_ns=mtime_ns)
        entries.append(entry)
    m = object.__new__(ManifestV2 if schema == MANIFEST_V2 else Manifest)
    m.__dict__.update(dataset=dataset, version=version, prev=prev, publisher=publisher, seq=seq, log_prev=log_prev,
                      title=title, description=description, keywords=keywords, licence=licence, created=created,
                      files=tuple(entries), size=size, sig=sig, _encoded=encoded)
    if schema == MANIFEST_V2:
        m.__dict__["folders"] = folders
    return m


def decode_manifest(data: bytes, *, verify: bool = True) -> Manifest:
    return Manifest.decode(data, verify=verify)


def decode_manifests(raws: Sequence[bytes]) -> list[Manifest | str]:
    """Decode and verify many manifests; a refused one becomes the reason, in words. The node runs this
    in a worker process during catalog sync: it lives here so that the worker imports only this module."""
    out: list[Manifest | str] = []
    for raw in raws:
        try:
            out.append(Manifest.decode(raw))
        except RecordError as exc:
            out.append(str(exc))
    return out


def new_dataset_id(publisher: bytes, nonce: bytes) -> bytes:
    """A fresh dataset id: BLAKE3(b"communs/dataset-id\\x00" + publisher + nonce).

    Nothing can check it later (the nonce is not published); binding it to the publisher only
    makes accidental collisions between publishers impossible. Use 16 or more random bytes.
    """
    if type(publisher) is not bytes or len(publisher) != keys.PUBLIC_KEY_SIZE:
        raise DecodeError("publisher must be a 32-byte public key")
    if type(nonce) is not bytes or not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        raise DecodeError(f"nonce must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes")
    return ids.digest(DATASET_ID_DOMAIN + publisher + nonce)


def check_next_version(previous: Manifest, manifest: Manifest) -> None:
    """Raise DecodeError unless `manifest` is a valid next version of `previous`'s dataset."""
    if manifest.dataset != previous.dataset:
        raise DecodeError("new version belongs to another dataset")
    if manifest.publisher != previous.publisher:
        raise DecodeError("new version is signed by another publisher than the dataset's")
    if manifest.version != previous.version + 1:
        raise DecodeError(f"new version is {manifest.version}, expected {previous.version + 1}")
    if manifest.prev != previous.id:
        raise DecodeError("new version does not link to the previous version's manifest")


# --- announcements -------------------------------------------------------------------------------

AnnounceKind = Literal["publish", "hold"]

@dataclass(frozen=True)
class Announcement(SignedRecord):
    """A small signed gossip record: `node` published (or now holds a full copy of) a manifest."""

    TYPE = ANNOUNCE_TYPE
    VERSION = ANNOUNCE_VERSION
    MAX_BYTES = MAX_ANNOUNCE_BYTES
    NAME = "announcement"

    node: bytes
    kind: str
    manifest: bytes
    dataset: bytes
    publisher: bytes
    seq: int
    size: int
    ts: int
    sig: bytes = field(repr=False)

    def __post_init__(self) -> None:
        r = "announcement"
        check_bytes(r, "node", self.node, keys.PUBLIC_KEY_SIZE)
        if type(self.kind) is not str or self.kind not in ANNOUNCE_KINDS:
            raise DecodeError("announcement field 'kind' must be 'publish' or 'hold'")
        check_bytes(r, "manifest", self.manifest, ids.DIGEST_SIZE)
        check_bytes(r, "dataset", self.dataset, ids.DIGEST_SIZE)
        check_bytes(r, "publisher", self.publisher, keys.PUBLIC_KEY_SIZE)
        if self.kind == "publish" and self.node != self.publisher:
            raise DecodeError("a 'publish' announcement must come from the manifest's publisher")
        check_uint(r, "seq", self.seq, 1)
        check_uint(r, "size", self.size)
        check_uint(r, "ts", self.ts)
        check_bytes(r, "sig", self.sig, keys.SIGNATURE_SIZE)

    @classmethod
    def create(cls, key: keys.SigningKey, *, kind: AnnounceKind, manifest: Manifest, ts: int) -> Announcement:
        """Sign an announcement by `key`'s node about `manifest`."""
        return cls.sign(key, node=key.public, kind=kind, manifest=manifest.id, dataset=manifest.dataset,
                        publisher=manifest.publisher, seq=manifest.seq, size=manifest.size, ts=ts)

    def signer(self) -> bytes:
        return self.node

    def payload(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "kind": self.kind,
            "manifest": self.manifest,
            "dataset": self.dataset,
            "publisher": self.publisher,
            "seq": self.seq,
            "size": self.size,
            "ts": self.ts,
        }

    @property
    def node_peer_id(self) -> str:
        return keys.peer_id(self.node)


def decode_announcement(data: bytes) -> Announcement:
    return Announcement.decode(data)


def check_fresh(
    ann: Announcement, now: int, max_age: int = ANNOUNCE_MAX_AGE, max_skew: int = ANNOUNCE_MAX_SKEW
) -> None:
    """Raise StaleError if `ann` is older than `max_age` seconds or more than `max_skew` in the future.

    This bounds how long a captured announcement can be replayed; within the window, the
    receiver drops repeats by announcement id.
    """
    if ann.ts > now + max_skew:
        raise StaleError(f"announcement is dated {ann.ts - now} s in the future")
    if ann.ts < now - max_age:
        raise StaleError(f"announcement is {now - ann.ts} s old, over the limit of {max_age} s")


def check_announces(ann: Announcement, manifest: Manifest) -> None:
    """Raise DecodeError unless `manifest` is the very manifest `ann` names, with the same facts."""
    if manifest.id != ann.manifest:
        raise DecodeError("manifest id does not match the announcement")
    if (manifest.dataset, manifest.publisher, manifest.seq, manifest.size) != (
        ann.dataset, ann.publisher, ann.seq, ann.size
    ):
        raise DecodeError("manifest does not match the facts of its announcement")
