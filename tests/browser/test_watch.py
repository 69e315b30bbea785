"""Watching live in a real Chromium: an interviewer's token opens the room, which offers
"Watch live" instead of the microphone; it follows a relayed interview that the fake-microphone
candidate runs in another page, shows every line once and in order, and plays both voices."""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Page, expect

from gateway.app import DATABASE, JWT_SECRET, SESSIONS
from gateway.sessions.invitations import observer_token
from gateway.sessions.turns import read_turns
from gateway.sim.script import Script
from storage.observers import observer_events
from storage.transcripts import read_transcript

from .conftest import ARTIFACTS, Gateway, LaunchBrowser, browser_test, phone_page

pytestmark = browser_test

#: The whole scripted interview (three answers, the closing line) on a loaded machine.
INTERVIEW_SECONDS = 120

#: Both voices have arrived once each has packets and sound (energy) on its own track.
BOTH_VOICES_HEARD = """async () => {
  const stats = await interviewClient.listenStats();
  const heard = (figures) => figures && figures.packetsReceived > 0 && figures.totalAudioEnergy > 0;
  return Boolean(stats) && heard(stats.candidate) && heard(stats.interviewer);
}"""


async def lines(page: Page) -> list[tuple[str, str]]:
    shown = (
        await page.get_by_role("log")
        .locator("li")
        .evaluate_all(
            "items => items.map(li => [li.dataset.role, li.querySelector('.text').textContent])"
        )
    )
    return [(role, text) for role, text in shown]


async def test_an_interviewer_watches_a_relayed_interview_live(
    gateway: Gateway, launch_browser: LaunchBrowser
) -> None:
    invitation = await gateway.invite("relay")
    browser = await launch_browser()
    candidate = await phone_page(browser)
    await candidate.goto(invitation.room_url(gateway.base_url))
    await candidate.get_by_role("button", name="Start interview").click()
    await expect(candidate.locator("#status")).to_have_text("Connected (relay)")
    script = Script.default()
    asked = candidate.get_by_role("log").locator('li[data-role="interviewer"] .text')
    await expect(asked.first).to_have_text(script.turns[0].question, timeout=30_000)
    session = gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id)
    assert session is not None

    # Halfway in, the interviewer opens the room with their own token.
    token, _ = observer_token(
        gateway.app[JWT_SECRET],
        invitation.tenant_id,
        invitation.interview_id,
        role="interviewer",
        subject="hiring-manager",
    )
    watcher = await phone_page(browser)
    await watcher.goto(f"{gateway.base_url}/interview/{invitation.interview_id}#token={token}")
    await expect(watcher.get_by_role("heading", level=1)).to_have_text("Watching the interview")
    await expect(watcher.get_by_role("button", name="Start interview")).to_be_hidden()
    await expect(watcher.get_by_role("button", name="Check microphone")).to_be_hidden()
    await watcher.get_by_role("button", name="Watch live").click()
    status = watcher.locator("#status")
    await expect(status).to_have_text("Watching live (relay)")
    # the interview so far: its first question, before anything live
    heard = watcher.get_by_role("log").locator('li[data-role="interviewer"] .text')
    await expect(heard.first).to_have_text(script.turns[0].question)
    await expect(
        watcher.get_by_role("log").locator('li[data-role="candidate"] .text').first
    ).to_have_text(script.turns[0].answer, timeout=45_000)
    await watcher.wait_for_function(BOTH_VOICES_HEARD, polling=500, timeout=45_000)
    listening: dict[str, Any] = await watcher.evaluate(
        """() => ({
          localStream: interviewClient.localStream,
          sending: interviewClient.peerConnection.getSenders().filter((s) => s.track).length,
          directions: interviewClient.peerConnection
            .getTransceivers()
            .map((t) => t.currentDirection),
          tracks: Object.values(interviewClient.remoteStreams)
            .map((s) => s.getAudioTracks()[0].id),
        })"""
    )
    # never a device opened, nothing sent; two receive-only m-lines, one track each
    assert listening["localStream"] is None and listening["sending"] == 0, listening
    assert listening["directions"] == ["recvonly", "recvonly"], listening
    assert len(set(listening["tracks"])) == 2, listening

    # The interview runs to its end (the closing line ends it); watching ends with it.
    await asyncio.wait_for(session.ended.wait(), INTERVIEW_SECONDS)
    await expect(status).to_have_text("Interview ended")
    ended = watcher.get_by_role("status").filter(has_text="Watching has ended")
    await expect(ended).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    await watcher.screenshot(path=ARTIFACTS / "room-watch.png", full_page=True)

    await gateway.flush_transcripts()
    db = gateway.app[DATABASE]
    rows = await read_transcript(db, gateway.tenant_id, invitation.interview_id)
    stored = [(turn.role, turn.text) for turn in read_turns(rows)]
    watched, taken = await lines(watcher), await lines(candidate)
    # every line once, in order: what the candidate's page showed, and what Postgres holds
    assert watched == taken, (watched, taken)
    assert watched == stored, (watched, stored)
    assert len(watched) == 2 * len(script.turns) + 1  # each question and answer, the closing
    audit = await observer_events(db, invitation.tenant_id, invitation.interview_id)
    assert [(row.subject, row.role, row.event) for row in audit][:1] == [
        ("hiring-manager", "interviewer", "join")
    ]
