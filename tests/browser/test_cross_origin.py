"""The browser client on a web app of another origin, in a real Chromium: an allowed origin
imports ``/static/interview-client.js`` from the gateway (CORS on ``/static/``), and a page
whose origin the gateway refuses is told so at once (``origin_not_allowed``), not "cannot reach
the server" after every retry."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from gateway.http.pages import STATIC_DIR

from .conftest import Gateway, LaunchBrowser, browser_test

pytestmark = browser_test


@pytest.fixture
def app_port() -> int:
    """A free loopback port for the web app, known before the gateway starts (its allowlist
    names the app's origin)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def gateway_options(app_port: int) -> dict[str, Any]:
    # http://127.0.0.1:<port> is allowed; http://localhost:<port>, the same server, is not
    return {"cors_origins": (f"http://127.0.0.1:{app_port}",)}


@pytest.fixture
async def web_app(app_port: int) -> AsyncIterator[None]:
    """Another site: an empty page, and its own copy of the client module."""
    page = "<!doctype html><title>An employer's site</title>"
    module = (STATIC_DIR / "interview-client.js").read_text()

    async def home(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def client(request: web.Request) -> web.Response:
        return web.Response(text=module, content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/", home)
    app.router.add_get("/own/interview-client.js", client)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", app_port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def test_an_allowed_origin_imports_the_client_and_a_refused_one_is_told_why(
    gateway: Gateway, web_app: None, app_port: int, launch_browser: LaunchBrowser
) -> None:
    browser = await launch_browser()
    allowed = await browser.new_page()
    await allowed.goto(f"http://127.0.0.1:{app_port}/")
    imported = await allowed.evaluate(
        f"import('{gateway.base_url}/static/interview-client.js')"
        ".then((m) => typeof m.InterviewClient)"
    )
    assert imported == "function"

    invitation = await gateway.invite("relay")
    refused = await browser.new_page()
    await refused.goto(f"http://localhost:{app_port}/")
    outcome = await refused.evaluate(
        """async ([signalUrl, token]) => {
            const m = await import("/own/interview-client.js");
            const client = new m.InterviewClient({ signalUrl, token, reconnectDelayMs: 50 });
            const errors = [];
            client.addEventListener("error", (e) => errors.push([e.detail.code, e.detail.fatal]));
            try {
                await client.start();
                return { started: true, errors };
            } catch (err) {
                return { code: err.code, errors };
            }
        }""",
        [invitation.signal_url(gateway.base_url), invitation.token],
    )
    # the first refusal is final: no retries reported as "cannot reach the server"
    assert outcome == {"code": "origin_not_allowed", "errors": [["origin_not_allowed", True]]}
