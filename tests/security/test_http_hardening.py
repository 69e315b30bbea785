"""HTTP hardening: connections that never finish their request are closed in time and capped
per address; bodies must arrive in time; tokens and transcripts are never cached; HSTS over
TLS only; no version banner; /metrics behind its token when one is set."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from signaling.client import SignalingClient
from tests.gateway.served import served

from .conftest import GatewayFactory, make_tenant

#: What the slow clients send: a request line and one header, never the blank line that ends
#: the headers.
PARTIAL = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n"


def from_address(address: str) -> aiohttp.ClientSession:
    """A client whose connections come from ``address`` (any 127.x address is this host's)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closes the connection within ``within`` seconds (a close with
    the request unread may come as a reset)."""
    try:
        async with asyncio.timeout(within):
            return await reader.read() == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.slow
async def test_connections_without_a_request_are_capped_per_address_and_closed_in_time(
    start_gateway: GatewayFactory, fresh_database_url: str, tmp_path: Path
) -> None:
    view = await start_gateway()  # the test's tenant and a view of the rows
    async with served(
        fresh_database_url, tmp_path / "g", view.db, view.tenant_id,
        GATEWAY_HTTP_HEADER_TIMEOUT="1", GATEWAY_HTTP_PENDING_PER_IP="4",
    ) as gateway:  # fmt: skip
        invitation = await gateway.invite()
        signaling = SignalingClient()  # a long request: outlives the header timeout
        await signaling.connect(invitation.signal_url(gateway.base_url), invitation.token)
        url = urlsplit(gateway.base_url)
        slow = []
        for _ in range(10):
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
            writer.write(PARTIAL)
            await writer.drain()
            slow.append((reader, writer))
        # beyond the cap of 4: closed at once (long before the header timeout of 1 s)
        assert [await closed_by_server(r, 0.5) for r, _ in slow[4:]] == [True] * 6
        started = time.monotonic()
        async with from_address("127.0.0.2") as other:  # another address is not held up
            async with other.get(f"{gateway.base_url}/healthz") as response:
                assert response.status == 200
        # the four within the cap: closed once the header timeout passes
        assert [await closed_by_server(r, 10) for r, _ in slow[:4]] == [True] * 4
        assert time.monotonic() - started < 10
        async with aiohttp.ClientSession() as http, http.get(f"{gateway.base_url}/healthz") as r:
            assert r.status == 200  # the address is free to connect again
        await signaling.ping("alive")
        assert (await signaling.receive())["type"] == "pong"
        await signaling.close()
        for _, writer in slow:
            writer.close()


async def test_a_body_that_does_not_arrive_in_time_is_408(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(http_body_timeout=0.5)
    acme = await make_tenant(gateway, http, "acme")
    url = urlsplit(gateway.base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        b"POST /v1/interviews HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer "
        + acme.key.encode()
        + b'\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"mode":'
    )
    await writer.drain()
    async with asyncio.timeout(10):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
    writer.close()
    assert head.startswith("HTTP/1.1 408"), head
    assert (await acme.create(mode="proxy"))["status"] == "created"  # the gateway goes on


async def test_tokens_and_transcripts_are_not_stored_and_hsts_follows_the_trusted_scheme(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(trusted_proxies=("127.0.0.2",), metrics_token="metrics-secret")
    async with aiohttp.ClientSession() as http:
        acme = await make_tenant(gateway, http, "acme")
        created = await acme.create(mode="proxy")
        for path in ("/v1/interviews", f"/v1/interviews/{created['id']}/transcript"):
            async with await acme.request("GET", path) as response:
                assert response.status == 200
                assert response.headers["Cache-Control"] == "no-store"
                assert response.headers["Server"] == "interview-gateway"  # no versions
        async with await acme.request("POST", "/v1/interviews", json={}) as response:
            assert response.status == 201 and "token" in await response.json()
            assert response.headers["Cache-Control"] == "no-store"
        # X-Forwarded-Proto counts from the trusted proxy only; HSTS follows it
        tls = {"X-Forwarded-Proto": "https"}
        async with http.get(f"{gateway.base_url}/healthz", headers=tls) as response:
            assert "Strict-Transport-Security" not in response.headers  # 127.0.0.1: untrusted
        async with from_address("127.0.0.2") as proxy:
            async with proxy.get(f"{gateway.base_url}/healthz", headers=tls) as response:
                assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
            async with proxy.get(f"{gateway.base_url}/healthz") as response:
                assert "Strict-Transport-Security" not in response.headers  # plain http
        metrics = f"{gateway.base_url}/metrics"
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with http.get(metrics, headers=headers) as response:
                assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        async with http.get(metrics, headers={"Authorization": "Bearer metrics-secret"}) as r:
            assert r.status == 200 and "gateway_sessions_live" in await r.text()
            assert r.headers["Cache-Control"] == "no-store"
