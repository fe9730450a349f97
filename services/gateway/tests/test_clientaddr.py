from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.gateway.clientaddr import Network, client_address, parse_networks

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8"])


def address(peer: str | None, *forwarded_for: str, trusted: tuple[Network, ...] = PROXIES) -> str:
    return client_address(peer, list(forwarded_for), trusted)


# The peer is the client unless it is one of our proxies.


def test_without_a_peer_the_client_is_unknown() -> None:
    assert address(None) == "unknown"
    assert address(None, "1.1.1.1") == "unknown"


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_sends() -> None:
    assert address("10.0.0.1", "1.1.1.1", trusted=()) == "10.0.0.1"
    assert address("203.0.113.7", "1.1.1.1, 2.2.2.2", trusted=()) == "203.0.113.7"


def test_an_untrusted_peer_is_the_client_and_its_forwarded_for_is_ignored() -> None:
    assert address("203.0.113.7", "1.1.1.1") == "203.0.113.7"
    assert address("203.0.113.7", "10.0.0.2") == "203.0.113.7"


def test_a_trusted_peer_without_forwarded_for_is_the_client() -> None:
    assert address("10.0.0.1") == "10.0.0.1"
    assert address("10.0.0.1", "") == "10.0.0.1"
    assert address("10.0.0.1", " , ,") == "10.0.0.1"


# Behind a trusted peer the hops are read from the right.


def test_behind_a_trusted_peer_the_last_hop_is_the_client() -> None:
    assert address("10.0.0.1", "203.0.113.7") == "203.0.113.7"


def test_addresses_the_client_prepended_are_ignored() -> None:
    assert address("10.0.0.1", "1.1.1.1, 2.2.2.2, 203.0.113.7") == "203.0.113.7"


def test_a_chain_of_trusted_proxies_is_skipped() -> None:
    assert address("10.0.0.1", "6.6.6.6, 203.0.113.7, 10.0.0.3, 10.0.0.2") == "203.0.113.7"


def test_every_header_line_counts_in_order() -> None:
    assert address("10.0.0.1", "6.6.6.6", "203.0.113.7, 10.0.0.2") == "203.0.113.7"
    assert address("10.0.0.1", "203.0.113.7", "10.0.0.3", "10.0.0.2") == "203.0.113.7"
    assert address("10.0.0.1", "6.6.6.6, 10.0.0.3", "203.0.113.7", "10.0.0.2") == "203.0.113.7"


def test_when_every_hop_is_trusted_the_leftmost_is_the_client() -> None:
    assert address("10.0.0.1", "10.0.0.5, 10.0.0.6") == "10.0.0.5"
    assert address("10.0.0.1", "10.0.0.5", "10.0.0.6") == "10.0.0.5"


def test_spaces_and_empty_entries_are_ignored() -> None:
    assert address("10.0.0.1", "  203.0.113.7 ,, ", " 10.0.0.2 ") == "203.0.113.7"


def test_an_entry_that_is_no_address_is_never_trusted() -> None:
    # Reading stops at it, as at any untrusted hop: what lies left of it is the client's word.
    assert address("10.0.0.1", "203.0.113.7, not-an-ip") == "not-an-ip"
    assert address("10.0.0.1", "203.0.113.7, 10.0.0.2:4711") == "10.0.0.2:4711"
    assert address("10.0.0.1", "10.0.0.9, unknown, 10.0.0.2") == "unknown"


def test_garbage_the_client_prepended_is_ignored() -> None:
    assert address("10.0.0.1", "<script>, 999.1.1.1, 203.0.113.7") == "203.0.113.7"


def test_ipv6_peers_and_hops() -> None:
    assert address("fd00::1", "2001:db8::1") == "2001:db8::1"
    assert address("fd00::1", "1.1.1.1, 2001:db8::7, fd00::3") == "2001:db8::7"
    assert address("2001:db8::1", "1.1.1.1") == "2001:db8::1"
    assert address("10.0.0.1", "2001:db8::1, 10.0.0.2") == "2001:db8::1"


def test_a_single_trusted_host() -> None:
    trusted = parse_networks(["127.0.0.1"])
    assert address("127.0.0.1", "203.0.113.7", trusted=trusted) == "203.0.113.7"
    assert address("127.0.0.2", "203.0.113.7", trusted=trusted) == "127.0.0.2"


def test_a_peer_that_is_no_address_is_not_trusted() -> None:
    assert address("not-an-ip", "203.0.113.7") == "not-an-ip"


# parse_networks


def test_parse_networks_reads_ranges_and_single_addresses() -> None:
    networks = parse_networks(["10.0.0.0/8", " 127.0.0.1 ", "fd00::/8", "::1"])
    assert networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("fd00::/8"),
        ipaddress.ip_network("::1/128"),
    )


def test_parse_networks_accepts_host_bits() -> None:
    assert parse_networks(["10.1.2.3/8"]) == (ipaddress.ip_network("10.0.0.0/8"),)


def test_parse_networks_of_nothing_is_empty() -> None:
    assert parse_networks([]) == ()


@pytest.mark.parametrize(
    "bad", ["not-an-ip", "10.0.0.0/33", "10.0.0", "300.1.1.1", "", "fd00::/129"]
)
def test_parse_networks_names_the_bad_entry(bad: str) -> None:
    with pytest.raises(ValueError, match="is not an IP address or CIDR range") as caught:
        parse_networks(["10.0.0.0/8", bad, "127.0.0.1"])
    assert repr(bad) in str(caught.value)


# Properties

hop_text = st.one_of(st.ip_addresses().map(str), st.text(max_size=20))
peers = st.one_of(st.ip_addresses().map(str), st.text(max_size=20))


@given(peer=peers, lines=st.lists(st.lists(hop_text, max_size=4).map(", ".join), max_size=4))
def test_without_trusted_proxies_the_peer_is_always_the_client(peer: str, lines: list[str]) -> None:
    assert client_address(peer, lines, ()) == peer


@given(peer=peers, lines=st.lists(st.lists(hop_text, max_size=4).map(", ".join), max_size=4))
def test_the_client_is_the_peer_or_one_of_the_hops(peer: str, lines: list[str]) -> None:
    hops = {hop.strip() for line in lines for hop in line.split(",")}
    assert client_address(peer, lines, PROXIES) in hops | {peer}
