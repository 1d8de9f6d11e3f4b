"""The accounting behind the inbound connection limits, the Yamux window check and the log budget
(protocol/connlimits.py), without a network."""

from __future__ import annotations

import pytest
from communs.protocol.libp2p.connlimits import (
    ConnLimits,
    InboundSlots,
    LogBudget,
    address_key,
    is_exempt,
    reachability_problem,
    window_exceeded,
)


def test_slots_come_back_when_connections_close() -> None:
    """Issue 12 item 2: 300 connections over a node's lifetime must not use up 300 slots."""
    slots = InboundSlots(ConnLimits(max_inbound=3))
    for _ in range(1000):
        assert slots.admit("127.0.0.1") is None
        slots.release("127.0.0.1")
    assert slots.in_use == 0
    assert [slots.admit("127.0.0.1") for _ in range(3)] == [None, None, None]
    assert slots.admit("127.0.0.1") == "all 3 inbound connection slots are in use"
    slots.release("127.0.0.1")
    assert slots.admit("10.0.0.1") is None
    assert slots.refused == 1


def test_per_address_limit_with_loopback_exempt_by_default() -> None:
    slots = InboundSlots(ConnLimits(per_ip=2))
    assert slots.admit("203.0.113.5") is None and slots.admit("203.0.113.5") is None
    assert slots.admit("203.0.113.5") == "203.0.113.5 already holds 2 inbound connections (the limit per address)"
    assert slots.admit("203.0.113.6") is None  # another address has its own count
    for _ in range(20):
        assert slots.admit("127.0.0.1") is None  # loopback: several nodes on one machine
    slots.release("203.0.113.5")
    assert slots.admit("203.0.113.5") is None
    assert slots.held_by("203.0.113.5") == 2 and slots.in_use == 23


def test_loopback_can_be_limited_too() -> None:
    slots = InboundSlots(ConnLimits(per_ip=1, exempt=()))
    assert slots.admit("127.0.0.1") is None
    assert slots.admit("127.0.0.1") is not None


def test_ipv6_is_counted_per_slash_56_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("2001:db8:0:1::1") == address_key("2001:db8:0:ff::2") == "2001:db8::/56"
    assert address_key("2001:db8:0:100::1") != address_key("2001:db8::1")
    assert address_key("::ffff:198.51.100.7") == "198.51.100.7"
    assert address_key("not an address") == "not an address"
    assert is_exempt("::1", ["::1/128"]) and is_exempt("::ffff:127.0.0.1", ["127.0.0.0/8"])
    assert not is_exempt("198.51.100.7", ["127.0.0.0/8"]) and not is_exempt("unknown", ["127.0.0.0/8"])


def test_release_of_a_slot_never_admitted_is_an_error() -> None:
    slots = InboundSlots()
    with pytest.raises(ValueError, match="never admitted"):
        slots.release("127.0.0.1")


@pytest.mark.parametrize("kwargs", [{"max_inbound": 0}, {"per_ip": 0}, {"handshake_s": 0}, {"exempt": ("x",)}])
def test_limits_refuse_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ConnLimits(**kwargs)  # type: ignore[arg-type]


def test_reachability() -> None:
    assert reachability_problem(True, 299, 300) is None
    assert reachability_problem(True, 300, 300) == \
        "all 300 inbound connection slots are in use: no new peer can connect"
    assert reachability_problem(False, 0, 300) == "the node is not listening for peers"


def test_window_check() -> None:
    assert not window_exceeded(65_507, 65_507)
    assert window_exceeded(65_508, 65_507)
    assert window_exceeded(1, 0) and window_exceeded(1, -5)
    assert not window_exceeded(0, 0)


def test_log_budget_lets_a_burst_through_then_counts() -> None:
    budget = LogBudget(burst=3, period=10.0)
    got = [budget.allow("yamux", 100.0 + i * 0.01) for i in range(10)]
    assert got[:3] == [(True, 0)] * 3 and got[3:] == [(False, 0)] * 7
    assert budget.allow("swarm", 100.5) == (True, 0)  # keys are independent
    assert budget.allow("yamux", 110.0) == (True, 7)  # the next period tells what was dropped
    assert budget.allow("yamux", 110.1) == (True, 0)
