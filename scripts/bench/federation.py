#!/usr/bin/env python3
"""Federation benchmark (issue 20): N real `communs run` processes on 127.0.0.1, measured as a federation.

    .venv/bin/python scripts/bench/federation.py --nodes 50 [--manifests 100000] [--fanout-mib 256]
        [--announcements 20] [--degree 3] [--idle-s 10] [--seed 1] [--dir DIR] [--keep]

What it does, in order (each phase bounded; any failure stops every process and exits non-zero):
1. starts N nodes at once (a start storm: every node's catalog sync, DHT bootstrap and gossip join at
   the same moment), then gives each node i > 0 up to --degree random earlier nodes to dial
   (`POST /api/v1/peers`): a sparse, connected bootstrap graph, not a star; discovery adds the rest;
2. waits until the overlay is formed: the graph of connections (`GET /api/v1/peers`) is connected
   and every node has a peer, then two gossip heartbeats;
3. publishes --announcements small datasets, one at a time, each at a random node, and polls every
   other node (`GET /api/v1/datasets/{id}`, only the nodes that do not know it yet) until all know it:
   reach = deliveries / (announcements x (N-1)); p50/p95 of the time until the last node knows it;
4. fan-out: every node enacts a policy accepting CC-BY-4.0 (its sole member signs a proposal and a
   ballot here, as `communs propose` and `communs vote` would), node 0 publishes --fanout-mib of random
   bytes under that licence, and the time from the publish call's return until every other node lists
   it `complete` is fanout_s (replication picks sources among announced holders, so nodes fetch from
   each other as they complete, not all from node 0);
5. memory (VmRSS of each node process, with its children; before the fan-out as
   rss_mb_before_fanout, and after it) and idle CPU (utime+stime over --idle-s seconds of quiet after
   the fan-out) per node, averaged;
6. late joiner: an archive node whose catalog is pre-filled with --manifests signed manifests of 50
   publishers (none of them the archive itself, signed here the way scripts/bench/sync.py does), and a new
   node bootstrapped to it; late_join_s is from starting the new node's process to all manifests
   verified and stored there (read from its log, then checked through its API). The pair is kept
   apart from the N nodes (bootstrapped only to each other): otherwise all N would sync the archive
   too, which measures N syncs, not a late joiner. It runs while the N nodes are still up.
The last line on stdout is one JSON object (contract: "Federation benchmark").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import importlib.util
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> Any:
    """A sibling script as a module (scripts/federation.py has this file's name, so not by sys.path)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fedlib = _load("communs_federation_script", REPO / "scripts" / "federation.py")  # node processes, clean-up
syncbench = _load("communs_sync_bench", REPO / "scripts" / "bench" / "sync.py")  # signed manifests, fast
from communs.governance.policy import parse_rules  # noqa: E402
from communs.governance.records import Ballot, Proposal  # noqa: E402
from communs.node.config import CATALOG_FILE  # noqa: E402
from communs.node.datadir import open_folder, read_private_key  # noqa: E402
from communs.protocol import ids  # noqa: E402

FANOUT_LICENCE = "CC-BY-4.0"
ANNOUNCE_LICENCE = "CC0-1.0"  # not accepted by the fan-out policy: announcements move no data
POLL_S = 0.2  # between sweeps; at 50 ms, 49 nodes polled 20 times a second were a load of their own
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(text: str) -> None:
    fedlib.say("bench", text)


class Api:
    """A node's admin API with its token read once (polling 50 nodes must stay cheap)."""

    def __init__(self, node: fedlib.NodeProcess) -> None:
        self.url = str(node.info["admin_url"])
        self.token = (node.data / "admin.token").read_text().strip()

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read())
            except ValueError:
                return exc.code, None
        except (urllib.error.URLError, OSError, ValueError):
            return 0, None

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        if status != 200:
            raise fedlib.FederationError(f"GET {path} on {self.url} answered {status}")
        return body


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def deadline_wait(what: str, pred: Any, timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise fedlib.FederationError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)


# ---- phases ------------------------------------------------------------------------------------------


