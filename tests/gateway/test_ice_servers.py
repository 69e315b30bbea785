"""What a browser learns about ICE servers: a TURN credential minted for its interview, handed
out in ``welcome``, the same on every socket of the interview; never the shared secret, never a
configured long-lived credential."""

from __future__ import annotations

import json
import time

from signaling.client import SignalingClient

from .conftest import GatewayFactory

SECRET = "turn-shared-secret-" + "q" * 24
STUN = {"urls": "stun:127.0.0.1:3478"}
STATIC_TURN = {"urls": "turn:127.0.0.1:3479", "username": "gw", "credential": "long-lived-pass"}


async def test_welcome_hands_the_browser_a_turn_credential_for_its_interview(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(
        turn_urls=("turn:127.0.0.1:3478?transport=udp",),
        turn_secret=SECRET,
        turn_ttl=900,
        ice_servers=(STUN, STATIC_TURN),
    )
    invitation = await gateway.invite("relay")
    url = invitation.signal_url(gateway.base_url)
    before = time.time()
    welcomes = []
    secret = None
    for _ in range(2):  # a reconnect's new socket is told the same servers
        async with SignalingClient() as client:
            welcomes.append(await client.connect(url, invitation.token, reconnect_secret=secret))
            secret = welcomes[-1]["reconnect_secret"]
    first, again = welcomes
    minted, stun = first["ice_servers"]
    assert stun == STUN
    assert minted["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
    expiry, user = minted["username"].split(":", 1)
    assert user == str(invitation.interview_id)
    assert before + 900 - 1 <= int(expiry) <= time.time() + 900
    assert minted["credential"]
    assert again["ice_servers"] == first["ice_servers"]
    text = json.dumps(welcomes)
    assert SECRET not in text and "long-lived-pass" not in text


async def test_without_ice_settings_welcome_lists_no_servers(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway()
    invitation = await gateway.invite("relay")
    async with SignalingClient() as client:
        welcome = await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
    assert welcome["ice_servers"] == []
