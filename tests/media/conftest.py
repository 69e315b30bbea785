"""A real two-leg relay on loopback between simulated peers that neither encode nor decode.

The "upstream" is a ``PeerHost`` answering ``/v1/realtime/calls`` over real HTTP (reached through
the gateway's own ``RealtimeUpstream`` client); the "browser" is a ``PeerHost`` offering to the
relay. Both send distinct Opus payloads (speech, encoded once), so what arrives can be compared
byte for byte with what was sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from gateway.media.forwarding import MediaStats
from gateway.media.relay import Relay, RelayOptions
from gateway.sim.opus_peers import LOCAL, PeerHost, encode_opus
from gateway.sim.speech import synthesize
from gateway.upstream.openai import RealtimeUpstream


@pytest.fixture(scope="session")
def speech_payloads() -> list[bytes]:
    speech = synthesize("tell me about a project you are proud of and why", seed=3)
    # Noise under the speech so that the pauses, too, encode to distinct packets.
    noise = np.random.default_rng(3).normal(0, 300, len(speech))
    payloads = encode_opus((speech + noise).clip(-32768, 32767).astype(np.int16))
    assert len(set(payloads)) == len(payloads)
    return payloads


@pytest.fixture
async def far(speech_payloads: list[bytes]) -> AsyncIterator[tuple[PeerHost, str]]:
    """The upstream stand-in and its base URL."""
    host = PeerHost(speech_payloads[::-1])  # the other direction sends other payloads
    app = web.Application()
    app.router.add_post("/v1/realtime/calls", host.answer)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", host.hangup)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield host, f"http://127.0.0.1:{port}/v1"
    finally:
        await host.close()
        await runner.cleanup()


@pytest.fixture
async def near(speech_payloads: list[bytes]) -> AsyncIterator[PeerHost]:
    """The browser stand-in."""
    host = PeerHost(speech_payloads)
    try:
        yield host
    finally:
        await host.close()


class Heard:
    """A call listener that keeps what the relay told it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def server_event(self, message: str | bytes, source: str) -> None:
        self.events.append(("server_event", source))

    def peer_connected(self, selected_pair: str | None) -> None:
        self.events.append(("peer_connected", selected_pair))

    def peer_lost(self, reason: str) -> None:
        self.events.append(("peer_lost", reason))

    def peer_back(self) -> None:
        self.events.append(("peer_back", None))

    def upstream_failed(self, reason: str) -> None:
        self.events.append(("upstream_failed", reason))

    def integrity_event(self, kind: str, detail: str) -> None:
        self.events.append((kind, detail))


@pytest.fixture
def media_stats() -> MediaStats:
    return MediaStats()


@pytest.fixture
async def relay(far: tuple[PeerHost, str], media_stats: MediaStats) -> AsyncIterator[Relay]:
    async with aiohttp.ClientSession() as http:
        upstream = RealtimeUpstream(kind="sim", base_url=far[1], api_key="test", http=http)
        relay = Relay(
            upstream,
            Heard(),
            options=RelayOptions(ice_addresses=LOCAL, stats=media_stats),
        )
        try:
            yield relay
        finally:
            await relay.close()
