"""The per-peer stream budgets (protocol/streamlimits.py) and gossip guards (protocol/gossipguard.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from communs.protocol.libp2p import gossipguard, streamlimits
from communs.protocol.libp2p.gossipguard import GossipLimits, TokenBucket, UnknownOriginGate
from communs.protocol.libp2p.streamlimits import StreamBudget, StreamLimits


def test_inbound_abuse_never_takes_an_outbound_slot() -> None:
    budget = StreamBudget(StreamLimits(peer_inbound=256, node_inbound=1024, node_outbound=4))
    admitted = sum(budget.open("hostile", True) is None for _ in range(10_500))
    assert admitted == 256
    assert budget.refused == {"peer-inbound": 10_500 - 256}
    for _ in range(4):  # the node's own streams still open, every one of its budget
        assert budget.open("honest", False) is None
    assert budget.open("honest", False) == "node-outbound"
    budget.close("honest", False)
    assert budget.open("honest", False) is None


def test_node_wide_inbound_cap_across_peers_and_release() -> None:
    budget = StreamBudget(StreamLimits(peer_inbound=3, node_inbound=5))
    verdicts = [budget.open(f"p{i // 3}", True) for i in range(7)]
    assert verdicts == [None, None, None, None, None, "node-inbound", "node-inbound"]
    budget.close("p0", True)
    assert budget.inbound() == 4 and budget.inbound("p0") == 2
    assert budget.open("p9", True) is None
    for _ in range(10):  # closing more than was opened never goes negative
        budget.close("p9", True)
    assert budget.inbound("p9") == 0 and budget.inbound() >= 0


def test_one_meshsub_stream_per_peer_the_newest_wins() -> None:
    budget = StreamBudget()
    assert budget.enter("a", "/meshsub/1.1.0", 1).admit
    second = budget.enter("a", "/meshsub/1.2.0", 2)  # every gossipsub version is one budget
    assert second.admit and second.evict == 1
    assert budget.handled("a", "/meshsub/1.0.0") == 1
    assert budget.enter("b", "/meshsub/1.1.0", 3).admit  # another peer has its own
    budget.leave("a", "/meshsub/1.1.0", 1)  # the evicted one's handler ends later: nothing changes
    assert budget.handled("a", "/meshsub/1.1.0") == 1
    budget.leave("a", "/meshsub/1.2.0", 2)
    assert budget.handled("a", "/meshsub/1.1.0") == 0


def test_kad_streams_per_peer_are_refused_beyond_four_and_communs_keeps_its_own_design() -> None:
    budget = StreamBudget()
    verdicts = [budget.enter("a", "/ipfs/kad/1.0.0", i).admit for i in range(12)]
    assert verdicts == [True] * 4 + [False] * 8
    assert budget.refused["kad-per-peer"] == 8
    assert budget.enter("b", "/ipfs/kad/1.0.0", 99).admit
    # Communs' own protocols answer `busy` after 8 themselves: the backstop here is far above that
    assert all(budget.enter("a", "/communs/chunks/1", 100 + i).admit for i in range(64))
    assert not budget.enter("a", "/communs/chunks/1", 200).admit


def test_idle_timeouts_per_protocol() -> None:
    limits = StreamLimits()
    assert limits.idle_limit(streamlimits.protocol_class("/ipfs/kad/1.0.0")) == 10.0
    assert limits.idle_limit(streamlimits.protocol_class("/meshsub/1.1.0")) is None
    assert limits.idle_limit(streamlimits.protocol_class("/communs/manifest/1")) is None
    assert not streamlimits.idle_expired(100.0, 109.9, 10.0)
    assert streamlimits.idle_expired(100.0, 110.0, 10.0)
    assert not streamlimits.idle_expired(0.0, 1e9, None)


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]  # never above the burst


def test_unknown_origins_are_rate_limited_per_forwarder_and_known_ones_never() -> None:
    gate = UnknownOriginGate(GossipLimits(unknown_rate=1.0, unknown_burst=5, unknown_node_rate=100.0,
                                          unknown_node_burst=8))
    junk = [gate.allow(i.to_bytes(4, "big"), "hostile", 0.0) for i in range(300)]  # a throwaway key each
    assert sum(junk) == 5 and gate.dropped == 295
    # another forwarder's strangers have their own bucket, within the node's
    assert sum(gate.allow(i.to_bytes(4, "big"), "honest", 0.0) for i in range(10)) == 3
    gate.learn(b"known")
    assert all(gate.allow(b"known", "hostile", 0.0) for _ in range(1000))
    assert gate.allow(b"stranger", "hostile", 1.0)  # refilled after a second, and the node's bucket too


def test_known_origins_are_bounded() -> None:
    gate = UnknownOriginGate(GossipLimits(known_origins_kept=3))
    for i in range(5):
        gate.learn(bytes([i]))
    assert not gate.is_known(b"\x00") and gate.is_known(b"\x04")


def test_loopback_is_exempt_from_ip_colocation_by_default() -> None:
    exempt = GossipLimits().colocation_exempt
    assert not gossipguard.colocation_counted("127.0.0.1", exempt)
    assert not gossipguard.colocation_counted("127.3.2.1", exempt)
    assert not gossipguard.colocation_counted("::1", exempt)
    assert gossipguard.colocation_counted("192.0.2.7", exempt)
    assert gossipguard.colocation_counted("127.0.0.1", ())  # configurable: nothing exempt
    assert not gossipguard.colocation_counted("not an ip", exempt)


def test_messages_per_rpc_cap() -> None:
    limits = GossipLimits(max_messages_per_rpc=512)
    assert gossipguard.messages_to_read(512, limits) == (512, 0.0)
    assert gossipguard.messages_to_read(3000, limits) == (512, gossipguard.TOO_MANY_MESSAGES_PENALTY)


def test_colocation_keys_in_config_toml(tmp_path: Path) -> None:
    from communs.node.config import CONFIG_FILE, Config, ConfigError, load_config

    base = Config().to_toml()
    (tmp_path / CONFIG_FILE).write_text(base + '\n[gossip]\nip_colocation_threshold = 3\n'
                                        'ip_colocation_exempt = ["10.1.0.0/16"]\n')
    cfg = load_config(tmp_path)
    assert cfg.ip_colocation_threshold == 3 and cfg.ip_colocation_exempt == ["10.1.0.0/16"]
    assert Config().ip_colocation_exempt == ["127.0.0.0/8", "::1/128"]  # loopback exempt unless changed
    for bad, says in (("ip_colocation_threshold = 0", "at least 1"),
                      ('ip_colocation_exempt = ["localhost"]', "is not an IP network")):
        (tmp_path / CONFIG_FILE).write_text(base + f"\n[gossip]\n{bad}\n")
        with pytest.raises(ConfigError, match=says):
            load_config(tmp_path)
