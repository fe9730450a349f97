"""Who the client is, by address: ``X-Forwarded-For`` is believed only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "127.0.0.1"]`` → networks; raises ValueError naming a bad entry."""
    networks: list[Network] = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{cidr!r} is not an IP address or CIDR range") from exc
    return tuple(networks)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str:
    """The address to treat as the client's.

    The peer of the TCP connection, unless the peer is a trusted proxy: then the
    ``X-Forwarded-For`` hops (every header line, in order) are read from the right, skipping
    trusted proxies, and the first address not trusted is the client. A client can prepend any
    address it likes, so only hops added by our own proxies count. Returns ``"unknown"`` when
    the server saw no peer at all.
    """
    if peer is None:
        return "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for line in forwarded_for for hop in line.split(",") if hop.strip()]
    client = peer
    for hop in reversed(hops):
        client = hop
        if not _trusted(hop, trusted):
            break
    return client
