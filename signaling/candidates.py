"""Which remote ICE candidates the gateway's WebRTC stack may send connectivity checks to.

A remote candidate is the client telling the gateway "send STUN to this address and port".
A hostile client can name any address: the cloud's metadata service (169.254.169.254), services
on the gateway's own loopback, the private network around it; a hundred trickled candidates
are a blind sweep of a hundred ports, each probe carrying the client's ICE username. So the
signaling screens every remote candidate, in the offer's SDP and trickled, before the WebRTC
stack sees it: addresses of the classes in ``DENIED_NETWORKS`` are refused unless the
deployment allows them (``allow``, e.g. ``127.0.0.0/8`` for a gateway on loopback), hostnames
are refused (an mDNS ``.local`` name, or any name, cannot be classed before it is resolved),
and one offer accepts at most ``max_candidates``.

A browser that can reach the gateway still connects when some of its candidates are refused:
its own checks towards the gateway's candidates arrive from its real address, which the
gateway's ICE agent learns as a peer-reflexive candidate and answers.

Pure functions of text, like the rest of ``signaling``: no sockets, no DNS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from signaling.sdp import attribute, check_candidate_line, sdp_lines

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: How many remote candidates one offer may bring, in its SDP and trickled together.
DEFAULT_MAX_REMOTE_CANDIDATES = 32

#: The address classes refused by default, with the name a refusal gives; first match names.
DENIED_NETWORKS: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), name)
    for cidr, name in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata services live here)"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("100.64.0.0/10", "shared address space (RFC 6598)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved or broadcast"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("fc00::/7", "unique local (ULA)"),
        ("ff00::/8", "multicast"),
    )
)
#: NAT64's well-known prefix (RFC 6052): the last 32 bits are the IPv4 address reached.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Networks from CIDR text (``10.0.0.0/8``, ``::1``; a bare address is one host); a
    ``ValueError`` names the entry that is not one."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{cidr!r} is not an IP network (CIDR)") from None
    return tuple(networks)


def _destinations(address: Address) -> tuple[Address, ...]:
    """The address, and the IPv4 address it reaches when it embeds one (IPv4-mapped, NAT64,
    6to4): ``::ffff:169.254.169.254`` is the metadata service too."""
    if not isinstance(address, ipaddress.IPv6Address):
        return (address,)
    if address.ipv4_mapped is not None:
        return address, address.ipv4_mapped
    if address in _NAT64:
        return address, ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address, address.sixtofour
    return (address,)


@dataclass(frozen=True)
class ScreenedOffer:
    """An offer's SDP with the refused ``a=candidate`` lines taken out."""

    sdp: str
    #: candidates left in the SDP (they count towards the offer's limit)
    kept: int
    #: candidate lines taken out (refused addresses, hostnames, beyond the limit)
    dropped: int


class CandidatePolicy:
    """The deployment's rule for remote candidates: ``allow`` lists the networks exempt from
    ``DENIED_NETWORKS``; ``max_candidates`` bounds the candidates one offer may bring."""

    def __init__(
        self, allow: Iterable[str] = (), *, max_candidates: int = DEFAULT_MAX_REMOTE_CANDIDATES
    ) -> None:
        if max_candidates < 0:
            raise ValueError("max_candidates must not be negative")
        self.allow = parse_networks(allow)
        self.max_candidates = max_candidates

    def __repr__(self) -> str:
        allowed = ", ".join(str(n) for n in self.allow)
        return f"CandidatePolicy(allow=[{allowed}], max_candidates={self.max_candidates})"

    def refusal(self, address: str) -> str | None:
        """Why the gateway must not send checks to ``address`` (a candidate's connection
        address), or None when it may."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return f"{address[:80]!r} is a hostname, not an IP address (mDNS names included)"
        for destination in _destinations(ip):
            if any(destination in network for network in self.allow):
                continue
            denied = next((name for net, name in DENIED_NETWORKS if destination in net), None)
            if denied is not None:
                return f"{address} is a {denied} address"
        return None

    def refusal_of(self, candidate: str) -> str | None:
        """``refusal`` for a candidate line whose grammar ``sdp.check_candidate_line``
        accepts (it raises ``bad_candidate`` for one it does not)."""
        return self.refusal(check_candidate_line(candidate))

    def screen_offer(self, sdp: str) -> ScreenedOffer:
        """Take out the candidate lines this policy refuses, and those beyond the limit.

        ``sdp`` must have passed ``sdp.parse_offer``. When nothing is taken out the SDP is
        passed on as it came; otherwise its lines are joined again with CRLF.
        """
        lines = sdp_lines(sdp)
        kept: list[str] = []
        candidates = dropped = 0
        for line in lines:
            name, value = attribute(line) if line.startswith("a=") else ("", None)
            if name == "candidate" and value is not None:
                if candidates >= self.max_candidates or self.refusal_of(value) is not None:
                    dropped += 1
                    continue
                candidates += 1
            kept.append(line)
        if not dropped:
            return ScreenedOffer(sdp, candidates, 0)
        return ScreenedOffer("\r\n".join(kept) + "\r\n", candidates, dropped)
