#!/usr/bin/env python3
"""Replication benchmark (issue 6): two nodes on 127.0.0.1, a dataset of --size-mib (default 1024) random
bytes published on A and replicated to B, timed from the enactment of B's policy to `complete`.

In the same run, the baseline: a plain py-libp2p Noise+Yamux stream between two hosts in two processes
(scripts/bench/raw_stream.py) carrying the same number of bytes, measured right after each replication.
Prints each pair, then the medians and their ratio; target >= 0.85.

    .venv/bin/python scripts/bench/replicate.py [--size-mib 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from communs.governance.records import Ballot  # noqa: E402
from communs.node.datadir import read_private_key  # noqa: E402
from communs.protocol import ids  # noqa: E402

from tests.nodes import NodeProc, cli_json, wait_for  # noqa: E402


def raw_baseline(total: int) -> float:
    os.sync()  # as before a replication: nothing left for the kernel to write back meanwhile
    server = subprocess.Popen([sys.executable, str(HERE / "raw_stream.py"), "serve"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        addr = server.stdout.readline().strip()
        out = subprocess.run([sys.executable, str(HERE / "raw_stream.py"), "fetch", addr, str(total)],
                             capture_output=True, text=True, check=True, timeout=600).stdout.split()
        seconds, got = float(out[0]), int(out[1])
        assert got == total, f"raw stream carried {got} of {total} bytes"
        return seconds
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)


def replicate_once(size_mib: int) -> tuple[float, float]:
    """(publish seconds, replication seconds) of one fresh pair of nodes."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = base / "dataset.bin"
        with open(src, "wb") as fh:
            for _ in range(size_mib):
                fh.write(os.urandom(1 << 20))
        a = NodeProc.init(base, "a")
        a.start()
        b = NodeProc.init(base, "b", "--bootstrap", a.addr)
        try:
            t0 = time.monotonic()
            mid = cli_json(a.data, "publish", str(src), "--title", "bench", "--licence", "CC-BY-4.0",
                           timeout=1800)["id"]
            publish_s = time.monotonic() - t0
            b.start()
            wait_for(lambda: any(d["id"] == mid for d in b.get("/api/v1/datasets")), 60, what="b to list it")
            # The source file was written through the page cache: flush it now, or the kernel writes 1 GiB
            # back to the disk during the replication, against B's own durable writes.
            os.sync()
            rules = base / "rules.toml"
            rules.write_text('accept_licences = ["CC-BY-4.0"]\n')
            key = str(b.data / "operator.key")
            pid = cli_json(b.data, "propose", "--key", key, "--kind", "policy", "--file", str(rules))["id"]
            # The ballot is signed here, as `communs vote` would, so that the clock starts at the request
            # that enacts the policy (B's sole member votes yes) rather than at a CLI process's start-up.
            ballot = Ballot.create(read_private_key(Path(key), "member key"), proposal=ids.parse_cid(pid),
                                   choice="yes", ts=int(b.get(f"/api/v1/proposals/{pid}")["now"]))
            t0 = time.monotonic()
            status, answer = b.api("POST", f"/api/v1/proposals/{pid}/ballots",
                                   {"record": base64.b64encode(ballot.encode()).decode("ascii")})
            assert status == 201 and answer["tally"]["closed"], (status, answer)
            # poll the light listing, not the full manifest (its ~1,000 chunk ids cost the node real CPU)
            wait_for(lambda: any(d["id"] == mid and d["state"] == "complete" for d in b.get("/api/v1/datasets")),
                     1800, interval=0.1, what="replication")
            replicate_s = time.monotonic() - t0
            verify = cli_json(b.data, "verify", timeout=1800)
            assert verify["ok"], verify
        finally:
            b.stop()
            a.stop()
    return publish_s, replicate_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3,
                    help="pairs of measurements, replication and raw stream alternating; medians are compared "
                         "(the machine is shared: one pair can be off by a fifth either way)")
    args = ap.parse_args()
    size = args.size_mib << 20
    reps: list[float] = []
    raws: list[float] = []
    for i in range(args.repeat):
        publish_s, replicate_s = replicate_once(args.size_mib)
        raw_s = raw_baseline(size)
        reps.append(size / replicate_s / 1e6)
        raws.append(size / raw_s / 1e6)
        print(json.dumps({"run": i + 1, "bytes": size, "publish_s": round(publish_s, 3),
                          "replicate_s": round(replicate_s, 3), "raw_stream_s": round(raw_s, 3),
                          "ratio": round(reps[-1] / raws[-1], 3)}), flush=True)
    rep, raw = statistics.median(reps), statistics.median(raws)
    runs = ", ".join(f"{r:.0f}" for r in reps)
    raw_runs = ", ".join(f"{r:.0f}" for r in raws)
    print(f"replication (enactment -> complete): {rep:8.1f} MB/s  (median of {args.repeat}: {runs})")
    print(f"raw py-libp2p Noise+Yamux stream:    {raw:8.1f} MB/s  (median of {args.repeat}: {raw_runs})")
    print(f"ratio of medians: {rep / raw:.2f}  (target >= 0.85: {'met' if rep / raw >= 0.85 else 'NOT met'})")


if __name__ == "__main__":
    main()
