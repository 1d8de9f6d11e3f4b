#!/usr/bin/env python3
"""One round of the `min_copies` rule at 10,000 datasets (issue 15): the time to read the catalog and decide,
batched (node/services/copies_round.py `gather`: four queries) against the per-manifest reading rounds
did before (`gather_per_manifest`: one claims query per candidate), measured alternately in the same run
on the same real catalog file, with both answers checked equal.

The catalog: `--datasets` replicas (publisher elsewhere), half complete and half not wanted here, each
claimed by `--holders` nodes (live, most verified), as a node of a federation that keeps everything
would see. The round's writes (state changes, graces) are the same on both paths and not timed.

    .venv/bin/python scripts/bench/copies_round.py [--datasets 10000] [--holders 5] [--rounds 3]

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

from communs.governance.policy import Policy
from communs.node.services import copies_round
from communs.protocol import keys
from communs.storage.catalog import Catalog, ManifestRow

NOW = int(time.time())
TTL = 86400


def key(i: int) -> bytes:
    return keys.SigningKey(hashlib.sha256(b"bench node %d" % i).digest()).public


async def fill(cat: Catalog, datasets: int, holders: int) -> None:
    publisher = key(1)
    nodes = [key(i) for i in range(2, 2 + holders)]
    rows = []
    for i in range(datasets):
        mid = hashlib.sha256(b"manifest %d" % i).digest()
        rows.append(ManifestRow(id=mid, dataset=hashlib.sha256(b"ds" + mid).digest(), version=1, publisher=publisher,
                                seq=i + 1, log_prev=None, raw=b"raw:" + mid, title=f"dataset {i}", licence="CC0-1.0",
                                size=1 << 20, created=NOW - i, received_at=NOW, state="complete" if i % 2 else
                                "not-wanted"))
    for start in range(0, len(rows), 2000):
        await cat.put_manifests_batch(rows[start:start + 2000])
    claims = [(n, r.id, NOW * 1000, NOW - 100, NOW + TTL, False, b"claim") for r in rows for n in [publisher, *nodes]]
    for start in range(0, len(claims), 20_000):
        await cat.put_claims(claims[start:start + 20_000])
    async with cat.transaction() as db:  # most holders verified a minute ago, as challenges leave them
        await db.execute("UPDATE holding_claims SET verified_at = ? WHERE substr(manifest, 1, 1) < x'e0'",
                         (NOW - 60,))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", type=int, default=10_000)
    ap.add_argument("--holders", type=int, default=5, help="other nodes claiming each dataset, besides its publisher")
    ap.add_argument("--rounds", type=int, default=3, help="rounds timed on each path, alternately")
    args = ap.parse_args()
    policy = Policy(accept_licences=("CC0-1.0",), min_copies=3)
    me = key(0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        async with await Catalog.open(Path(tmp) / "catalog.sqlite") as cat:
            await fill(cat, args.datasets, args.holders)
            built = time.monotonic() - t0
            times: dict[str, list[float]] = {"per_manifest": [], "batched": []}
            reads: dict[str, list[float]] = {"per_manifest": [], "batched": []}
            plans = {}
            for _ in range(args.rounds):
                for name, gather in (("per_manifest", copies_round.gather_per_manifest),
                                     ("batched", copies_round.gather)):
                    t0 = time.monotonic()
                    inp = await gather(cat, NOW)
                    reads[name].append(time.monotonic() - t0)
                    plans[name] = copies_round.plan(inp, policy, me, now=NOW, ttl=TTL, grace_s=3600, max_gap_s=90)
                    times[name].append(time.monotonic() - t0)
            if plans["per_manifest"] != plans["batched"]:
                raise SystemExit("the two ways of reading decided differently")
    before, after = statistics.median(times["per_manifest"]), statistics.median(times["batched"])
    decided = plans["batched"]
    result = {
        "datasets": args.datasets, "claims": args.datasets * (args.holders + 1),
        "round_per_manifest_s": round(before, 3), "round_batched_s": round(after, 3),
        "speedup": round(before / after, 1),
        "read_per_manifest_s": round(statistics.median(reads["per_manifest"]), 3),
        "read_batched_s": round(statistics.median(reads["batched"]), 3), "queries_per_manifest": args.datasets + 3,
        "queries_batched": 4, "graces_started": sum(1 for g in decided.graces.values() if g is not None),
        "wanted": len(decided.wanted), "catalog_built_s": round(built, 1),
    }
    print(f"catalog of {args.datasets} datasets and {result['claims']} claims built in {built:.1f} s")
    print(f"one min_copies round (read and decide): per manifest {before:.3f} s, batched {after:.3f} s "
          f"({result['speedup']}x; medians of {args.rounds}, measured alternately; both decided the same); "
          f"reading alone {result['read_per_manifest_s']} s and {result['read_batched_s']} s")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
