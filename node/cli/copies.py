"""`communs whereis ID`: which nodes hold a dataset version complete, and when each last proved it."""

from __future__ import annotations

import argparse
import time
from typing import Any


def _ago(ts: int | None) -> str:
    if ts is None:
        return "not verified yet"
    return f"verified {max(0, int(time.time()) - ts)} s ago"


def cmd_whereis(args: argparse.Namespace) -> None:
    from communs.node.cli.common import client, emit

    doc = client(args).get(f"/api/v1/datasets/{args.id}/holders")

    def text(d: dict[str, Any]) -> str:
        lines = [f"{d['id']}: {d['copies']} cop{'y' if d['copies'] == 1 else 'ies'}"]
        for h in d["holders"]:
            name = f" ({h['name']})" if h["name"] else ""
            lines.append(f"  {h['peer_id']}{name}  since {h['since']}, claim expires {h['expires']}, "
                         f"{_ago(h['verified_at'])}")
        return "\n".join(lines)

    emit(args, doc, text)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("whereis", parents=[common], help="the nodes that hold a dataset version complete")
    p.add_argument("id", help="manifest id (CIDv1)")
    p.set_defaults(func=cmd_whereis)
