"""Invitations at the gateway's door: single use, reconnects to a live session, and refusals."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest

from gateway.app import JWT_SECRET
from gateway.sessions.invitations import Invitation, invite
from signaling.client import SignalingClient, SignalingClientError
from signaling.errors import SignalingError
from signaling.tokens import issue_token
from storage import tenants

from .conftest import GatewayFactory, RunningGateway


async def refusal(gateway: RunningGateway, invitation: Invitation, token: str) -> tuple[str, int]:
    async with SignalingClient(timeout=10) as client:
        with pytest.raises(SignalingClientError) as caught:
            await client.connect(invitation.signal_url(gateway.base_url), token)
        close = await client.wait_closed()
    assert close == SignalingError(caught.value.code, "").close_code
    return caught.value.code, close


async def test_a_used_invitation_admits_only_reconnects_while_its_session_lives(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="proxy", reconnect_grace=30)
    invitation = await gateway.invite("proxy")
    url = invitation.signal_url(gateway.base_url)
    first = SignalingClient()
    secret = (await first.connect(url, invitation.token))["reconnect_secret"]
    await first.close()  # the network drops: no bye
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    # same token and the session's reconnect secret, new socket: the same candidate coming back
    async with SignalingClient() as again:
        welcome = await again.connect(url, invitation.token, reconnect_secret=secret)
        assert welcome["interview_id"] == str(invitation.interview_id)
        assert gateway.sessions.live(invitation.tenant_id, invitation.interview_id) is session
        await again.bye()
        await again.wait_closed()
    await asyncio.wait_for(session.ended.wait(), 10)
    # the interview is over: the same link is now a replay
    assert await refusal(gateway, invitation, invitation.token) == ("invitation_used", 4106)


async def test_a_used_invitation_starts_a_failed_interview_again_until_it_ended(
    start_gateway: GatewayFactory,
) -> None:
    """The link rule: a link stays usable until its interview has really happened (ended) or
    expired. A failure (here the candidate vanished; a crash or an unreachable interviewer
    alike) did not use it up."""
    gateway = await start_gateway(mode="proxy", reconnect_grace=0.05)
    invitation = await gateway.invite("proxy")
    url = invitation.signal_url(gateway.base_url)
    async with SignalingClient() as client:
        await client.connect(url, invitation.token)
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    assert session is not None
    await asyncio.wait_for(session.ended.wait(), 10)
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("failed", "signaling_disconnected")
    # the same link, no reconnect secret (the session is gone): the interview starts again
    async with SignalingClient() as again:
        await again.connect(url, invitation.token)
        reopened = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
        assert reopened is not None and reopened is not session
        await again.bye()
        await again.wait_closed()
    await asyncio.wait_for(reopened.ended.wait(), 10)
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("ended", "bye")
    assert await refusal(gateway, invitation, invitation.token) == ("invitation_used", 4106)


async def test_a_multi_use_invitation_is_not_recorded_as_used(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="proxy", reconnect_grace=0.05)
    invitation = await invite(
        gateway.db, gateway.app[JWT_SECRET], gateway.tenant_id, mode="proxy", single_use=False
    )
    async with SignalingClient() as client:
        await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
        await client.close()
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    if session is not None:
        await asyncio.wait_for(session.ended.wait(), 10)
    # the grace ran out and the session failed: the link is not 'used', and the interview
    # did not take place, so it starts again
    async with SignalingClient() as client:
        welcome = await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
        assert welcome["interview_id"] == str(invitation.interview_id)
        await client.bye()
        await client.wait_closed()
    await gateway.ended_record(invitation)
    assert await refusal(gateway, invitation, invitation.token) == ("interview_ended", 4301)


async def test_refusals_at_the_gateway_each_carry_their_code(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="proxy", jwt_audience="interviews")
    secret = gateway.app[JWT_SECRET]
    invitation = await gateway.invite("proxy")
    assert await refusal(gateway, invitation, invitation.token) == ("wrong_audience", 4105)

    def token(**kwargs: object) -> str:
        claims: dict[str, object] = {
            "tenant_id": str(invitation.tenant_id),
            "interview_id": str(invitation.interview_id),
            "audience": "interviews",
        }
        claims.update(kwargs)
        return issue_token(secret, **claims)  # type: ignore[arg-type]

    other = await gateway.invite("proxy")
    cases = {
        "token_expired": token(ttl=-60),
        "token_invalid": token(role="admin"),
        "wrong_interview": token(interview_id=str(other.interview_id)),
        # an observer watches a live interview only; nothing is live here
        "interview_not_live": token(role="observer"),
    }
    for code, bad in cases.items():
        assert (await refusal(gateway, invitation, bad))[0] == code
    # a tenant that does not own the interview finds none (row-level security)
    stranger = await tenants.create_tenant(gateway.db, "stranger")
    assert (await refusal(gateway, invitation, token(tenant_id=str(stranger))))[0] == (
        "interview_not_found"
    )
    # and none of these refusals spent the real invitation
    async with SignalingClient() as client:
        welcome = await client.connect(invitation.signal_url(gateway.base_url), token())
    assert welcome["role"] == "candidate"
    assert UUID(welcome["interview_id"]) == invitation.interview_id
