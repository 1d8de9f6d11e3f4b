"""CLI commands for the chunk store: `communs storage migrate --to fs|s3 ...`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from communs.node.cli.common import fail


def cmd_storage_migrate(args: argparse.Namespace) -> None:
    from communs.node.cli.common import data_dir, emit, fail
    from communs.node.services.storage_migrate import MigrateError, describe, migrate

    root = data_dir(args)
    args.storage = args.to
    target = storage_from_args(args)
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
    m.add_argument("--s3-endpoint", metavar="URL", help="the object store's URL, e.g. http://127.0.0.1:8333")
    m.add_argument("--s3-bucket", metavar="NAME", help="the bucket (it must exist)")
    m.add_argument("--s3-prefix", metavar="PREFIX", help="object names start with it (default communs/)")
    m.add_argument("--s3-region", metavar="REGION", help="the region to sign for (default us-east-1)")
    m.add_argument("--s3-credentials-file", metavar="FILE",
                   help="an AWS-style credentials file, mode 0600 (default: the AWS_* environment variables)")
    m.add_argument("--s3-capacity-bytes", type=int, metavar="N", help="the space this node may use in the bucket")
    m.set_defaults(func=cmd_storage_migrate)


def storage_from_args(args: argparse.Namespace) -> Any:
    """The [storage] section that `init --storage ...` options describe."""
    from communs.node.services.storage_config import S3Config, StorageConfig, StorageConfigError

    storage = StorageConfig(backend=args.storage)
    s3_given = any(getattr(args, a) is not None for a in ("s3_endpoint", "s3_bucket", "s3_prefix", "s3_region",
                                                             "s3_credentials_file", "s3_capacity_bytes"))
    if args.storage != "s3":
        if s3_given:
            fail("the --s3-* options need --storage s3")
        return storage
    if not args.s3_endpoint or not args.s3_bucket:
        fail("--storage s3 needs --s3-endpoint URL and --s3-bucket NAME")
    s3 = S3Config(endpoint=args.s3_endpoint, bucket=args.s3_bucket)
    if args.s3_prefix is not None:
        s3.prefix = args.s3_prefix
    if args.s3_region is not None:
        s3.region = args.s3_region
    s3.credentials_file = str(Path(args.s3_credentials_file).resolve()) if args.s3_credentials_file else None
    s3.capacity_bytes = args.s3_capacity_bytes
    storage.s3 = s3
    try:
        storage.validate()
    except StorageConfigError as exc:
        fail(str(exc))
    return storage


def check_s3(root: Path, storage: Any) -> None:
    """Open the bucket once, so that bad credentials or a missing bucket are told at init, not at first run."""
    from communs.node.services.storage_config import open_chunk_store
    from communs.storage.errors import StorageError

    try:
        open_chunk_store(root, storage, wait_s=10).close()
    except StorageError as exc:
        fail(f"{exc} (or pass --s3-skip-check to write the config anyway)")
