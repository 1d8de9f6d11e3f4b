#!/usr/bin/env python3
"""Start-up benchmark (issue 2): time from starting `communs run` to `node.json` and a healthy
`/healthz`, and the idle node's RSS after 30 s; median of several runs.

Baseline measured in the same run: `python -c "import libp2p"` (time and RSS), the floor that any
py-libp2p node pays. Targets: start-up under 1.5 s, idle RSS under 150 MB.

    .venv/bin/python scripts/bench/startup.py [--runs 5] [--idle 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_run(data: Path, idle: float) -> tuple[float, float]:
    (data / "node.json").unlink(missing_ok=True)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "communs.node.cli.main", "run", "--data", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("the node exited during start-up")
            path = data / "node.json"
            if path.exists():
                try:
                    url = json.loads(path.read_text())["admin_url"]
                    with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
                        if json.loads(resp.read()).get("ok"):
                            break
                except (OSError, ValueError, KeyError):
                    pass
            if time.monotonic() - t0 > 30:
                raise SystemExit("the node did not become healthy within 30 s")
            time.sleep(0.01)
        startup = time.monotonic() - t0
        time.sleep(idle)
        rss = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    return startup, rss


def baseline() -> tuple[float, float]:
    code = ("import time, resource; t=time.monotonic(); import libp2p; "
            "print(time.monotonic()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds idle before reading RSS")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "node"
        subprocess.run([sys.executable, "-m", "communs.node.cli.main", "init", "--data", str(data), "--listen",
                        "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0"], check=True, capture_output=True)
        base = [baseline() for _ in range(3)]
        runs = [one_run(data, args.idle) for _ in range(args.runs)]
    b_t = statistics.median(t for t, _ in base)
    b_m = statistics.median(m for _, m in base)
    s_t = statistics.median(t for t, _ in runs)
    s_m = statistics.median(m for _, m in runs)
    print(f"baseline `import libp2p`:      {b_t:6.3f} s   {b_m:6.1f} MB RSS (median of 3)")
    print(f"communs run -> healthy:        {s_t:6.3f} s   (median of {args.runs}; runs: "
          + ", ".join(f"{t:.3f}" for t, _ in runs) + ")")
    print(f"idle RSS after {args.idle:.0f} s:          {s_m:6.1f} MB (median; runs: "
          + ", ".join(f"{m:.1f}" for _, m in runs) + ")")
    print(f"ratio start-up / import libp2p: {s_t / b_t:5.2f}   RSS / import libp2p: {s_m / b_m:5.2f}")
    print(f"targets: start-up < 1.5 s: {'met' if s_t < 1.5 else 'NOT met'}; "
          f"RSS < 150 MB: {'met' if s_m < 150 else 'NOT met'}")


if __name__ == "__main__":
    main()
