"""Links handed out behind a TLS proxy: forwarded headers count from trusted proxies only.

The suite's gateway is reached from 127.0.0.1, so "a trusted proxy" is a gateway configured to
trust 127.0.0.0/8, and "an untrusted one" a gateway trusting only an address it never sees.
"""

from __future__ import annotations

import aiohttp
import pytest

from gateway.config import ConfigError, Settings
from gateway.http.urls import PublicUrls, websocket_url

from .conftest import GatewayFactory, make_tenant

LOOPBACK = ("127.0.0.0/8",)
ELSEWHERE = ("10.0.0.0/8", "fd00::/8")
TLS_PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "interviews.example"}


async def links(
    start_gateway: GatewayFactory, headers: dict[str, str], **settings: object
) -> tuple[str, str, str]:
    """(the gateway's own base URL, join_url, signal_url) of an interview created with
    ``headers`` on a gateway started with ``settings``."""
    gateway = await start_gateway(**settings)
    async with aiohttp.ClientSession() as http:
        acme = await make_tenant(gateway, http, "acme")
        async with await acme.request(
            "POST", "/v1/interviews", json={}, headers=headers
        ) as response:
            assert response.status == 201
            created = await response.json()
    return gateway.base_url, str(created["join_url"]), str(created["signal_url"])


async def test_a_trusted_proxy_s_forwarded_headers_give_https_and_wss_links(
    start_gateway: GatewayFactory,
) -> None:
    _, join, signal = await links(start_gateway, TLS_PROXY, trusted_proxies=LOOPBACK)
    assert join.startswith("https://interviews.example/interview/") and "#token=" in join
    assert signal.startswith("wss://interviews.example/v1/interviews/")
    assert signal.endswith("/signal")


async def test_the_same_headers_from_an_untrusted_peer_are_ignored(
    start_gateway: GatewayFactory,
) -> None:
    for trusted in ((), ELSEWHERE):
        base, join, signal = await links(start_gateway, TLS_PROXY, trusted_proxies=trusted)
        assert join.startswith(f"{base}/interview/")
        assert signal.startswith(base.replace("http://", "ws://") + "/v1/interviews/")


async def test_forwarded_counts_its_last_element_the_one_the_trusted_proxy_added(
    start_gateway: GatewayFactory,
) -> None:
    forwarded = {
        "Forwarded": 'proto=http;host="spoofed.example", '
        "for=192.0.2.1;proto=https;host=edge.example"
    }
    _, join, signal = await links(start_gateway, forwarded, trusted_proxies=LOOPBACK)
    assert join.startswith("https://edge.example/interview/")
    assert signal.startswith("wss://edge.example/")
    listed = {"X-Forwarded-Proto": "http, https", "X-Forwarded-Host": "a.example, b.example"}
    _, join, _ = await links(start_gateway, listed, trusted_proxies=LOOPBACK)
    assert join.startswith("https://b.example/interview/")


async def test_a_forwarded_host_that_is_not_a_host_is_ignored(
    start_gateway: GatewayFactory,
) -> None:
    headers = {"X-Forwarded-Proto": "javascript", "X-Forwarded-Host": "evil.example/x?y=@"}
    base, join, _ = await links(start_gateway, headers, trusted_proxies=LOOPBACK)
    assert join.startswith(f"{base}/interview/")


async def test_the_configured_public_url_always_wins(start_gateway: GatewayFactory) -> None:
    _, join, signal = await links(
        start_gateway,
        TLS_PROXY,
        trusted_proxies=LOOPBACK,
        public_url="https://gateway.example/",
    )
    assert join.startswith("https://gateway.example/interview/")
    assert signal.startswith("wss://gateway.example/v1/interviews/")


async def test_behind_a_trusted_proxy_the_room_s_own_origin_may_open_a_socket(
    start_gateway: GatewayFactory,
) -> None:
    """The room is at https://interviews.example, so its socket's Origin says that host."""
    for trusted, allowed in ((LOOPBACK, True), (ELSEWHERE, False)):
        gateway = await start_gateway(mode="proxy", trusted_proxies=trusted)
        invitation = await gateway.invite("proxy")
        url = invitation.signal_url(gateway.base_url)
        origin = "https://interviews.example"
        async with aiohttp.ClientSession() as http:
            if not allowed:
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(url, origin=origin, headers=TLS_PROXY)
                assert refused.value.status == 403
                continue
            async with http.ws_connect(url, origin=origin, headers=TLS_PROXY) as ws:
                await ws.send_json({"type": "hello", "token": invitation.token})
                assert (await ws.receive_json(timeout=10))["type"] == "welcome"


def test_trusted_proxies_are_addresses_or_networks_read_from_the_environment() -> None:
    env = {"GATEWAY_TRUSTED_PROXIES": "172.16.0.0/12, 10.1.2.3,fdaa::/16"}
    settings = Settings.from_env(env)
    assert settings.trusted_proxies == ("172.16.0.0/12", "10.1.2.3", "fdaa::/16")
    urls = PublicUrls.from_settings(settings)
    assert urls.trusts("172.19.4.5") and urls.trusts("::ffff:172.31.255.255")
    assert urls.trusts("10.1.2.3") and urls.trusts("fdaa:0:1::2")
    assert not urls.trusts("10.1.2.4") and not urls.trusts("172.32.0.1")
    assert not urls.trusts(None) and not urls.trusts("not-an-address")
    assert not PublicUrls.from_settings(Settings.from_env({})).trusts("127.0.0.1")
    with pytest.raises(ConfigError, match=r"GATEWAY_TRUSTED_PROXIES.*'fly-proxy'"):
        PublicUrls("", ["10.0.0.0/8", "fly-proxy"])


def test_websocket_urls_keep_everything_but_the_scheme() -> None:
    assert websocket_url("https://a.example:8443/x") == "wss://a.example:8443/x"
    assert websocket_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080"
    assert websocket_url("http://a.example/?next=https://b") == "ws://a.example/?next=https://b"
