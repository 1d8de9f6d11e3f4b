#!/usr/bin/env python3
"""Claims traffic on a real federation (issue 15): bytes per node per hour, measured, next to copies.py's model.

    .venv/bin/python scripts/bench/claims_traffic.py [--nodes 8] [--held 200] [--ttl 60] [--sync 15]
        [--window 150] [--baseline 45] [--dir DIR] [--keep]

K real `communs run` processes on 127.0.0.1 (their own federation name), each holding --held datasets of
its own: a tiny real chunk each, written into the node's chunk store and recorded in its catalog before
it starts (publishing hundreds through the API would measure publishing). `[copies] claim_ttl_s = --ttl`
and `claims_sync_s = --sync`, so each node re-signs its claims every ttl/2 s or a little more (its claims
round runs every ttl/8 s) and asks each peer for new claims every --sync s. Node i dials up to 3 earlier
nodes; discovery adds the rest. After a warm-up (the first claims, catalog and claims syncs), the counters
`communs_claims_bytes_total{direction, channel}` of every node are read at the start and end of a --window
of seconds, and so are the claims each node signed (status `copies.claims.published`).

What the counters hold (node/http/metrics.py): payload bytes. Gossip "in" is every claims message from
another node that reached the topic validator: each message once per node, since py-libp2p drops copies it
has seen before validating; gossip "out" is what the node published. Not counted: gossipsub's relaying (a
node sends each message on to its mesh peers, and receives copies from several of them), IHAVE/IWANT,
libp2p's envelope, Noise and Yamux framing. So the wire is measured too: `ss -tin` byte counters of each
node's TCP connections (its admin port excluded) over the same window, and over a --baseline window after
the nodes are restarted with the default claim TTL (a day: their claims are signed once, then nothing is
refreshed; claims sync still asks and gets empty answers). Wire minus baseline is what claim refreshes cost
on the wire, all included; a connection that closes inside a window loses its bytes (counted, printed).

The model (copies.py `model`) is given the same K, H, TTL, sync interval, gossip degree and the measured
peers per node, once with its own refresh assumption (every ttl/2 s) and once with the claims actually
signed in the window; the last line on stdout is one JSON object with both and the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib.util
import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


_spec = importlib.util.spec_from_file_location("communs_federation_bench", REPO / "scripts" / "bench" / "federation.py")
assert _spec is not None and _spec.loader is not None
fedbench: Any = importlib.util.module_from_spec(_spec)  # Api, proc_tree, and its loader for the others
sys.modules[_spec.name] = fedbench
_spec.loader.exec_module(fedbench)
fedlib = fedbench.fedlib  # node processes, clean-up (scripts/federation.py)
copies = fedbench._load("communs_copies_bench", REPO / "scripts" / "bench" / "copies.py")  # the model
from communs.node.config import CATALOG_FILE  # noqa: E402
from communs.node.datadir import open_folder  # noqa: E402
from communs.node.folder import STORE_DIR  # noqa: E402
from communs.protocol import keys  # noqa: E402
from communs.protocol.ids import digest  # noqa: E402
from communs.protocol.records import FileEntry, Manifest, new_dataset_id  # noqa: E402
from communs.storage.catalog import Catalog, ManifestRow  # noqa: E402
from communs.storage.chunkstore import FsChunkStore  # noqa: E402

GOSSIP_DEGREE = 6  # protocol/libp2p/overlay.py: GossipSub(degree=6)
CHANNELS = [(d, c) for d in ("in", "out") for c in ("gossip", "sync_client", "sync_server")]


def log(text: str) -> None:
    fedlib.say("bench", text)


async def fill(data: Path, key: keys.SigningKey, held: int) -> None:
    """`held` datasets published by this node (its log, seq 1..held), one real 64-byte chunk each."""
    store = FsChunkStore(data / STORE_DIR)
    catalog = await Catalog.open(data / CATALOG_FILE)
    try:
        now = int(time.time())
        rows, stored, prev = [], [], None
        for seq in range(1, held + 1):
            chunk = os.urandom(64)
            d = digest(chunk)
            store.put(d, chunk)
            stored.append((d, len(chunk)))
            m = Manifest.create(key, dataset=new_dataset_id(key.public, os.urandom(16)), version=1, prev=None,
                                seq=seq, log_prev=prev, title=f"tiny {seq}", licence="CC0-1.0", created=now,
                                files=[FileEntry.of(f"t{seq}.bin", [(d, len(chunk))])], description="bench")
            rows.append(ManifestRow.from_manifest(m, m.encode(), received_at=now, state="own",
                                                  reason="published here", own=True))
            prev = m.id
        await catalog.mark_chunks_stored(stored)
        for i in range(0, len(rows), 500):
            await catalog.put_manifests_batch(rows[i:i + 500])
    finally:
        await catalog.close()
        store.close()


def set_copies(node: Any, ttl: int, sync: float) -> None:
    path = node.data / "config.toml"
    text = re.sub(r"\n\[copies\]\n[^\[]*", "\n", path.read_text())
    path.write_text(text + f"\n[copies]\nclaim_ttl_s = {ttl}\nclaims_sync_s = {sync}\nchallenge_every_s = 3600\n")


def claims_bytes(api: Any) -> dict[tuple[str, str], float]:
    out = {k: 0.0 for k in CHANNELS}
    for labels, value in re.findall(r"^communs_claims_bytes_total\{(.*)\} (\S+)$", fedbench.metrics_text(api), re.M):
        got = dict(re.findall(r'(\w+)="(\w+)"', labels))
        out[got["direction"], got["channel"]] = float(value)
    return out


def published(api: Any) -> int:
    return int(api.get("/api/v1/status")["copies"]["claims"].get("published", 0))


def wire(nodes: list[Any]) -> dict[str, dict[tuple[str, str], tuple[int, int]]]:
    """Per node: (local, peer) address of each TCP connection -> (bytes_sent, bytes_received), from `ss`."""
    pids = {}
    for n in nodes:
        for pid in fedbench.proc_tree(n.proc.pid):
            pids[pid] = n
    admin = {n.name: str(n.info["admin_url"]).rsplit(":", 1)[1].strip("/") for n in nodes}
    text = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, check=True).stdout
    out: dict[str, dict[tuple[str, str], tuple[int, int]]] = {n.name: {} for n in nodes}
    current: tuple[Any, str, str] | None = None
    for line in text.splitlines():
        if not line.startswith((" ", "\t")):
            current = None
            fields = line.split()
            m = re.search(r"pid=(\d+)", line)
            if m and int(m.group(1)) in pids and len(fields) >= 5:
                local, peer = fields[3], fields[4]
                node = pids[int(m.group(1))]
                if local.rsplit(":", 1)[1] != admin[node.name]:
                    current = (node, local, peer)
        elif current is not None:
            sent = re.search(r"bytes_sent:(\d+)", line)
            got = re.search(r"bytes_received:(\d+)", line)
            node, local, peer = current
            out[node.name][(local, peer)] = (int(sent.group(1)) if sent else 0, int(got.group(1)) if got else 0)
            current = None
    return out


def wire_delta(before: dict[str, dict[Any, tuple[int, int]]], after: dict[str, dict[Any, tuple[int, int]]]
               ) -> tuple[dict[str, tuple[int, int]], int]:
    """Per node (sent, received) in between, and how many connections closed in between (their bytes lost)."""
    out, lost = {}, 0
    for name, conns in after.items():
        sent = got = 0
        for addr, (s, r) in conns.items():
            s0, r0 = before.get(name, {}).get(addr, (0, 0))
            sent, got = sent + s - s0, got + r - r0
        lost += sum(1 for addr in before.get(name, {}) if addr not in conns)
        out[name] = (sent, got)
    return out, lost


def window(nodes: list[Any], apis: list[Any], seconds: float, pool: Any, lag: float) -> dict[str, Any]:
    """Counters over `seconds`; the claims signed are sampled each second from `lag` s before the window on,
    for `signed_for_sync`: a claim signed at t reaches each peer's store-order answer at the peer's next ask,
    t + U(0, lag) (lag = claims_sync_s), so it is weighted by the chance that ask falls in the window."""
    def signed() -> tuple[float, int]:
        return time.monotonic(), sum(pool.map(published, apis))

    def read() -> tuple[list[dict[tuple[str, str], float]], Any, float]:
        w = wire(nodes)
        t = time.monotonic()
        return list(pool.map(claims_bytes, apis)), w, t

    samples = [signed()]
    while time.monotonic() - samples[0][0] < lag:
        time.sleep(1.0)
        samples.append(signed())
    b0, w0, t0 = read()
    samples.append(signed())
    first = samples[-1][1]
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        samples.append(signed())
    b1, w1, t1 = read()
    samples.append(signed())
    hours = (t1 - t0) / 3600
    in_window = samples[-1][1] - first
    for_sync = 0.0
    for (ta, p), (tb, q) in itertools.pairwise(samples):
        t = (ta + tb) / 2
        for_sync += (q - p) * max(0.0, min(t + lag, t1) - max(t, t0)) / lag
    per_node = {k: statistics.mean(b[k] - a[k] for a, b in zip(b0, b1, strict=True)) / hours for k in CHANNELS}
    wd, lost = wire_delta(w0, w1)
    return {"seconds": t1 - t0, "bytes": per_node, "signed": in_window, "signed_for_sync": for_sync,
            "hours": hours, "wire_sent": statistics.mean(s for s, _ in wd.values()) / hours,
            "wire_received": statistics.mean(r for _, r in wd.values()) / hours, "closed": lost}


def run(args: argparse.Namespace, fed: Any) -> dict[str, Any]:
    nodes = [fed.add(f"c{i}") for i in range(args.nodes)]
    federation = f"claims-{os.getpid()}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: n.init("--federation", federation), nodes))
        t0 = time.monotonic()
        for n in nodes:
            set_copies(n, args.ttl, args.sync)
            asyncio.run(fill(n.data, open_folder(n.data).node_key, args.held))
        log(f"{args.nodes} nodes, {args.held} datasets each, filled in {time.monotonic() - t0:.1f} s")
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready(timeout=120)
        apis = [fedbench.Api(n) for n in nodes]
        edges = [(i, j) for i in range(1, len(nodes)) for j in range(max(0, i - 3), i)]
        for i, j in edges:
            apis[i].call("POST", "/api/v1/peers", {"addr": nodes[j].addr}, timeout=60)
        peers = fedbench.overlay_formed(nodes, apis, pool, 120)

        def known() -> bool:  # every node lists every dataset (catalog sync done)
            return all(int(sum(a.get("/api/v1/status")["datasets"].values())) >= args.nodes * args.held
                       for a in apis)

        fedbench.deadline_wait("every node knowing every dataset", known, 120, 1.0)
        log(f"warm-up: {args.warmup:.0f} s (the first claims and syncs)")
        time.sleep(args.warmup)
        peers = [len(a.get("/api/v1/peers")) for a in apis]
        log(f"measuring {args.window:.0f} s with claim_ttl_s = {args.ttl}, claims_sync_s = {args.sync}; "
            f"peers per node {statistics.mean(peers):.1f}")
        main = window(nodes, apis, args.window, pool, args.sync)
        base = None
        if args.baseline > 0:
            log("baseline: restarting the nodes with the default claim TTL (a day)")
            fedlib.stop_all(nodes)
            for n in nodes:
                set_copies(n, 86400, args.sync)
                n.start()
            for n in nodes:
                n.wait_ready(timeout=120)
            apis = [fedbench.Api(n) for n in nodes]
            for i, j in edges:
                apis[i].call("POST", "/api/v1/peers", {"addr": nodes[j].addr}, timeout=60)
            fedbench.overlay_formed(nodes, apis, pool, 120)
            time.sleep(max(args.warmup, 2 * args.sync + 10))
            base = window(nodes, apis, args.baseline, pool, args.sync)
    claim_bytes, message_bytes = copies.record_sizes(args.ttl)
    # a node's mesh holds D peers at most, and no more than it is connected to
    common = {"nodes": args.nodes, "held": args.held, "ttl": args.ttl, "sync": args.sync,
              "degree": min(GOSSIP_DEGREE, statistics.mean(peers)), "peers": statistics.mean(peers),
              "claim_bytes": claim_bytes, "message_bytes": message_bytes}
    assumed = copies.model(**common)
    actual = copies.model(**common, refreshes_per_hour=main["signed"] / main["hours"])
    lagged = copies.model(**common, refreshes_per_hour=main["signed_for_sync"] / main["hours"])
    b = main["bytes"]
    measured = {
        "gossip_payload_in": b["in", "gossip"], "gossip_payload_out": b["out", "gossip"],
        "sync_client_in": b["in", "sync_client"], "sync_client_out": b["out", "sync_client"],
        "sync_server_in": b["in", "sync_server"], "sync_server_out": b["out", "sync_server"],
        "wire_sent": main["wire_sent"], "wire_received": main["wire_received"],
    }
    mb = {k: round(v / 1e6, 2) for k, v in measured.items()}
    result: dict[str, Any] = {
        "nodes": args.nodes, "held": args.held, "ttl_s": args.ttl, "claims_sync_s": args.sync,
        "window_s": round(main["seconds"]), "peers_per_node": round(statistics.mean(peers), 2),
        "claims_signed_per_hour": round(main["signed"] / main["hours"]),
        "claims_signed_per_hour_model": round(assumed["refreshes_per_hour"]),
        "measured_mb_per_node_hour": mb,
        "model_mb_per_node_hour": {k: round(v / 1e6, 2) for k, v in assumed.items() if k != "refreshes_per_hour"},
        "model_with_signed_mb_per_node_hour": {k: round(v / 1e6, 2) for k, v in actual.items()
                                               if k != "refreshes_per_hour"},
        "measured_over_model_with_signed": {
            "gossip_payload_in": round(b["in", "gossip"] / actual["gossip_payload_in"], 3),
            "gossip_payload_out": round(b["out", "gossip"] / actual["gossip_payload_out"], 3),
            "sync": round(b["in", "sync_client"] / actual["sync"], 3),
            "sync_vs_claims_signed_a_sync_interval_earlier": round(b["in", "sync_client"] / lagged["sync"], 3)},
        "claims_signed_per_hour_for_sync": round(main["signed_for_sync"] / main["hours"]),
        "connections_closed_in_window": main["closed"],
    }
    if base is not None:
        extra = (main["wire_received"] - base["wire_received"], main["wire_sent"] - base["wire_sent"])
        payload_in = b["in", "gossip"] + b["in", "sync_client"] + b["in", "sync_server"]
        result["baseline_wire_mb_per_node_hour"] = {"sent": round(base["wire_sent"] / 1e6, 2),
                                                    "received": round(base["wire_received"] / 1e6, 2)}
        result["claims_wire_mb_per_node_hour"] = {"received": round(extra[0] / 1e6, 2),
                                                  "sent": round(extra[1] / 1e6, 2)}
        result["counted_payload_in_mb_per_node_hour"] = round(payload_in / 1e6, 2)
        # the wire received beyond the sync payload, per byte of gossip payload counted: the copies of each
        # message a node receives from its mesh, plus every envelope and framing (sync's included)
        result["gossip_wire_in_over_payload"] = round((extra[0] - payload_in + b["in", "gossip"])
                                                      / b["in", "gossip"], 2) if b["in", "gossip"] else None
        result["model_gossip_wire_over_payload"] = round(actual["gossip_wire"] / actual["gossip_payload_in"], 2)
        result["claims_wire_received_over_model"] = round(extra[0] / (actual["gossip_wire"] + actual["sync"]), 3)
        result["connections_closed_in_baseline"] = base["closed"]
        # claims payload still moving in the baseline (should be near nothing: empty sync answers)
        result["baseline_counted_payload_in_mb_per_node_hour"] = round(
            sum(base["bytes"]["in", c] for c in ("gossip", "sync_client", "sync_server")) / 1e6, 3)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--held", type=int, default=200, help="datasets each node publishes and holds")
    ap.add_argument("--ttl", type=int, default=60, help="[copies] claim_ttl_s")
    ap.add_argument("--sync", type=float, default=15.0, help="[copies] claims_sync_s")
    ap.add_argument("--warmup", type=float, default=30.0)
    ap.add_argument("--window", type=float, default=150.0, help="measured seconds")
    ap.add_argument("--baseline", type=float, default=45.0, help="seconds of the baseline window (0: none)")
    ap.add_argument("--dir", help="folder for the nodes (default: a temporary one, removed)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="communs-claims-"))
    fed = fedlib.Federation(base, owns_base=not args.dir, keep=args.keep)
    try:
        with fedlib.signals_interrupt():
            result = run(args, fed)
    except (fedlib.FederationError, fedlib.Interrupted) as exc:
        log(f"stopped: {exc}")
        return 1
    finally:
        fed.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
