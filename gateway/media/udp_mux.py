"""One UDP socket per bound address for every ICE agent of the process (``GATEWAY_ICE_UDP_PORT``).

On Fly, UDP reaches a Machine only on a socket bound to ``fly-global-services``, on the same
port inside and out; behind a firewall or a Kubernetes Service, one known port is what can be
opened. aioice binds a random port per ICE agent, so ``UdpMux`` binds one socket per address
and hands each agent a ``MuxTransport`` on it instead (``gateway.media.host_sockets``).

Which agent a datagram belongs to (``Demux``, sans-I/O):

- a STUN binding request names it: ``USERNAME`` is ``local ufrag:remote ufrag`` (RFC 8445
  7.2.2), and only the agent with that local ufrag and whose password verifies the request's
  ``MESSAGE-INTEGRITY`` gets it. That request also teaches the demux the sender's address.
  Unknown ufrags and unverifiable requests are dropped and counted, never allocated;
- a STUN response goes to the agent that sent the request with its transaction id;
- everything else (DTLS, SRTP/SRTCP, SCTP inside DTLS, indications) goes by remote address to
  the agent most recently verified from it (RFC 7983's first byte tells STUN from the rest).

Every map is bounded: agents per remote address (``max_per_address``), addresses per agent
(``max_addresses``) and pending transactions per agent (``max_transactions``), the oldest
entry giving way; an agent's entries all go when its transport closes (the ICE connection
closed). A flood of STUN with random ufrags or of datagrams from one address costs a dict
lookup each and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import platform
import socket
import struct
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aioice import stun

log = logging.getLogger(__name__)

Address = tuple[str, int]
E = TypeVar("E")

#: RFC 5389: the magic cookie at bytes 4-8 of every STUN message.
_COOKIE = struct.pack("!I", stun.COOKIE)
_BINDING_REQUEST = 0x0001
_RESPONSE_BITS = 0x0100  # success (0x0100) and error (0x0110) responses both carry it
_INDICATION_BIT = 0x0010
#: The shared socket's kernel buffers (the kernel doubles it): room for every agent's packets
#: while the process is not scheduled. aioice gives each of its sockets 256 KiB; fifty sessions'
#: hundred agents had 25 MiB between them, which one socket must match, or it drops what they
#: would have queued (``bench relay --udp-mux`` on a loaded machine: 20 000 drops at 8 MiB).
SOCKET_BUFFER = 32 * 1024 * 1024
#: Linux's option numbers where they are asm-generic's, which Python's socket module does not
#: export (elsewhere: none, and the buffers are what ``net.core.rmem_max``/``wmem_max`` allow).
_GENERIC = sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64")
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if _GENERIC else None)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32 if _GENERIC else None)
#: datagrams read per readiness callback (then other callbacks get their turn)
READ_BATCH = 256
MAX_DATAGRAM = 65536


@dataclass
class MuxStats:
    """What the demux did with the datagrams it was given (counters only ever grow)."""

    delivered: int = 0
    #: binding requests naming a ufrag no agent of this process has
    unknown_ufrag: int = 0
    #: binding requests naming a known ufrag whose integrity the agent's password refutes
    unauthenticated: int = 0
    #: non-STUN datagrams (or responses) from an address (transaction) no agent knows
    unroutable: int = 0
    #: STUN-looking datagrams that do not parse, and STUN requests other than binding
    malformed: int = 0
    #: mapping entries pushed out by a bound (a flood, or a peer with very many addresses)
    evicted: int = 0
    #: datagrams not sent because the socket's send buffer was full
    send_dropped: int = 0

    def add(self, other: MuxStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Demux(Generic[E]):
    """Which registered endpoint (one ICE agent's host candidate) a datagram is for."""

    def __init__(
        self, *, max_per_address: int = 4, max_addresses: int = 16, max_transactions: int = 64
    ) -> None:
        self.max_per_address = max_per_address
        self.max_addresses = max_addresses
        self.max_transactions = max_transactions
        self.stats = MuxStats()
        self._by_ufrag: dict[str, list[tuple[E, bytes]]] = {}
        #: remote address -> endpoints verified from it, most recent first
        self._by_address: dict[Address, list[E]] = {}
        self._addresses: dict[E, OrderedDict[Address, None]] = {}
        self._transactions: dict[bytes, E] = {}
        self._sent: dict[E, OrderedDict[bytes, None]] = {}
        self._ufrags: dict[E, str] = {}

    def register(self, endpoint: E, ufrag: str, password: str) -> None:
        """Requests for ``ufrag`` that ``password`` verifies are ``endpoint``'s from now on."""
        self._by_ufrag.setdefault(ufrag, []).append((endpoint, password.encode()))
        self._ufrags[endpoint] = ufrag
        self._addresses[endpoint] = OrderedDict()
        self._sent[endpoint] = OrderedDict()

    def unregister(self, endpoint: E) -> None:
        """Forget ``endpoint`` and every address and transaction it had (idempotent)."""
        ufrag = self._ufrags.pop(endpoint, None)
        if ufrag is None:
            return
        entries = [e for e in self._by_ufrag[ufrag] if e[0] is not endpoint]
        if entries:
            self._by_ufrag[ufrag] = entries
        else:
            del self._by_ufrag[ufrag]
        for address in self._addresses.pop(endpoint):
            self._forget_address(address, endpoint)
        for transaction in self._sent.pop(endpoint):
            self._transactions.pop(transaction, None)

    def sent(self, endpoint: E, data: bytes) -> None:
        """``endpoint`` sends ``data``: if it is a STUN request, its response is routed back."""
        if len(data) < 20 or data[0] > 3 or data[4:8] != _COOKIE:
            return
        if struct.unpack_from("!H", data)[0] & (_RESPONSE_BITS | _INDICATION_BIT):
            return  # a response or an indication has no answer to route
        sent = self._sent.get(endpoint)
        if sent is None:
            return
        transaction = bytes(data[8:20])
        if transaction in sent:
            return  # a retransmission
        sent[transaction] = None
        self._transactions[transaction] = endpoint
        if len(sent) > self.max_transactions:
            oldest, _ = sent.popitem(last=False)
            self._transactions.pop(oldest, None)

    def route(self, data: bytes, addr: Address) -> E | None:
        """The endpoint ``data`` from ``addr`` is for, or None (dropped, and counted)."""
        if data and data[0] > 3:  # RFC 7983: not STUN (DTLS 20-63, RTP/RTCP 128-191, ...)
            targets = self._by_address.get(addr)
            if targets:
                self.stats.delivered += 1
                return targets[0]
            self.stats.unroutable += 1
            return None
        endpoint = self._route_stun(data, addr)
        if endpoint is not None:
            self.stats.delivered += 1
        return endpoint

    def _route_stun(self, data: bytes, addr: Address) -> E | None:
        if len(data) < 20 or data[4:8] != _COOKIE:
            self.stats.malformed += 1
            return None
        message_type = struct.unpack_from("!H", data)[0]
        if message_type & _RESPONSE_BITS:
            endpoint = self._transactions.get(bytes(data[8:20]))
            if endpoint is None:
                self.stats.unroutable += 1
            return endpoint
        if message_type & _INDICATION_BIT:  # an indication (keepalive): by address, as data is
            targets = self._by_address.get(addr)
            if not targets:
                self.stats.unroutable += 1
                return None
            return targets[0]
        if message_type != _BINDING_REQUEST:
            self.stats.malformed += 1
            return None
        try:
            message = stun.parse_message(bytes(data))
        except (ValueError, struct.error):
            self.stats.malformed += 1
            return None
        username = message.attributes.get("USERNAME")
        entries = self._by_ufrag.get(username.partition(":")[0]) if username else None
        if not entries:
            self.stats.unknown_ufrag += 1
            return None
        for endpoint, password in entries:
            if message.check_message_integrity(password):
                self._learn(addr, endpoint)
                return endpoint
        self.stats.unauthenticated += 1
        return None

    def _learn(self, addr: Address, endpoint: E) -> None:
        targets = self._by_address.setdefault(addr, [])
        if targets and targets[0] is endpoint:
            return
        if endpoint in targets:
            targets.remove(endpoint)
        targets.insert(0, endpoint)
        if len(targets) > self.max_per_address:
            pushed = targets.pop()
            self._addresses[pushed].pop(addr, None)
            self.stats.evicted += 1
        addresses = self._addresses[endpoint]
        addresses[addr] = None
        addresses.move_to_end(addr)
        if len(addresses) > self.max_addresses:
            oldest, _ = addresses.popitem(last=False)
            self._forget_address(oldest, endpoint)
            self.stats.evicted += 1

    def _forget_address(self, address: Address, endpoint: E) -> None:
        targets = self._by_address.get(address)
        if targets is None or endpoint not in targets:
            return
        targets.remove(endpoint)
        if not targets:
            del self._by_address[address]

    def sizes(self) -> dict[str, int]:
        """How many entries each map holds: what must return to zero once agents close."""
        return {
            "ufrags": len(self._by_ufrag),
            "endpoints": len(self._ufrags),
            "addresses": len(self._by_address),
            "transactions": len(self._transactions),
        }


class MuxTransport(asyncio.DatagramTransport):
    """One ICE agent's view of a shared socket: what it sends goes out of the socket, what the
    demux routes to it arrives at its protocol; closing it unregisters it from the demux.

    What the demux routes here goes to the protocol, aioice's ``StunProtocol`` with
    ``gateway.media.ice``'s input (the mux is only used where that is installed): STUN to
    aioice's parse, anything else by its first byte straight to the ICE connection.
    """

    def __init__(
        self, socket_: MuxSocket, protocol: asyncio.DatagramProtocol, sockname: Address
    ) -> None:
        super().__init__()
        self._socket = socket_
        self._protocol = protocol
        self._sockname = sockname
        self._closing = False

    @property
    def protocol(self) -> asyncio.DatagramProtocol:
        return self._protocol

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """``data`` from ``addr``, routed here by the demux."""
        self._protocol.datagram_received(data, addr)

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self._closing:
            return
        if data[:1] < b"\x04":  # STUN (RFC 7983): a request's response is routed back
            self._socket.demux.sent(self, data)
        self._socket.sendto(data, addr)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._socket.demux.unregister(self)
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        # no "socket": the agent must not set options on the shared one
        return self._sockname if name == "sockname" else default


class MuxSocket:
    """One shared socket, read directly: every datagram waiting goes through the demux.

    asyncio's datagram transport reads one datagram per readiness callback, which is one per
    event-loop iteration: enough for a socket per agent, far too few for the one socket of
    every agent, whose kernel buffer then overflows as soon as the loop is busy. Here each
    callback drains up to ``READ_BATCH`` datagrams.
    """

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.demux: Demux[MuxTransport] = Demux()
        self._sock = sock
        self._loop = loop
        sock.setblocking(False)
        _enlarge_buffers(sock)
        name = sock.getsockname()
        self.sockname: Address = (name[0], name[1])
        loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        recvfrom, route = self._sock.recvfrom, self.demux.route
        for _ in range(READ_BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error of one peer must not disturb the others
                log.debug("UDP mux socket error: %s", exc)
                continue
            if len(addr) > 2:
                addr = (addr[0], addr[1])  # an IPv6 four-tuple, as aioice does
            endpoint = route(data, addr)
            if endpoint is not None:
                endpoint.datagram_received(data, addr)

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send now, or drop (as UDP may) if the kernel's send buffer is full."""
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.demux.stats.send_dropped += 1
        except OSError as exc:
            log.debug("UDP mux cannot send to %s: %s", addr, exc)

    def close(self) -> None:
        if self._sock.fileno() != -1:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


def _enlarge_buffers(sock: socket.socket) -> None:
    """``SOCKET_BUFFER`` bytes each way, beyond ``net.core.rmem_max``/``wmem_max`` where the
    process may (the ``FORCE`` options need CAP_NET_ADMIN), else as much as the kernel grants:
    one socket carries what a socket per agent would have buffered."""
    for option, force in ((socket.SO_RCVBUF, _SO_RCVBUFFORCE), (socket.SO_SNDBUF, _SO_SNDBUFFORCE)):
        try:
            if force is None:
                raise OSError
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


class UdpMux:
    """The process's shared ICE sockets: one per bound address, all on ``port``.

    ``port`` 0 lets the first bind choose a port that the others then share (tests).
    """

    def __init__(self, port: int, bind_addresses: Sequence[str]) -> None:
        if not bind_addresses:
            raise ValueError("a UDP mux needs at least one address to bind")
        self.port = port
        self.bind_addresses = tuple(bind_addresses)
        self.sockets: dict[str, MuxSocket] = {}

    async def start(self) -> None:
        """Bind every address (``OSError`` names the one that cannot be bound)."""
        loop = asyncio.get_running_loop()
        try:
            for address in self.bind_addresses:
                family = (
                    socket.AF_INET
                    if ipaddress.ip_address(address).version == 4
                    else (socket.AF_INET6)
                )
                sock = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    sock.bind((address, self.port))
                except OSError:
                    sock.close()
                    raise
                self.sockets[address] = MuxSocket(sock, loop)
                self.port = self.sockets[address].sockname[1]
        except OSError as exc:
            await self.close()
            raise OSError(
                exc.errno, f"cannot bind the ICE UDP port {address}:{self.port}: {exc.strerror}"
            ) from None

    async def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()

    def socket_for(self, address: str) -> MuxSocket | None:
        """The socket that receives on ``address``: bound to it, or to its family's wildcard."""
        if address in self.sockets:
            return self.sockets[address]
        wildcard = "0.0.0.0" if ipaddress.ip_address(address).version == 4 else "::"
        return self.sockets.get(wildcard)

    def receiving(self, gathered: Sequence[str]) -> list[str]:
        """The addresses agents take host candidates on: each bound address, and for a
        wildcard socket the ``gathered`` addresses of its family."""
        chosen: list[str] = []
        for bound in self.sockets:
            ip = ipaddress.ip_address(bound)
            if ip.is_unspecified:
                chosen += [a for a in gathered if ipaddress.ip_address(a).version == ip.version]
            else:
                chosen.append(bound)
        return list(dict.fromkeys(chosen))

    def attach(
        self, protocol: asyncio.DatagramProtocol, address: str, ufrag: str, password: str
    ) -> MuxTransport | None:
        """``protocol`` (one agent's host candidate on ``address``) joins the shared socket;
        None when no socket of this mux receives on ``address``."""
        sock = self.socket_for(address)
        if sock is None:
            return None
        transport = MuxTransport(sock, protocol, (address, self.port))
        sock.demux.register(transport, ufrag, password)
        protocol.connection_made(transport)
        return transport

    @property
    def stats(self) -> MuxStats:
        total = MuxStats()
        for sock in self.sockets.values():
            total.add(sock.demux.stats)
        return total

    def sizes(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for sock in self.sockets.values():
            for name, size in sock.demux.sizes().items():
                total[name] = total.get(name, 0) + size
        return total
