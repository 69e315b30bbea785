"""Every way an interview ends, in a real Chromium: the page releases every device it opened
(each track's readyState is 'ended') and says what happened. A failure is an error event; a
server shutting down is not a normal end ("Thank you")."""

from __future__ import annotations

import asyncio

from playwright.async_api import Browser, Page, expect

from gateway.app import SESSIONS
from gateway.sessions.session import InterviewSession

from .conftest import Gateway, LaunchBrowser, browser_test, phone_page

pytestmark = browser_test


async def in_interview(gateway: Gateway, browser: Browser) -> tuple[Page, InterviewSession]:
    invitation = await gateway.invite("relay")
    page = await phone_page(browser)
    await page.goto(invitation.room_url(gateway.base_url))
    await page.get_by_role("button", name="Start interview").click()
    await expect(page.locator("#status")).to_have_text("Connected (relay)")
    await page.evaluate(
        """() => {
            window.errors = [];
            interviewClient.addEventListener("error", (e) => errors.push(e.detail));
        }"""
    )
    session = gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id)
    assert session is not None
    return page, session


async def devices_released(page: Page) -> None:
    await page.wait_for_function(
        """() => interviewClient.localStream.getTracks().length > 0
            && interviewClient.localStream.getTracks().every((t) => t.readyState === "ended")"""
    )
    await expect(page.locator("#mic-hint")).to_have_text("Microphone off.")


async def test_every_ending_releases_the_microphone_and_says_what_happened(
    gateway: Gateway, launch_browser: LaunchBrowser
) -> None:
    browser = await launch_browser()

    # the candidate presses End: a normal end
    page, session = await in_interview(gateway, browser)
    await page.get_by_role("button", name="End interview").click()
    await devices_released(page)
    await expect(page.get_by_role("status").last).to_contain_text("Thank you for your time")
    await asyncio.wait_for(session.ended.wait(), 15)

    # the gateway fails the interview: an error event, and words for the reason
    page, session = await in_interview(gateway, browser)
    await session.end("failed", "peer_silent")
    await devices_released(page)
    await expect(page.get_by_role("alert")).to_contain_text("The connection was lost")
    assert await page.evaluate("errors.map((e) => [e.code, e.fatal])") == [["peer_silent", True]]
    await expect(page.locator("#status")).to_have_text("Disconnected")

    # the server shuts down (SIGTERM): the interview was interrupted, not finished
    page, session = await in_interview(gateway, browser)
    await gateway.app.shutdown()
    await devices_released(page)
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("The interview was interrupted")
    await expect(alert).not_to_contain_text("Thank you")
    assert [e["code"] for e in await page.evaluate("errors")] == ["shutdown"]
