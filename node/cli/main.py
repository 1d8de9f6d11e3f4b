"""The `communs` command line.

Every command takes `--data DIR` and, where it prints something, `--json`. Errors go to stderr
as one sentence with a non-zero exit; a traceback is a bug. Commands that talk to a running node
go through the admin API (`client.py`); `init`, `member keygen` and `run` work on the folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from communs.node.cli.common import EXIT_ERROR, CliError, client, data_dir, emit, fail
from communs.node.cli.storage import check_s3, storage_from_args
from communs.node.config import ConfigError
from communs.node.folder import DataFolder

# ---- init / run ----------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> None:
    from communs.node.datadir import init_folder
    from communs.protocol import keys

    root = data_dir(args)
    check_writable(root)
    cfg, founders = _config_from_args(args, list(args.bootstrap or []))
    if cfg.storage.backend == "s3" and not args.s3_skip_check:
        check_s3(root, cfg.storage)
    roster = init_folder(root, cfg, founders or None)
    node_pub = _node_public(root)
    result = {
        "data": str(root),
        "peer_id": keys.peer_id(node_pub),
        "founders": [{"key": k.hex(), "name": n} for k, n in roster],
        "operator_key": str(DataFolder(root).operator_key) if not founders else None,
    }

    def text(r: dict[str, Any]) -> str:
        lines = [f"Initialised a Communs node in {r['data']}", f"  peer id: {r['peer_id']}"]
        if r["operator_key"]:
            lines.append(f"  operator member key: {r['operator_key']} (keep it safe; it votes for you)")
        lines.append(f"Start it with: communs run --data {r['data']}")
        return "\n".join(lines)

    emit(args, result, text)


def _node_public(root: Path) -> bytes:
    from communs.node.datadir import read_private_key

    return read_private_key(DataFolder(root).node_key, "node key").public


def cmd_run(args: argparse.Namespace) -> None:
    from communs.node.config import load_config
    from communs.node.runtime.logsetup import setup_logging

    root = data_dir(args)
    check_writable(root)
    if args.init_if_missing and not DataFolder(root).holds_a_node():
        _init_default(root, args)
    cfg = load_config(root)  # fail early and clearly, before importing libp2p
    import communs.protocol.libp2p.overlay  # noqa: F401 - libp2p resets its loggers at import; configure after

    setup_logging(args.log_level or cfg.log_level, args.log_format or cfg.log_format)
    from communs.node.node import StartupError, run_node
    from communs.node.runtime.gctune import tune_gc
    from communs.node.runtime.malloctune import tune_malloc

    tune_gc()  # the process's own settings, so here rather than in Node (tests run nodes in-process)
    tune_malloc()

    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        import asyncio

        runner = asyncio.run
    try:
        code = runner(run_node(root))
    except StartupError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        code = 0
    if code:
        sys.exit(code)


def _init_default(root: Path, args: argparse.Namespace) -> None:
    """First start in a container: a node with default settings plus any --bootstrap given."""
    from communs.node.datadir import init_folder

    cfg, founders = _config_from_args(args, _bootstrap_addrs(args))
    init_folder(root, cfg, founders or None)
    print(f"initialised a new node '{cfg.name}' in {root}", file=sys.stderr)


def _config_from_args(args: argparse.Namespace, bootstrap: list[str]) -> tuple[Any, list[tuple[bytes, str]]]:
    """The Config and founders that `init` (or `run --init-if-missing`) options describe. Without --name
    the name is left empty, and `init_folder` names the node after its peer id: a folder's name ("data"
    in every container) says nothing about the node."""
    from communs.node.config import Config
    from communs.node.datadir import read_public_key

    cfg = Config(name=args.name or "")
    if args.listen:
        cfg.listen = list(args.listen)
    if args.admin:
        cfg.admin = args.admin
    cfg.bootstrap = bootstrap
    cfg.federation = args.federation
    cfg.mdns = bool(args.mdns)
    if args.no_dht:
        cfg.dht = False
    if args.allow_remote_admin:
        cfg.admin_allow_remote = True
    if getattr(args, "public", None):
        cfg.public_listen = args.public
        cfg.public_base_url = args.public_base_url or ""
        cfg.public_datasets = args.public_datasets
    cfg.storage = storage_from_args(args)
    founders = []
    for i, path in enumerate(args.founder or []):
        pub = read_public_key(Path(path))
        name = Path(path).name.removesuffix(".pub").removesuffix(".key") or f"founder-{i + 1}"
        founders.append((pub, name))
    if len({k for k, _ in founders}) != len(founders):
        fail("the same founder key was given twice")
    return cfg, founders


def check_writable(root: Path) -> None:
    """Fail with one sentence when this process cannot create files in the data folder (or create it):
    a bind-mounted host folder owned by root is the usual case in containers."""
    import os

    target = root if root.exists() else next((p for p in root.absolute().parents if p.exists()), None)
    if target is None or not target.is_dir() or os.access(target, os.W_OK | os.X_OK):
        return
    what = f"the data folder {root}" if target == root else f"{target}, where the data folder {root} would be made,"
    fail(f"{what} is not writable by this process (uid {os.getuid()}, gid {os.getgid()}); "
         f"give it that owner, e.g. `chown -R {os.getuid()}:{os.getgid()} HOST_FOLDER` for a folder "
         "bind-mounted into a container, or choose another folder with --data")


BOOTSTRAP_FROM_WAIT_S = 120.0


def _bootstrap_addrs(args: argparse.Namespace) -> list[str]:
    """--bootstrap as given; with --bootstrap-from, each address given without /p2p/ gets the peer id
    read from that node.json. For containers: a node's peer id is random at init, so a compose file
    can name the first node's host and port but not its id, which its node.json (on a volume) holds."""
    addrs = list(args.bootstrap or [])
    if not args.bootstrap_from:
        return addrs
    if all("/p2p/" in a for a in addrs):
        fail("--bootstrap-from completes a --bootstrap address given without /p2p/, e.g. "
             "--bootstrap /dns4/node1/tcp/7470; none was given")
    peer = _wait_peer_id(Path(args.bootstrap_from).expanduser(), BOOTSTRAP_FROM_WAIT_S)
    return [a if "/p2p/" in a else f"{a.rstrip('/')}/p2p/{peer}" for a in addrs]


