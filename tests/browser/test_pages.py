"""The pages' HTTP side, without a browser: what the gateway serves at which address."""

from __future__ import annotations

import re

import aiohttp

from gateway.http.pages import ROOM_PAGE

from .conftest import Gateway


async def test_the_room_is_served_for_an_interview_id_and_not_for_anything_else(
    gateway: Gateway,
) -> None:
    async with aiohttp.ClientSession(gateway.base_url) as http:
        async with http.get("/interview/0b6e1f3c-8f4e-4d7a-9b1e-2f0c5d6a7b8c") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert response.headers["Cache-Control"] == "no-store"
            assert "<title>Interview room</title>" in await response.text()
        async with http.get("/interview/not-an-id") as response:
            assert response.status == 404
            assert "invitation link" in await response.text()


async def test_the_client_module_is_served_as_javascript(gateway: Gateway) -> None:
    async with aiohttp.ClientSession(gateway.base_url) as http:
        for path in ("/static/interview-client.js", "/static/room.js"):
            async with http.get(path) as response:
                assert response.status == 200
                # Browsers run an ES module only when it comes with a JavaScript MIME type.
                assert response.content_type in ("text/javascript", "application/javascript")
        async with http.get("/static/../pages.py") as response:
            assert response.status in (403, 404)


def test_the_room_page_has_no_inline_script_or_style() -> None:
    html = ROOM_PAGE.read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert not re.search(r"\sstyle\s*=", html), "inline style attribute"
    assert "<style" not in html
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
