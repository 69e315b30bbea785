"""Where the gateway's ICE agents get their host-candidate sockets, and what address they
advertise: the UDP mux (``GATEWAY_ICE_UDP_PORT``), a port range (``GATEWAY_ICE_UDP_PORTS``)
or any free port, each with the 1:1 NAT mapping of ``GATEWAY_ICE_PUBLIC_ADDRESSES``.

aioice knows none of this; ``gateway.media.ice`` asks a ``HostSockets`` for each host candidate
of the legs that gather inside ``ice.host_addresses(..., sockets=...)``. Peers that are not the
gateway's (the simulated candidate and upstream in tests) keep aioice's own sockets.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.media.udp_mux import UdpMux
from gateway.upstream.call import CallUnavailable

Address = tuple[str, int]


class IcePortsExhausted(CallUnavailable, OSError):
    """Every port of ``GATEWAY_ICE_UDP_PORTS`` is taken: the relay cannot open another leg.

    A ``CallUnavailable`` (auto mode then proxies the interview, relay mode ends it as
    ``relay_unavailable``) and an ``OSError``, as a failed bind is.
    """

    def __init__(self, address: str, ports: range) -> None:
        super().__init__(
            f"every UDP port of GATEWAY_ICE_UDP_PORTS ({ports.start}-{ports.stop - 1}) is in"
            f" use on {address}",
            reason="relay_unavailable",
        )


@dataclass(frozen=True)
class PublicAddresses:
    """1:1 NAT (as Pion's ``NAT1To1IPs``): the address to advertise for a bound one.

    ``by_private`` maps a private address to its public one; ``default`` holds the public
    address for every other bound address of its IP version (the usual single-IP case).
    """

    by_private: tuple[tuple[str, str], ...] = ()
    default: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Sequence[str]) -> PublicAddresses:
        """``PUBLIC`` or ``PUBLIC/PRIVATE`` entries; ``ValueError`` names the bad one."""
        pairs: list[tuple[str, str]] = []
        default: list[str] = []
        for entry in entries:
            public, _, private = entry.partition("/")
            public_ip = ipaddress.ip_address(public.strip())
            if private:
                private_ip = ipaddress.ip_address(private.strip())
                if private_ip.version != public_ip.version:
                    raise ValueError(f"{entry!r} maps between IPv4 and IPv6")
                pairs.append((str(private_ip), str(public_ip)))
            elif any(ipaddress.ip_address(d).version == public_ip.version for d in default):
                raise ValueError(
                    f"{entry!r} is a second IPv{public_ip.version} address without a private one"
                )
            else:
                default.append(str(public_ip))
        return cls(tuple(pairs), tuple(default))

    def advertised(self, bound: str) -> str:
        for private, public in self.by_private:
            if private == bound:
                return public
        version = ipaddress.ip_address(bound).version
        return next((d for d in self.default if ipaddress.ip_address(d).version == version), bound)

    def __bool__(self) -> bool:
        return bool(self.by_private or self.default)


class PortRange:
    """Binds each host candidate on a free port of ``ports``, trying them in turn."""

    def __init__(self, ports: range) -> None:
        self.ports = ports
        self._next = itertools.cycle(ports)

    async def bind(self, protocol: asyncio.DatagramProtocol, address: str) -> Address:
        loop = asyncio.get_running_loop()
        for _ in self.ports:
            port = next(self._next)
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: protocol, local_addr=(address, port)
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            name = transport.get_extra_info("sockname")
            return (name[0], name[1])
        raise IcePortsExhausted(address, self.ports)


@dataclass(frozen=True)
class HostSockets:
    """One gateway's choice of host sockets: the mux, else a port range, else any port."""

    mux: UdpMux | None = None
    ports: PortRange | None = None
    public: PublicAddresses = PublicAddresses()

    async def attach(
        self, protocol: asyncio.DatagramProtocol, address: str, ufrag: str, password: str
    ) -> Address | None:
        """Connect ``protocol`` (one host candidate of the agent ``ufrag``) to a socket that
        receives on ``address``; the address and port to advertise, or None when none here
        does (the mux is bound elsewhere). A bind's ``OSError`` propagates, and an exhausted
        range raises ``IcePortsExhausted``."""
        if self.mux is not None:
            if self.mux.attach(protocol, address, ufrag, password) is None:
                return None
            port = self.mux.port
        elif self.ports is not None:
            _, port = await self.ports.bind(protocol, address)
        else:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(
                lambda: protocol, local_addr=(address, 0)
            )
            port = transport.get_extra_info("sockname")[1]
        return (self.public.advertised(address), port)

    def candidate_addresses(self, gathered: Sequence[str]) -> list[str]:
        """The local addresses to give host candidates, from those ICE would gather on."""
        return list(gathered) if self.mux is None else self.mux.receiving(gathered)


async def open_host_sockets(
    *,
    udp_port: int = 0,
    bind_addresses: Sequence[str] = (),
    gather_addresses: Sequence[str] = (),
    ports: tuple[int, int] | None = None,
    public: Sequence[str] = (),
) -> HostSockets | None:
    """The gateway's host sockets for its settings (``GATEWAY_ICE_UDP_PORT`` and friends), the
    mux bound already; None when nothing is configured (aioice's own sockets then)."""
    mapping = PublicAddresses.parse(public)
    if (udp_port or ports is not None or mapping) and not _hook_installed():
        raise RuntimeError(
            "GATEWAY_ICE_UDP_PORT, GATEWAY_ICE_UDP_PORTS and GATEWAY_ICE_PUBLIC_ADDRESSES need"
            " gateway.media.install() with a supported aioice (gateway.media.ice.AIOICE_SUPPORTED)"
        )
    if udp_port:
        mux = UdpMux(udp_port, bind_addresses or gather_addresses or ("0.0.0.0",))
        await mux.start()
        return HostSockets(mux=mux, public=mapping)
    if ports is not None:
        return HostSockets(ports=PortRange(range(ports[0], ports[1] + 1)), public=mapping)
    return HostSockets(public=mapping) if mapping else None


def _hook_installed() -> bool:
    from gateway.media import ice  # ice builds on this module

    return ice.sockets_installed()
