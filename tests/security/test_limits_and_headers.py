"""Limits (rates, concurrent sessions, sizes, timeouts), CORS, and the pages' security headers."""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser

import aiohttp
import pytest

from gateway.app import JWT_SECRET
from gateway.sessions.invitations import invite
from signaling.client import SignalingClient, SignalingClientError
from storage import tenants

from .conftest import GatewayFactory, make_tenant


async def test_the_admin_api_limits_each_address_with_429_and_retry_after(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(rate_api_per_ip=3)
    acme = await make_tenant(gateway, http, "acme")
    statuses = []
    for _ in range(5):
        async with await acme.request("GET", "/v1/interviews") as response:
            statuses.append(response.status)
            if response.status == 429:
                assert int(response.headers["Retry-After"]) >= 1
                assert (await response.json())["error"]["code"] == "rate_limited"
    assert statuses == [200, 200, 200, 429, 429]
    async with http.get(gateway.base_url + "/healthz") as response:  # not the API: not limited
        assert response.status == 200


async def test_the_admin_api_limits_each_tenant(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(rate_api_per_tenant=2)
    acme, other = await make_tenant(gateway, http, "acme"), await make_tenant(gateway, http, "o")
    statuses = []
    for _ in range(3):
        async with await acme.request("GET", "/v1/interviews") as response:
            statuses.append(response.status)
    async with await other.request("GET", "/v1/interviews") as response:
        statuses.append(response.status)  # another tenant from the same address is unaffected
    assert statuses == [200, 200, 429, 200]


async def test_signaling_connects_are_limited_per_address_and_per_tenant(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(rate_signal_per_ip=2, mode="proxy")
    invitation = await gateway.invite("proxy")
    url = invitation.signal_url(gateway.base_url)
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.ws_connect(url):
                pass
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 429
        assert int(refused.value.headers["Retry-After"]) >= 1  # type: ignore[index]

    gateway = await start_gateway(rate_signal_per_tenant=1, mode="proxy")
    first, second = await gateway.invite("proxy"), await gateway.invite("proxy")
    async with SignalingClient() as client:
        await client.connect(first.signal_url(gateway.base_url), first.token)
    async with SignalingClient() as client:
        with pytest.raises(SignalingClientError) as caught:
            await client.connect(second.signal_url(gateway.base_url), second.token)
        assert caught.value.code == "rate_limited" and await client.wait_closed() == 4304


async def test_a_tenant_has_a_maximum_of_live_sessions(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(max_sessions_per_tenant=1, mode="proxy", reconnect_grace=30)
    secret = gateway.app[JWT_SECRET]
    first, second = await gateway.invite("proxy"), await gateway.invite("proxy")

    other_tenant = await tenants.create_tenant(gateway.db, "other")
    elsewhere = await invite(gateway.db, secret, other_tenant, mode="proxy")
    async with SignalingClient() as a, SignalingClient() as b, SignalingClient() as c:
        await a.connect(first.signal_url(gateway.base_url), first.token)
        with pytest.raises(SignalingClientError) as caught:
            await b.connect(second.signal_url(gateway.base_url), second.token)
        assert caught.value.code == "at_capacity"
        welcome = await c.connect(elsewhere.signal_url(gateway.base_url), elsewhere.token)
        assert welcome["interview_id"] == str(elsewhere.interview_id)
        await a.bye()
        await a.wait_closed()
    session = gateway.sessions.live(first.tenant_id, first.interview_id)
    if session is not None:
        await asyncio.wait_for(session.ended.wait(), 10)
    # the refusal did not spend the second invitation: now that there is room, it works
    async with SignalingClient() as b:
        welcome = await b.connect(second.signal_url(gateway.base_url), second.token)
        assert welcome["interview_id"] == str(second.interview_id)


async def test_hello_and_idle_timeouts_and_message_size(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(
        hello_timeout=0.3, ping_interval=0.3, signal_max_message=2048, mode="proxy"
    )
    invitation = await gateway.invite("proxy")
    url = invitation.signal_url(gateway.base_url)
    async with SignalingClient() as silent:
        await silent.open(url)
        assert (await silent.receive())["code"] == "hello_timeout"
        assert await silent.wait_closed() == 4006
    async with SignalingClient(answer_pings=False) as idle:
        welcome = await idle.connect(url, invitation.token)
        assert welcome["max_message_size"] == 2048
        await idle.send_raw('{"type": "ping", "id": "' + "x" * 4096 + '"}')
        assert (await idle.receive())["code"] == "too_large"
        codes = []
        async for message in idle:
            codes.append(message.get("code"))
        assert "ping_timeout" in codes and idle.close_code == 4007


# -- CORS -----------------------------------------------------------------------------------


async def test_cors_answers_only_allowlisted_origins_and_never_with_credentials(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(cors_origins=("https://app.example",))
    acme = await make_tenant(gateway, http, "acme")

    async def preflight(origin: str) -> aiohttp.ClientResponse:
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        async with http.options(acme.url("/v1/interviews"), headers=headers) as response:
            return response

    good = await preflight("https://app.example")
    assert good.status == 204
    assert good.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Authorization" in good.headers["Access-Control-Allow-Headers"]
    assert (await preflight("https://evil.example")).status == 403
    for origin, allowed in [("https://app.example", True), ("https://evil.example", False)]:
        async with await acme.request(
            "GET", "/v1/interviews", headers={"Origin": origin}
        ) as response:
            assert response.headers.get("Access-Control-Allow-Origin") == (
                origin if allowed else None
            )
            assert "Access-Control-Allow-Credentials" not in response.headers
            assert response.headers.get("Access-Control-Allow-Origin") != "*"


async def test_signaling_sockets_from_foreign_origins_are_refused(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(cors_origins=("https://app.example",), mode="proxy")
    invitation = await gateway.invite("proxy")
    url = invitation.signal_url(gateway.base_url)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, origin="https://evil.example")
        assert refused.value.status == 403
        for origin in ("https://app.example", gateway.base_url):
            # an interview each: a second socket of a live one needs its reconnect secret
            own = await gateway.invite("proxy")
            async with http.ws_connect(own.signal_url(gateway.base_url), origin=origin) as ws:
                await ws.send_json({"type": "hello", "token": own.token})
                assert (await ws.receive_json(timeout=10))["type"] == "welcome"


# -- headers --------------------------------------------------------------------------------


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.handlers: list[str] = []
        self._in_inline = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.handlers += [name for name in names if name.startswith("on")]
        self._in_inline = tag == "script" and "src" not in names

    def handle_data(self, data: str) -> None:
        if self._in_inline and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_inline = False


async def test_pages_carry_a_strict_csp_and_no_inline_script(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway()
    invitation = await gateway.invite()
    async with http.get(f"{gateway.base_url}/interview/{invitation.interview_id}") as response:
        page, headers = await response.text(), response.headers
    csp = headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert directives["script-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    assert directives["connect-src"] == "'self'" and "media-src" in directives
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    scripts = _Scripts()
    scripts.feed(page)
    assert scripts.inline == [] and scripts.handlers == []
    assert "#token=" not in page and not re.search(r"eyJ[\w-]+\.", page)
    for path in ("/static/room.js", "/openapi.json", "/healthz", "/interview/not-an-id"):
        async with http.get(gateway.base_url + path) as response:
            assert response.headers["X-Content-Type-Options"] == "nosniff", path
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
