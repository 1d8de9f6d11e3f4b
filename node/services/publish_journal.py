"""The publish journal: which chunk files a publish (or a release) in progress may have written (or be
deleting), kept outside the catalog.

A publish writes chunk files first and records them in the catalog last, in one transaction. If the node
dies in between, the files are on disk and unknown to the catalog. But a catalog that lost its last
commits (a lost or damaged WAL, a restored backup, `communs repair`) also leaves files it does not know,
and those may be the only copy of this node's own datasets. The catalog's silence alone cannot tell the
two apart, so a file unknown to it is deleted only when this journal says an unfinished publish wrote it.

Each publish appends to its own file `DIR/publishing/<id>.jsonl`, fsynced before the chunks it announces
are written: `{"file": PATH}` before a file is chunked, `{"chunks": [hex, ...]}` once it is. The journal
is removed after the catalog commit. At start, a journal left behind names the chunks of an interrupted
publish: those listed, plus those of a file whose chunking never finished, found by chunking that file
again (if it changed since, its chunks are not recognised and are kept, never guessed at).

A release journals the chunks it is about to unmark and delete the same way (one `chunks` line), so that
files a crash left between the two are known to be released ones.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from communs.node.folder import JOURNAL_DIR
from communs.storage import chunker

log = logging.getLogger("communs.datasets")


class PublishJournal:
    """One publish's journal; every method does blocking file I/O (call it from a thread)."""

    def __init__(self, root: Path) -> None:
        self.folder = root / JOURNAL_DIR
        self.path = self.folder / f"{uuid.uuid4().hex}.jsonl"
        self._fd: int | None = None

    def _append(self, doc: object) -> None:
        if self._fd is None:
            new_folder = not self.folder.exists()
            self.folder.mkdir(exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            _fsync_dir(self.folder)
            if new_folder:
                _fsync_dir(self.folder.parent)
        os.write(self._fd, (json.dumps(doc) + "\n").encode())
        os.fsync(self._fd)

    def file(self, real: Path) -> None:
        """About to chunk `real`: from now on its chunks may appear in the store."""
        self._append({"file": str(real)})

    def chunks(self, digests: Iterable[bytes]) -> None:
        """The file announced last is chunked: these are its chunks."""
        self._append({"chunks": [d.hex() for d in digests]})

    def close(self) -> None:
        """The publish failed: keep the journal (the next start deletes what it names), close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finish(self) -> None:
        """The publish is recorded in the catalog (or failed cleanly): its journal is not needed."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)


def interrupted_chunks(root: Path) -> tuple[set[bytes], list[Path]]:
    """The chunks that unfinished publishes may have written, and their journal files (blocking)."""
    folder = root / JOURNAL_DIR
    digests: set[bytes] = set()
    journals = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    for path in journals:
        pending: str | None = None
        try:
            lines = path.read_text("utf-8").splitlines()
        except OSError as exc:
            log.warning("cannot read the publish journal %s: %s", path, exc.strerror)
            continue
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a line cut by the crash: nothing after it was written
            if "file" in doc:
                pending = str(doc["file"])
            elif "chunks" in doc:
                digests.update(bytes.fromhex(h) for h in doc["chunks"])
                pending = None
        if pending is not None:
            try:
                digests.update(c.digest for c in chunker.chunk_file(pending))
            except OSError:
                log.info("the file %s of an interrupted publish is gone; its chunks, if any, are kept", pending)
    return digests, journals


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["JOURNAL_DIR", "PublishJournal", "interrupted_chunks"]
