"""The peer processes of ``bench relay``: simulated browsers and AI upstreams carrying marked Opus.

Two processes play the peers of a run (the peers themselves are :mod:`gateway.sim.opus_peers`),
each an aiohttp server on 127.0.0.1:
- ``far`` answers ``POST /realtime/calls`` (and GPT-Live's ``POST /live/sessions``) like the AI
  upstream (the relay's upstream leg, or the near peers directly when measuring a direct
  connection);
- ``near`` offers N sessions to a target's ``/realtime/calls`` like browsers do.
Both then take ``/control/go``, ``/control/stop`` and ``GET /control/report`` from the bench.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

import aiohttp
from aiohttp import web

from gateway.bench.processes import serve
from gateway.media import ice
from gateway.sim.opus_peers import LOCAL, SESSION_KEY, PeerHost, marked_payloads
from gateway.upstream.openai import RealtimeUpstream


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
    host = PeerHost(marked_payloads())
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
    host = PeerHost(marked_payloads())
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.bench.relay_peers")
    parser.add_argument("role", choices=("far", "near"))
    parser.add_argument("--target", help="near: base URL whose /realtime/calls answers")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args(argv)
    ice.install(LOCAL)
    with contextlib.suppress(KeyboardInterrupt):
        if args.role == "far":
            asyncio.run(run_far())
        else:
            asyncio.run(run_near(args.target, args.sessions, args.parallel))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
