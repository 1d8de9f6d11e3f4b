"""CLI commands for a dataset's lifecycle: retract, prune."""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any


def cmd_retract(args: argparse.Namespace) -> None:
    from communs.node.cli.common import client, emit

    body: dict[str, Any] = {}
    if args.reason is not None:
        body["reason"] = args.reason
    result = client(args).post(f"/api/v1/datasets/{urllib.parse.quote(args.id, safe='')}/retraction", body)
    emit(args, result, lambda r: (f"retracted dataset {r['dataset']}: {r['versions']} version(s) marked retracted "
                                  "here; the retraction travels to every node" if r["versions"] else
                                  f"dataset {r['dataset']} was already retracted"))


def cmd_prune(args: argparse.Namespace) -> None:
    from communs.node.cli.common import client, emit

    body: dict[str, Any] = {}
    if args.keep is not None:
        body["keep"] = args.keep
    result = client(args).post(f"/api/v1/datasets/{urllib.parse.quote(args.id, safe='')}/prune", body)

    def text(r: dict[str, Any]) -> str:
        kept = f"kept the latest {len(r['kept'])} version(s) of dataset {r['dataset']} here"
        if not r["released"]:
            return f"nothing to release: {kept}"
        lines = [f"released {len(r['released'])} older version(s) here; {kept}",
                 *(f"  released {m}" for m in r["released"]),
                 f"  the store now holds {r['store_bytes']} bytes; other nodes keep or release them under their "
                 "own policy"]
        return "\n".join(lines)

    emit(args, result, text)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("retract", parents=[common],
                       help="withdraw a dataset published here (all its versions), on every node")
    p.add_argument("id", metavar="ID", help="the dataset id, or the manifest id of one of its versions")
    p.add_argument("--reason", metavar="TEXT", help="why, in one line (at most 200 characters); travels with it")
    p.set_defaults(func=cmd_retract)

    p = sub.add_parser("prune", parents=[common],
                       help="release here the older versions of a dataset published here, keeping the latest N")
    p.add_argument("id", metavar="ID", help="the dataset id, a manifest id of one of its versions, or a unique prefix")
    p.add_argument("--keep", type=int, metavar="N",
                   help="how many of the latest versions to keep (at least 1; default: the policy's keep_versions)")
    p.set_defaults(func=cmd_prune)