def start_nodes(fed: fedlib.Federation, n: int, degree: int, rnd: random.Random,
                pool: concurrent.futures.ThreadPoolExecutor) -> tuple[list[fedlib.NodeProcess], list[Api]]:
    nodes = [fed.add(f"n{i:02d}") for i in range(n)]
    t0 = time.monotonic()
    list(pool.map(lambda node: node.init(), nodes))
    log(f"{n} nodes initialised in {time.monotonic() - t0:.1f} s; starting them all at once")
    t0 = time.monotonic()
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_ready(timeout=300)
    log(f"{n} nodes ready {time.monotonic() - t0:.1f} s after start")
    apis = [Api(node) for node in nodes]
    edges = []
    for i in range(1, n):
        for j in rnd.sample(range(i), min(i, degree)):
            edges.append((i, j))

    def dial(edge: tuple[int, int]) -> None:
        i, j = edge
        status, answer = apis[i].call("POST", "/api/v1/peers", {"addr": nodes[j].addr}, timeout=60)
        if status not in (200, 201):
            raise fedlib.FederationError(f"{nodes[i].name} could not dial {nodes[j].name} (status {status}: {answer})")

    list(pool.map(dial, edges))
    log(f"bootstrap graph: {len(edges)} edges, each node i dialled up to {degree} earlier nodes")
    return nodes, apis


def overlay_formed(nodes: list[fedlib.NodeProcess], apis: list[Api],
                   pool: concurrent.futures.ThreadPoolExecutor, timeout: float) -> list[int]:
    index = {node.peer_id: i for i, node in enumerate(nodes)}

    def degrees() -> list[set[int]] | None:
        lists = list(pool.map(lambda api: api.call("GET", "/api/v1/peers")[1], apis))
        if any(not isinstance(x, list) for x in lists):
            return None
        return [{index[p["peer_id"]] for p in x if p["peer_id"] in index} for x in lists]

    t0 = time.monotonic()
    adj: list[set[int]] | None = None

    def connected() -> bool:
        nonlocal adj
        adj = degrees()
        if adj is None or any(not a for a in adj):
            return False
        seen, todo = {0}, [0]
        while todo:
            for j in adj[todo.pop()]:
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return len(seen) == len(nodes)

    deadline_wait("the overlay forming (every node connected, one connected graph)", connected, timeout, 1.0)
    assert adj is not None
    counts = [len(a) for a in adj]
    log(f"overlay formed {time.monotonic() - t0:.1f} s after bootstrap; connections per node: min "
        f"{min(counts)}, median {statistics.median(counts):.0f}, max {max(counts)}")
    time.sleep(2.0)  # gossipsub meshes are grafted on the next heartbeats (1 s each)
    return counts


def announcements(fed: fedlib.Federation, nodes: list[fedlib.NodeProcess], apis: list[Api], count: int,
                  rnd: random.Random, pool: concurrent.futures.ThreadPoolExecutor,
                  timeout: float) -> tuple[float, list[float]]:
    totals: list[float] = []
    delivered = 0
    for k in range(count):
        src = rnd.randrange(len(nodes))
        path = fed.base / "src" / f"announce-{k}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"announcement {k}\n{rnd.random()}\n")
        status, body = apis[src].call("POST", "/api/v1/datasets",
                                      {"path": str(path), "title": f"announce {k}", "licence": ANNOUNCE_LICENCE})
        if status != 201:
            raise fedlib.FederationError(f"publishing announcement {k} at {nodes[src].name} answered {status}")
        t0 = time.monotonic()
        pending = {i for i in range(len(nodes)) if i != src}
        last = 0.0
        route = f"/api/v1/datasets/{body['id']}"
        while pending and time.monotonic() - t0 < timeout:
            order = list(pending)

            def ask(i: int, route: str = route) -> tuple[int, float]:
                status = apis[i].call("GET", route)[0]
                return status, time.monotonic()  # this node knew it by then (not: by the end of the sweep)

            answers = list(pool.map(ask, order))
            found = [i for i, (status, _) in zip(order, answers, strict=True) if status == 200]
            if found:
                last = max(last, max(t for status, t in answers if status == 200) - t0)
                pending -= set(found)
            if pending:
                time.sleep(POLL_S)
        delivered += len(nodes) - 1 - len(pending)
        if pending:
            log(f"announcement {k} from {nodes[src].name} never reached "
                f"{', '.join(nodes[i].name for i in sorted(pending))} within {timeout:.0f} s")
        else:
            totals.append(last)
        time.sleep(0.2)
    reach = delivered / (count * (len(nodes) - 1))
    return reach, totals