def _wait_peer_id(path: Path, timeout: float) -> str:
    """The peer id in another node's node.json, waiting for the file (that node may still be starting)."""
    import time

    from communs.protocol import keys
    from communs.protocol.errors import DecodeError

    deadline = time.monotonic() + timeout
    waiting = False
    while True:
        try:
            peer = json.loads(path.read_text("utf-8"))["peer_id"]
            keys.public_from_peer_id(peer)
            return str(peer)
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, DecodeError) as exc:
            fail(f"{path} is not a node.json naming a valid peer id ({exc})")
        if time.monotonic() > deadline:
            fail(f"{path} did not appear within {timeout:.0f} s; is the bootstrap node running?")
        if not waiting:
            print(f"waiting for {path} (the bootstrap node's node.json) ...", file=sys.stderr)
            waiting = True
        time.sleep(0.5)


def cmd_healthcheck(args: argparse.Namespace) -> None:
    """Exit 0 when the node in DIR answers /healthz; for container health checks and scripts."""
    import urllib.error
    import urllib.request

    from communs.node.cli.client import AdminClient

    c = AdminClient.for_folder(data_dir(args), timeout=5.0)
    try:
        with urllib.request.urlopen(c.base_url + "/healthz", timeout=5.0) as resp:
            ok = json.loads(resp.read()).get("ok") is True
    except urllib.error.HTTPError as exc:  # 503: up, but no new peer can connect; the body says why
        try:
            reason = str(json.loads(exc.read()).get("error", exc))
        except ValueError:
            reason = str(exc)
        fail(f"the node is not healthy: {reason}")
    except (OSError, ValueError) as exc:
        fail(f"the node's /healthz did not answer: {exc}")
    if not ok:
        fail("the node's /healthz did not say ok")
    emit(args, {"ok": True}, "ok")


