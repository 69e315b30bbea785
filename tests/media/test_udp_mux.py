"""The UDP mux: the demux's routing and bounds (sans-I/O), and real aiortc peers whose ICE
agents share one socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aioice import stun
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection

from gateway.bench.udp_sockets import udp_sockets
from gateway.media import ice, udp_mux
from gateway.media.host_sockets import HostSockets
from gateway.media.relay import Relay, RelayOptions
from gateway.media.udp_mux import Demux, UdpMux
from gateway.sim.opus_peers import LOCAL, PeerHost
from gateway.upstream.openai import RealtimeUpstream

from .conftest import Heard
from .test_listen import observe

WAIT = 15.0


def binding_request(username: str, password: str) -> bytes:
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = username
    request.attributes["PRIORITY"] = 1
    request.add_message_integrity(password.encode())
    return bytes(request)


DTLS = bytes([22]) + os.urandom(40)  # a DTLS record's first byte (RFC 7983: 20-63)
PEER = ("10.0.0.9", 5000)


def test_a_verified_binding_request_teaches_the_demux_where_a_peers_data_goes() -> None:
    demux: Demux[str] = Demux()
    demux.register("agent", "abcd", "p" * 22)
    assert demux.route(DTLS, PEER) is None  # no mapping before the peer's first check
    assert demux.route(binding_request("abcd:wxyz", "p" * 22), PEER) == "agent"
    assert demux.route(DTLS, PEER) == "agent"
    assert demux.route(DTLS, ("10.0.0.9", 5001)) is None
    assert demux.stats.unroutable == 2 and demux.stats.delivered == 2


def test_unknown_ufrags_and_wrong_passwords_are_dropped_counted_and_never_allocated() -> None:
    demux: Demux[str] = Demux()
    demux.register("agent", "abcd", "p" * 22)
    before = demux.sizes()
    for n in range(500):
        assert demux.route(binding_request(f"u{n:03}:wxyz", "p" * 22), PEER) is None
    assert demux.route(binding_request("abcd:wxyz", "q" * 22), PEER) is None
    assert (demux.stats.unknown_ufrag, demux.stats.unauthenticated) == (500, 1)
    assert demux.sizes() == before
    assert demux.route(DTLS, PEER) is None  # the unverified request taught nothing


def test_two_agents_with_one_ufrag_are_told_apart_by_their_passwords() -> None:
    demux: Demux[str] = Demux()
    demux.register("a", "abcd", "a" * 22)
    demux.register("b", "abcd", "b" * 22)
    assert demux.route(binding_request("abcd:x", "b" * 22), PEER) == "b"
    assert demux.route(binding_request("abcd:x", "a" * 22), ("10.0.0.1", 1)) == "a"


def test_responses_go_to_the_agent_that_sent_the_request() -> None:
    demux: Demux[str] = Demux()
    demux.register("a", "aaaa", "a" * 22)
    demux.register("b", "bbbb", "b" * 22)
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    demux.sent("b", bytes(request))
    response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, request.transaction_id)
    assert demux.route(bytes(response), PEER) == "b"
    stray = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE)
    assert demux.route(bytes(stray), PEER) is None


def test_every_map_is_bounded_and_empty_once_its_agents_are_gone() -> None:
    demux: Demux[str] = Demux(max_per_address=2, max_addresses=3, max_transactions=4)
    agents = [f"agent{n}" for n in range(5)]
    for agent in agents:
        demux.register(agent, agent, "p" * 22)
        for port in range(10):  # one agent verified from many addresses
            demux.route(binding_request(f"{agent}:x", "p" * 22), ("10.0.0.1", port))
        for _ in range(10):
            demux.sent(agent, bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST)))
    for agent in agents:  # every agent verified from one address
        demux.route(binding_request(f"{agent}:x", "p" * 22), PEER)
    assert len(demux._by_address[PEER]) == 2
    assert all(len(addresses) <= 3 for addresses in demux._addresses.values())
    assert demux.sizes()["transactions"] == 5 * 4
    assert demux.route(DTLS, PEER) == "agent4"  # the most recently verified one
    for agent in agents:
        demux.unregister(agent)
    assert demux.sizes() == {"ufrags": 0, "endpoints": 0, "addresses": 0, "transactions": 0}


@pytest.fixture
async def mux() -> AsyncIterator[UdpMux]:
    mux = UdpMux(0, LOCAL)
    await mux.start()
    try:
        yield mux
    finally:
        await mux.close()


@contextlib.asynccontextmanager
async def ice_session(
    offer_sockets: HostSockets | None, answer_sockets: HostSockets | None
) -> AsyncIterator[tuple[RTCPeerConnection, RTCPeerConnection]]:
    """Two peers that connect and echo one data-channel message; closed on exit."""
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    echoed = asyncio.get_running_loop().create_future()
    channel = offerer.createDataChannel("probe")
    channel.on("open", lambda: channel.send("ping"))
    channel.on("message", lambda m: echoed.done() or echoed.set_result(m))

    @answerer.on("datachannel")
    def _echo(remote: RTCDataChannel) -> None:
        remote.on("message", remote.send)

    try:
        with ice.host_addresses(LOCAL, offer_sockets):
            await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        with ice.host_addresses(LOCAL, answer_sockets):
            await answerer.setLocalDescription(await answerer.createAnswer())
        await offerer.setRemoteDescription(answerer.localDescription)
        assert await asyncio.wait_for(echoed, WAIT) == "ping"
        yield offerer, answerer
    finally:
        await offerer.close()
        await answerer.close()


def local_ports(pc: RTCPeerConnection) -> set[int]:
    sdp = pc.localDescription.sdp
    return {int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate")}


async def test_many_agents_answering_and_offering_share_the_one_socket(mux: UdpMux) -> None:
    sockets = HostSockets(mux=mux)
    async with contextlib.AsyncExitStack() as stack:
        pairs = await asyncio.gather(
            *(
                stack.enter_async_context(
                    ice_session(sockets, None) if n % 2 else ice_session(None, sockets)
                )
                for n in range(6)
            )
        )
        for n, (offerer, answerer) in enumerate(pairs):
            assert local_ports(offerer if n % 2 else answerer) == {mux.port}
        assert [s for s in udp_sockets() if s[1] == mux.port] == [("127.0.0.1", mux.port)]
        assert mux.sizes()["endpoints"] == 6
    assert mux.sizes() == {"ufrags": 0, "endpoints": 0, "addresses": 0, "transactions": 0}
    assert mux.stats.delivered > 0


async def test_two_hundred_sessions_one_after_another_leave_the_maps_empty(mux: UdpMux) -> None:
    sockets = HostSockets(mux=mux)
    for n in range(200):
        async with ice_session(sockets, None) if n % 2 else ice_session(None, sockets):
            assert mux.sizes()["endpoints"] >= 1
    assert mux.sizes() == {"ufrags": 0, "endpoints": 0, "addresses": 0, "transactions": 0}
    # (a check may still come for a leg just closed: its ufrag is unknown by then)
    assert mux.stats.unauthenticated == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="beyond net.core.rmem_max needs CAP_NET_ADMIN")
async def test_the_shared_socket_buffers_what_a_socket_per_agent_would_have(mux: UdpMux) -> None:
    sock = mux.sockets["127.0.0.1"]._sock
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= udp_mux.SOCKET_BUFFER
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= udp_mux.SOCKET_BUFFER


@pytest.mark.slow
async def test_a_listen_in_leg_takes_its_host_socket_from_the_mux_too(
    mux: UdpMux, far: tuple[PeerHost, str], near: PeerHost
) -> None:
    """Browser, upstream and observer legs alike are on the shared port, and the observer
    hears both voices through it."""
    async with aiohttp.ClientSession() as http:
        upstream = RealtimeUpstream(kind="sim", base_url=far[1], api_key="test", http=http)
        options = RelayOptions(ice_addresses=LOCAL, ice_sockets=HostSockets(mux=mux))
        relay = Relay(upstream, Heard(), options=options)
        try:
            await near.offer(relay.start, "browser")
            near.go.set()
            far[0].go.set()
            observer, leg, probes = await observe(relay)
            try:
                assert local_ports(leg.pc) == {mux.port}
                async with asyncio.timeout(WAIT):
                    await asyncio.gather(*(probe.wait_for(50) for probe in probes))
                summary = ice.selected_pair_summary(leg.pc)
                assert summary is not None
                assert summary.startswith(f"host udp 127.0.0.1:{mux.port} ")
            finally:
                await observer.close()
        finally:
            await relay.close()
