#!/usr/bin/env python3
"""Baseline for scripts/bench/replicate.py: a plain py-libp2p (trio, no Communs) Noise+Yamux stream
between two hosts in two processes on 127.0.0.1, carrying N bytes in 256 KiB writes.

    raw_stream.py serve            # prints the listen multiaddr, serves until stdin closes
    raw_stream.py fetch ADDR BYTES # prints the seconds taken to read BYTES

With COMMUNS_RAW_TUNED=1 in the environment (both processes), the stream uses everything the node's overlay
adapter changes in py-libp2p (protocol/libp2p/overlay.py: Yamux credit returned in batches, Yamux frames that fit
one Noise message, fewer copies on the read path, TCP read ahead), to see what the transport alone is
worth with them. The benchmark's baseline is py-libp2p as shipped.
"""

from __future__ import annotations

import os
import sys
import time

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import X25519PrivateKey
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX
from libp2p.stream_muxer.yamux.yamux import Yamux

if os.environ.get("COMMUNS_RAW_TUNED"):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    from communs.protocol.libp2p.overlay import apply_patches

    apply_patches()  # the node's py-libp2p settings

PROTO = TProtocol("/bench/raw/1")
WRITE = 256 * 1024


def make_host():  # type: ignore[no-untyped-def]
    kp = create_new_key_pair()
    return new_host(key_pair=kp, sec_opt={NOISE: NoiseTransport(kp, noise_privkey=X25519PrivateKey.new())},
                    muxer_opt={TProtocol(YAMUX): Yamux},
                    connection_config=ConnectionConfig(max_connections_per_peer=1))


async def serve() -> None:
    host = make_host()
    listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
    block = b"\x5a" * WRITE

    async def handler(stream) -> None:  # type: ignore[no-untyped-def]
        want = int((await stream.read(32)).decode())
        sent = 0
        while sent < want:
            n = min(WRITE, want - sent)
            await stream.write(block[:n])
            sent += n
        await stream.close()

    async with host.run(listen_addrs=[listen]):
        host.set_stream_handler(PROTO, handler)
        print(f"{host.get_addrs()[0]}/p2p/{host.get_id().to_base58()}"
              if "/p2p/" not in str(host.get_addrs()[0]) else host.get_addrs()[0], flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)


async def fetch(addr: str, total: int) -> None:
    host = make_host()
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        await host.connect(info)
        stream = await host.new_stream(info.peer_id, [PROTO])
        t0 = time.monotonic()
        await stream.write(str(total).encode().ljust(32))
        got = 0
        while got < total:
            try:
                data = await stream.read(1 << 20)
            except Exception:  # noqa: BLE001 - StreamEOF
                break
            if not data:
                break
            got += len(data)
        print(f"{time.monotonic() - t0:.6f} {got}", flush=True)


def main() -> None:
    if sys.argv[1] == "serve":
        trio.run(serve)
    else:
        trio.run(fetch, sys.argv[2], int(sys.argv[3]))


if __name__ == "__main__":
    main()