# ---- status / peers ------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> None:
    c = client(args)
    doc = c.get("/api/v1/status")
    try:
        doc["replication"] = c.get("/api/v1/replication")
    except Exception:
        pass

    def text(d: dict[str, Any]) -> str:
        lines = [
            f"node      {d.get('name', '')}  (Communs {d['version']}, up {int(d['uptime_s'])} s)",
            f"peer id   {d['peer_id']}",
            "listening " + ("\n          ".join(d["listen_addrs"]) or "-"),
            f"peers     {d.get('peers', 0)}",
        ]
        if "datasets" in d:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(d["datasets"].items())) or "none"
            lines.append(f"datasets  {counts}")
        copies = d.get("copies") or {}
        if copies.get("min_copies"):
            risky = copies.get("endangered", [])
            lines.append(f"copies    min_copies {copies['min_copies']}; {len(risky)} dataset(s) held here endangered")
            for e in risky:
                lines.append(f"  endangered  {e['id']}  {e['copies']} cop. of {copies['min_copies']}  {e['title']}")
        storage = d.get("storage")
        if storage:
            waiting = f"; {storage['waiting']}" if storage.get("waiting") else ""
            lines.append(f"storage   {storage['backend']}{waiting}")
        disk = d.get("disk")
        if disk:
            free = "unknown" if disk["free_bytes"] is None else f"{disk['free_bytes']} bytes"
            quota = "none" if disk["quota_bytes"] is None else f"{disk['quota_bytes']} bytes"
            lines.append(f"disk      {disk['store_bytes']} bytes stored, {free} free, quota {quota}")
        for job in (d.get("replication") or {}).get("active", []):
            pct = 100 * job["bytes_done"] / job["bytes_total"] if job["bytes_total"] else 100.0
            lines.append(f"fetching  {job['title']} ({job['id'][:16]}…) {pct:5.1f}% "
                         f"{job['bytes_done']}/{job['bytes_total']} bytes from {len(job.get('sources', []))} peer(s)")
        return "\n".join(lines)

    emit(args, doc, text)


def cmd_peers(args: argparse.Namespace) -> None:
    peers = client(args).get("/api/v1/peers")

    def text(ps: list[dict[str, Any]]) -> str:
        if not ps:
            return "no connected peers"
        lines = []
        for p in ps:
            lines.append(f"{p['peer_id']} ({p['name']})" if p.get("name") else p["peer_id"])
            for a in p["addrs"]:
                lines.append(f"  {a}")
        return "\n".join(lines)

    emit(args, peers, text)


def cmd_peers_add(args: argparse.Namespace) -> None:
    """Dial a peer now and keep its address as a bootstrap address (config.toml)."""
    body = {"addr": args.addr} if args.name is None else {"addr": args.addr, "name": args.name}
    result = client(args).post("/api/v1/peers", body)
    emit(args, result, lambda r: f"connected to {r['peer_id']}; kept {args.addr} as a bootstrap address "
                                 "in config.toml")


# ---- members -------------------------------------------------------------------------------------


def _cmd_member_rotate(args: argparse.Namespace) -> None:
    from communs.node.cli import member

    member.rotate(args)


def cmd_member_keygen(args: argparse.Namespace) -> None:
    from communs.node.config import write_atomic, write_private
    from communs.protocol import keys

    out = Path(args.out).expanduser()
    pub_path = out.with_name(out.name + ".pub")
    if out.exists() or pub_path.exists():
        fail(f"{out} already exists; refusing to overwrite a key")
    if not out.parent.is_dir():
        fail(f"folder {out.parent} does not exist")
    key = keys.SigningKey.generate()
    write_private(out, keys.format_private(key))
    write_atomic(pub_path, keys.format_public(key.public))
    emit(args, {"key": str(out), "public_key_file": str(pub_path), "public_key": key.public.hex()},
         lambda r: f"member key written to {r['key']} (mode 0600)\npublic key: {r['public_key_file']}")


