#!/usr/bin/env python3
"""Bandwidth-limit benchmark (issue 20): limits hold, and swarming from limited sources pays.

Four measurements with real node processes on 127.0.0.1 and one dataset of --size-mib random bytes
(default 384: at 10 MB/s a single source needs 40 s, more than the 30 s window):
1. upload limit: A publishes; A's upload is set to --rate (PUT /api/v1/limits); B fetches it from A alone.
   A's `communs_bytes_served_total` over a --window-s window in the middle of the transfer, vs. --rate;
2. single source: B's time from enacting its policy to `complete` (the baseline of 4);
3. download limit: A's limit is lifted, C's download is set to --rate; C fetches from A and B (both
   unlimited). C's `communs_bytes_fetched_total` over the window, vs. --rate;
4. swarming: A, B and C each limited to --rate upload; D (no limit) fetches from all three; D's
   throughput vs. B's (target >= 2.5x).
Every node is stopped at the end, also on failure or Ctrl-C. The last line is one JSON object.

    .venv/bin/python scripts/bench/ratelimit.py [--size-mib 384] [--rate 10000000] [--window-s 30]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from communs.governance.policy import parse_rules  # noqa: E402
from communs.governance.records import Ballot, Proposal  # noqa: E402
from communs.node.datadir import read_private_key  # noqa: E402
from communs.protocol import ids  # noqa: E402

from tests.nodes import NodeProc, cli_json, wait_for  # noqa: E402

LICENCE = "CC-BY-4.0"


def enact(node: NodeProc) -> None:
    """The node's sole member (operator.key) proposes and votes a policy accepting LICENCE."""
    key = read_private_key(node.data / "operator.key", "member key")
    roster = node.get("/api/v1/members")
    now = int(roster["now"])
    proposal = Proposal.create(key, kind="policy", body=parse_rules(f'accept_licences = ["{LICENCE}"]\n'),
                               roster=bytes.fromhex(roster["roster_hash"]), opens=now, closes=now + 3600,
                               nonce=os.urandom(16))
    status, answer = node.api("POST", "/api/v1/proposals", {"record": base64.b64encode(proposal.encode()).decode()})
    assert status == 201, (status, answer)
    ballot = Ballot.create(key, proposal=ids.parse_cid(answer["id"]), choice="yes", ts=now)
    status, answer = node.api("POST", f"/api/v1/proposals/{answer['id']}/ballots",
                              {"record": base64.b64encode(ballot.encode()).decode()})
    assert status == 201 and answer["tally"]["closed"], (status, answer)


def set_limits(node: NodeProc, **limits: int) -> None:
    status, answer = node.api("PUT", "/api/v1/limits", limits)
    assert status == 200 and all(answer[k] == v for k, v in limits.items()), (status, answer)


def counter(node: NodeProc, name: str) -> float:
    status, text = node.api("GET", "/metrics")
    assert status == 200, status
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def complete(node: NodeProc, mid: str) -> bool:
    return any(d["id"] == mid and d["state"] == "complete" for d in node.get("/api/v1/datasets"))


