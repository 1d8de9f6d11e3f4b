"""py-libp2p's auto-connector stays off in the overlay (protocol/overlay.py, `_no_auto_connect`).

With the overlay's watermarks (0 and 200) py-libp2p 0.8.1 aims at 100 connections: it dialled every
peer in the peerstore and started a DHT refresh each time, and at 30 nodes on one machine every node
was connected to every other. Two real hosts on 127.0.0.1: with the connector as py-libp2p ships it, one
auto-connect cycle dials the known peer (what the fix must prevent); with `_no_auto_connect` it does not.
"""

from __future__ import annotations

import multiaddr
import trio
from communs.protocol.libp2p import overlay
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.network.config import ConnectionConfig

LISTEN = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]


def _host() -> object:
    config = ConnectionConfig(max_connections_per_peer=1, min_connections=0, low_watermark=0,
                              high_watermark=200, max_connections=300)
    return new_host(key_pair=create_new_key_pair(), listen_addrs=LISTEN, connection_config=config)


def _dials_after_one_cycle(switched_off: bool) -> bool:
    async def main() -> bool:
        a, b = _host(), _host()
        if switched_off:
            overlay._no_auto_connect(a)
        async with a.run(listen_addrs=LISTEN), b.run(listen_addrs=LISTEN):  # type: ignore[attr-defined]
            a.get_peerstore().add_addrs(b.get_id(), b.get_addrs(), 3600)  # type: ignore[attr-defined]
            await a.get_network().auto_connector.maybe_connect()  # type: ignore[attr-defined]
            for _ in range(100):  # up to 5 s for the dial to finish
                if b.get_id() in a.get_connected_peers():  # type: ignore[attr-defined]
                    break
                await trio.sleep(0.05)
            return b.get_id() in a.get_connected_peers()  # type: ignore[attr-defined]

    return trio.run(main)


def test_py_libp2p_s_connector_dials_every_known_peer() -> None:
    assert _dials_after_one_cycle(switched_off=False)


def test_the_overlay_switches_it_off() -> None:
    assert not _dials_after_one_cycle(switched_off=True)