def enact_policy(node: fedlib.NodeProcess, api: Api, accept: list[str]) -> None:
    """The node's sole founding member (its operator key) proposes and votes a licence policy."""
    key = read_private_key(node.data / "operator.key", "member key")
    roster = api.get("/api/v1/members")
    now = int(roster["now"])
    body = parse_rules("accept_licences = [" + ", ".join(json.dumps(a) for a in accept) + "]\n")
    proposal = Proposal.create(key, kind="policy", body=body, roster=bytes.fromhex(roster["roster_hash"]),
                               opens=now, closes=now + 3600, nonce=os.urandom(16))
    status, answer = api.call("POST", "/api/v1/proposals",
                              {"record": base64.b64encode(proposal.encode()).decode("ascii")})
    if status != 201:
        raise fedlib.FederationError(f"{node.name} refused the policy proposal ({status})")
    ballot = Ballot.create(key, proposal=ids.parse_cid(answer["id"]), choice="yes", ts=now)
    status, answer = api.call("POST", f"/api/v1/proposals/{answer['id']}/ballots",
                              {"record": base64.b64encode(ballot.encode()).decode("ascii")})
    if status != 201 or not answer["tally"]["closed"]:
        raise fedlib.FederationError(f"{node.name} did not enact the policy ({status}: {answer})")


def fanout(fed: fedlib.Federation, nodes: list[fedlib.NodeProcess], apis: list[Api], size_mib: int,
           pool: concurrent.futures.ThreadPoolExecutor, timeout: float) -> tuple[float, float]:
    list(pool.map(lambda i: enact_policy(nodes[i], apis[i], [FANOUT_LICENCE]), range(len(nodes))))
    path = fed.base / "src" / "fanout.bin"
    with open(path, "wb") as fh:
        for _ in range(size_mib):
            fh.write(os.urandom(1 << 20))
    os.sync()
    t0 = time.monotonic()
    status, body = apis[0].call("POST", "/api/v1/datasets",
                                {"path": str(path), "title": "fan-out", "licence": FANOUT_LICENCE}, timeout=600)
    if status != 201:
        raise fedlib.FederationError(f"publishing the fan-out dataset answered {status}")
    publish_s = time.monotonic() - t0
    log(f"published {size_mib} MiB at {nodes[0].name} in {publish_s:.1f} s; waiting for {len(nodes) - 1} copies")
    t0 = time.monotonic()
    mid = body["id"]

    def complete(i: int) -> bool:
        status, listing = apis[i].call("GET", "/api/v1/datasets")
        return status == 200 and any(d["id"] == mid and d["state"] == "complete" for d in listing)

    pending = set(range(1, len(nodes)))
    shown = 0.0
    while pending:
        done = [i for i, ok in zip(list(pending), pool.map(complete, list(pending)), strict=True) if ok]
        pending -= set(done)
        elapsed = time.monotonic() - t0
        if elapsed - shown >= 10:
            shown = elapsed
            log(f"fan-out: {len(nodes) - 1 - len(pending)} of {len(nodes) - 1} complete after {elapsed:.0f} s")
        if pending and elapsed > timeout:
            raise fedlib.FederationError(f"fan-out: {len(pending)} node(s) still incomplete after {timeout:.0f} s")
        if pending:
            time.sleep(1.0)
    return publish_s, time.monotonic() - t0


