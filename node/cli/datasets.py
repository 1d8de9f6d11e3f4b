"""CLI commands for datasets: publish, datasets, get, verify."""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

PUBLISH_ATTEMPTS = 3  # a publish whose connection broke is asked again (same Idempotency-Key) this often
PUBLISH_RETRY_S = 1.0


def _progress_bar(args: argparse.Namespace) -> Any:
    """A rich progress bar on stderr when it is a terminal and --json is off; None otherwise."""
    import sys

    if args.json or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)


def cmd_publish(args: argparse.Namespace) -> None:
    from communs.node.cli.client import ClientError
    from communs.node.cli.common import client, emit, fail

    path = Path(args.path).expanduser()
    if not path.exists() and not path.is_symlink():
        fail(f"{path} does not exist")
    c = client(args, timeout=24 * 3600)
    body: dict[str, Any] = {"path": str(path.resolve()), "title": args.title, "licence": args.licence}
    if args.description is not None:
        body["description"] = args.description
    if args.keyword:
        body["keywords"] = args.keyword
    if args.dataset:
        body["dataset"] = args.dataset
    if args.refuse_special:
        body["refuse_special"] = True
    if args.skip_case_collisions:
        body["skip_case_collisions"] = True
    if args.force:
        body["force"] = True
    result: dict[str, Any] = {}
    error: list[Exception] = []

    # One key for this publish and its retries: if the connection breaks after the node committed, the
    # retry returns that dataset instead of publishing a second one.
    headers = {"Idempotency-Key": f"cli-{uuid.uuid4().hex}"}

    def post() -> None:
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                result.update(c.post("/api/v1/datasets", body, headers))
                return
            except ClientError as exc:
                if exc.status != 0 or attempt + 1 == PUBLISH_ATTEMPTS:  # refused by the node, or out of tries
                    error.append(exc)
                    return
                time.sleep(PUBLISH_RETRY_S * (attempt + 1))  # the connection broke: ask again, same key
            except Exception as exc:  # noqa: BLE001 - re-raised in the main thread
                error.append(exc)
                return

    worker = threading.Thread(target=post, daemon=True)
    worker.start()
    try:
        _wait_publish(args, c, worker, path, body)
    except KeyboardInterrupt:
        _cancel_publish(c, headers["Idempotency-Key"])
    if error:
        raise error[0]
    import sys

    skipped = result.get("skipped") or []
    if skipped and not args.json:
        print(f"communs: warning: {len(skipped)} entr(ies) left out of the dataset:", file=sys.stderr)
        for item in skipped:
            print(f"  {item['path']}  ({item['why']})", file=sys.stderr)
    stored = result.get("stored")
    if stored and not args.json:
        print(f"stored {stored['files']} file(s), {stored['bytes']} bytes: {stored['new_chunks']} new chunk(s) "
              f"of {stored['chunks']} ({stored['new_bytes']} bytes written), {stored['deduplicated_bytes']} "
              "bytes deduplicated", file=sys.stderr)
    out = {"id": result["id"], "dataset": result["dataset"], "version": result["version"], "skipped": skipped}
    if stored:
        out["stored"] = stored
    emit(args, out, lambda r: r["id"])


def _cancel_publish(c: Any, key: str) -> None:
    """Ctrl-C during a publish: cancel its job on the node (DELETE /api/v1/publishing/{job}), so that
    nothing of it is kept, and say what happened."""
    from communs.node.cli.client import AdminClient, ClientError
    from communs.node.cli.common import fail

    quick = AdminClient(c.base_url, c.token, timeout=60)
    job = None
    for _ in range(20):  # the request may not have reached the node yet
        try:
            job = next((j for j in quick.get("/api/v1/publishing") if j.get("key") == key), None)
        except ClientError:
            job = None
        if job is not None:
            break
        time.sleep(0.1)
    if job is None:
        fail("interrupted: the node had not started this publish; nothing was published", 130)
    try:
        quick.request("DELETE", f"/api/v1/publishing/{job['id']}")
    except ClientError as exc:
        fail(f"interrupted, but the publish could not be cancelled: {exc}", 130)
    fail("interrupted: the publish was cancelled and nothing of it was kept", 130)


def _wait_publish(args: argparse.Namespace, c: Any, worker: threading.Thread, path: Path,
                  body: dict[str, Any]) -> None:
    """Wait for the publish request, showing its progress on a terminal."""
    from communs.node.cli.client import ClientError

    bar = _progress_bar(args)
    if bar is not None:
        from communs.node.cli.client import AdminClient

        poller = AdminClient(c.base_url, c.token, timeout=5)
        with bar:
            task = bar.add_task(f"publishing {path.name}", total=None)
            while worker.is_alive():
                try:
                    jobs = [j for j in poller.get("/api/v1/publishing") if j["path"] == body["path"]]
                except ClientError:
                    jobs = []
                if jobs:
                    job = jobs[-1]
                    bar.update(task, completed=job["bytes_done"], total=job["bytes_total"] or None)
                worker.join(0.2)
    while worker.is_alive():  # join in steps: Ctrl-C interrupts a step, not a join without timeout
        worker.join(0.2)


