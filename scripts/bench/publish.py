#!/usr/bin/env python3
"""Publish benchmark (issue 3): publishing a file of random bytes against `dd ... conv=fsync` of it.

In one run, on the same disk: a file of random bytes is written once, then for each round
`dd if=FILE of=COPY bs=1M conv=fsync` is timed, and so is the publish path into a fresh data folder
(`measured_publish` below: POST /api/v1/datasets on a fresh running node: scan, chunking, hashing,
crash-safe chunk writes, signing, catalog). Both read the
source file from the page cache (it was just written; dropping the cache needs root), and the system's
dirty pages are flushed (`sync`) before each timed step so neither pays for the other's writes. Each
round publishes into a new data folder, and the folders are only deleted at the end: deleting a
thousand chunk files just before a round would make the next file creations slower (on ext4 without a
journal, as here, inode allocation skips recently deleted inodes), which is no part of publishing.
Target: publish throughput >= 0.8 x dd's. Rounds alternate the two; the medians are compared.

    .venv/bin/python scripts/bench/publish.py [--size-mib 1024] [--rounds 3] [--dir PARENT]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.nodes import NodeProc  # noqa: E402

MiB = 1024 * 1024


def start_node(folder: Path) -> NodeProc:
    """A fresh node (init + run on 127.0.0.1, port 0), started before timing: a running node has its
    store and catalog open."""
    node = NodeProc.init(folder.parent, folder.name)
    node.start()
    return node


def measured_publish(node: NodeProc, path: Path) -> str:
    """The timed step: `POST /api/v1/datasets` on the running node, exactly what `communs publish` asks
    (scan, chunk, hash, crash-safe chunk writes, sign, catalog), returning the manifest id."""
    status, body = node.api("POST", "/api/v1/datasets", {"path": str(path), "title": path.name,
                                                          "licence": "CC0-1.0"})
    if status != 201:
        raise SystemExit(f"publish failed: {status} {body}")
    return str(body["id"])


def write_random_file(path: Path, size: int) -> None:
    block = 16 * MiB
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def time_dd(src: Path, dst: Path) -> float:
    dst.unlink(missing_ok=True)
    os.sync()
    start = time.perf_counter()
    subprocess.run(["dd", f"if={src}", f"of={dst}", "bs=1M", "conv=fsync"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    dst.unlink()
    return elapsed


def time_publish(src: Path, folder: Path) -> float:
    node = start_node(folder)
    try:
        os.sync()
        start = time.perf_counter()
        measured_publish(node, src)
        elapsed = time.perf_counter() - start
    finally:
        node.stop()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the random file (default 1024)")
    parser.add_argument("--rounds", type=int, default=3, help="dd/publish pairs to time (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary folder (disk under test)")
    args = parser.parse_args()
    if shutil.which("dd") is None:
        print("dd is not installed", file=sys.stderr)
        return 2
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="communs-bench-publish-", dir=args.dir) as tmp:
        work = Path(tmp)
        src = work / "random.bin"
        print(f"writing {args.size_mib} MiB of random bytes to {src} ...")
        write_random_file(src, size)
        dd_times: list[float] = []
        pub_times: list[float] = []
        for i in range(args.rounds):
            steps = [("dd", dd_times), ("publish", pub_times)]
            if i % 2:
                steps.reverse()
            for name, times in steps:
                if name == "dd":
                    elapsed = time_dd(src, work / "copy.bin")
                else:
                    elapsed = time_publish(src, work / f"data{i}")
                times.append(elapsed)
                print(f"round {i + 1}: {name:8s} {elapsed:6.2f} s  {size / elapsed / 1e6:7.0f} MB/s")
    dd_rate = size / statistics.median(dd_times) / 1e6
    pub_rate = size / statistics.median(pub_times) / 1e6
    ratio = pub_rate / dd_rate
    print()
    print(f"file: {args.size_mib} MiB of random bytes, read from the page cache by both (just written)")
    print(f"dd if=FILE of=COPY bs=1M conv=fsync : {dd_rate:7.0f} MB/s (median of {args.rounds})")
    print(f"publish via the node's admin API     : {pub_rate:7.0f} MB/s (median of {args.rounds})")
    print(f"ratio publish/dd: {ratio:.2f} (target >= 0.80) {'OK' if ratio >= 0.8 else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
