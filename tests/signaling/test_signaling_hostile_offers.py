"""Hostile offers and candidates from a real aiortc peer, through the real gateway (relay mode,
Postgres, the simulated interviewer): what the signaling refuses never reaches aiortc, and the
interview goes on.

The gateway is the one of tests/gateway, allowing remote candidates on 127.0.0.0/8 only (the
suite runs on loopback), so 169.254.169.254, RFC 1918 and mDNS candidates must be kept away from
its ICE agent.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.media import ice
from gateway.sessions.invitations import Invitation
from gateway.sim.speech import SpeechTrack
from signaling.client import SignalingClient, SignalingClientError
from tests.gateway.conftest import GatewayFactory, RunningGateway, start_gateway

__all__ = ["start_gateway"]

METADATA = "169.254.169.254"
TRICKLED_PRIVATE = ["10.1.2.3", "172.16.5.4", "192.168.1.20"]


class Peer:
    """A browser-like aiortc peer: speech out, the AI's audio in, the ``oai-events`` channel."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.speech = SpeechTrack(words_per_second=8.0, seed=1, pitch_hz=190.0)
        self.pc.addTrack(self.speech)
        self.pc.createDataChannel("oai-events")
        #: set once the AI's audio arrives
        self.heard = asyncio.Event()
        self.connected = asyncio.get_running_loop().create_future()
        self._drains: list[asyncio.Task[None]] = []
        self.pc.on("track", self._drain)

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            if self.pc.connectionState == "connected" and not self.connected.done():
                self.connected.set_result(None)

    async def offer(self) -> str:
        with ice.host_addresses(["127.0.0.1"]):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer: dict[str, Any]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    def _drain(self, track: MediaStreamTrack) -> None:
        async def drain() -> None:
            try:
                while True:
                    await track.recv()
                    self.heard.set()
            except MediaStreamError:
                return

        self._drains.append(asyncio.ensure_future(drain()))

    async def close(self) -> None:
        for task in self._drains:
            task.cancel()
        await self.pc.close()
        self.speech.stop()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    made = Peer()
    yield made
    await made.close()


@pytest.fixture
async def relay(start_gateway: GatewayFactory) -> tuple[RunningGateway, Invitation]:
    gateway = await start_gateway(mode="relay", ice_allow_remote=("127.0.0.0/8",))
    return gateway, await gateway.invite("relay")


def candidate_line(address: str, port: int, foundation: str) -> str:
    return f"candidate:{foundation} 1 udp 2122260223 {address} {port} typ host generation 0"


def with_candidates(sdp: str, lines: list[str]) -> str:
    """The offer with ``a=<line>`` added to its first m-line section, after its own candidates."""
    head, first, rest = sdp.partition("\r\nm=")
    section, sep, later = rest.partition("\r\nm=")
    extra = "".join(f"\r\na={line}" for line in lines)
    return head + first + section + extra + sep + later


def remote_addresses(gateway: RunningGateway, invitation: Invitation) -> set[str]:
    """Where the relay's browser leg may send connectivity checks: its remote candidates."""
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    assert session is not None and session.call is not None
    pc = session.call.browser_pc  # type: ignore[attr-defined]
    transports = {t.receiver.transport.transport for t in pc.getTransceivers()}
    if pc.sctp is not None:
        transports.add(pc.sctp.transport.transport)
    return {c.ip for t in transports for c in t.getRemoteCandidates()}


async def messages_until_pong(client: SignalingClient, ping_id: str) -> list[dict[str, Any]]:
    """What the gateway said before answering our ping: it answers in order, so every reply to
    the frames sent before the ping comes first."""
    await client.ping(ping_id)
    seen = []
    async for message in client:
        if message["type"] == "pong" and message.get("id") == ping_id:
            return seen
        seen.append(message)
    raise AssertionError(f"the socket closed before the pong: {seen}")


