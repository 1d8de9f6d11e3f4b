#!/usr/bin/env python3
"""Governance over libp2p (issue 14): ballots accepted per second over one connection, and the latency of
one vote from a fresh CLI process (start-up, dial, fetch and verify the proposal, sign, submit, verify the
receipt), p50/p95.

A real node process with `--members` founders; proposals stay open until every member voted (everyone
abstains, so no early decision), so each ballot is an ordinary accepted one. Baseline measured in the same
run: `python -c "import libp2p"`, the floor any py-libp2p process pays. Target: p95 under 1.5 s.

    .venv/bin/python scripts/bench/governance.py [--members 60] [--proposals 4] [--cli-runs 10]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMUNS = [sys.executable, "-m", "communs.node.cli.main"]


def run(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run([*COMMUNS, *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]


async def ballots_per_second(addr: str, key_files: list[Path], proposals: list[bytes], now: int) -> tuple[int, float]:
    from communs.governance.records import Ballot
    from communs.node.exchange.govclient import GovernanceClient
    from communs.protocol import keys
    from communs.protocol.libp2p.overlay import Overlay

    signed = [Ballot.create(keys.parse_private(k.read_text()), proposal=p, choice="abstain", ts=now).encode()
              for p in proposals for k in key_files]
    overlay = Overlay(keys.SigningKey.generate().seed, ["/ip4/127.0.0.1/tcp/0"], enable_dht=False)
    await overlay.start()
    try:
        peer = await overlay.connect(addr)
        client = GovernanceClient(overlay, peer)
        await client.list()  # open the stream before timing
        t0 = time.monotonic()
        accepted = 0
        for raw in signed:
            answer = await client.submit(raw)
            accepted += answer["t"] == "receipt"
        elapsed = time.monotonic() - t0
        await client.close()
    finally:
        await overlay.stop()
    return accepted, elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=60)
    ap.add_argument("--proposals", type=int, default=4)
    ap.add_argument("--cli-runs", type=int, default=10)
    args = ap.parse_args()
    from communs.protocol import ids

    base_t = []
    for _ in range(3):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "import libp2p"], check=True)
        base_t.append(time.monotonic() - t0)
    baseline = statistics.median(base_t)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keyfiles = []
        for i in range(args.members):
            path = root / f"m{i}.key"
            run("member", "keygen", "--out", str(path))
            keyfiles.append(path)
        data = root / "node"
        founders = [a for k in keyfiles for a in ("--founder", f"{k}.pub")]
        run("init", "--data", str(data), "--listen", "/ip4/127.0.0.1/tcp/0", "--admin", "127.0.0.1:0", *founders)
        with open(data / "config.toml", "a") as fh:  # lift the per-peer submission budget: this measures speed
            fh.write("\n[governance]\nsubmits_per_minute = 1000000\n")
        node = subprocess.Popen([*COMMUNS, "run", "--data", str(data)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not (data / "node.json").exists():
                if time.monotonic() > deadline or node.poll() is not None:
                    raise SystemExit("the node did not start")
                time.sleep(0.1)
            addr = json.loads((data / "node.json").read_text())["listen_addrs"][0]
            rules = root / "rules.toml"
            rules.write_text('accept_licences = ["CC0-1.0"]\n')
            pids = []
            for _ in range(args.proposals + 1):
                out = run("propose", "--key", str(keyfiles[0]), "--kind", "policy", "--file", str(rules),
                          "--node", addr, "--json")
                pids.append(json.loads(out)["id"])
            bench_pids, cli_pid = pids[:-1], pids[-1]
            accepted, elapsed = asyncio.run(ballots_per_second(
                addr, keyfiles, [ids.parse_cid(p) for p in bench_pids], int(time.time())))
            latencies, cpu = [], []
            for i in range(min(args.cli_runs, args.members)):
                t0, c0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
                run("vote", cli_pid, "abstain", "--key", str(keyfiles[i]), "--node", addr, "--json", cwd=root)
                latencies.append(time.monotonic() - t0)
                c1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the CLI's own CPU, which load does not inflate
                cpu.append(c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime)
        finally:
            node.terminate()
            node.wait(10)
    result = {
        "ballots": accepted, "ballots_per_s": round(accepted / elapsed, 1),
        "vote_cli_p50_s": round(statistics.median(latencies), 3), "vote_cli_p95_s": round(p95(latencies), 3),
        "vote_cli_cpu_p50_s": round(statistics.median(cpu), 3),
        "import_libp2p_s": round(baseline, 3), "p95_over_import_floor": round(p95(latencies) / baseline, 2),
        "target_p95_s": 1.5, "cpus": os.cpu_count(),
    }
    print(f"{accepted} ballots over one connection in {elapsed:.2f} s: {result['ballots_per_s']} ballots/s")
    print(f"one vote from a fresh CLI process: p50 {result['vote_cli_p50_s']} s, p95 {result['vote_cli_p95_s']} s "
          f"(target 1.5 s; 'import libp2p' alone takes {baseline:.3f} s); CPU of the CLI process: p50 "
          f"{result['vote_cli_cpu_p50_s']} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
