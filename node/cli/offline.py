"""Read-only commands on a stopped node's folder: `datasets`, `policy`, `members` and `proposals` answer from
the catalog (opened read-only, as `get`, `verify` and `audit` do) when no node runs there, with a note saying
so on stderr. With a running node they ask it, as before."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from communs.node.cli.client import AdminClient, ClientError
from communs.node.cli.common import data_dir, fail


def running_client(args: argparse.Namespace) -> AdminClient | None:
    """The running node's client, or None when the folder holds a node that is not running."""
    root = data_dir(args)
    if not (root / "config.toml").exists():
        fail(f"{root} is not a Communs node folder (run 'communs init --data {root}')")
    try:
        return AdminClient.for_folder(root)
    except ClientError as exc:
        if "not running" in str(exc):
            return None
        raise


def read(args: argparse.Namespace, route: str, offline: Callable[[], Any]) -> Any:
    """GET `route` from the running node, or `offline()` from the folder when it is stopped."""
    c = running_client(args)
    if c is not None:
        return c.get(route)
    print(f"communs: the node in {data_dir(args)} is not running; read from its folder", file=sys.stderr)
    return offline()


def datasets(args: argparse.Namespace) -> list[dict[str, Any]]:
    from communs.node.config import CATALOG_FILE
    from communs.node.services.datasets import manifest_summary
    from communs.storage.catalog import read_manifests_readonly
    from communs.storage.errors import CatalogError

    path = data_dir(args) / CATALOG_FILE
    if not path.exists():
        return []
    try:
        infos, forked, copies = read_manifests_readonly(path, int(time.time()))
    except CatalogError as exc:
        fail(str(exc))
    # as GET /api/v1/datasets lists them, copies included (node/http/datasets.py)
    return [{**manifest_summary(info, info.publisher in forked), "copies": copies.get(info.id, 0)} for info in infos]


def _ledger(args: argparse.Namespace) -> Any:
    from communs.governance.errors import GovernanceError
    from communs.governance.ledger import Ledger
    try:
        return Ledger.load(read_stored_log(data_dir(args)))
    except GovernanceError as exc:
        fail(f"the governance log in the catalog is damaged: {exc}; run 'communs audit' for details")


def policy(args: argparse.Namespace) -> dict[str, Any]:
    from communs.node.services.govviews import policy_doc

    return policy_doc(_ledger(args))


def members(args: argparse.Namespace) -> dict[str, Any]:
    from communs.node.services.govviews import members_doc

    return members_doc(_ledger(args), int(time.time()))


def proposals(args: argparse.Namespace) -> list[dict[str, Any]]:
    from communs.node.config import CATALOG_FILE
    from communs.node.services.govviews import proposals_doc
    from communs.protocol import ids
    from communs.storage.catalog import read_gov_routes_readonly
    from communs.storage.errors import CatalogError

    docs = proposals_doc(_ledger(args), int(time.time()))
    try:  # the route each record came by, as the running node shows it (node/services/gov_submit.py)
        stored = read_gov_routes_readonly(data_dir(args) / CATALOG_FILE)
    except CatalogError as exc:
        fail(str(exc))
    via = {ids.cid_str(r): {"route": route, "peer": peer} for r, (route, peer) in stored.items()}
    for doc in docs:
        doc["via"] = via.get(doc["id"])
        for b in doc.get("ballots", []):
            b["via"] = via.get(b["id"])
    return docs


def read_stored_log(root: Path) -> list[bytes]:
    """The governance log entries as stored in the catalog, read-only and without the node."""
    from communs.node.config import CATALOG_FILE, CONFIG_FILE

    if not (root / CONFIG_FILE).exists():
        fail(f"{root} is not a Communs node folder")
    path = root / CATALOG_FILE
    if not path.exists():
        fail(f"{root} has no catalog yet, so no governance log: start the node once with 'communs run'")
    from communs.storage.catalog import read_gov_log_readonly
    from communs.storage.errors import CatalogError

    try:
        return read_gov_log_readonly(path)
    except CatalogError as exc:
        fail(str(exc))