async def interviewer_speaks(client: SignalingClient) -> dict[str, Any]:
    async for message in client:
        if message["type"] == "transcript" and message["role"] == "interviewer":
            return message
        assert message["type"] != "error" or not message["fatal"], message
    raise AssertionError("the socket closed before the interviewer spoke")


async def test_metadata_private_and_mdns_candidates_never_reach_the_relay_and_it_still_works(
    relay: tuple[RunningGateway, Invitation], peer: Peer
) -> None:
    gateway, invitation = relay
    own = await peer.offer()
    hostile = with_candidates(
        own,
        [
            candidate_line(METADATA, 80, "91"),
            candidate_line("10.0.0.7", 5432, "92"),
            candidate_line("0a1b2c3d-aaaa-bbbb-cccc-0123456789ab.local", 9, "93"),
        ],
    )
    async with SignalingClient(timeout=20) as client:
        await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
        answer = await client.offer(hostile)
        assert answer["mode"] == "relay"
        await peer.accept(answer)
        for n, address in enumerate(TRICKLED_PRIVATE):
            await client.candidate(candidate_line(address, 6000 + n, f"7{n}"), sdp_mid="0")
        replies = await messages_until_pong(client, "after-trickle")
        refused = [m for m in replies if m["type"] == "error"]
        assert [(m["code"], m["fatal"]) for m in refused] == [("candidate_refused", False)] * 3
        assert all("private" in m["message"] for m in refused), refused
        await client.end_of_candidates()

        addresses = remote_addresses(gateway, invitation)
        assert addresses, "the offer's own loopback candidates reached the relay"
        assert all(ipaddress.ip_address(a).is_loopback for a in addresses), addresses

        await asyncio.wait_for(peer.connected, 15)
        line = await asyncio.wait_for(interviewer_speaks(client), 20)
        assert line["text"]
        await asyncio.wait_for(peer.heard.wait(), 20)
        assert all(
            ipaddress.ip_address(a).is_loopback for a in remote_addresses(gateway, invitation)
        )
        await client.bye()


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (lambda sdp: sdp.replace("opus/48000/2", "opus"), "rtpmap"),
        (lambda sdp: sdp.replace("a=setup:actpass", "a=setup:holdconn"), "setup"),
        (lambda sdp: sdp.replace("a=setup:actpass\r\n", ""), "setup"),
    ],
    ids=["rtpmap-without-clock-rate", "setup-holdconn", "no-setup"],
)
async def test_offers_aiortc_cannot_read_are_bad_sdp_and_the_socket_offers_again(
    relay: tuple[RunningGateway, Invitation], peer: Peer, edit: Any, complaint: str
) -> None:
    gateway, invitation = relay
    own = await peer.offer()
    broken = edit(own)
    assert broken != own
    async with SignalingClient(timeout=20) as client:
        await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
        with pytest.raises(SignalingClientError) as refused:
            await client.offer(broken)
        assert refused.value.code == "bad_sdp"
        assert complaint in str(refused.value)
        # nothing was lost: the same socket offers again and the interview starts
        answer = await client.offer(own)
        assert answer["mode"] == "relay"
        await peer.accept(answer)
        await asyncio.wait_for(peer.connected, 15)
        await client.bye()


async def test_an_offer_that_leaves_its_directions_out_means_sendrecv_and_is_answered(
    relay: tuple[RunningGateway, Invitation], peer: Peer
) -> None:
    """RFC 8866 lets an m-line omit its direction (then it is sendrecv); aiortc alone would
    fail inside createAnswer and the candidate would get ``internal``."""
    gateway, invitation = relay
    own = await peer.offer()
    bare = own.replace("a=sendrecv\r\n", "")
    assert bare != own and "a=sendrecv" not in bare
    async with SignalingClient(timeout=20) as client:
        await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
        answer = await client.offer(bare)
        assert answer["mode"] == "relay"
        assert "a=sendrecv" in answer["sdp"]
        await peer.accept(answer)
        await asyncio.wait_for(peer.connected, 15)
        await asyncio.wait_for(peer.heard.wait(), 15)
        await client.bye()