def fetch(node: NodeProc, mid: str, size: int, watch: tuple[NodeProc, str] | None, window: float,
          timeout: float) -> dict[str, float]:
    """Enact node's policy, then wait for `complete`; meanwhile, the rate of `watch`'s counter over
    `window` seconds starting 3 s in (after the start and the bucket's burst)."""
    wait_for(lambda: any(d["id"] == mid for d in node.get("/api/v1/datasets")), 60, what="the manifest to arrive")
    t0 = time.monotonic()
    enact(node)
    out: dict[str, float] = {}
    if watch is not None:
        who, name = watch
        time.sleep(3.0)
        before, t_before = counter(who, name), time.monotonic()
        time.sleep(window)
        after, t_after = counter(who, name), time.monotonic()
        out["window_rate"] = (after - before) / (t_after - t_before)
        if complete(node, mid):
            raise SystemExit(f"{node.data.name} completed within the window: use a larger --size-mib")
    wait_for(lambda: complete(node, mid), timeout, interval=0.2, what=f"{node.data.name} to complete")
    out["seconds"] = time.monotonic() - t0
    out["rate"] = size / out["seconds"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=384)
    ap.add_argument("--rate", type=int, default=10_000_000, help="bytes per second of each limit")
    ap.add_argument("--window-s", type=float, default=30.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    size = args.size_mib << 20
    nodes: list[NodeProc] = []
    with tempfile.TemporaryDirectory(prefix="communs-ratelimit-") as tmp:
        base = Path(tmp)
        try:
            src = base / "dataset.bin"
            with open(src, "wb") as fh:
                for _ in range(args.size_mib):
                    fh.write(os.urandom(1 << 20))
            a = NodeProc.init(base, "a")
            nodes.append(a)
            a.start()
            mid = cli_json(a.data, "publish", str(src), "--title", "ratelimit", "--licence", LICENCE,
                           timeout=900)["id"]
            os.sync()
            # 1 and 2: one source, limited upload
            set_limits(a, upload_bytes_per_s=args.rate)
            b = NodeProc.init(base, "b", "--bootstrap", a.addr)
            nodes.append(b)
            b.start()
            one = fetch(b, mid, size, (a, "communs_bytes_served_total"), args.window_s, args.timeout)
            up_err = one["window_rate"] / args.rate - 1
            print(f"upload limit {args.rate / 1e6:.1f} MB/s: A sent {one['window_rate'] / 1e6:.2f} MB/s over "
                  f"{args.window_s:.0f} s ({100 * up_err:+.1f}%); B complete in {one['seconds']:.1f} s = "
                  f"{one['rate'] / 1e6:.2f} MB/s from one limited source", flush=True)
            # 3: limited download, two unlimited sources
            set_limits(a, upload_bytes_per_s=0)
            c = NodeProc.init(base, "c", "--bootstrap", a.addr, "--bootstrap", b.addr)
            nodes.append(c)
            c.start()
            set_limits(c, download_bytes_per_s=args.rate)
            down = fetch(c, mid, size, (c, "communs_bytes_fetched_total"), args.window_s, args.timeout)
            down_err = down["window_rate"] / args.rate - 1
            print(f"download limit {args.rate / 1e6:.1f} MB/s: C received {down['window_rate'] / 1e6:.2f} MB/s over "
                  f"{args.window_s:.0f} s ({100 * down_err:+.1f}%) from two unlimited sources", flush=True)
            # 4: three limited sources
            for n in (a, b, c):
                set_limits(n, upload_bytes_per_s=args.rate, download_bytes_per_s=0)
            d = NodeProc.init(base, "d", "--bootstrap", a.addr, "--bootstrap", b.addr, "--bootstrap", c.addr)
            nodes.append(d)
            d.start()
            wait_for(lambda: len(d.get("/api/v1/peers")) >= 3, 60, what="d connected to the three sources")
            swarm = fetch(d, mid, size, None, 0, args.timeout)
            served = {n.data.name: counter(n, "communs_bytes_served_total") for n in (a, b, c)}
            ratio = swarm["rate"] / one["rate"]
            print(f"swarm: D complete in {swarm['seconds']:.1f} s = {swarm['rate'] / 1e6:.2f} MB/s from three "
                  f"sources limited to {args.rate / 1e6:.1f} MB/s each = {ratio:.2f}x one source "
                  f"(target >= 2.5x: {'met' if ratio >= 2.5 else 'NOT met'})", flush=True)
            result: dict[str, Any] = {
                "size_bytes": size, "rate_limit": args.rate, "window_s": args.window_s,
                "upload_measured": round(one["window_rate"]), "upload_error": round(up_err, 4),
                "download_measured": round(down["window_rate"]), "download_error": round(down_err, 4),
                "one_source_bytes_per_s": round(one["rate"]), "three_sources_bytes_per_s": round(swarm["rate"]),
                "swarm_ratio": round(ratio, 2), "served_total_by_node": served,
                "loadavg": [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]],
            }
            print(json.dumps(result), flush=True)
        finally:
            for n in nodes:
                try:
                    n.stop()
                except AssertionError:
                    n.kill()


if __name__ == "__main__":
    main()
