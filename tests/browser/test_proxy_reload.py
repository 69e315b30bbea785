"""A reload in proxy mode, in a real Chromium: the browser's peer connection was the upstream
call's, so the reloaded page's offer is a new upstream call, given the conversation so far
(``UpstreamClient.carry_over``): the interviewer goes on where it was, not at question 1, and
the interview runs to its end with every line stored once. Relay mode's reload is
``test_rejoin.py``'s."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from gateway.app import SESSIONS, SIMULATED_UPSTREAM
from gateway.sim.script import Script
from gateway.sim.upstream import SimulatedUpstream

from .conftest import Gateway, LaunchBrowser, browser_test, phone_page

pytestmark = browser_test

#: The fake microphone's words (``conftest.write_speech_wav``), as the scripted answers.
SPOKEN = "I have worked on realtime systems and I enjoy debugging hard problems"
#: A short first question, then one long enough (about 12 s at 8 words a second) that the
#: reload lands while it is being asked, then the closing line that ends the interview.
TWO_QUESTIONS = {
    "questions": [
        {"question": "What do you build?", "answer": SPOKEN},
        {"question": " ".join(["Tell me how you would make it survive a reload."] * 10),
         "answer": SPOKEN + " again"},
    ],
    "closing": "That is all I wanted to ask. Goodbye.",
}  # fmt: skip


@pytest.fixture
def gateway_options(tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "two-questions.json"
    script.write_text(json.dumps(TWO_QUESTIONS))
    return {"sim_script": script, "sim_words_per_second": 8.0, "end_linger": 0.5}


async def test_a_reload_in_proxy_mode_carries_the_conversation_to_the_new_call(
    gateway: Gateway, launch_browser: LaunchBrowser
) -> None:
    invitation = await gateway.invite("proxy")
    page = await phone_page(await launch_browser())
    await page.goto(invitation.room_url(gateway.base_url))
    await page.get_by_role("button", name="Start interview").click()
    status = page.locator("#status")
    await expect(status).to_have_text("Connected (proxy)")
    session = gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id)
    assert session is not None
    script = Script.from_dict(TWO_QUESTIONS)
    transcript = page.get_by_role("log")
    candidate = transcript.locator('li[data-role="candidate"] .text')
    await expect(candidate.first).to_have_text(script.turns[0].answer, timeout=45_000)

    await page.reload()  # while the second question is being asked
    await page.get_by_role("button", name="Start interview").click()
    await expect(status).to_have_text("Connected (proxy)")
    await expect(page.get_by_role("alert")).to_be_hidden()
    assert gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id) is session
    # the reloaded page is told the interview so far
    interviewer = transcript.locator('li[data-role="interviewer"] .text')
    await expect(interviewer.first).to_have_text(script.turns[0].question)
    await expect(candidate.first).to_have_text(script.turns[0].answer)

    # the new call was given the conversation, and goes on from the unanswered question
    sim = gateway.app[SIMULATED_UPSTREAM]
    assert isinstance(sim, SimulatedUpstream)
    first_call, second_call = sim.calls.values()
    assert first_call.hung_up
    assert second_call.restored[:2] == [
        ("assistant", script.turns[0].question),
        ("user", script.turns[0].answer),
    ]
    rows = await gateway.ran_to_its_end(page, session, invitation.interview_id, 120)
    said = [row.text for row in rows if row.role == "interviewer"]
    assert said.count(script.turns[0].question) == 1  # not asked again on the new call
    assert said[-2:] == [script.turns[1].question, script.closing]
    answers = [row.text for row in rows if row.role == "candidate"]
    assert answers == [turn.answer for turn in script.turns]
