"""CLI commands for the chunk store: `communs storage migrate --to fs|s3 ...`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def cmd_storage_migrate(args: argparse.Namespace) -> None:
    from .cli import _storage_from_args, data_dir, emit, fail
    from .storage_migrate import MigrateError, describe, migrate

    root = data_dir(args)
    args.storage = args.to
    target = _storage_from_args(args)
    last = [0.0]

    def progress(done: int, total: int, nbytes: int) -> None:
        now = time.monotonic()
        if now - last[0] < 1.0 and done < total:
            return
        last[0] = now
        print(f"migrated {done}/{total} chunks ({nbytes} bytes copied)", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    try:
        report = migrate(root, target, progress)
    except MigrateError as exc:
        fail(str(exc))
    doc: dict[str, Any] = {"backend": report.backend, "chunks": report.chunks, "copied": report.copied,
                           "skipped": report.skipped, "bytes_copied": report.bytes_copied,
                           "seconds": round(time.monotonic() - t0, 3)}
    emit(args, doc, lambda d: f"moved {d['chunks']} chunk(s) ({d['copied']} copied, {d['skipped']} already there) "
                              f"to {describe(target)}; config.toml now uses it. The old store was left as it "
                              "was: delete it once satisfied.")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("storage", help="the node's chunk store")
    ssub = p.add_subparsers(dest="storage_command", metavar="COMMAND")
    ssub.required = True
    m = ssub.add_parser("migrate", parents=[common],
                        help="copy every chunk to another store (node stopped), verified and resumable, then use it")
    m.add_argument("--to", required=True, choices=["fs", "s3"], help="fs: DIR/store/; s3: a bucket")
    m.add_argument("--s3-endpoint", metavar="URL")
    m.add_argument("--s3-bucket", metavar="NAME")
    m.add_argument("--s3-prefix", metavar="PREFIX")
    m.add_argument("--s3-region", metavar="REGION")
    m.add_argument("--s3-credentials-file", metavar="FILE")
    m.add_argument("--s3-capacity-bytes", type=int, metavar="N")
    m.set_defaults(func=cmd_storage_migrate)
