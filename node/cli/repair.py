"""CLI command `communs repair`: rebuild a damaged catalog (node/repair.py says what comes back from where)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def cmd_repair(args: argparse.Namespace) -> None:
    from communs.node.cli.common import data_dir, emit, fail
    from communs.node.services.repair import RepairError, confirm, repair

    root = data_dir(args)
    try:
        if args.confirm:
            doc = asyncio.run(confirm(root))
        else:
            doc = asyncio.run(repair(root, force=args.force,
                                     progress=None if args.json else lambda m: print(m, file=sys.stderr)))
    except RepairError as exc:
        fail(str(exc))
    emit(args, doc, lambda d: str(d["message"]))


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("repair", parents=[common],
                       help="move a damaged catalog aside and rebuild it (node stopped; README: Repairing a "
                            "damaged catalog)")
    p.add_argument("--force", action="store_true", help="rebuild even when the catalog checks sound")
    p.add_argument("--confirm", action="store_true",
                   help="after a repair: this node's own datasets are listed again, allow publishing")
    p.set_defaults(func=cmd_repair)
