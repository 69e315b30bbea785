"""The candidate's network drops in a real Chromium (relay mode), and the interview resumes.

The signaling goes through ``CuttableLink`` (a forwarder the test controls); the media goes
straight between Chromium and the gateway on loopback, so stalling the link is a loss of the
signaling only.
"""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import expect

from gateway.app import DATABASE, SESSIONS
from storage import interviews

from .conftest import CuttableLink, Gateway, LaunchBrowser, browser_test, phone_page

pytestmark = browser_test

#: P = 2 s and G = 1.5 s. The stall lands between two pings, so the gateway notices 2 P after
#: the last ping the browser heard (its pong got through) and its grace ends 2 P + G = 5.5 s
#: after it; the browser notices at 1.5 P = 3 s (checked every 0.5 s) and is back well before.
#: The old browser waited 2.5 P = 5 s, checked every second, and came back after the grace
#: (almost always: it fails this test but rarely passes it).
FAST_LIVENESS = {"ping_interval": 2.0, "reconnect_grace": 1.5}


@pytest.mark.parametrize("gateway_options", [FAST_LIVENESS])
async def test_a_silent_signaling_path_is_noticed_within_the_grace_and_resumes(
    gateway: Gateway, cuttable_link: CuttableLink, launch_browser: LaunchBrowser
) -> None:
    invitation = await gateway.invite("relay")
    page = await phone_page(await launch_browser())
    await page.goto(invitation.room_url(f"http://127.0.0.1:{cuttable_link.port}"))
    await page.get_by_role("button", name="Start interview").click()
    status = page.locator("#status")
    await expect(status).to_have_text("Connected (relay)")
    session = gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id)
    assert session is not None
    await page.evaluate(
        """() => {
            window.states = [];
            interviewClient.addEventListener("statechange",
                (e) => states.push(`${e.detail.state}:${e.detail.reason ?? ""}`));
        }"""
    )

    cuttable_link.stall()  # nothing more either way, and no close: only liveness notices
    await page.wait_for_function(
        "() => states.join() === 'reconnecting:signaling_silent,connected:'", timeout=20_000
    )
    assert not session.ended.is_set(), f"the session ended: {session.end_reason}"
    assert gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id) is session
    await asyncio.wait_for(session.losses_reach(lambda: not session.losses), 10)

    await page.get_by_role("button", name="End interview").click()
    await asyncio.wait_for(session.ended.wait(), 15)
    record = await interviews.get_session(
        gateway.app[DATABASE], gateway.tenant_id, invitation.interview_id
    )
    assert record is not None and (record.status, record.end_reason) == ("ended", "bye")
