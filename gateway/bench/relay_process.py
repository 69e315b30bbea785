"""The relay under measurement in ``bench relay``: one process, the fast path or the baseline.

It answers ``POST /v1/realtime/calls`` as the gateway's relay would be asked to, relaying each
session to the ``--upstream`` AI (the bench's far peers) either through the gateway's own
``Relay`` (``fast``: Opus forwarded without decoding; ``mux``: the same with every leg's ICE on
one shared UDP socket, ``gateway.media.udp_mux``; ``recorded``: the fast path recording both
voices of every session, ``relay_recording``) or through stock aiortc (``baseline``:
``MediaRelay`` subscriptions of the decoded tracks, re-encoded on the way out). Alone in its
process, its CPU (getrusage, all threads), resident memory and the bytes its recordings wrote
are what ``GET /control/usage`` reports (its UDP sockets the bench reads itself, from
``/proc``: ``gateway.bench.udp_sockets``); ``POST /control/listen/{name}`` (an SDP offer) gives an
observer's listen-in peer of the session the near peers named ``name`` (``Relay.listen_in``,
fast path only); ``POST /control/exit`` ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import resource
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from gateway import event_loop
from gateway.bench.processes import serve
from gateway.bench.relay_recording import BenchRecordings
from gateway.config import Settings
from gateway.event_loop import EVENT_LOOPS
from gateway.media import aiortc_internals, ice
from gateway.media.host_sockets import HostSockets
from gateway.media.relay import Relay, RelayOptions, rtc_configuration
from gateway.media.udp_mux import UdpMux
from gateway.sim.opus_peers import LOCAL, SESSION_KEY, read_call
from gateway.upstream.call import Unsupervised
from gateway.upstream.live import LiveUpstream
from gateway.upstream.openai import EVENTS_LABEL, RealtimeUpstream, UpstreamClient
from storage.database import DatabaseUnavailable

MODES = ("fast", "mux", "recorded", "baseline")
#: the contract the relay's upstream leg speaks: the Realtime calls API, or GPT-Live
CONTRACTS = ("sim", "sim-live")


class MediaRelayBaseline:
    """The stock aiortc way to relay: ``MediaRelay`` subscriptions of the decoded tracks."""

    def __init__(self, upstream: UpstreamClient, session: dict[str, Any]) -> None:
        self._upstream = upstream
        self._session = session
        self._media = MediaRelay()
        self.pcs: list[RTCPeerConnection] = []

    async def start(self, offer_sdp: str) -> str:
        browser = RTCPeerConnection(rtc_configuration(()))
        upstream = RTCPeerConnection(rtc_configuration(()))
        self.pcs += [browser, upstream]
        browser_tracks: list[MediaStreamTrack] = []
        upstream_tracks: list[MediaStreamTrack] = []
        browser.on("track", browser_tracks.append)
        upstream.on("track", upstream_tracks.append)
        await browser.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        upstream.addTrack(self._media.subscribe(browser_tracks[0]))
        upstream.createDataChannel(EVENTS_LABEL)
        await upstream.setLocalDescription(await upstream.createOffer())
        call = await self._upstream.create_call(upstream.localDescription.sdp, self._session)
        await upstream.setRemoteDescription(RTCSessionDescription(call.answer_sdp, "answer"))
        browser.addTrack(self._media.subscribe(upstream_tracks[0]))
        await browser.setLocalDescription(await browser.createAnswer())
        return browser.localDescription.sdp

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs))


def usage() -> dict[str, float]:
    """This process's CPU seconds (all threads; of which in the kernel), monotonic time and
    resident MB."""
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {
        "cpu_s": rusage.ru_utime + rusage.ru_stime,
        "sys_s": rusage.ru_stime,
        "t": time.monotonic(),
        "rss_mb": rss_kb / 1024,
    }


async def run_relay(mode: str, upstream_url: str, contract: str = "sim") -> None:
    if mode != "baseline":
        aiortc_internals.install()  # as the gateway does (the fast path encodes nothing)
    relays: list[Relay | MediaRelayBaseline] = []
    named: dict[str, Relay] = {}  # by the near peers' session names, for listeners
    done = asyncio.Event()
    mux = UdpMux(0, LOCAL) if mode == "mux" else None
    if mux is not None:
        await mux.start()
    recordings = await BenchRecordings.open(Settings.from_env()) if mode == "recorded" else None
    options = RelayOptions(
        ice_addresses=LOCAL,
        ice_sockets=HostSockets(mux=mux) if mux is not None else None,
        connect_timeout=30.0,
    )
    async with aiohttp.ClientSession() as http:
        client = LiveUpstream if contract == "sim-live" else RealtimeUpstream
        upstream = client(kind=contract, base_url=upstream_url, api_key="bench", http=http)

        async def call(request: web.Request) -> web.Response:
            offer_sdp, session = await read_call(request)
            relay: Relay | MediaRelayBaseline
            if mode != "baseline":
                recording = await recordings.start() if recordings is not None else None
                relay = Relay(
                    upstream, Unsupervised(), options=options, session=session, recording=recording
                )
                named[str(session.get(SESSION_KEY))] = relay
            else:
                relay = MediaRelayBaseline(upstream, session)
            relays.append(relay)
            answer = await relay.start(offer_sdp)
            return web.Response(
                status=201,
                text=answer,
                content_type="application/sdp",
                headers={"Location": f"/v1/realtime/calls/rtc_{len(relays)}"},
            )

        async def report_usage(_: web.Request) -> web.Response:
            demux = dataclasses.asdict(mux.stats) if mux is not None else None
            return web.json_response(
                {
                    **usage(),
                    "demux": demux,
                    "recorded_bytes": recordings.bytes_written if recordings is not None else 0,
                }
            )

        async def listen_in(request: web.Request) -> web.Response:
            relay = named.get(request.match_info["name"])
            if relay is None:
                raise web.HTTPNotFound(text="no such session (listeners need the fast path)")
            _, answer = await relay.listen_in(await request.text())
            return web.Response(text=answer, content_type="application/sdp")

        async def exit_(_: web.Request) -> web.Response:
            done.set()
            return web.Response()

        app = web.Application()
        app.router.add_post("/v1/realtime/calls", call)
        app.router.add_post("/control/listen/{name}", listen_in)
        app.router.add_get("/control/usage", report_usage)
        app.router.add_post("/control/exit", exit_)
        try:
            await serve(app, done)
        finally:
            await asyncio.gather(*(relay.close() for relay in relays))
            if recordings is not None:
                await recordings.close()
            if mux is not None:
                await mux.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.bench.relay_process")
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--upstream", required=True, help="base URL of the AI upstream (/v1)")
    parser.add_argument("--contract", choices=CONTRACTS, default="sim")
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default="asyncio")
    args = parser.parse_args(argv)
    ice.install(LOCAL)  # also the host-socket hook the mux mode needs
    try:
        event_loop.run(run_relay(args.mode, args.upstream, args.contract), args.event_loop)
    except DatabaseUnavailable as exc:  # the recorded set-up's
        print(f"bench relay: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
