"""Relay capacity is shared between tenants: with ``GATEWAY_MAX_RELAY_PER_TENANT``, one tenant
cannot take every relay slot; beyond its share its auto-mode interviews are proxied and its
relay-mode ones refused, while another tenant still relays."""

from __future__ import annotations

from contextlib import AsyncExitStack
from uuid import UUID

import pytest

from gateway.app import JWT_SECRET
from gateway.sessions.invitations import invite
from signaling.client import SignalingClient, SignalingClientError
from storage import tenants
from tests.signaling.signaling_samples import AUDIO, offer_of

from .conftest import GatewayFactory, RunningGateway


async def offered(
    gateway: RunningGateway, stack: AsyncExitStack, tenant_id: UUID, mode: str
) -> dict[str, object]:
    """A new interview of the tenant, joined on a socket kept open (its relay slot held),
    and the gateway's answer to its offer."""
    invitation = await invite(gateway.db, gateway.app[JWT_SECRET], tenant_id, mode=mode)
    client = await stack.enter_async_context(SignalingClient())
    await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
    return await client.offer(offer_of(AUDIO))


async def test_one_tenant_cannot_take_every_relay_slot(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(mode="auto", max_relay_sessions=3, max_relay_per_tenant=2)
    greedy, other = gateway.tenant_id, await tenants.create_tenant(gateway.db, "other")
    async with AsyncExitStack() as stack:
        modes = [(await offered(gateway, stack, greedy, "auto"))["mode"] for _ in range(3)]
        assert modes == ["relay", "relay", "proxy"]  # its share is 2: the third is proxied
        assert gateway.sessions.relay_slots_used == 2
        with pytest.raises(SignalingClientError) as refused:
            await offered(gateway, stack, greedy, "relay")
        assert refused.value.code == "relay_unavailable"
        assert (await offered(gateway, stack, other, "relay"))["mode"] == "relay"
        assert gateway.sessions.relay_slots_used == 3
