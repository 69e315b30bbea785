"""Rejoining in a real Chromium: a reload rejoins the same interview with the reconnect secret
the page kept in sessionStorage; another tab opened with the same link is refused and says so,
and the interview goes on in the first."""

from __future__ import annotations

import asyncio

from playwright.async_api import expect

from gateway.app import DATABASE, SESSIONS
from storage import interviews

from .conftest import Gateway, LaunchBrowser, browser_test, phone_page

pytestmark = browser_test


async def test_a_reload_rejoins_and_another_tab_is_refused(
    gateway: Gateway, launch_browser: LaunchBrowser
) -> None:
    invitation = await gateway.invite("relay")
    browser = await launch_browser()
    page = await phone_page(browser)
    await page.goto(invitation.room_url(gateway.base_url))
    await page.get_by_role("button", name="Start interview").click()
    status = page.locator("#status")
    await expect(status).to_have_text("Connected (relay)")
    session = gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id)
    assert session is not None

    await page.reload()
    await page.get_by_role("button", name="Start interview").click()
    await expect(status).to_have_text("Connected (relay)")
    await expect(page.get_by_role("alert")).to_be_hidden()
    assert gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id) is session
    assert not session.ended.is_set()

    # The link replayed in a tab of its own (no sessionStorage of the first): refused, and
    # the first tab keeps its interview.
    other = await phone_page(browser)
    await other.goto(invitation.room_url(gateway.base_url))
    await other.get_by_role("button", name="Start interview").click()
    await expect(other.get_by_role("alert")).to_contain_text("open in another window")
    await expect(status).to_have_text("Connected (relay)")
    assert session.current is not None and not session.ended.is_set()

    await page.get_by_role("button", name="End interview").click()
    await asyncio.wait_for(session.ended.wait(), 15)
    record = await interviews.get_session(
        gateway.app[DATABASE], gateway.tenant_id, invitation.interview_id
    )
    assert record is not None and (record.status, record.end_reason) == ("ended", "bye")
