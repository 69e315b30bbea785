"""Rejoining a live session through the real gateway (Postgres, the simulated interviewer): the
reconnect secret of ``welcome`` is what proves a new socket is the same candidate's; the
invitation token alone, replayed while the interview is live, is refused and takes nothing over.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.sessions.invitations import Invitation
from signaling.client import SignalingClient, SignalingClientError
from tests.gateway.conftest import GatewayFactory, RunningGateway, start_gateway
from tests.signaling.test_signaling_hostile_offers import Peer, relay

__all__ = ["relay", "start_gateway"]


async def test_a_replayed_invitation_cannot_take_a_live_interview_over(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="proxy", reconnect_grace=30)
    invitation = await gateway.invite("proxy")
    url = invitation.signal_url(gateway.base_url)
    async with SignalingClient(timeout=10) as candidate:
        welcome = await candidate.connect(url, invitation.token)
        secret = welcome["reconnect_secret"]
        assert isinstance(secret, str) and len(secret) >= 40
        session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
        assert session is not None

        for presented in (None, "not-" + secret):
            async with SignalingClient(timeout=10) as intruder:
                with pytest.raises(SignalingClientError) as refused:
                    await intruder.connect(url, invitation.token, reconnect_secret=presented)
                assert refused.value.code == "interview_in_progress"
                assert await intruder.wait_closed() == 4313

        # the real candidate was not told bye: its socket still answers, the session is its own
        await candidate.ping("still-here")
        while (message := await candidate.receive()) != {"type": "pong", "id": "still-here"}:
            assert message["type"] not in ("bye", "error"), message
        assert gateway.sessions.live(invitation.tenant_id, invitation.interview_id) is session
        assert session.current is not None and not session.current.channel.closed
        await candidate.bye()


async def test_the_reconnect_secret_rejoins_and_replaces_a_stale_socket(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="proxy", reconnect_grace=30)
    invitation = await gateway.invite("proxy")
    url = invitation.signal_url(gateway.base_url)
    stale = SignalingClient(timeout=10)
    welcome = await stale.connect(url, invitation.token)
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    try:
        # the same candidate, back on a new socket before the gateway noticed the old one left
        async with SignalingClient(timeout=10) as again:
            rejoined = await again.connect(
                url, invitation.token, reconnect_secret=welcome["reconnect_secret"]
            )
            assert rejoined["reconnect_secret"] == welcome["reconnect_secret"]
            assert gateway.sessions.live(invitation.tenant_id, invitation.interview_id) is session
            bye = await stale.receive()
            assert bye == {"type": "bye", "reason": "replaced"}
            await again.bye()
    finally:
        await stale.close()
    assert session is not None
    await asyncio.wait_for(session.ended.wait(), 10)
    assert session.end_reason == "bye"


async def test_a_reloaded_page_s_first_offer_rejoins_without_the_reconnect_flag(
    relay: tuple[RunningGateway, Invitation],
) -> None:
    """A reloaded page offers as at first (no ``reconnect``); it was refused
    ``offer_already_made`` and had to try again."""
    gateway, invitation = relay
    url = invitation.signal_url(gateway.base_url)
    first, again = Peer(), Peer()
    try:
        async with SignalingClient(timeout=20) as before:
            welcome = await before.connect(url, invitation.token)
            await first.accept(await before.offer(await first.offer()))
            await asyncio.wait_for(first.connected, 15)
        # the page reloads: its old socket is gone, a new one comes with the secret
        async with SignalingClient(timeout=20) as after:
            await after.connect(url, invitation.token, reconnect_secret=welcome["reconnect_secret"])
            answer = await after.offer(await again.offer())  # reconnect not set
            assert answer["mode"] == "relay"
            await again.accept(answer)
            await asyncio.wait_for(again.connected, 15)
            await asyncio.wait_for(again.heard.wait(), 20)  # the same AI conversation, heard
            await after.bye()
    finally:
        await first.close()
        await again.close()
