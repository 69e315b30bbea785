"""The report and the dashboard in a real Chromium, for an interview that really took place: a
headless candidate (aiortc, the simulated interviewer) talks through a relayed interview, then
an interviewer opens its report from a link and an admin opens the dashboard with the API key
typed in, follows its link to the report, and axe-core checks both pages.

axe-core comes from npm, never a CDN: ``scripts/test`` installs the pinned version into
``.cache/npm`` before the tests, which run without a network. Without npm these tests skip.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from gateway.app import DATABASE, JWT_SECRET, SESSIONS
from gateway.sessions.invitations import observer_token
from gateway.sim.candidate import HeadlessCandidate
from gateway.sim.script import Script
from storage import quality, tenants

from .conftest import ARTIFACTS, Gateway, LaunchBrowser, browser_test, phone_page

AXE = Path(__file__).resolve().parents[2] / ".cache" / "npm" / "node_modules" / "axe-core"

pytestmark = [
    *browser_test,
    pytest.mark.skipif(
        shutil.which("npm") is None and not AXE.exists(),
        reason="npm is not installed: axe-core (the accessibility check) comes from npm",
    ),
]

#: Impacts axe-core may not report on these pages.
FORBIDDEN_IMPACTS = ("serious", "critical")


@pytest.fixture
def gateway_options() -> dict[str, Any]:
    return {
        "mode": "relay",
        "quality_interval": 0.3,  # several samples of each leg in a few seconds' interview
        "sim_words_per_second": 8.0,
        "ice_allow_remote": ("127.0.0.0/8",),
    }


def axe_source() -> Path:
    script = AXE / "axe.min.js"
    assert script.exists(), f"axe-core is not installed at {AXE}: run scripts/test, which does"
    return script


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    results = await page.evaluate("axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]][:3]}
        for v in results["violations"]
        if v["impact"] in FORBIDDEN_IMPACTS
    ]


async def csp_watch(page: Page) -> list[str]:
    violations: list[str] = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security" in msg.text else None,
    )
    return violations


async def test_an_interviews_report_and_the_dashboard_in_chromium(
    gateway: Gateway, launch_browser: LaunchBrowser
) -> None:
    invitation = await gateway.invite("relay")
    candidate = HeadlessCandidate(
        invitation.signal_url(gateway.base_url),
        invitation.token,
        interview_id=str(invitation.interview_id),
        answers=[turn.answer for turn in Script.default().turns],
        words_per_second=8.0,
    )
    outcome = await candidate.run(time_limit=90)
    assert outcome.error is None, outcome.error
    session = gateway.app[SESSIONS].live(invitation.tenant_id, invitation.interview_id)
    if session is not None:
        await asyncio.wait_for(session.ended.wait(), 30)
    await gateway.flush_transcripts()
    db = gateway.app[DATABASE]
    samples, turns = await quality.quality_samples(db, gateway.tenant_id, invitation.interview_id)
    assert len(turns) == outcome.answers_spoken > 0
    assert {s.sample.leg for s in samples} == {"browser", "upstream"}

    browser = await launch_browser()
    page = await phone_page(browser)
    await page.add_init_script(path=str(axe_source()))
    csp = await csp_watch(page)

    # An interviewer opens the link the admin sent: the token in the fragment, never sent.
    token, _ = observer_token(
        gateway.app[JWT_SECRET], gateway.tenant_id, invitation.interview_id, role="interviewer"
    )
    report_path = f"/interview/{invitation.interview_id}/report"
    await page.goto(f"{gateway.base_url}{report_path}#token={token}")
    await expect(page.locator("main")).to_have_attribute("data-state", "loaded")
    assert page.url == f"{gateway.base_url}{report_path}", "the token must leave the address bar"
    await expect(page).to_have_title("Interview report")
    await expect(page.get_by_role("img", name="Who spoke when")).to_be_visible()
    latency = page.get_by_role("img", name="Response latency of each turn")
    await expect(latency).to_be_visible()
    await expect(latency.locator(".latency-mark")).to_have_count(len(turns))
    await expect(page.locator("#timeline .turn.speaker-candidate")).to_have_count(
        outcome.answers_spoken
    )
    for leg in ("browser", "upstream"):
        chart = page.locator(f"#{leg}-network")
        await expect(chart).to_be_visible()
        # a line for each series the database holds (not Playwright's visibility: a flat line
        # has no height): the jitter of every sample, the round trip from the first report on
        # (RTCP reports audio every 2.5-7.5 s, so a short interview may end before one came)
        await expect(chart.locator("polyline.series-jitter").first).to_be_attached()
        timed = any(s.sample.rtt_ms is not None for s in samples if s.sample.leg == leg)
        drawn = chart.locator(".series-rtt:is(polyline, circle)")
        if timed:
            await expect(drawn.first).to_be_attached()
        else:
            await expect(drawn).to_have_count(0)
    first_answer = Script.default().turns[0].answer
    await expect(page.get_by_role("table", name="Transcript")).to_contain_text(first_answer)
    # a phone's width: nothing wider than the screen but the tables' own scrolling boxes
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "report-relay.png", full_page=True)
    assert await axe_violations(page) == []

    # The printed layout keeps the pictures and opens the folded sample tables.
    await page.emulate_media(media="print")
    await page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    await expect(page.locator("details[open]")).to_have_count(2)
    await page.pdf(path=ARTIFACTS / "report-relay.pdf")
    await page.emulate_media(media="screen")

    # An admin types the API key into the dashboard's form; its link leads to the report.
    key = await tenants.create_api_key(db, gateway.tenant_id, "browser")
    admin = await phone_page(browser)
    await admin.add_init_script(path=str(axe_source()))
    csp += await csp_watch(admin)
    await admin.goto(f"{gateway.base_url}/dashboard")
    await expect(admin.locator("main")).to_have_attribute("data-state", "refused")
    assert await axe_violations(admin) == []  # the form, before any credential
    await admin.get_by_label("API key, admin token or interviewer token").fill(key)
    await admin.get_by_role("button", name="Show the tenant's interviews").click()
    await expect(admin.locator("main")).to_have_attribute("data-state", "loaded")
    row = admin.get_by_role("row").filter(has_text=str(invitation.interview_id)[:8])
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text(f"{len(turns)} turns, median")
    assert await axe_violations(admin) == []
    await admin.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
    assert key not in await admin.content()
    await row.get_by_role("link").click()
    await admin.wait_for_url(f"{gateway.base_url}{report_path}")
    await expect(admin.locator("main")).to_have_attribute("data-state", "loaded")
    await expect(admin.locator("#latency .latency-mark")).to_have_count(len(turns))
    stored = await admin.evaluate("JSON.stringify(sessionStorage)")
    assert key in json.loads(stored).values()  # the tab's only copy
    assert key not in await admin.content()
    assert csp == []
