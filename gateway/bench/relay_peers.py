"""The peer processes of ``bench relay``: simulated browsers and AI upstreams carrying marked Opus.

Two processes play the peers of a run (the peers themselves are :mod:`gateway.sim.opus_peers`),
each an aiohttp server on 127.0.0.1:
- ``far`` answers ``POST /realtime/calls`` (and GPT-Live's ``POST /live/sessions``) like the AI
  upstream (the relay's upstream leg, or the near peers directly when measuring a direct
  connection);
- ``near`` offers N sessions to a target's ``/realtime/calls`` like browsers do;
- ``listen`` (``--observers K``) is K observers of each of those N sessions: each offers a
  receive-only peer connection of two audio m-lines to the relay's ``/control/listen/{name}``
  (as an observer's listen-in offer reaches ``Relay.listen_in``) and counts the packets of both
  voices without decoding them.
All then take ``/control/go``, ``/control/stop`` and ``GET /control/report`` from the bench.
Their aiortc is the gateway's (``aiortc_internals.install``), so that they report audio over
RTCP every 5 s, as the browsers and the AI upstream they stand for do (libwebrtc), not every
second as aiortc does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

import aiohttp
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from gateway.bench.processes import serve
from gateway.media import aiortc_internals, ice
from gateway.media.listen import VOICES
from gateway.sim.opus_peers import (
    CONNECT_TIMEOUT,
    LOCAL,
    SESSION_KEY,
    PacketProbe,
    PeerHost,
    marked_payloads,
)
from gateway.upstream.openai import RealtimeUpstream

#: The listeners' process priority (see ``run_listen``).
LISTEN_NICENESS = 10


def control_routes(app: web.Application, host: PeerHost) -> None:
    async def go(_: web.Request) -> web.Response:
        host.go.set()
        return web.Response()

    async def stop(_: web.Request) -> web.Response:
        host.stop.set()
        return web.Response()

    async def report(_: web.Request) -> web.Response:
        return web.json_response(host.report())

    async def exit_(_: web.Request) -> web.Response:
        host.done.set()
        return web.Response()

    app.router.add_post("/control/go", go)
    app.router.add_post("/control/stop", stop)
    app.router.add_get("/control/report", report)
    app.router.add_post("/control/exit", exit_)


async def run_far() -> None:
    host = PeerHost(marked_payloads(), keep_packets=False)
    app = web.Application()
    app.router.add_post("/v1/realtime/calls", host.answer)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", host.hangup)
    app.router.add_post("/v1/live/sessions", host.answer_live)
    app.router.add_post("/v1/live/sessions/{call_id}/hangup", host.hangup)
    control_routes(app, host)
    try:
        await serve(app, host.done)
    finally:
        await host.close()


async def run_near(target: str, sessions: int, parallel: int) -> None:
    host = PeerHost(marked_payloads(), keep_packets=False)
    app = web.Application()
    control_routes(app, host)
    async with aiohttp.ClientSession() as http:
        upstream = RealtimeUpstream(kind="sim", base_url=target, api_key="bench", http=http)
        gate = asyncio.Semaphore(parallel)

        async def one(name: str) -> None:
            async def answer(offer_sdp: str) -> str:
                call = await upstream.create_call(offer_sdp, {SESSION_KEY: name})
                return call.answer_sdp

            async with gate:
                await host.offer(answer, name)

        try:
            await asyncio.gather(*(one(f"s{i}") for i in range(sessions)))
            await serve(app, host.done)
        finally:
            await host.close()


async def listen(http: aiohttp.ClientSession, url: str) -> tuple[RTCPeerConnection, PacketProbe]:
    """One observer's listen-in peer, connected: both voices' packets go to one probe."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    probe = PacketProbe(keep=False)
    receivers = [pc.addTransceiver("audio", direction="recvonly").receiver for _ in VOICES]
    for receiver in receivers:
        aiortc_internals.tap_receiver(receiver, probe.on_packet)
    connected = asyncio.get_running_loop().create_future()

    @pc.on("connectionstatechange")
    def _state() -> None:
        if pc.connectionState in ("connected", "failed") and not connected.done():
            connected.set_result(pc.connectionState)

    with ice.host_addresses(LOCAL):
        await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url, data=pc.localDescription.sdp) as response:
        response.raise_for_status()
        answer = await response.text()
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    for receiver in receivers:
        aiortc_internals.receive_directly(receiver)
    if await asyncio.wait_for(connected, CONNECT_TIMEOUT) != "connected":
        raise RuntimeError(f"listener of {url} failed to connect")
    return pc, probe


async def run_listen(target: str, sessions: int, observers: int, parallel: int) -> None:
    """``observers`` listeners of each of the ``sessions`` sessions named as ``near`` names
    them; ``GET /control/report`` says how many packets each session's listeners got in all.

    The process runs at ``LISTEN_NICENESS``: observers' own work happens on their machines,
    not the gateway's, so here it must not take CPU from the relay and the sessions' peers
    (whose latency the bench measures) on a machine they share."""
    os.nice(LISTEN_NICENESS)
    done = asyncio.Event()
    listeners: dict[str, list[tuple[RTCPeerConnection, PacketProbe]]] = {}

    async def report(_: web.Request) -> web.Response:
        return web.json_response(
            {name: sum(p.received for _, p in heard) for name, heard in listeners.items()}
        )

    async def exit_(_: web.Request) -> web.Response:
        done.set()
        return web.Response()

    app = web.Application()
    app.router.add_get("/control/report", report)
    app.router.add_post("/control/exit", exit_)
    async with aiohttp.ClientSession() as http:
        gate = asyncio.Semaphore(parallel)

        async def one(name: str) -> None:
            async with gate:
                pair = await listen(http, f"{target}/control/listen/{name}")
            listeners.setdefault(name, []).append(pair)

        try:
            await asyncio.gather(*(one(f"s{i}") for i in range(sessions) for _ in range(observers)))
            await serve(app, done)
        finally:
            await asyncio.gather(*(pc.close() for heard in listeners.values() for pc, _ in heard))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.bench.relay_peers")
    parser.add_argument("role", choices=("far", "near", "listen"))
    parser.add_argument(
        "--target", help="near: base URL whose /realtime/calls answers; listen: the relay's"
    )
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--observers", type=int, default=1, help="listen: per session")
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args(argv)
    ice.install(LOCAL)
    aiortc_internals.install()
    with contextlib.suppress(KeyboardInterrupt):
        if args.role == "far":
            asyncio.run(run_far())
        elif args.role == "near":
            asyncio.run(run_near(args.target, args.sessions, args.parallel))
        else:
            asyncio.run(run_listen(args.target, args.sessions, args.observers, args.parallel))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
