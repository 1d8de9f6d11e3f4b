"""Discovery's pure decisions: how many peers to dial, which, at which addresses, and the backoff after a
peer could not be reached."""

from __future__ import annotations

from communs.node.exchange import dialplan
from communs.node.exchange.dialplan import after_failure, dial_addrs, dial_candidates, dials_wanted
from communs.protocol.net import PeerInfo


def test_dials_wanted_stops_at_the_target_and_dials_a_few_per_round() -> None:
    assert dials_wanted(0) == dialplan.DIALS_PER_ROUND
    assert dials_wanted(dialplan.TARGET_PEERS - 1) == 1
    assert dials_wanted(dialplan.TARGET_PEERS) == 0
    assert dials_wanted(dialplan.TARGET_PEERS + 5) == 0


def test_candidates_leave_out_connected_peers_this_node_and_peers_backing_off() -> None:
    known = [PeerInfo(p, []) for p in ("a", "b", "me", "c", "d")]
    backoff = {"c": (150.0, 60.0), "d": (100.0, 60.0)}
    found = dial_candidates(known, {"a"}, "me", backoff, now=100.0)
    assert [p.peer_id for p in found] == ["b", "d"]


def test_dial_addrs_are_tcp_addresses_with_the_peer_id_and_no_wildcard() -> None:
    info = PeerInfo("P", ["/ip4/10.0.0.1/tcp/4001", "/ip4/0.0.0.0/tcp/4001", "/ip4/10.0.0.1/udp/4001/quic",
                          "/ip4/10.0.0.2/tcp/4002/p2p/P"])
    assert dial_addrs(info) == ["/ip4/10.0.0.1/tcp/4001/p2p/P", "/ip4/10.0.0.2/tcp/4002/p2p/P"]


def test_backoff_doubles_from_the_minimum_up_to_the_maximum() -> None:
    first = after_failure(None, 1000.0, 1.0)
    assert first == (1000.0 + dialplan.DIAL_BACKOFF_MIN, dialplan.DIAL_BACKOFF_MIN)
    second = after_failure(first, 2000.0, 1.2)
    assert second == (2000.0 + 2 * dialplan.DIAL_BACKOFF_MIN * 1.2, 2 * dialplan.DIAL_BACKOFF_MIN)
    state = second
    for _ in range(20):
        state = after_failure(state, 0.0, 1.0)
    assert state == (dialplan.DIAL_BACKOFF_MAX, dialplan.DIAL_BACKOFF_MAX)
