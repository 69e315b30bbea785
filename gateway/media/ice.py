"""Which local addresses aiortc's ICE agent gathers host candidates on, and ICE candidates
as aiortc's objects.

aioice enumerates every interface and deliberately skips 127.0.0.1, with no way to choose.
Deployments need a choice (a container's one interface, Fly's ``fly-global-services``), and
tests and benchmarks must keep every WebRTC packet on loopback. This module is the only
place that reaches into aioice for that: ``install()`` (called once at process start, through
``gateway.media.install``) replaces ``aioice.ice.get_host_addresses`` with a function that
honours, in order, the addresses set for the current task (one leg of a relay may gather on
other addresses than the other) and the process-wide default given to ``install``.

``install()`` also replaces ``Connection.query_consent`` (RFC 7675 consent freshness). aioice
sends each consent check with no retransmission and a 0.5 s timeout, and expires consent after
six failed checks in a row. A process whose event loop lags (a shared-CPU VM, a busy host, or
both peers of a pair in one process, as with the in-process simulated upstream) sees the
response and its own timeout become due in the same loop iteration, loses that race every time,
and closes healthy connections about 30 s in. The replacement keeps aioice's schedule and its
30 s bound, but retransmits each check (``CONSENT_RETRANSMISSIONS``), as RFC 5389 transactions
do, so a check fails only when no response comes within several seconds.

``install()`` also replaces ``Connection.get_component_candidates``, where aioice binds one UDP
socket on a random port per host address of an agent. Legs gathering inside
``host_addresses(..., sockets=...)`` get their host sockets from a ``HostSockets`` instead: the
process's UDP mux, a port range, and the advertised public address (``gateway.media.
host_sockets``); server-reflexive and TURN candidates stay aioice's. Every other agent keeps
aioice's own code. This reach is version-guarded (``AIOICE_SUPPORTED``): with another aioice,
``install()`` leaves the method alone and ``host_addresses`` refuses ``sockets``;
``tests/media/test_ice_internals.py`` fails loudly if a name used here moves.

``install()`` also replaces ``StunProtocol.datagram_received`` (the same guard): aioice tries
``stun.parse_message`` on every datagram of a host socket, and hands what fails to parse to its
ICE connection. A relay's sockets carry 50 SRTP packets a second per voice, each of which paid
for a failed parse and the exception it raised. RFC 7983 tells them apart by the first byte
(STUN's is 0-3), as the UDP mux does; STUN still goes to aioice's own method. It also no longer
loses media to the parse: aioice checks neither the first bits nor the magic cookie, only the
length field and the method, so an SRTP packet whose sequence number equalled its length less
20 and whose payload type reads as a STUN method (PCMA's 8 does) was taken for STUN and lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import aioice
import aioice.ice
from aioice import Candidate, stun
from aioice.candidate import candidate_foundation, candidate_priority
from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp

from gateway.media.host_sockets import HostSockets, IcePortsExhausted
from signaling.sdp import IceCandidate

log = logging.getLogger(__name__)

_original_get_host_addresses = aioice.ice.get_host_addresses
#: aioice's own consent loop, kept to check on upgrades that it is still the one replaced here.
STOCK_QUERY_CONSENT = aioice.ice.Connection.query_consent
#: Retransmissions of each consent check (timeouts 0.5, 1, 2, 4 s: 7.5 s to answer one).
CONSENT_RETRANSMISSIONS = 3
#: aioice's own host-socket binding, kept to check on upgrades and for agents without sockets.
STOCK_GET_COMPONENT_CANDIDATES = aioice.ice.Connection.get_component_candidates
#: aioice's own socket input, kept to check on upgrades and for the STUN it still parses.
STOCK_DATAGRAM_RECEIVED = aioice.ice.StunProtocol.datagram_received
#: aioice versions whose ``get_component_candidates``/``StunProtocol`` the socket hook matches.
AIOICE_SUPPORTED = ("0.10", "0.11", "0.12", "0.13")
_default: tuple[str, ...] | None = None
_current: ContextVar[tuple[str, ...] | None] = ContextVar("ice_host_addresses", default=None)
_sockets: ContextVar[HostSockets | None] = ContextVar("ice_host_sockets", default=None)


def aioice_supported(version: str = aioice.__version__) -> bool:
    return version.startswith(AIOICE_SUPPORTED)


def _validated(addresses: Sequence[str]) -> tuple[str, ...]:
    for address in addresses:
        ipaddress.ip_address(address)  # ValueError names the bad address
    return tuple(addresses)


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _current.get() or _default
    if chosen is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return [
        a
        for a in chosen
        if (use_ipv4 and ipaddress.ip_address(a).version == 4)
        or (use_ipv6 and ipaddress.ip_address(a).version == 6)
    ]


def install(default_addresses: Sequence[str] | None = None) -> None:
    """Put the address hook in aioice (idempotent), and gather on exactly ``default_addresses``
    where no ``host_addresses`` block says otherwise (``None``: every interface, aioice's way).
    """
    global _default
    _default = _validated(default_addresses) if default_addresses else None
    aioice.ice.get_host_addresses = _get_host_addresses
    aioice.ice.Connection.query_consent = _query_consent  # type: ignore[method-assign]
    if aioice_supported():
        aioice.ice.Connection.get_component_candidates = _get_component_candidates  # type: ignore[method-assign]
        aioice.ice.StunProtocol.datagram_received = _datagram_received  # type: ignore[method-assign,assignment]


def _datagram_received(self: aioice.ice.StunProtocol, data: bytes, addr: tuple[Any, ...]) -> None:
    """aioice's socket input, with RFC 7983's first-byte test before its STUN parse (see the
    module doc): DTLS, SRTP and SRTCP go straight to the ICE connection."""
    if data and data[0] > 3:
        self.receiver.data_received(data, self.local_candidate.component)
    else:
        STOCK_DATAGRAM_RECEIVED(self, data, addr)


async def _get_component_candidates(
    self: aioice.ice.Connection,
    component: int,
    addresses: list[str],
    timeout: int = 5,  # noqa: ASYNC109 (aioice's signature)
) -> list[Candidate]:
    """aioice's gathering for one component, with host sockets from the task's
    ``HostSockets`` when it has one (see the module doc)."""
    sockets = _sockets.get()
    if sockets is None:
        return await STOCK_GET_COMPONENT_CANDIDATES(self, component, addresses, timeout)
    candidates: list[Candidate] = []
    hosts: list[aioice.ice.StunProtocol] = []
    for address in sockets.candidate_addresses(addresses):
        protocol = aioice.ice.StunProtocol(self)
        try:
            advertised = await sockets.attach(
                protocol, address, self.local_username, self.local_password
            )
        except IcePortsExhausted:
            raise
        except OSError as exc:
            log.info("ICE cannot bind %s: %s", address, exc)
            continue
        if advertised is None:
            continue
        host, port = advertised
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=host,
            port=port,
            type="host",
        )
        self._protocols.append(protocol)
        hosts.append(protocol)
        candidates.append(protocol.local_candidate)
    # TURN: aioice's own code, which with no host address gathers only relayed candidates
    relayed = asyncio.ensure_future(STOCK_GET_COMPONENT_CANDIDATES(self, component, [], timeout))
    reflexive = [
        asyncio.ensure_future(aioice.ice.server_reflexive_candidate(p, self.stun_server))
        for p in hosts
        if self.stun_server and ipaddress.ip_address(p.local_candidate.host).version == 4
    ]
    if reflexive:
        done, pending = await asyncio.wait(reflexive, timeout=timeout)
        for task in pending:
            task.cancel()
        candidates += [t.result()[0] for t in done if t.exception() is None]
    return candidates + await relayed


async def _query_consent(self: aioice.ice.Connection) -> None:
    """aioice's consent freshness loop, with retransmitted checks (see the module doc)."""
    assert self.remote_password is not None
    failures = 0
    while True:
        # as aioice: randomized between 0.8 and 1.2 times the interval
        await asyncio.sleep(aioice.ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
        for pair in self._nominated.values():
            request = self.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request,
                    pair.remote_addr,
                    integrity_key=self.remote_password.encode("utf8"),
                    retransmissions=CONSENT_RETRANSMISSIONS,
                )
                failures = 0
            except stun.TransactionError:
                failures += 1
            if failures >= aioice.ice.CONSENT_FAILURES:
                log.info("ICE consent to send expired for %s", pair.remote_addr)
                self._query_consent_task = None
                await self.close()
                return


def installed() -> bool:
    return aioice.ice.get_host_addresses is _get_host_addresses


@contextlib.contextmanager
def host_addresses(
    addresses: Sequence[str] | None, sockets: HostSockets | None = None
) -> Iterator[None]:
    """Gather on these addresses for ICE gathering started inside the block, in this task,
    with host sockets from ``sockets`` (None: aioice's, a random port each).

    aiortc gathers inside ``setLocalDescription``, so wrap that call. Without ``install()``
    the block would silently gather everywhere, so it refuses to run.
    """
    if not installed():
        raise RuntimeError("gateway.media.install() must run at process start")
    if sockets is not None and not sockets_installed():
        raise RuntimeError(
            f"aioice {aioice.__version__} is not in {AIOICE_SUPPORTED}: the UDP mux, port range"
            " and public addresses need a supported aioice"
        )
    token = _current.set(_validated(addresses) if addresses else None)
    sockets_token = _sockets.set(sockets)
    try:
        yield
    finally:
        _sockets.reset(sockets_token)
        _current.reset(token)


def sockets_installed() -> bool:
    return aioice.ice.Connection.get_component_candidates is _get_component_candidates  # type: ignore[comparison-overlap]


class CandidateError(ValueError):
    """A trickled candidate that aiortc cannot read (the signaling checked its grammar)."""


def rtc_candidate(candidate: IceCandidate) -> RTCIceCandidate:
    """A browser's trickled candidate, resolved by the signaling layer, as aiortc's object."""
    text = candidate.candidate.removeprefix("a=").removeprefix("candidate:")
    try:
        parsed = candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError) as exc:
        raise CandidateError(f"not an ICE candidate: {candidate.candidate[:80]!r}") from exc
    parsed.sdpMid = candidate.sdp_mid
    parsed.sdpMLineIndex = candidate.sdp_mline_index
    return parsed


def selected_pair_summary(pc: object) -> str | None:
    """The nominated candidate pair of a connected aiortc peer, e.g. for the session record.

    aiortc exposes no getSelectedCandidatePair(); this reads aioice's nominated pair.
    """
    try:
        connection = pc.sctp.transport.transport._connection  # type: ignore[attr-defined]
    except AttributeError:
        try:
            transceiver = pc.getTransceivers()[0]  # type: ignore[attr-defined]
            connection = transceiver.receiver.transport.transport._connection
        except (AttributeError, IndexError):
            return None
    pair = getattr(connection, "_nominated", {}).get(1)
    if pair is None:
        return None
    local, remote = pair.local_candidate, pair.remote_candidate
    return (
        f"{local.type} {local.transport} {local.host}:{local.port} -> "
        f"{remote.type} {remote.transport} {remote.host}:{remote.port}"
    )