def proc_tree(pid: int) -> list[int]:
    """pid and its descendants (a node may run helper processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            children = []
        todo += [int(c) for c in children]
    return out


def rss_mb(pid: int) -> float:
    total = 0
    for p in proc_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total / 1e6


def cpu_s(pid: int) -> float:
    total = 0
    for p in proc_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def fds(pid: int) -> int:
    try:
        return sum(len(os.listdir(f"/proc/{p}/fd")) for p in proc_tree(pid))
    except OSError:
        return 0


def resources(nodes: list[fedlib.NodeProcess], idle_s: float) -> tuple[float, float, float]:
    pids = [n.proc.pid for n in nodes if n.proc is not None]
    before = [cpu_s(p) for p in pids]
    t0 = time.monotonic()
    time.sleep(idle_s)
    after = [cpu_s(p) for p in pids]
    wall = time.monotonic() - t0
    cpu = [100 * (b - a) / wall for a, b in zip(before, after, strict=True)]
    rss = [rss_mb(p) for p in pids]
    return statistics.mean(rss), max(rss), statistics.mean(cpu)


def build_archive(fed: fedlib.Federation, archive: fedlib.NodeProcess, manifests: int, publishers: int,
                  cache: Path | None) -> None:
    """The archive's folder: a node whose catalog holds `manifests` signed manifests of `publishers`.
    Signing 100,000 takes about 2 minutes here; with `cache`, a folder built by an earlier run with the same
    figures is copied instead (a never-started node folder: its key, config and filled catalog)."""
    marker = {"manifests": manifests, "publishers": publishers, "files": 3}
    if cache is not None and (cache / "bench-archive.json").exists():
        if json.loads((cache / "bench-archive.json").read_text()) == marker:
            shutil.copytree(cache, archive.data, ignore=shutil.ignore_patterns("bench-archive.json"))
            log(f"archive catalog: {manifests} manifests of {publishers} publishers copied from {cache}")
            return
        shutil.rmtree(cache)
    archive.init("--federation", "latejoin")
    t0 = time.monotonic()
    asyncio.run(syncbench.fill(archive.data / CATALOG_FILE, open_folder(archive.data).node_key, manifests,
                               publishers, 3))
    log(f"archive catalog: {manifests} signed manifests of {publishers} publishers built in "
        f"{time.monotonic() - t0:.1f} s ({(archive.data / CATALOG_FILE).stat().st_size / 1e6:.0f} MB)")
    if cache is not None:
        shutil.copytree(archive.data, cache)
        (cache / "bench-archive.json").write_text(json.dumps(marker))


def late_join(fed: fedlib.Federation, manifests: int, publishers: int, timeout: float,
              cache: Path | None = None) -> tuple[float, float, int]:
    archive, joiner = fed.add("archive"), fed.add("joiner")
    build_archive(fed, archive, manifests, publishers, cache)
    archive.start()
    archive.wait_ready(timeout=120)
    joiner.init("--federation", "latejoin", "--bootstrap", archive.addr)
    t_start = time.monotonic()
    joiner.start()
    joiner.wait_ready(timeout=120)
    t_ready = time.monotonic()
    pattern = re.compile(r"catalog sync with \S+: (\d+) new manifest\(s\) in ([0-9.]+) s")

    def synced() -> bool:
        if not joiner.running:
            raise fedlib.FederationError(f"the late joiner exited:\n{joiner.log_tail()}")
        runs = pattern.findall(joiner.log_path.read_text(errors="replace"))
        return sum(int(k) for k, _ in runs) >= manifests

    deadline_wait(f"the late joiner storing {manifests} manifests", synced, timeout, 0.05)
    t_done = time.monotonic()
    counts = Api(joiner).get("/api/v1/status").get("datasets", {})
    held = sum(counts.values()) if isinstance(counts, dict) else 0
    if held != manifests:
        raise fedlib.FederationError(f"the late joiner lists {held} manifests, not {manifests}")
    log(f"late joiner: ready {t_ready - t_start:.1f} s after start; {manifests} manifests verified and stored "
        f"{t_done - t_ready:.1f} s after ready ({manifests / (t_done - t_ready):.0f}/s)")
    catalog = sum(p.stat().st_size for p in joiner.data.glob(f"{CATALOG_FILE}*"))  # with its WAL
    return t_done - t_start, t_done - t_ready, catalog


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def run(args: argparse.Namespace, fed: fedlib.Federation) -> dict[str, Any]:
    rnd = random.Random(args.seed)
    result: dict[str, Any] = {"nodes": args.nodes}
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        nodes, apis = start_nodes(fed, args.nodes, args.degree, rnd, pool)
        counts = overlay_formed(nodes, apis, pool, args.phase_timeout)
        reach, totals = announcements(fed, nodes, apis, args.announcements, rnd, pool, args.announce_timeout)
        result["reach"] = round(reach, 4)
        result["p50_ms"] = round(statistics.median(totals) * 1000) if totals else None
        result["p95_ms"] = round(pct(totals, 95) * 1000) if totals else None
        log(f"announcements: reach {100 * reach:.1f}%, time until every node knows one: p50 "
            f"{result['p50_ms']} ms, p95 {result['p95_ms']} ms (poll interval {POLL_S * 1000:.0f} ms)")
        rss_before = [rss_mb(n.proc.pid) for n in nodes if n.proc is not None]
        result["rss_mb_before_fanout"] = round(statistics.mean(rss_before), 1)
        if args.fanout_mib > 0:
            publish_s, fanout_s = fanout(fed, nodes, apis, args.fanout_mib, pool, args.fanout_timeout)
            result["fanout_s"] = round(fanout_s, 1)
            result["fanout_publish_s"] = round(publish_s, 1)
            log(f"fan-out: {args.fanout_mib} MiB to {args.nodes - 1} nodes in {fanout_s:.1f} s "
                f"({args.fanout_mib * (1 << 20) * (args.nodes - 1) / fanout_s / 1e6:.0f} MB/s delivered in total)")
            served = [float(m.group(1)) for api in apis for m in [re.search(
                r"^communs_bytes_served_total (\S+)$", metrics_text(api), re.M)] if m]
            if served:
                result["fanout_served_by_publisher"] = round(served[0] / max(1.0, sum(served)), 3)
                log(f"fan-out: the publisher served {100 * result['fanout_served_by_publisher']:.0f}% of the "
                    f"chunk bytes; {sum(1 for s in served[1:] if s > 0)} other nodes served some")
        else:
            result["fanout_s"] = None
        time.sleep(3.0)
        rss, rss_max, cpu = resources(nodes, args.idle_s)
        result["rss_mb_per_node"] = round(rss, 1)
        result["rss_mb_max"] = round(rss_max, 1)
        result["idle_cpu_pct_per_node"] = round(cpu, 2)
        result["connections_per_node"] = {"min": min(counts), "median": statistics.median(counts),
                                          "max": max(counts)}
        result["fds_max"] = max(fds(n.proc.pid) for n in nodes if n.proc is not None)
        sizes = [n.log_path.stat().st_size for n in nodes if n.log_path.exists()]
        result["log_bytes_max"] = max(sizes, default=0)
        warnings = [sum(1 for line in n.log_path.read_text(errors="replace").splitlines()
                        if " WARNING " in line or " ERROR " in line) for n in nodes if n.log_path.exists()]
        result["log_warnings_total"] = sum(warnings)
        log(f"per node: {rss:.0f} MB resident (max {rss_max:.0f}), {cpu:.2f}% of a core idle over "
            f"{args.idle_s:.0f} s")
    if args.manifests > 0:
        cache = Path(args.archive_cache).expanduser().resolve() if args.archive_cache else None
        total_s, after_ready_s, catalog = late_join(fed, args.manifests, args.publishers, args.late_join_timeout,
                                                    cache)
        result["late_join_catalog_bytes"] = catalog
        result["late_join_manifests"] = args.manifests
        result["late_join_s"] = round(total_s, 1)
        result["late_join_after_ready_s"] = round(after_ready_s, 1)
    else:
        result["late_join_manifests"] = 0
        result["late_join_s"] = None
    result["loadavg"] = loadavg()
    return result


def metrics_text(api: Api) -> str:
    req = urllib.request.Request(api.url + "/metrics", headers={"Authorization": f"Bearer {api.token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return str(resp.read().decode())
    except (urllib.error.URLError, OSError):
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--manifests", type=int, default=100_000, help="late joiner's catalog (0: skip)")
    ap.add_argument("--publishers", type=int, default=50, help="publishers of the late joiner's manifests")
    ap.add_argument("--fanout-mib", type=int, default=256, help="fan-out dataset size (0: skip)")
    ap.add_argument("--announcements", type=int, default=20)
    ap.add_argument("--degree", type=int, default=3, help="bootstrap peers per node")
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--phase-timeout", type=float, default=180.0)
    ap.add_argument("--announce-timeout", type=float, default=30.0)
    ap.add_argument("--fanout-timeout", type=float, default=900.0)
    ap.add_argument("--late-join-timeout", type=float, default=600.0)
    ap.add_argument("--archive-cache", metavar="DIR",
                    help="keep the late joiner's source folder (signed manifests) here and reuse it next time")
    ap.add_argument("--dir", help="put the nodes' folders here (kept)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    if not 2 <= args.nodes <= 200:
        ap.error("--nodes must be from 2 to 200")
    if args.announcements < 1:
        ap.error("--announcements must be at least 1")
    if args.manifests and args.publishers < 1:
        ap.error("--publishers must be at least 1")
    if args.dir:
        base = Path(args.dir).expanduser().resolve()
        base.mkdir(parents=True, exist_ok=True)
        owns = False
    else:
        base = Path(tempfile.mkdtemp(prefix="communs-fed-bench-"))
        owns = True
    fed = fedlib.Federation(base, owns, args.keep)
    result: dict[str, Any] = {}
    code = 1
    log(f"load average before: {loadavg()}")
    with fedlib.signals_interrupt():
        try:
            result = run(args, fed)
            code = 0
        except fedlib.Interrupted as exc:
            log(f"{exc}: stopping every node")
            code = 130
        except (fedlib.FederationError, fedlib.ClientError, OSError) as exc:
            fedlib.say("error", str(exc), "bold red")
            for node in fed.nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    fedlib.say(node.name, f"exited with {node.proc.returncode}:\n{node.log_tail()}", "red")
        finally:
            fedlib.ignore_signals()
            fed.close()
            log(f"every node stopped; {'kept in ' + str(base) if (args.keep or not owns) else str(base) + ' removed'}")
    if code == 0:
        fedlib.console.file.flush()
        print(json.dumps(result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
