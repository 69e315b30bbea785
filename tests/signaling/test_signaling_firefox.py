"""What Firefox does differently, through the real gateway (relay mode, Postgres, the simulated
interviewer) with a real aiortc peer in Firefox's place: an empty candidate per m-line before
the last ``null``, mDNS host candidates, and Opus parameters it expects echoed.

The gateway is the one of tests/gateway, allowing remote candidates on 127.0.0.0/8 only.
"""

from __future__ import annotations

import asyncio

from gateway.sessions.invitations import Invitation
from signaling.client import SignalingClient
from signaling.sdp import attribute, sdp_lines
from tests.gateway.conftest import RunningGateway
from tests.signaling.test_signaling_hostile_offers import (
    Peer,
    candidate_line,
    messages_until_pong,
    peer,
    relay,
    start_gateway,
)

__all__ = ["peer", "relay", "start_gateway"]

#: Firefox's Opus line: what the answer must echo (with in-band FEC asked for).
FIREFOX_OPUS = "maxplaybackrate=48000;stereo=1;useinbandfec=1"
#: Before the fix each .local lookup held the socket's handler about 1 s, one at a time; the
#: pong must come well before 8 of them could have run.
PONG_DEADLINE = 4.0


def opus_fmtp(sdp: str) -> dict[str, str]:
    """The Opus payload type's ``a=fmtp`` parameters of the first audio section."""
    lines = sdp_lines(sdp)
    payload_type = next(
        value.split(" ", 1)[0]
        for name, value in (attribute(line) for line in lines if line.startswith("a=rtpmap:"))
        if value and "opus/" in value.lower()
    )
    fmtp = next((line for line in lines if line.startswith(f"a=fmtp:{payload_type} ")), None)
    assert fmtp is not None, f"no a=fmtp for Opus ({payload_type}) in {sdp!r}"
    pairs = (p.partition("=") for p in fmtp.split(" ", 1)[1].split(";"))
    return {key: value for key, _, value in pairs}


def with_firefox_opus(sdp: str) -> str:
    """aiortc's offer with Firefox's Opus parameters on its Opus payload type."""
    out = []
    for line in sdp_lines(sdp):
        out.append(line)
        if line.startswith("a=rtpmap:") and "opus/" in line.lower():
            payload_type = line.split(":", 1)[1].split(" ", 1)[0]
            out.append(f"a=fmtp:{payload_type} {FIREFOX_OPUS}")
    return "\r\n".join(out) + "\r\n"


async def test_an_empty_candidate_per_mline_then_more_candidates_gets_no_error(
    relay: tuple[RunningGateway, Invitation], peer: Peer
) -> None:
    gateway, invitation = relay
    async with SignalingClient(timeout=20) as client:
        await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
        answer = await client.offer(await peer.offer())
        await peer.accept(answer)
        # Firefox: each m-line's candidates, then "" for that m-line; null after the last.
        for index, mid in enumerate(("0", "1")):
            line = candidate_line("127.0.0.1", 40000 + index, f"5{index}")
            await client.candidate(line, sdp_mid=mid, sdp_mline_index=index)
            await client.candidate("", sdp_mid=mid, sdp_mline_index=index)
        await client.candidate(None)
        replies = await messages_until_pong(client, "after-firefox-trickle")
        assert [m for m in replies if m["type"] == "error"] == []
        await asyncio.wait_for(peer.connected, 15)
        await client.bye()


async def test_mdns_candidates_do_not_hold_up_the_socket(
    relay: tuple[RunningGateway, Invitation], peer: Peer
) -> None:
    gateway, invitation = relay
    async with SignalingClient(timeout=20) as client:
        await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
        await peer.accept(await client.offer(await peer.offer()))
        for n in range(8):
            host = f"0a1b2c3d-aaaa-bbbb-cccc-0123456789{n:02x}.local"
            await client.candidate(candidate_line(host, 50000 + n, f"6{n}"), sdp_mid="0")
        replies = await asyncio.wait_for(messages_until_pong(client, "after-mdns"), PONG_DEADLINE)
        codes = [m["code"] for m in replies if m["type"] == "error"]
        assert codes == ["candidate_refused"] * 8, replies
        await asyncio.wait_for(peer.connected, 15)  # the pair forms peer-reflexive, as in Firefox
        await client.bye()


async def test_the_relay_asks_both_legs_for_opus_fec_and_echoes_firefox_parameters(
    relay: tuple[RunningGateway, Invitation], peer: Peer
) -> None:
    gateway, invitation = relay
    async with SignalingClient(timeout=20) as client:
        await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
        answer = await client.offer(with_firefox_opus(await peer.offer()))
        assert opus_fmtp(answer["sdp"]) == {
            "maxplaybackrate": "48000",
            "stereo": "1",
            "useinbandfec": "1",
        }
        session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
        assert session is not None and session.call is not None
        upstream_offer = session.call.upstream_pc.localDescription.sdp  # type: ignore[attr-defined]
        assert opus_fmtp(upstream_offer) == {"useinbandfec": "1"}
        await peer.accept(answer)
        await asyncio.wait_for(peer.connected, 15)
        await asyncio.wait_for(peer.heard.wait(), 20)  # the media still flows both ways
        await client.bye()
