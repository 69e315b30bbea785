"""The interview room in a real Chromium: whole interviews in relay and proxy mode, and the
messages a candidate sees when something is wrong (denied microphone, expired or used
invitation, lost connection)."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Page, expect

from gateway.app import DATABASE, SESSIONS
from gateway.sessions.turns import read_turns
from gateway.sim.script import Script
from storage import interviews
from storage.transcripts import read_transcript

from .conftest import ARTIFACTS, CuttableLink, Gateway, LaunchBrowser, browser_test, phone_page

pytestmark = browser_test


async def open_room(page: Page, url: str) -> list[str]:
    """Load the room; returns the list that Content-Security-Policy violations are put in
    (the page carries a strict policy of its own: any inline script or style breaks it)."""
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security" in msg.text else None,
    )
    await page.goto(url)
    return violations


@pytest.mark.parametrize(
    ("mode", "gateway_options"),
    [("relay", {}), ("proxy", {}), ("relay", {"upstream": "sim-live"})],
    ids=["relay", "proxy", "relay-sim-live"],
    indirect=["gateway_options"],
)
async def test_a_whole_interview_in_the_room(
    mode: str, gateway: Gateway, launch_browser: LaunchBrowser
) -> None:
    """The page and the client are the same on either upstream contract: on GPT-Live the
    page shows turns the gateway joined from timed fragments, and those are what it stores."""
    invitation = await gateway.invite(mode)
    page = await phone_page(await launch_browser())
    violations = await open_room(page, invitation.room_url(gateway.base_url))
    assert "#token=" not in page.url, "the token must leave the address bar"

    await page.get_by_role("button", name="Check microphone").click()
    await expect(page.locator("#mic-hint")).to_contain_text("Microphone ready")
    await page.get_by_role("button", name="Start interview").focus()
    await page.keyboard.press("Enter")  # the controls work from the keyboard
    status = page.locator("#status")
    await expect(status).to_have_text(f"Connected ({mode})")
    await expect(page.get_by_role("button", name="Mute")).to_be_focused()
    # welcomed: it exists
    session = gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id)
    assert session is not None

    # The interviewer asks, the candidate's looped speech answers: both lines reach the page.
    script = Script.default()
    transcript = page.get_by_role("log")
    interviewer = transcript.locator('li[data-role="interviewer"] .text')
    candidate = transcript.locator('li[data-role="candidate"] .text')
    await expect(interviewer.first).to_have_text(script.turns[0].question, timeout=30_000)
    await expect(candidate.first).to_have_text(script.turns[0].answer, timeout=45_000)

    stats = await page.evaluate("interviewClient.inboundAudioStats()")
    assert stats is not None, "no inbound audio stream"
    assert stats["packetsReceived"] > 0
    assert stats["totalAudioEnergy"] > 0, f"the AI's audio arrived silent: {stats}"

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"room-{mode}-{gateway.upstream}.png", full_page=True)

    mute = page.get_by_role("button", name="Mute")
    await page.keyboard.press("Space")
    await expect(mute).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("interviewClient.muted")
    await page.get_by_role("button", name="End interview").click()
    await expect(status).to_have_text("Interview ended")
    await asyncio.wait_for(session.ended.wait(), 15)
    await gateway.flush_transcripts()

    db = gateway.app[DATABASE]
    record = await interviews.get_session(db, gateway.tenant_id, invitation.interview_id)
    assert record is not None
    assert (record.status, record.end_reason, record.actual_mode) == ("ended", "bye", mode)
    rows = await read_transcript(db, gateway.tenant_id, invitation.interview_id)
    stored = {(turn.role, turn.text) for turn in read_turns(rows)}
    shown = await transcript.locator("li").evaluate_all(
        "items => items.map(li => [li.dataset.role, li.querySelector('.text').textContent])"
    )
    assert shown, "no transcript line on the page"
    if gateway.upstream == "sim":
        assert {tuple(line) for line in shown} <= stored, "the page shows lines Postgres lacks"
    else:
        # GPT-Live's fragments are read back on the session timeline, and the fake microphone
        # talks over the interviewer, so stored turns can interleave where the page (joining
        # fragments as they arrive) shows one line: each line shown is that speaker's words as
        # stored, in order.
        turns = read_turns(rows)
        for role, text in shown:
            said = " ".join(" ".join(t.text for t in turns if t.role == role).split())
            assert " ".join(text.split()) in said, (role, text, said)
    if gateway.upstream == "sim":
        assert ("candidate", script.turns[0].answer) in stored
    else:
        assert script.turns[0].answer in " ".join(t.text for t in turns if t.role == "candidate")
    assert violations == []


async def test_a_denied_microphone_says_how_to_allow_it(
    gateway: Gateway, launch_browser: LaunchBrowser
) -> None:
    invitation = await gateway.invite("relay")
    page = await phone_page(await launch_browser(microphone="deny"))
    await open_room(page, invitation.room_url(gateway.base_url))
    await page.get_by_role("button", name="Start interview").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Microphone access is blocked")
    await expect(page.get_by_role("button", name="Start interview")).to_be_enabled()
    assert gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id) is None, (
        "no mic, no session"
    )


async def test_an_expired_invitation_is_refused_before_asking_for_the_microphone(
    gateway: Gateway, launch_browser: LaunchBrowser
) -> None:
    invitation = await gateway.invite("relay", ttl=-60)
    page = await phone_page(await launch_browser())
    await open_room(page, invitation.room_url(gateway.base_url))
    await expect(page.get_by_role("alert")).to_contain_text("This invitation has expired")
    await expect(page.get_by_role("button", name="Start interview")).to_be_disabled()


async def test_a_used_invitation_says_the_interview_is_over(
    gateway: Gateway, launch_browser: LaunchBrowser
) -> None:
    invitation = await gateway.invite("relay")
    await interviews.end_session(
        gateway.app[DATABASE],
        gateway.tenant_id,
        invitation.interview_id,
        status="ended",
        reason="bye",
    )
    page = await phone_page(await launch_browser())
    await open_room(page, invitation.room_url(gateway.base_url))
    await page.get_by_role("button", name="Start interview").click()
    await expect(page.get_by_role("alert")).to_contain_text("already used")
    await expect(page.locator("#status")).to_have_text("Disconnected")


async def test_after_a_network_loss_the_room_rejoins_the_same_interview(
    gateway: Gateway, cuttable_link: CuttableLink, launch_browser: LaunchBrowser
) -> None:
    invitation = await gateway.invite("relay")
    page = await phone_page(await launch_browser())
    await open_room(page, invitation.room_url(f"http://127.0.0.1:{cuttable_link.port}"))
    await page.get_by_role("button", name="Start interview").click()
    status = page.locator("#status")
    await expect(status).to_have_text("Connected (relay)")
    script = Script.default()
    transcript = page.get_by_role("log")
    interviewer = transcript.locator('li[data-role="interviewer"] .text')
    await expect(interviewer.first).to_have_text(script.turns[0].question, timeout=30_000)
    await page.evaluate(
        """() => {
            window.firstPeerConnection = interviewClient.peerConnection;
            window.states = [];
            interviewClient.addEventListener("statechange", (e) => states.push(e.detail.state));
        }"""
    )

    cuttable_link.cut()
    await page.wait_for_function("() => states.join() === 'reconnecting,connected'")
    await expect(status).to_have_text("Connected (relay)")
    await expect(page.get_by_role("alert")).to_be_hidden()
    assert await page.evaluate("interviewClient.peerConnection !== window.firstPeerConnection")

    # The same AI conversation goes on: its next line comes over the new peer connection.
    heard_before = await interviewer.count()
    await expect(interviewer).to_have_count(heard_before + 1, timeout=45_000)
    stats = await page.evaluate("interviewClient.inboundAudioStats()")
    assert stats is not None and stats["totalAudioEnergy"] > 0

    session = gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id)
    await page.get_by_role("button", name="End interview").click()
    await asyncio.wait_for(session.ended.wait(), 15)
    record = await interviews.get_session(
        gateway.app[DATABASE], gateway.tenant_id, invitation.interview_id
    )
    assert record is not None and (record.status, record.end_reason) == ("ended", "bye")
