"""A real simulated upstream on loopback, an HTTP client, and a real aiortc offerer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.sim.script import Script
from gateway.sim.upstream import SimulatedUpstream
from tests.sim.sim_peer import API_KEY, SPEED, Offerer


@pytest.fixture
def script() -> Script:
    return Script.default()


@pytest.fixture
async def sim(script: Script) -> AsyncIterator[SimulatedUpstream]:
    upstream = SimulatedUpstream(
        script=script, api_key=API_KEY, words_per_second=SPEED, vad_hangover_ms=250
    )
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def offerer() -> AsyncIterator[Offerer]:
    peer = Offerer()
    try:
        yield peer
    finally:
        await peer.close()
