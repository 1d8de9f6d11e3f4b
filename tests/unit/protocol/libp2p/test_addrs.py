"""addrs.advertised: what a node tells peers it can be dialled on (never a wildcard address)."""

from __future__ import annotations

from communs.protocol.libp2p.addrs import advertised
from hypothesis import given
from hypothesis import strategies as st

IFACES = ["10.88.0.5", "127.0.0.1", "fd00::2", "::1", "fe80::1%eth0"]


def test_a_wildcard_becomes_each_interface_address_of_its_family_loopback_last() -> None:
    assert advertised(["/ip4/0.0.0.0/tcp/7470"], IFACES) == ["/ip4/10.88.0.5/tcp/7470", "/ip4/127.0.0.1/tcp/7470"]
    assert advertised(["/ip6/::/tcp/7470/p2p/12D3KooWx"], IFACES) == [
        "/ip6/fd00::2/tcp/7470/p2p/12D3KooWx", "/ip6/::1/tcp/7470/p2p/12D3KooWx"]  # link-local left out


def test_concrete_and_observed_addresses_are_kept_once_in_order() -> None:
    got = advertised(["/ip4/127.0.0.1/tcp/1", "/ip4/0.0.0.0/tcp/2", "/ip4/203.0.113.9/tcp/2",
                      "/ip4/10.88.0.5/tcp/2", "/dns4/node1/tcp/3"], IFACES)
    assert got == ["/ip4/10.88.0.5/tcp/2", "/ip4/203.0.113.9/tcp/2", "/dns4/node1/tcp/3",
                   "/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"]


def test_without_interface_addresses_a_wildcard_is_dropped_not_advertised() -> None:
    assert advertised(["/ip4/0.0.0.0/tcp/7470", "/ip6/::/tcp/7470"], []) == []
    assert advertised(["/ip4/0.0.0.0/tcp/7470"], ["garbage", "0.0.0.0"]) == []


@given(st.lists(st.sampled_from(["/ip4/0.0.0.0/tcp/1", "/ip6/::/tcp/1", "/ip4/1.2.3.4/tcp/1",
                                 "/ip4/127.0.0.1/tcp/9", "/ip6/::1/tcp/1", "/dns4/x/tcp/1"])),
       st.lists(st.sampled_from([*IFACES, "0.0.0.0", "::", "x"])))
def test_never_an_unspecified_address_and_never_twice(addrs: list[str], ifaces: list[str]) -> None:
    out = advertised(addrs, ifaces)
    assert len(out) == len(set(out))
    assert not any(a.startswith(("/ip4/0.0.0.0/", "/ip6/::/")) for a in out)
