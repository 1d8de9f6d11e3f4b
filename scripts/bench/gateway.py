#!/usr/bin/env python3
"""Public gateway benchmark (issue 16): one large file through the gateway against `communs get`, the
node's memory while it streams, and requests per second of the catalog pages.

In one run, on one node started with `--public 127.0.0.1:0`: a file of random bytes is published, then
`communs get ID DEST` is timed (reads and verifies every chunk, writes the file), and so is a download
of the same file from the gateway (reads and verifies every chunk, sends it over loopback; the client
discards the bytes). The node's resident memory is sampled every 50 ms during the download: flat memory
means the peak stays near the level before it, whatever the file's size. Then the HTML catalog page and
the Turtle export are requested back to back for a few seconds each, by one client.

    .venv/bin/python scripts/bench/gateway.py [--size-mib 1024] [--seconds 3]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.nodes import NodeProc, cli, cli_json  # noqa: E402

MiB = 1024 * 1024


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def download(base: str, path: str) -> int:
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    conn.request("GET", path)
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    got = 0
    while True:
        block = resp.read(1 << 20)
        if not block:
            break
        got += len(block)
    conn.close()
    return got


def rate(base: str, path: str, seconds: float) -> float:
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        n += 1
    conn.close()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--datasets", type=int, default=20, help="small datasets in the catalog besides the big one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="communs-gw-") as tmp:
        root = Path(tmp)
        node = NodeProc.init(root, "gw", "--public", "127.0.0.1:0")
        cfg = node.data / "config.toml"
        cfg.write_text(cfg.read_text().replace("[public]\n", "[public]\nrequests_per_minute = 10000000\n", 1))
        node.start()
        try:
            src = root / "big.bin"
            with open(src, "wb") as fh:
                for _ in range(args.size_mib):
                    fh.write(os.urandom(MiB))
            big = cli_json(node.data, "publish", str(src), "--title", "Big", "--licence", "CC0-1.0")["id"]
            small = root / "small.csv"
            small.write_text("a,b\n1,2\n")
            for i in range(args.datasets):
                cli(node.data, "publish", str(small), "--title", f"Dataset {i}", "--licence", "CC-BY-4.0")
            size = args.size_mib * MiB
            t0 = time.perf_counter()
            cli(node.data, "get", big, str(root / "out"), timeout=600)
            get_s = time.perf_counter() - t0
            (root / "out" / "big.bin").unlink()
            base = node.info["public_url"]
            assert node.proc is not None
            pid = node.proc.pid
            before = rss_mib(pid)
            peak = [before]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mib(pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            t0 = time.perf_counter()
            got = download(base, f"/datasets/{big}/files/big.bin")
            gw_s = time.perf_counter() - t0
            done.set()
            sampler.join()
            assert got == size
            html_rps = rate(base, "/", args.seconds)
            ttl_rps = rate(base, "/catalog.ttl", args.seconds)
            figures = {
                "size_mib": args.size_mib,
                "get_mib_s": round(args.size_mib / get_s, 1),
                "gateway_mib_s": round(args.size_mib / gw_s, 1),
                "gateway_vs_get": round(get_s / gw_s, 2),
                "rss_before_mib": round(before, 1),
                "rss_peak_during_download_mib": round(peak[0], 1),
                "catalog_html_rps": round(html_rps, 1),
                "catalog_ttl_rps": round(ttl_rps, 1),
                "datasets": args.datasets + 1,
            }
            print(f"communs get: {figures['get_mib_s']} MiB/s; gateway: {figures['gateway_mib_s']} MiB/s "
                  f"({figures['gateway_vs_get']}x); node RSS {before:.0f} -> peak {peak[0]:.0f} MiB during a "
                  f"{args.size_mib} MiB download; '/' {html_rps:.0f} req/s, '/catalog.ttl' {ttl_rps:.0f} req/s")
            print(json.dumps(figures))
        finally:
            node.stop()


if __name__ == "__main__":
    main()
