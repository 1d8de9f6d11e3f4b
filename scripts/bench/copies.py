#!/usr/bin/env python3
"""Copies benchmark (issue 15): what holding claims cost on the wire, and what answering a challenge costs.

Bytes: measured on real records (a claim signed now, a gossip message of 64 claims, a claims-sync page),
then *calculated* for a federation of `--nodes` nodes each holding `--held` of `--datasets` datasets, as
issue 15 allows: gossipsub sends each message to about `--degree` mesh peers (D = 6 by default) and
receives each about as often, so each node's gossip traffic per hour is (messages published in the
federation per hour) x D, both ways; claims sync adds, per node and peer pair every `claims_sync_s`,
the claims stored since the last ask (here: the refreshes of that interval), plus a request and an
empty answer's framing. Claims are refreshed every half TTL (12 h by default). No network is run.

CPU: real work measured in this process: verifying claims as the gossip validator does (decode, checks,
Ed25519), and answering challenges as the holder does (read 3 chunks of 1 MiB from a real chunk store
on disk, keyed BLAKE3) against a baseline of reading the same chunks without hashing.

    .venv/bin/python scripts/bench/copies.py [--nodes 50] [--datasets 10000] [--held 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from communs.protocol import encoding, holding, keys
from communs.protocol.holding import HoldingClaim
from communs.protocol.ids import digest
from communs.storage.chunkstore import FsChunkStore

BATCH = 64


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--datasets", type=int, default=10_000)
    ap.add_argument("--held", type=int, default=10_000, help="datasets each node holds")
    ap.add_argument("--ttl", type=int, default=86400)
    ap.add_argument("--sync", type=float, default=300.0, help="claims_sync_s")
    ap.add_argument("--degree", type=int, default=6, help="gossipsub mesh degree D")
    ap.add_argument("--peers", type=int, default=8, help="connected peers per node (TARGET_PEERS)")
    ap.add_argument("--challenges", type=int, default=300)
    args = ap.parse_args()

    key = keys.SigningKey.generate()
    now = int(time.time())
    claims = [HoldingClaim.create(key, manifest=digest(i.to_bytes(4, "big")), since=now, issued_ms=now * 1000 + i,
                                  ttl=args.ttl) for i in range(BATCH)]
    claim_bytes = len(claims[0].encode())
    message = encoding.encode([c.encode() for c in claims])
    per_claim_gossip = len(message) / BATCH + 150 / BATCH  # + libp2p message envelope (from, seqno, sig, topic)

    # gossip: every node re-signs each held claim every ttl/2 seconds
    refreshes_per_hour = args.nodes * args.held * 3600 / (args.ttl / 2)
    gossip_out = refreshes_per_hour * per_claim_gossip * args.degree  # each node forwards each message to D peers
    gossip_node_hour = gossip_out  # and receives about as much: quoted one way, per node
    # sync: each peer pair every `sync` s; the claims stored since the last ask, pushed once per pair on average
    syncs_per_hour = args.peers * 3600 / args.sync
    claims_per_sync = refreshes_per_hour / (3600 / args.sync)  # every claim of the federation, once per interval
    sync_node_hour = syncs_per_hour * (claims_per_sync * (claim_bytes + 3) + 40)

    # CPU: verify as the validator does
    raws = [c.encode() for c in claims] * 8
    t0 = time.process_time()
    for raw in raws:
        holding.check_claim(HoldingClaim.decode(raw), now)
    verify_us = (time.process_time() - t0) / len(raws) * 1e6

    with tempfile.TemporaryDirectory() as tmp:
        store = FsChunkStore(tmp)
        digests = []
        for _ in range(16):
            data = os.urandom(1 << 20)
            d = digest(data)
            store.put(d, data)
            digests.append(d)
        picks = [[digests[(i * 7 + j) % 16] for j in range(3)] for i in range(args.challenges)]
        t0 = time.perf_counter()
        c0 = time.process_time()
        for p in picks:
            holding.proof(os.urandom(32), [store.get(d) for d in p])
        answer_ms = (time.perf_counter() - t0) / args.challenges * 1e3
        answer_cpu_ms = (time.process_time() - c0) / args.challenges * 1e3
        c0 = time.process_time()
        for p in picks:
            for d in p:
                store.get(d, verify=False)
        read_cpu_ms = (time.process_time() - c0) / args.challenges * 1e3
        store.close()

    out = {
        "claim_bytes": claim_bytes, "gossip_message_bytes_64_claims": len(message),
        "claims_refreshed_per_hour_federation": round(refreshes_per_hour),
        "gossip_mb_per_node_hour": round(gossip_node_hour / 1e6, 2),
        "sync_mb_per_node_hour": round(sync_node_hour / 1e6, 2),
        "verify_claim_us": round(verify_us, 1),
        "validator_cpu_s_per_node_hour": round(refreshes_per_hour * verify_us / 1e6, 1),
        "answer_challenge_ms": round(answer_ms, 2), "answer_challenge_cpu_ms": round(answer_cpu_ms, 2),
        "read_only_cpu_ms": round(read_cpu_ms, 2),
        "answer_vs_read_ratio": round(answer_cpu_ms / read_cpu_ms, 2) if read_cpu_ms else None,
        "max_answer_cpu_s_per_peer_minute": round(30 * answer_cpu_ms / 1e3, 2),
        "note": "bytes calculated from measured record sizes, not run on a network",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