def cmd_datasets(args: argparse.Namespace) -> None:
    from communs.node.cli import offline
    from communs.node.cli.common import emit


    items = offline.read(args, "/api/v1/datasets", lambda: offline.datasets(args))

    def text(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "no datasets known"
        lines = []
        for r in rows:
            flag = "  [publisher FORKED]" if r.get("publisher_forked") else ""
            lines.append(f"{r['id']}  v{r['version']}  {r['state']:<11} {r['licence']:<20} {r['size']:>12}  "
                         f"{r.get('copies', 0):>3} cop.  {r['title']}{flag}")
            lines.append(f"    dataset {r['dataset']}; {r['reason']}")
        return "\n".join(lines)

    emit(args, items, text)


def cmd_get(args: argparse.Namespace) -> None:
    from communs.node.cli.common import data_dir, emit, fail
    from communs.node.services.localstore import LocalError, export_dataset

    bar = _progress_bar(args)
    dest = Path(args.dest).expanduser().resolve()
    try:
        if bar is not None:
            with bar:
                task = bar.add_task("writing", total=None)
                result = asyncio.run(export_dataset(
                    data_dir(args), args.id, dest, force=args.force,
                    progress=lambda d, t: bar.update(task, completed=d, total=t)))
        else:
            result = asyncio.run(export_dataset(data_dir(args), args.id, dest, force=args.force))
    except LocalError as exc:
        fail(str(exc))
    emit(args, result, lambda r: f"wrote {r['files']} file(s), {r['bytes']} bytes, verified, into {r['dest']}\n"
                                 f"  manifest {r['id']} (version {r['version']} of dataset {r['dataset']})")


def cmd_verify(args: argparse.Namespace) -> None:
    from communs.node.cli.common import data_dir, emit, fail
    from communs.node.services.localstore import LocalError, verify_store

    bar = _progress_bar(args)
    t0 = time.monotonic()
    try:
        if bar is not None:
            with bar:
                task = bar.add_task("verifying chunks", total=None)
                report = asyncio.run(verify_store(data_dir(args),
                                                  lambda d, t: bar.update(task, completed=d, total=t)))
        else:
            report = asyncio.run(verify_store(data_dir(args)))
    except LocalError as exc:
        fail(str(exc))
    doc = {"checked": report.checked, "bad": report.bad, "missing": report.missing,
           "ok": not report.bad and not report.missing, "seconds": round(time.monotonic() - t0, 3)}
    if doc["ok"]:
        emit(args, doc, lambda d: f"all {d['checked']} chunks verified")
        return
    emit(args, doc, lambda d: "\n".join(
        [f"corrupt (quarantined): {x}" for x in d["bad"]] + [f"missing: {x}" for x in d["missing"]]))
    fail(f"{len(report.bad)} corrupt and {len(report.missing)} missing chunk(s) of {report.checked}; "
         "replication will fetch them again from peers")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("publish", parents=[common], help="publish a file or folder as a dataset")
    p.add_argument("path", metavar="PATH", help="the file or folder to publish (read by the node)")
    p.add_argument("--title", required=True, help="the dataset's title, one line")
    p.add_argument("--licence", required=True, metavar="SPDX_EXPRESSION",
                   help="its licence as an SPDX expression, e.g. CC-BY-4.0 or 'CC-BY-4.0 OR ODbL-1.0'")
    p.add_argument("--description", help="a longer description (may hold newlines)")
    p.add_argument("--keyword", action="append", metavar="K", help="a keyword, repeatable")
    p.add_argument("--dataset", metavar="DATASET_ID",
                   help="publish a new version of this dataset (its id, one of its manifest ids, or a unique prefix)")
    p.add_argument("--refuse-special", action="store_true",
                   help="refuse a folder that holds symbolic links, sockets, pipes or devices (default: leave them "
                        "out, with a warning listing them)")
    p.add_argument("--skip-case-collisions", action="store_true",
                   help="publish a folder whose names differ only by case, keeping the first of each group in byte "
                        "order and leaving out the others (default: refuse, naming every group)")
    p.add_argument("--force", action="store_true",
                   help="publish even files identical to the latest version published here under the same title")
    p.set_defaults(func=cmd_publish)

    sub.add_parser("datasets", parents=[common], help="every manifest the node knows, with its state") \
        .set_defaults(func=cmd_datasets)

    p = sub.add_parser("get", parents=[common], help="write a complete dataset version's files into DEST")
    p.add_argument("id", metavar="ID", help="a manifest id, a dataset id (its latest complete version here), "
                                            "or a unique prefix of either of 8 characters or more")
    p.add_argument("dest", metavar="DEST", help="the folder to write the files into (created if missing)")
    p.add_argument("--force", action="store_true",
                   help="overwrite existing files in DEST, and write a retracted version whose chunks are kept")
    p.set_defaults(func=cmd_get)

    sub.add_parser("verify", parents=[common], help="re-hash every stored chunk").set_defaults(func=cmd_verify)
