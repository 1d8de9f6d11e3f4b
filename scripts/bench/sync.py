#!/usr/bin/env python3
"""Catalog sync benchmark (issue 4): a new node gets 10,000 manifests from one peer over /communs/sync/1.

The source catalog is filled directly (signing 10,000 manifests with a few publishers' keys, stored in
batches, as records the source relays but does not hold) rather than by 10,000 publishes, which would measure
publishing. Then a new node bootstrapped to the source starts; catalog sync on connect fetches every
log range, checks each as a chain, and the datasets service verifies every signature and stores the
records. Printed: the sync's own figure from the new node's log (records / time inside `sync_with`,
heads to last store), and the wall time from starting the new node to all records listed.
Target: 5,000 manifests per second or better.

    .venv/bin/python scripts/bench/sync.py [--manifests 10000] [--publishers 5] [--files 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from communs.node.config import CATALOG_FILE  # noqa: E402
from communs.node.datadir import open_folder  # noqa: E402
from communs.protocol import keys  # noqa: E402
from communs.protocol.records import FileEntry, Manifest, new_dataset_id  # noqa: E402
from communs.storage.catalog import Catalog, ManifestRow  # noqa: E402

COMMUNS = [sys.executable, "-m", "communs.node.cli.main"]


def run(*args: str) -> None:
    subprocess.run([*COMMUNS, *args], check=True, capture_output=True, timeout=60)


def make_manifests(key: keys.SigningKey, count: int, files: int) -> list[Manifest]:
    """`count` manifests forming `key`'s log, each with a few files of a few chunks (about 600 bytes)."""
    out: list[Manifest] = []
    prev: bytes | None = None
    now = int(time.time())
    for seq in range(1, count + 1):
        entries = [FileEntry.of(f"data/part-{seq}-{f}.csv",
                                [(os.urandom(32), 1 << 20), (os.urandom(32), 12345)]) for f in range(files)]
        m = Manifest.create(key, dataset=new_dataset_id(key.public, os.urandom(16)), version=1, prev=None,
                            seq=seq, log_prev=prev, title=f"dataset {seq}", licence="CC-BY-4.0 OR ODbL-1.0",
                            created=now, files=entries, description="benchmark record",
                            keywords=("bench", "sync"))
        out.append(m)
        prev = m.id
    return out


async def fill(catalog_path: Path, own: keys.SigningKey, total: int, publishers: int, files: int) -> None:
    # Other publishers' records only: the chunks are made up, and own datasets whose chunks are missing are
    # found damaged at start (crash consistency), after which the source spends the run trying to repair
    # them instead of serving. A source that relays others' catalogs is a federation's usual hub anyway.
    del own
    signers = [keys.SigningKey.generate() for _ in range(publishers)]
    per = [total // publishers + (1 if i < total % publishers else 0) for i in range(publishers)]
    catalog = await Catalog.open(catalog_path)
    try:
        now = int(time.time())
        for signer, n in zip(signers, per, strict=True):
            manifests = make_manifests(signer, n, files)
            rows = [ManifestRow.from_manifest(m, m.encode(), received_at=now, state="not-wanted",
                                              reason="benchmark", own=False)
                    for m in manifests]
            for i in range(0, len(rows), 1000):
                await catalog.put_manifests_batch(rows[i:i + 1000])
    finally:
        await catalog.close()


def start(data: Path, log: Path, profile: str | None = None) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    (data / "node.json").unlink(missing_ok=True)
    cmd = [*COMMUNS, "run", "--data", str(data)]
    if profile:
        cmd = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "communs.node.cli.main",
               "run", "--data", str(data)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not (data / "node.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"node {data.name} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
    time.sleep(0.05)
    return proc, json.loads((data / "node.json").read_text())


def status(info: dict[str, object], token: str) -> dict[str, object]:
    req = urllib.request.Request(f"{info['admin_url']}/api/v1/status", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifests", type=int, default=10_000)
    ap.add_argument("--publishers", type=int, default=5)
    ap.add_argument("--files", type=int, default=3, help="files per manifest (two chunks each)")
    ap.add_argument("--profile", metavar="FILE", help="run the new node under cProfile, writing FILE")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="communs-sync-bench-") as tmp:
        base = Path(tmp)
        src, dst = base / "source", base / "fresh"
        run("init", "--data", str(src), "--name", "source", "--listen", "/ip4/127.0.0.1/tcp/0",
            "--admin", "127.0.0.1:0")
        t0 = time.monotonic()
        asyncio.run(fill(src / CATALOG_FILE, open_folder(src).node_key, args.manifests, args.publishers,
                         args.files))
        size = (src / CATALOG_FILE).stat().st_size
        print(f"source catalog: {args.manifests} manifests of {args.publishers} publisher(s), built in "
              f"{time.monotonic() - t0:.1f} s ({size / 1e6:.1f} MB)")
        procs = []
        try:
            p_src, info_src = start(src, base / "source.log")
            procs.append(p_src)
            addr = info_src["listen_addrs"][0]  # type: ignore[index]
            run("init", "--data", str(dst), "--name", "fresh", "--listen", "/ip4/127.0.0.1/tcp/0",
                "--admin", "127.0.0.1:0", "--bootstrap", str(addr))
            token = (dst / "admin.token").read_text().strip()
            t_start = time.monotonic()
            p_dst, info_dst = start(dst, base / "fresh.log", args.profile)
            procs.append(p_dst)
            t_ready = time.monotonic()
            deadline = t_ready + 300
            pattern = re.compile(r"catalog sync with \S+: (\d+) new manifest\(s\) in ([0-9.]+) s(.*)")
            while True:  # read the node's log, not its API: listing 10,000 manifests would load the node
                runs = pattern.findall((base / "fresh.log").read_text())
                if sum(int(n) for n, _, _ in runs) >= args.manifests:
                    break
                if time.monotonic() > deadline or p_dst.poll() is not None:
                    raise SystemExit(f"sync incomplete after 300 s:\n{(base / 'fresh.log').read_text()[-3000:]}")
                time.sleep(0.05)
            t_done = time.monotonic()
            counts = status(info_dst, token).get("datasets", {})
            held = sum(counts.values()) if isinstance(counts, dict) else 0
            assert held == args.manifests, f"the new node lists {held} manifests, not {args.manifests}"
            print(f"new node: ready {t_ready - t_start:.2f} s after start; all {args.manifests} manifests stored "
                  f"{t_done - t_ready:.2f} s after ready ({args.manifests / (t_done - t_ready):.0f}/s wall)")
            for n, secs, detail in runs:
                print(f"sync_with: {n} manifests verified and stored in {float(secs):.2f} s = "
                      f"{int(n) / float(secs):.0f} manifests/s{detail}")
            total_n = sum(int(n) for n, _, _ in runs)
            total_s = sum(float(secs) for _, secs, _ in runs)
            if total_s:
                rate = total_n / total_s
                print(f"RESULT: {rate:.0f} manifests/s verified and stored (target 5,000/s: "
                      f"{'met' if rate >= 5000 else 'NOT met'})")
        finally:
            if os.environ.get("BENCH_KEEP_LOG"):
                (Path(os.environ["BENCH_KEEP_LOG"])).write_bytes((base / "fresh.log").read_bytes())
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
