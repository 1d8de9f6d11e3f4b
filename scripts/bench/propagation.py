#!/usr/bin/env python3
"""Announcement propagation benchmark (issue 4): 10 node processes on 127.0.0.1 in a random bootstrap graph.

Node 0 starts alone; each next node is bootstrapped to one or two random earlier nodes (seeded), so the
graph is connected but most pairs are several hops apart (discovery later adds direct connections, as
it would in a real federation). Then datasets are published one at a time, each from a random node,
and every node is polled (`GET /api/v1/datasets/{id}`, every 20 ms, one thread per node) until it
knows the manifest. The time of one dataset is from the publish call's return (the manifest is signed
and stored; the announcement is queued) to the moment the last node knows it. Printed: median and
p95 over the datasets, and the mean per-node arrival. Target: p95 under 1 s.

    .venv/bin/python scripts/bench/propagation.py [--nodes 10] [--datasets 40] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

COMMUNS = [sys.executable, "-m", "communs.node.cli.main"]
POLL = 0.02


class Node:
    def __init__(self, base: Path, name: str, bootstrap: list[str]) -> None:
        self.data = base / name
        self.name = name
        args = ["init", "--data", str(self.data), "--name", name, "--listen", "/ip4/127.0.0.1/tcp/0",
                "--admin", "127.0.0.1:0"]
        for addr in bootstrap:
            args += ["--bootstrap", addr]
        subprocess.run([*COMMUNS, *args], check=True, capture_output=True, timeout=60)
        self.log = open(base / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*COMMUNS, "run", "--data", str(self.data)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.info: dict[str, Any] = {}
        self.token = (self.data / "admin.token").read_text().strip()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while not (self.data / "node.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"node {self.name} did not start")
            time.sleep(0.02)
        time.sleep(0.05)
        self.info = json.loads((self.data / "node.json").read_text())

    @property
    def addr(self) -> str:
        return str(self.info["listen_addrs"][0])

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        req = urllib.request.Request(self.info["admin_url"] + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def arrival(node: Node, mid: str, t0: float, out: dict[str, float], deadline: float) -> None:
    while time.monotonic() < deadline:
        status, _ = node.api("GET", f"/api/v1/datasets/{mid}")
        if status == 200:
            out[node.name] = time.monotonic() - t0
            return
        time.sleep(POLL)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--datasets", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="communs-prop-bench-") as tmp:
        base = Path(tmp)
        nodes: list[Node] = []
        edges: list[tuple[int, int]] = []
        try:
            for i in range(args.nodes):
                targets = rnd.sample(range(i), min(i, rnd.choice((1, 2)))) if i else []
                edges += [(i, t) for t in targets]
                n = Node(base, f"n{i}", [nodes[t].addr for t in targets])
                n.wait_ready()
                nodes.append(n)
            print(f"{args.nodes} nodes, bootstrap edges: {' '.join(f'{a}->{b}' for a, b in edges)}")
            deadline = time.monotonic() + 30
            while any(not n.api("GET", "/api/v1/peers")[1] for n in nodes):
                if time.monotonic() > deadline:
                    raise SystemExit("some node has no peer after 30 s")
                time.sleep(0.2)
            time.sleep(2.0)  # gossip meshes form over the first heartbeats
            totals: list[float] = []
            per_node: dict[str, list[float]] = {n.name: [] for n in nodes}
            for k in range(args.datasets):
                src = rnd.randrange(args.nodes)
                f = base / f"d{k}.csv"
                f.write_text(f"dataset {k}\n{rnd.random()}\n")
                status, body = nodes[src].api("POST", "/api/v1/datasets",
                                              {"path": str(f), "title": f"bench {k}", "licence": "CC0-1.0"})
                if status != 201:
                    raise SystemExit(f"publish failed: {status} {body}")
                t0 = time.monotonic()
                seen: dict[str, float] = {}
                threads = [threading.Thread(target=arrival, args=(n, body["id"], t0, seen, t0 + 30))
                           for i, n in enumerate(nodes) if i != src]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                if len(seen) < args.nodes - 1:
                    missing = sorted({n.name for n in nodes} - set(seen) - {nodes[src].name})
                    raise SystemExit(f"dataset {k} never reached {', '.join(missing)} within 30 s")
                totals.append(max(seen.values()))
                for name, arrived in seen.items():
                    per_node[name].append(arrived)
                time.sleep(0.2)
            peers = [len(n.api("GET", "/api/v1/peers")[1]) for n in nodes]
            print(f"connections per node at the end: {peers}")
            print(f"{args.datasets} datasets; time until every node knows the manifest: "
                  f"median {statistics.median(totals) * 1000:.0f} ms, p95 {pct(totals, 95) * 1000:.0f} ms, "
                  f"max {max(totals) * 1000:.0f} ms (poll interval {POLL * 1000:.0f} ms)")
            print("mean arrival per node (ms): " + ", ".join(
                f"{name} {statistics.mean(v) * 1000:.0f}" for name, v in per_node.items() if v))
            print(f"RESULT: p95 {pct(totals, 95) * 1000:.0f} ms (target under 1000 ms: "
                  f"{'met' if pct(totals, 95) < 1.0 else 'NOT met'})")
        finally:
            for n in nodes:
                n.stop()


if __name__ == "__main__":
    main()
