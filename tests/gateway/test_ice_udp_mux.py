"""Whole relayed interviews through the shared ICE UDP port (``GATEWAY_ICE_UDP_PORT``): many at
once on one socket, and while the port is flooded."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from gateway.bench.udp_sockets import udp_socket_inodes, udp_sockets
from gateway.media.udp_mux import UdpMux
from gateway.sessions import manager
from storage import transcripts
from tests.udp import free_udp_port

from .conftest import GatewayFactory, RunningGateway
from .test_interviews import TRANSCRIPT_LINES, take_interview

pytestmark = pytest.mark.slow

DELIVERED = 'gateway_ice_mux_datagrams_total{outcome="delivered"}'


def mux_of(gateway: RunningGateway) -> UdpMux:
    sockets = gateway.sessions.calls.relay_options.ice_sockets
    assert sockets is not None and sockets.mux is not None
    return sockets.mux


@contextlib.asynccontextmanager
async def sampling(probe: Callable[[], Any]) -> AsyncIterator[list[Any]]:
    """``probe()``'s values, taken every 50 ms while the block runs (what the peak was)."""
    samples: list[Any] = []

    async def sample() -> None:
        while True:
            samples.append(probe())
            await asyncio.sleep(0.05)

    task = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        task.cancel()
        samples.append(probe())


async def interviews(gateway: RunningGateway, count: int, port: int) -> None:
    """``count`` relayed interviews at once; each must complete with every line, its browser
    leg's selected pair on the shared port."""
    invitations = [await gateway.invite("relay") for _ in range(count)]
    reports = await asyncio.gather(
        *(gateway.candidate(invitation).run(time_limit=150) for invitation in invitations)
    )
    assert [r.error for r in reports] == [None] * count
    await gateway.writer.flush()
    for invitation in invitations:
        rows = await transcripts.read_transcript(
            gateway.db, invitation.tenant_id, invitation.interview_id
        )
        assert len(rows) == TRANSCRIPT_LINES
        record = await gateway.ended_record(invitation)
        assert (record.end_reason, record.actual_mode) == ("bye", "relay")
        pair = record.selected_pair
        assert pair.startswith(f"host udp 127.0.0.1:{port} -> "), pair


async def test_twenty_relayed_interviews_at_once_share_one_udp_socket(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # twenty admissions at once on a loaded loop wait longer for the database than the prompt
    # 2 s that admission allows in production; the media path is what this test is about
    monkeypatch.setattr(manager, "DATABASE_WAIT", 30.0)
    port = free_udp_port()
    gateway = await start_gateway(mode="relay", max_relay_sessions=20, ice_udp_port=port)
    mux = mux_of(gateway)
    async with sampling(lambda: (udp_socket_inodes(port), mux.sizes())) as s:
        await interviews(gateway, 20, port)
    # one socket, the same one, held the port all along (a sample may miss its row: see
    # udp_sockets._rows; a second socket on the port would show as a second inode)
    assert len(set().union(*(inodes for inodes, _ in s))) == 1
    assert [s for s in udp_sockets() if s[1] == port] == [("127.0.0.1", port)]
    # both legs of every interview were on it at once (an upstream leg has two agents until
    # the answer bundles them)
    assert max(sizes["endpoints"] for _, sizes in s) >= 2 * 20
    assert mux.sizes() == {"ufrags": 0, "endpoints": 0, "addresses": 0, "transactions": 0}
    # (a check may still come for a leg just closed: its ufrag is unknown by then)
    assert mux.stats.unauthenticated == 0
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.base_url}/metrics") as r:
        metrics = (await r.text()).splitlines()
    assert 'gateway_ice_mux_entries{map="endpoints"} 0.0' in metrics
    delivered = next(m for m in metrics if m.startswith(DELIVERED))
    assert float(delivered.split()[-1]) == mux.stats.delivered > 1000


#: Binding requests with random ufrags and random datagrams, from one socket, at most
#: ``LIMIT`` of each, about 4000 a second, until the test kills it.
FLOOD = """
import os, socket, sys, time
from aioice import stun
port, limit = int(sys.argv[1]), int(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in range(limit):
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["USERNAME"] = os.urandom(4).hex() + ":" + os.urandom(4).hex()
    request.add_message_integrity(os.urandom(16))
    sock.sendto(bytes(request), ("127.0.0.1", port))
    sock.sendto(bytes([23]) + os.urandom(100), ("127.0.0.1", port))
    if n % 20 == 0:
        time.sleep(0.01)
"""
LIMIT = 400_000


async def test_interviews_complete_while_the_port_is_flooded_and_the_maps_stay_bounded(
    start_gateway: GatewayFactory,
) -> None:
    port = free_udp_port()
    gateway = await start_gateway(mode="relay", ice_udp_port=port)
    mux = mux_of(gateway)
    flood = await asyncio.create_subprocess_exec(sys.executable, "-c", FLOOD, str(port), str(LIMIT))
    try:
        async with sampling(mux.sizes) as sizes:
            await interviews(gateway, 5, port)
    finally:
        flood.kill()
        await flood.wait()
    assert mux.stats.unknown_ufrag > 1000 and mux.stats.unroutable > 1000
    # the flood's ufrags and address never entered a map: only the legs' own entries did
    assert max(s["ufrags"] for s in sizes) <= 3 * 5
    assert max(s["addresses"] for s in sizes) <= 3 * 5
    assert mux.sizes() == {"ufrags": 0, "endpoints": 0, "addresses": 0, "transactions": 0}


@contextlib.contextmanager
def every_port_taken(port: int) -> Iterator[None]:
    """Another process's socket on ``port``: a range of that one port is exhausted."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        yield


#: below Linux's ephemeral range: no random bind of another test can hold it
RANGE_PORT = 20100


async def test_an_exhausted_port_range_makes_auto_mode_proxy_and_relay_mode_refuse(
    start_gateway: GatewayFactory,
) -> None:
    with every_port_taken(RANGE_PORT):
        gateway = await start_gateway(mode="auto", ice_udp_ports=(RANGE_PORT, RANGE_PORT))
        report, rows, record = await take_interview(gateway, "auto")
        assert report.mode == "proxy" and record.actual_mode == "proxy"
        assert len(rows) == TRANSCRIPT_LINES
        assert gateway.sessions.stats.fallbacks == 1
        assert gateway.sessions.relay_slots_used == 0

        invitation = await gateway.invite("relay")
        refused = await gateway.candidate(invitation).run(time_limit=20)
        assert refused.error is not None and "relay_unavailable" in refused.error
        record = await gateway.ended_record(invitation)
        assert (record.status, record.end_reason) == ("failed", "relay_unavailable")
