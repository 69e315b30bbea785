"""The gateway's ICE host sockets besides the mux: the advertised public address (1:1 NAT), the
port range and its exhaustion, and the settings that choose them."""

from __future__ import annotations

import contextlib
import socket

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from gateway.bench.udp_sockets import udp_sockets
from gateway.config import Settings
from gateway.env import ConfigError
from gateway.media import ice
from gateway.media.host_sockets import HostSockets, IcePortsExhausted, PortRange, PublicAddresses
from gateway.media.udp_mux import UdpMux
from gateway.sim.opus_peers import LOCAL
from gateway.upstream.call import CallUnavailable

from .test_udp_mux import ice_session, local_ports

#: below Linux's ephemeral range (32768-60999): no random bind of another test can hold them
RANGE = range(20000, 20003)


def advertised(pc: RTCPeerConnection) -> set[tuple[str, int]]:
    lines = [line.split() for line in pc.localDescription.sdp.splitlines()]
    return {(f[4], int(f[5])) for f in lines if f[0].startswith("a=candidate")}


async def test_the_public_address_is_advertised_while_the_private_one_is_bound() -> None:
    mux = UdpMux(0, LOCAL)
    await mux.start()
    try:
        sockets = HostSockets(mux=mux, public=PublicAddresses.parse(["198.51.100.7/127.0.0.1"]))
        # the offerer cannot reach 198.51.100.7 here; the answerer's own checks, sent from
        # the private address, make the pair (peer-reflexive on the offerer's side)
        async with ice_session(None, sockets) as (_, answerer):
            assert advertised(answerer) == {("198.51.100.7", mux.port)}
            assert ("127.0.0.1", mux.port) in udp_sockets()
            assert ice.selected_pair_summary(answerer).startswith(  # type: ignore[union-attr]
                f"host udp 198.51.100.7:{mux.port} -> "
            )
    finally:
        await mux.close()


def test_public_addresses_map_one_private_address_or_every_one_of_a_family() -> None:
    public = PublicAddresses.parse(["203.0.113.5", "2001:db8::5", "198.51.100.7/10.0.0.2"])
    assert public.advertised("10.0.0.2") == "198.51.100.7"
    assert public.advertised("10.0.0.3") == "203.0.113.5"
    assert public.advertised("fd00::1") == "2001:db8::5"
    assert PublicAddresses.parse([]).advertised("10.0.0.3") == "10.0.0.3"


async def test_each_agent_binds_inside_the_range_and_the_one_too_many_gets_a_clear_error() -> None:
    sockets = HostSockets(ports=PortRange(RANGE))
    async with contextlib.AsyncExitStack() as stack:
        pairs = [await stack.enter_async_context(ice_session(None, sockets)) for _ in RANGE]
        ports = [local_ports(answerer) for _, answerer in pairs]
        assert sorted(p for (p,) in ports) == list(RANGE)
        offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        stack.push_async_callback(offerer.close)
        stack.push_async_callback(answerer.close)
        offerer.createDataChannel("probe")
        with ice.host_addresses(LOCAL):
            await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        with pytest.raises(IcePortsExhausted) as refused, ice.host_addresses(LOCAL, sockets):
            await answerer.setLocalDescription(await answerer.createAnswer())
        assert str(refused.value) == (
            "every UDP port of GATEWAY_ICE_UDP_PORTS (20000-20002) is in use on 127.0.0.1"
        )
        # what the relay's callers see: a call that is unavailable, not a crash
        assert isinstance(refused.value, CallUnavailable)
        assert refused.value.reason == "relay_unavailable"
    # and every port is free again once the sessions closed
    async with ice_session(None, sockets):
        pass


async def test_a_port_held_by_another_process_is_skipped() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", RANGE[0]))
        async with ice_session(None, HostSockets(ports=PortRange(RANGE))) as (_, answerer):
            assert local_ports(answerer) <= set(RANGE[1:])


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        (
            {"GATEWAY_ICE_UDP_PORT": "70000"},
            "GATEWAY_ICE_UDP_PORT is 70000; it must be 0 (off: a random port per connection)"
            " or a port up to 65535.",
        ),
        (
            {"GATEWAY_ICE_UDP_PORTS": "40000"},
            "GATEWAY_ICE_UDP_PORTS is '40000'; it must be two ports joined by a dash, like"
            " 40000-40099.",
        ),
        (
            {"GATEWAY_ICE_UDP_PORTS": "40010-40000"},
            "GATEWAY_ICE_UDP_PORTS is 40010-40000; the first port must not be above the second.",
        ),
        (
            {"GATEWAY_ICE_UDP_PORTS": "0-10"},
            "GATEWAY_ICE_UDP_PORTS is 0-10; both ports must be from 1 to 65535.",
        ),
        (
            {"GATEWAY_ICE_UDP_PORTS": "40000-40010", "GATEWAY_ICE_UDP_PORT": "3478"},
            "GATEWAY_ICE_UDP_PORT and GATEWAY_ICE_UDP_PORTS are both set; choose the one shared"
            " port or the range.",
        ),
        (
            {"GATEWAY_ICE_BIND_ADDRESS": "0.0.0.0"},
            "GATEWAY_ICE_BIND_ADDRESS is set but GATEWAY_ICE_UDP_PORT is not; the bind address"
            " is where the shared UDP port listens.",
        ),
        (
            {"GATEWAY_ICE_PUBLIC_ADDRESSES": "203.0.113.5/fd00::1"},
            "GATEWAY_ICE_PUBLIC_ADDRESSES is '203.0.113.5/fd00::1'; '203.0.113.5/fd00::1' maps"
            " between IPv4 and IPv6 (entries are PUBLIC or PUBLIC/PRIVATE IP addresses).",
        ),
        (
            {"GATEWAY_ICE_PUBLIC_ADDRESSES": "fly"},
            "GATEWAY_ICE_PUBLIC_ADDRESSES is 'fly'; 'fly' does not appear to be an IPv4 or IPv6"
            " address (entries are PUBLIC or PUBLIC/PRIVATE IP addresses).",
        ),
    ],
)
def test_each_mistake_in_the_ice_socket_settings_is_one_clear_sentence(
    env: dict[str, str], sentence: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    assert str(refused.value) == sentence


def test_the_ice_socket_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "GATEWAY_ICE_UDP_PORT": "3478",
            "GATEWAY_ICE_BIND_ADDRESS": "127.0.0.1",
            "GATEWAY_ICE_PUBLIC_ADDRESSES": "203.0.113.5",
        }
    )
    assert (settings.ice_udp_port, settings.ice_bind_addresses) == (3478, ("127.0.0.1",))
    assert settings.ice_public_addresses == ("203.0.113.5",)
    assert Settings.from_env({"GATEWAY_ICE_UDP_PORTS": "40000-40099"}).ice_udp_ports == (
        40000,
        40099,
    )
