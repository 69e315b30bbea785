"""The browser client's pure helpers, run in a real Chromium (imported as any web app would),
and the room's markup as Chromium's accessibility tree sees it."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from playwright.async_api import Page, expect

from .conftest import Gateway, LaunchBrowser, browser_test

pytestmark = browser_test

CLIENT = "/static/interview-client.js"


@pytest.fixture
async def page(gateway: Gateway, launch_browser: LaunchBrowser) -> Page:
    browser = await launch_browser()
    page = await browser.new_page()
    # the room of no interview: a page of the gateway's origin whose policy lets it import
    await page.goto(f"{gateway.base_url}/interview/{uuid4()}")
    return page


async def run(page: Page, body: str) -> Any:
    """``body`` (a function of the imported module ``m``) evaluated in the page."""
    return await page.evaluate(f"import('{CLIENT}').then((m) => ({body})(m))")


async def test_an_empty_candidate_ends_only_its_mline_and_null_ends_all(page: Page) -> None:
    messages = await run(
        page,
        """(m) => [
            m.candidateMessage(new RTCIceCandidate({candidate: "", sdpMid: "1", sdpMLineIndex: 1})),
            m.candidateMessage(null),
            m.candidateMessage(new RTCIceCandidate({
                candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
                sdpMid: "0", sdpMLineIndex: 0,
            })),
        ]""",
    )
    assert messages == [
        {"type": "candidate", "candidate": "", "sdpMid": "1", "sdpMLineIndex": 1},
        {"type": "end-of-candidates"},
        {
            "type": "candidate",
            "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        },
    ]


async def test_the_transcript_is_a_list_inside_a_log(page: Page) -> None:
    """``role="log"`` on the ``<ol>`` itself took its list semantics away (axe: listitem)."""
    await expect(page.get_by_role("log").get_by_role("list")).to_have_count(1)