# ---- parser --------------------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {}


def add_init_options(p: Any) -> None:
    """The options that describe a new node: `init` takes them, and so does `run --init-if-missing`."""
    p.add_argument("--name", help="the node's name (default: communs- and the end of its peer id)")
    p.add_argument("--listen", action="append", metavar="MULTIADDR",
                   help="a libp2p address to listen on, repeatable (default /ip4/0.0.0.0/tcp/7470; port 0: any)")
    p.add_argument("--admin", metavar="HOST:PORT", help="where the admin API listens (default 127.0.0.1:7471)")
    p.add_argument("--bootstrap", action="append", metavar="MULTIADDR",
                   help="a peer to join through, with /p2p/<peer id>, repeatable")
    p.add_argument("--federation", default="communs",
                   help="the federation's name: nodes gossip only within theirs (default communs)")
    p.add_argument("--founder", action="append", metavar="PUBKEYFILE",
                   help="a founding member's public key file, repeatable (default: a new operator key, "
                        "DIR/operator.key, sole founder)")
    p.add_argument("--mdns", action="store_true", help="find peers on the local network with mDNS")
    p.add_argument("--no-dht", action="store_true", help="do not run the Kademlia DHT")
    p.add_argument("--allow-remote-admin", action="store_true",
                   help="allow the admin endpoint on a non-loopback address")
    p.add_argument("--public", metavar="HOST:PORT",
                   help="open the read-only public face (catalog, DCAT-AP export, downloads) on HOST:PORT")
    p.add_argument("--public-base-url", metavar="URL",
                   help="the public face's address as the world sees it, for absolute links in exports")
    p.add_argument("--public-datasets", choices=["own", "held"], default="own",
                   help="what the public face serves: own (published here) or held (own plus complete replicas)")
    p.add_argument("--storage", choices=["fs", "s3"], default="fs",
                   help="where chunks go: fs (DIR/store/, the default) or s3 (an S3-compatible bucket)")
    p.add_argument("--s3-endpoint", metavar="URL", help="the object store's URL, e.g. http://127.0.0.1:8333")
    p.add_argument("--s3-bucket", metavar="NAME", help="the bucket (it must exist)")
    p.add_argument("--s3-prefix", metavar="PREFIX", help="object names start with it (default communs/)")
    p.add_argument("--s3-region", metavar="REGION", help="the region to sign for (default us-east-1)")
    p.add_argument("--s3-credentials-file", metavar="FILE",
                   help="an AWS-style credentials file, mode 0600 (default: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    p.add_argument("--s3-capacity-bytes", type=int, metavar="N", help="the space this node may use in the bucket")
    p.add_argument("--s3-skip-check", action="store_true", help="do not check that the bucket can be reached")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default="./data", metavar="DIR", help="the node's data folder (default ./data)")
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")

    parser = argparse.ArgumentParser(
        prog="communs", description="Communs: a federated, peer-to-peer data-commons node.")
    from communs.node import __version__

    parser.add_argument("--version", action="version", version=f"communs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("init", parents=[common], help="create a new node folder")
    add_init_options(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", parents=[common], help="run the node in the foreground")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="how much to log (default: log.level in config.toml, info)")
    p.add_argument("--log-format", choices=["text", "json"],
                   help="log lines as text or one JSON object each (default: log.format in config.toml)")
    p.add_argument("--init-if-missing", action="store_true",
                   help="initialise DIR first if it holds no node (for containers), with the options below; "
                        "they are ignored once DIR holds a node")
    add_init_options(p.add_argument_group("with --init-if-missing, as for `init`"))
    p.add_argument("--bootstrap-from", metavar="NODE_JSON",
                   help="with --init-if-missing: complete each --bootstrap given without /p2p/ with the peer id "
                        "in this node.json of the bootstrap node (waits for the file; for compose files)")
    p.set_defaults(func=cmd_run)
    sub.add_parser("healthcheck", parents=[common],
                   help="exit 0 if the running node answers /healthz").set_defaults(func=cmd_healthcheck)

    sub.add_parser("status", parents=[common], help="the running node's state").set_defaults(func=cmd_status)
    p = sub.add_parser("peers", parents=[common], help="connected peers; `peers add MULTIADDR` dials and keeps one")
    p.set_defaults(func=cmd_peers)
    psub = p.add_subparsers(dest="peers_command", metavar="SUBCOMMAND")
    a = psub.add_parser("add", parents=[common], help="dial a peer now and keep it as a bootstrap address")
    a.add_argument("addr", metavar="MULTIADDR",
                   help="the peer's full address, e.g. /ip4/192.0.2.7/tcp/7470/p2p/12D3KooW...")
    a.add_argument("--name", help="show the peer by this name (kept in DIR/peer-names.json; '' forgets it)")
    a.set_defaults(func=cmd_peers_add)

    p = sub.add_parser("member", parents=[common], help="member keys")
    msub = p.add_subparsers(dest="member_command", metavar="SUBCOMMAND")
    msub.required = True
    k = msub.add_parser("keygen", parents=[common], help="create a member key pair")
    k.add_argument("--out", required=True, metavar="FILE",
                   help="where to write the private key (mode 0600); the public key goes to FILE.pub")
    k.set_defaults(func=cmd_member_keygen)
    r = msub.add_parser("rotate", parents=[common],
                        help="replace your member key by a new one (signed by both; no vote needed)")
    r.add_argument("--key", required=True, metavar="MEMBERKEY", help="your current member key file")
    r.add_argument("--new-key", required=True, metavar="NEWKEY", help="the new key file (communs member keygen)")
    r.add_argument("--node", metavar="MULTIADDR", help="submit the rotation over libp2p to this node")
    r.add_argument("--out", metavar="FILE", help="sign the rotation offline into FILE (communs submit it later)")
    r.add_argument("--roster", metavar="ROSTER_ID", help="with --out: the roster in force")
    r.add_argument("--receipt", metavar="FILE", help="with --node: keep the node's signed receipt in FILE")
    r.set_defaults(func=_cmd_member_rotate)

    from communs.node.cli import copies as cli_copies
    from communs.node.cli import datasets as cli_datasets
    from communs.node.cli import governance as cli_governance
    from communs.node.cli import lifecycle as cli_lifecycle
    from communs.node.cli import repair as cli_repair
    from communs.node.cli import storage as cli_storage

    cli_datasets.add_commands(sub, common)
    cli_copies.add_commands(sub, common)
    cli_governance.add_commands(sub, common)
    cli_repair.add_commands(sub, common)
    cli_storage.add_commands(sub, common)
    cli_lifecycle.add_commands(sub, common)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    from communs.node.cli.client import ClientError

    as_json = bool(getattr(args, "json", False))

    def error(message: str) -> None:
        """One sentence on stderr; with --json, as {"error": ...} so that a script reads errors as it reads
        answers."""
        text = json.dumps({"error": message}, ensure_ascii=False) if as_json else f"communs: error: {message}"
        print(text, file=sys.stderr)

    try:
        args.func(args)
    except CliError as exc:
        error(str(exc))
        sys.exit(exc.code)
    except (ConfigError, ClientError) as exc:
        error(str(exc))
        sys.exit(EXIT_ERROR)
    except PermissionError as exc:  # a folder or file this user may not touch; the path says which
        error(f"permission denied on {exc.filename or exc}; check the owner and mode of the data folder and its "
              "files")
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        print("communs: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
