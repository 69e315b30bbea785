"""The candidate's network drops in a real Chromium (relay mode), the interview resumes and runs
to its end: the scripted closing line ends it, every transcript line stored once.

Each kind of drop is made by the test inside its own network namespace: the signaling goes
through ``CuttableLink`` (a forwarder the test controls: ``stall`` keeps its connections open
and carries nothing more); the media goes straight between Chromium and the gateway over
loopback UDP, dropped with ``iptables`` rules on the browser leg's ports. The reload is
``test_rejoin.py``'s (and ``test_proxy_reload.py``'s). While the candidate is away the
interviewer is paused and, on their return, asks its last question again: the stored lines
are the script's, with the line it was on possibly cut short and then repeated.
``scripts/drop-loop`` runs these in a loop and counts what resumed.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from gateway.app import SESSIONS
from gateway.sessions.session import InterviewSession
from gateway.sim.script import Script

from .conftest import CuttableLink, Gateway, LaunchBrowser, browser_test, phone_page

pytestmark = browser_test

#: One question: a whole interview in a few seconds, its closing line ending it.
SHORT = {
    "questions": [
        {
            "question": "What do you build?",
            "answer": "I have worked on realtime systems and I enjoy debugging hard problems",
        }
    ],
    "closing": "That is all I wanted to ask. Goodbye.",
}

#: Signaling only: P = 2 s and G = 1.5 s. The stall lands between two pings, so the gateway
#: notices 2 P after the last ping the browser heard (its pong got through) and its grace ends
#: 2 P + G = 5.5 s after it; the browser notices at 1.5 P = 3 s (checked every 0.5 s) and is
#: back well before. The old browser waited 2.5 P = 5 s, checked every second, and came back
#: after the grace (almost always: it fails this case but rarely passes it).
SIGNALING = {"ping_interval": 2.0, "reconnect_grace": 1.5}
#: Media (and everything): the browser's ICE notices, then its 3 s 'disconnected' rule; the
#: gateway's watchdog after GATEWAY_PEER_TIMEOUT; the default grace covers the new peer.
MEDIA = {"ping_interval": 2.0, "reconnect_grace": 10.0}


@pytest.fixture
def gateway_options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "short-script.json"
    script.write_text(json.dumps(SHORT))
    return {"sim_script": script, "sim_words_per_second": 8.0, "end_linger": 0.5, **request.param}


def browser_leg_ports(session: InterviewSession) -> set[int]:
    """The gateway's UDP ports of the browser's current peer connection."""
    pc = session.call.browser_pc  # type: ignore[union-attr]
    transports = {t.receiver.transport.transport for t in pc.getTransceivers()}
    if pc.sctp is not None:
        transports.add(pc.sctp.transport.transport)
    return {c.port for t in transports for c in t.iceGatherer.getLocalCandidates()}


def as_scripted(said: list[str]) -> list[str]:
    """The interviewer's stored lines without what an absence adds: the line it was on, cut
    short when the candidate went (a prefix of the next line), and asked again on their return
    (the same line twice)."""
    lines: list[str] = []
    for text in said:
        if lines and text.startswith(lines[-1]):
            lines[-1] = text
        else:
            lines.append(text)
    return lines


@contextlib.contextmanager
def udp_dropped(ports: set[int]) -> Iterator[None]:
    """Drop every UDP packet to or from ``ports`` (this namespace's loopback) while inside."""
    rules = [
        rule
        for port in sorted(ports)
        for rule in (
            ["INPUT", "-p", "udp", "--dport", str(port), "-j", "DROP"],
            ["OUTPUT", "-p", "udp", "--sport", str(port), "-j", "DROP"],
        )
    ]
    for rule in rules:
        added = subprocess.run(["iptables", "-I", *rule], capture_output=True, text=True)
        if added.returncode != 0:
            pytest.skip(f"iptables cannot drop packets here: {added.stderr.strip()}")
    try:
        yield
    finally:
        for rule in rules:
            subprocess.run(["iptables", "-D", *rule], capture_output=True)


@pytest.mark.parametrize(
    ("kind", "gateway_options"),
    [("signaling", SIGNALING), ("media", MEDIA), ("everything", MEDIA)],
    indirect=["gateway_options"],
)
async def test_a_drop_resumes_and_the_interview_runs_to_its_end(
    kind: str, gateway: Gateway, cuttable_link: CuttableLink, launch_browser: LaunchBrowser
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

    with contextlib.ExitStack() as cuts:
        if kind in ("media", "everything"):
            cuts.enter_context(udp_dropped(browser_leg_ports(session)))
        if kind in ("signaling", "everything"):
            cuttable_link.stall()  # nothing more either way, and no close
        await page.wait_for_function("() => states[0]?.startsWith('reconnecting:')")
        # the network is back for new connections (a new peer has new ports); the rules for
        # the old leg's ports stay until it is gone
        await page.wait_for_function("() => states.at(-1) === 'connected:'", timeout=30_000)
    noticed = {"signaling": {"signaling_silent"}, "media": {"media_lost"}}
    reason = (await page.evaluate("states[0]")).removeprefix("reconnecting:")
    assert reason in noticed.get(kind, {"signaling_silent", "media_lost"}), reason
    assert not session.ended.is_set(), f"the session ended: {session.end_reason}"
    assert gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id) is session

    # ... and to its end: the closing line ends it, the page says so
    rows = await gateway.ran_to_its_end(page, session, invitation.interview_id, 90)
    script = Script.from_dict(SHORT)
    said = [row.text for row in rows if row.role == "interviewer"]
    assert as_scripted(said) == [script.turns[0].question, script.closing]
    assert script.turns[0].answer in [row.text for row in rows if row.role == "candidate"]
