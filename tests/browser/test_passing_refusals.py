"""A refusal that passes by itself is tried again, in a real Chromium: the gateway's database
away at the moment the candidate presses Start refuses the socket (``database_unavailable``,
fatal for that socket, nothing used up); the page connects once the database is back, instead
of ending the candidate's interview for a blip."""

from __future__ import annotations

import asyncio

from playwright.async_api import WebSocket, expect

from gateway.app import SESSIONS
from tests.outages import outage

from .conftest import Gateway, LaunchBrowser, browser_test, phone_page

pytestmark = browser_test


async def test_start_during_a_database_outage_connects_once_it_is_back(
    gateway: Gateway, launch_browser: LaunchBrowser, postgres_url: str, fresh_database_url: str
) -> None:
    invitation = await gateway.invite("relay")
    browser = await launch_browser()
    page = await phone_page(browser)
    await page.goto(invitation.room_url(gateway.base_url))
    refused = asyncio.Event()

    def watch(socket: WebSocket) -> None:
        def received(payload: str | bytes) -> None:
            if "database_unavailable" in str(payload):
                refused.set()

        socket.on("framereceived", received)

    page.on("websocket", watch)
    with outage(postgres_url, fresh_database_url):
        await page.get_by_role("button", name="Start interview").click()
        await asyncio.wait_for(refused.wait(), 30)
    await expect(page.locator("#status")).to_have_text("Connected (relay)", timeout=30_000)
    await expect(page.get_by_role("alert")).to_be_hidden()
    session = gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id)
    assert session is not None and not session.ended.is_set()
