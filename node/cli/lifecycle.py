"""CLI commands for a dataset's lifecycle: retract."""

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


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("retract", parents=[common],
                       help="withdraw a dataset published here (all its versions), on every node")
    p.add_argument("id", metavar="ID", help="the dataset id, or the manifest id of one of its versions")
    p.add_argument("--reason", metavar="TEXT", help="why, in one line (at most 200 characters); travels with it")
    p.set_defaults(func=cmd_retract)
