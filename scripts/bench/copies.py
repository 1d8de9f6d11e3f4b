#!/usr/bin/env python3
"""Copies benchmark (issue 15): what holding claims cost on the wire, and what answering a challenge costs.

Bytes: measured on real records (a claim signed now, a gossip message of 64 claims, a claims-sync page),
then *calculated* for a federation of `--nodes` nodes each holding `--held` of `--datasets` datasets, as
issue 15 allows: gossipsub sends each message to about `--degree` mesh peers (D = 6 by default) and
receives each about as often, so each node's gossip traffic per hour is (messages published in the
federation per hour) x D, both ways; claims sync adds, per node and peer pair every `claims_sync_s`,
the claims stored since the last ask (here: the refreshes of that interval), plus a request and an
empty answer's framing. Claims are refreshed every half TTL (12 h by default). No network is run here:
scripts/bench/claims_traffic.py checks `model` against real nodes' counters and wire bytes.

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
ENVELOPE = 150  # libp2p's envelope of one gossip message (from, seqno, signature, key, topic), estimated


def record_sizes(ttl: int) -> tuple[int, int]:
    """(bytes of one claim, bytes of a gossip message of BATCH claims), measured on claims signed now."""
    key = keys.SigningKey.generate()
    now = int(time.time())
    claims = [HoldingClaim.create(key, manifest=digest(i.to_bytes(4, "big")), since=now, issued_ms=now * 1000 + i,
                                  ttl=ttl) for i in range(BATCH)]
    return len(claims[0].encode()), len(encoding.encode([c.encode() for c in claims]))


def model(*, nodes: int, held: int, ttl: float, sync: float, degree: float, peers: float, claim_bytes: int,
          message_bytes: int, refreshes_per_hour: float | None = None) -> dict[str, float]:
    """Claims bytes per node per hour (module docstring), by part. `refreshes_per_hour`: the claims signed
    in the federation per hour, if known (else every node re-signs each held claim every ttl/2 s).
    "payload" parts are what `communs_claims_bytes_total` counts on one node; "wire" adds gossipsub's
    relaying (each message sent to and received from about D mesh peers) and the envelope."""
    refreshes = nodes * held * 3600 / (ttl / 2) if refreshes_per_hour is None else refreshes_per_hour
    per_claim = message_bytes / BATCH  # payload of a full gossip message, per claim
    syncs_per_hour = peers * 3600 / sync
    claims_per_sync = refreshes / (3600 / sync)  # every claim of the federation, once per interval and peer
    return {
        "refreshes_per_hour": refreshes,
        "gossip_payload_in": refreshes * (nodes - 1) / nodes * per_claim,  # one copy of each other's message
        "gossip_payload_out": refreshes / nodes * per_claim,  # this node's own messages
        "gossip_wire": refreshes * (per_claim + ENVELOPE / BATCH) * degree,  # each way
        "sync": syncs_per_hour * (claims_per_sync * (claim_bytes + 3) + 40),  # answers received (~ sent)
    }


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
    claim_bytes, message_bytes = record_sizes(args.ttl)
    m = model(nodes=args.nodes, held=args.held, ttl=args.ttl, sync=args.sync, degree=args.degree, peers=args.peers,
              claim_bytes=claim_bytes, message_bytes=message_bytes)
    refreshes_per_hour = m["refreshes_per_hour"]

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
        "claim_bytes": claim_bytes, "gossip_message_bytes_64_claims": message_bytes,
        "claims_refreshed_per_hour_federation": round(refreshes_per_hour),
        "gossip_mb_per_node_hour": round(m["gossip_wire"] / 1e6, 2),
        "gossip_payload_in_mb_per_node_hour": round(m["gossip_payload_in"] / 1e6, 2),
        "sync_mb_per_node_hour": round(m["sync"] / 1e6, 2),
        "verify_claim_us": round(verify_us, 1),
        "validator_cpu_s_per_node_hour": round(refreshes_per_hour * verify_us / 1e6, 1),
        "answer_challenge_ms": round(answer_ms, 2), "answer_challenge_cpu_ms": round(answer_cpu_ms, 2),
        "read_only_cpu_ms": round(read_cpu_ms, 2),
        "answer_vs_read_ratio": round(answer_cpu_ms / read_cpu_ms, 2) if read_cpu_ms else None,
        "max_answer_cpu_s_per_peer_minute": round(30 * answer_cpu_ms / 1e3, 2),
        "note": "bytes calculated from measured record sizes; scripts/bench/claims_traffic.py checks the model "
                "on a real federation",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
