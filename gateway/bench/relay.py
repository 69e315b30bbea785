"""``interview-gateway bench relay``: the relay's fast path against aiortc's ``MediaRelay``.

One run measures three set-ups of the same simulated peers (``relay_peers``; near = browsers,
far = AI upstreams, each its own process) carrying marked full-duplex Opus for ``--duration``
seconds: the peers connected directly, through the gateway's ``Relay`` (fast path), and through a
stock aiortc relay (``MediaRelay``: decode, jitter buffer, re-encode; built in below, with
aiortc's own audio-level code). The relay runs alone in its process, whose CPU (getrusage, all
threads) and resident memory are read at the start and end of the measured window.

Figures: CPU per session, frames delivered / frames sent at the far ends, one-way latency of
the marks minus the direct connection's median (``added_latency_ms``), resident MB per session.
The baseline runs at most ``BASELINE_SESSIONS`` sessions unless told otherwise: beyond ~6 it
saturates, and a saturated relay's CPU per session is just one core divided by N (at 20 it
delivered 22 % of the frames, 235 ms late).
Everything stays on 127.0.0.1: the command re-runs itself in a network namespace holding only
loopback when it can (root), and pins ICE to 127.0.0.1 in every process regardless.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import aiortc
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from gateway.bench.relay_peers import FRAME_SECONDS, LOCAL, MARK_PERIOD, read_call
from gateway.media import aiortc_internals, ice
from gateway.media.relay import Relay, RelayOptions, rtc_configuration
from gateway.upstream.call import Unsupervised
from gateway.upstream.openai import RealtimeUpstream

MODULE = "gateway.bench.relay"
MAX_SESSIONS = 50
BASELINE_SESSIONS = 4
MAX_DURATION = 120.0
NETNS_MARK = "IGW_BENCH_NETNS"
READY_TIMEOUT = 120.0
DRAIN_SECONDS = 1.0  # after the sources stop, for packets still in flight
EXIT_TIMEOUT = 10.0


# -- the relay process ------------------------------------------------------------------


class MediaRelayBaseline:
    """The stock aiortc way to relay: ``MediaRelay`` subscriptions of the decoded tracks."""

    def __init__(self, upstream: RealtimeUpstream, session: dict[str, Any]) -> None:
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
        upstream.createDataChannel("oai-events")
        await upstream.setLocalDescription(await upstream.createOffer())
        call = await self._upstream.create_call(upstream.localDescription.sdp, self._session)
        await upstream.setRemoteDescription(RTCSessionDescription(call.answer_sdp, "answer"))
        browser.addTrack(self._media.subscribe(upstream_tracks[0]))
        await browser.setLocalDescription(await browser.createAnswer())
        return browser.localDescription.sdp

    async def close(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs))


def usage() -> dict[str, float]:
    """This process's CPU seconds (all threads), monotonic time and resident MB."""
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {
        "cpu_s": rusage.ru_utime + rusage.ru_stime,
        "t": time.monotonic(),
        "rss_mb": rss_kb / 1024,
    }


async def run_relay(mode: str, upstream_url: str) -> None:
    from gateway.bench.relay_peers import serve

    if mode == "fast":
        aiortc_internals.install()  # as the gateway does (the fast path encodes nothing)
    relays: list[Relay | MediaRelayBaseline] = []
    done = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        upstream = RealtimeUpstream(kind="sim", base_url=upstream_url, api_key="bench", http=http)

        async def call(request: web.Request) -> web.Response:
            offer_sdp, session = await read_call(request)
            relay: Relay | MediaRelayBaseline
            if mode == "fast":
                relay = Relay(
                    upstream,
                    Unsupervised(),
                    options=RelayOptions(ice_addresses=LOCAL, connect_timeout=30.0),
                    session=session,
                )
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
            return web.json_response(usage())

        async def exit_(_: web.Request) -> web.Response:
            done.set()
            return web.Response()

        app = web.Application()
        app.router.add_post("/v1/realtime/calls", call)
        app.router.add_get("/control/usage", report_usage)
        app.router.add_post("/control/exit", exit_)
        try:
            await serve(app, done)
        finally:
            await asyncio.gather(*(relay.close() for relay in relays))


# -- the controller ---------------------------------------------------------------------


class Process:
    """A child process of the bench that says ``READY <port>`` and then takes HTTP controls."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, *args: str) -> Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *args, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                line = (await proc.stdout.readline()).decode()
        except TimeoutError:
            proc.kill()
            raise
        if not line.startswith("READY "):
            await proc.wait()
            raise RuntimeError(f"{' '.join(args)} did not start (exit {proc.returncode})")
        return cls(proc, int(line.split()[1]))

    async def stop(self, http: aiohttp.ClientSession) -> None:
        with contextlib.suppress(aiohttp.ClientError):
            await http.post(f"{self.url}/control/exit")
        try:
            async with asyncio.timeout(EXIT_TIMEOUT):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        response.raise_for_status()
        return await response.json()


async def run_phase(
    http: aiohttp.ClientSession, mode: str, sessions: int, duration: float
) -> dict[str, Any]:
    """One set-up (``direct``, ``fast`` or ``baseline``): connect, run marked audio, report."""
    peers = "gateway.bench.relay_peers"
    started: list[Process] = []
    try:
        far = await Process.start(peers, "far")
        started.append(far)
        relay: Process | None = None
        target = far.url
        if mode != "direct":
            relay = await Process.start(
                MODULE, "--serve-relay", mode, "--upstream", far.url + "/v1"
            )
            started.append(relay)
            target = relay.url
            idle = await get_json(http, f"{relay.url}/control/usage")
        near = await Process.start(
            peers, "near", "--target", target + "/v1", "--sessions", str(sessions)
        )
        started.append(near)
        load_before = os.getloadavg()
        for peer in (near, far):
            await http.post(f"{peer.url}/control/go")
        if relay is not None:
            first = await get_json(http, f"{relay.url}/control/usage")
        await asyncio.sleep(duration)  # the measured window
        if relay is not None:
            last = await get_json(http, f"{relay.url}/control/usage")
        for peer in (near, far):
            await http.post(f"{peer.url}/control/stop")
        await asyncio.sleep(DRAIN_SECONDS)
        near_report = await get_json(http, f"{near.url}/control/report")
        far_report = await get_json(http, f"{far.url}/control/report")
    finally:
        for process in reversed(started):
            await process.stop(http)
    result = delivery_and_latency(near_report, far_report)
    result["loadavg_1m"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    if relay is not None:
        cpu = (last["cpu_s"] - first["cpu_s"]) / (last["t"] - first["t"])
        result["cpu_percent_per_session"] = round(100 * cpu / sessions, 2)
        result["rss_mb_per_session"] = round((last["rss_mb"] - idle["rss_mb"]) / sessions, 2)
    return result


def latencies(sent: Sequence[float], received: Sequence[float]) -> list[float]:
    """Each received mark's delay after the latest mark sent before it (within one period)."""
    delays = []
    for at in received:
        index = bisect.bisect_right(sent, at) - 1
        if index >= 0 and at - sent[index] < MARK_PERIOD * FRAME_SECONDS:
            delays.append(at - sent[index])
    return delays


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def delivery_and_latency(near: dict[str, Any], far: dict[str, Any]) -> dict[str, Any]:
    sent = received = 0
    delays: list[float] = []
    for name, near_peer in near.items():
        far_peer = far.get(name)
        if far_peer is None:
            continue
        for source, sink in ((near_peer, far_peer), (far_peer, near_peer)):
            sent += source["sent"]
            received += sink["received"]
            delays += latencies(source["sent_marks"], sink["received_marks"])
    return {
        "sessions_seen": len(near),
        "frames_sent": sent,
        "frames_received": received,
        "delivered_ratio": round(received / sent, 4) if sent else 0.0,
        "latency_ms": {
            "p50": round(1000 * percentile(delays, 0.5), 2),
            "p99": round(1000 * percentile(delays, 0.99), 2),
            "marks": len(delays),
        },
    }


def added(relayed: dict[str, Any], direct: dict[str, Any]) -> dict[str, float]:
    """Relayed latency percentiles minus the direct connection's median (its fixed path cost):
    conservative, since the direct connection's own tail is counted against the relay."""
    return {
        key: round(relayed["latency_ms"][key] - direct["latency_ms"]["p50"], 2)
        for key in ("p50", "p99")
    }


async def run_bench(sessions: int, baseline_sessions: int, duration: float) -> dict[str, Any]:
    counts = {"direct": sessions, "fast": sessions, "baseline": baseline_sessions}
    async with aiohttp.ClientSession() as http:
        phases = {mode: await run_phase(http, mode, n, duration) for mode, n in counts.items()}
    for mode, n in counts.items():
        phases[mode]["sessions"] = n
    direct = phases["direct"]
    for mode in ("fast", "baseline"):
        phases[mode]["added_latency_ms"] = added(phases[mode], direct)
    fast_cpu = phases["fast"]["cpu_percent_per_session"]
    return {
        "sessions": sessions,
        "duration_s": duration,
        "cpu_count": os.cpu_count(),
        "aiortc": aiortc.__version__,
        "direct": direct,
        "fast": phases["fast"],
        "baseline": phases["baseline"],
        "cpu_ratio": round(phases["baseline"]["cpu_percent_per_session"] / fast_cpu, 2)
        if fast_cpu
        else None,
    }


def print_report(report: dict[str, Any]) -> None:
    direct = report["direct"]["latency_ms"]
    print(f"relay bench: full-duplex Opus sessions, {report['duration_s']} s per set-up")
    header = (
        "",
        "sessions",
        "CPU %/session",
        "delivered",
        "added p50",
        "added p99",
        "RSS MB/sess",
        "load 1m",
    )
    print("".join(f"{h:>14}" for h in header))
    for mode in ("direct", "fast", "baseline"):
        phase = report[mode]
        extra = phase.get("added_latency_ms", {"p50": "-", "p99": "-"})
        row = (
            mode,
            phase["sessions"],
            phase.get("cpu_percent_per_session", "-"),
            phase["delivered_ratio"],
            extra["p50"],
            extra["p99"],
            phase.get("rss_mb_per_session", "-"),
            "→".join(map(str, phase["loadavg_1m"])),
        )
        print("".join(f"{v!s:>14}" for v in row))
    print(f"direct one-way latency p50 {direct['p50']} ms, p99 {direct['p99']} ms")
    print(f"cpu_ratio (baseline / fast): {report['cpu_ratio']}")


def in_namespace_or_reexec(argv: list[str]) -> None:
    """Re-run under ``unshare --net`` (loopback only) unless already there; needs root."""
    if os.environ.get(NETNS_MARK) or not shutil.which("unshare"):
        return
    command = [sys.executable, "-m", MODULE, *argv]
    os.environ[NETNS_MARK] = "1"
    with contextlib.suppress(OSError):
        os.execvp(
            "unshare",
            ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command],
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="interview-gateway bench relay", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--sessions", type=int, default=10, help=f"relayed sessions (1-{MAX_SESSIONS})"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help=f"seconds measured per set-up (max {MAX_DURATION:g})",
    )
    parser.add_argument(
        "--baseline-sessions",
        type=int,
        help="sessions through MediaRelay (default: --sessions, at most 4, which it carries "
        "unsaturated on 2 cores: saturated, its CPU per session is only 1 core / N)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    parser.add_argument("--serve-relay", choices=("fast", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    ice.install(LOCAL)
    if args.serve_relay:
        asyncio.run(run_relay(args.serve_relay, args.upstream))
        return 0
    baseline = args.baseline_sessions or min(args.sessions, BASELINE_SESSIONS)
    if not (
        1 <= args.sessions <= MAX_SESSIONS
        and 1 <= baseline <= MAX_SESSIONS
        and 0 < args.duration <= MAX_DURATION
    ):
        parser.error(f"sessions must be 1-{MAX_SESSIONS} and --duration 0-{MAX_DURATION:g}")
    if os.geteuid() == 0:
        in_namespace_or_reexec(argv)
    report = asyncio.run(run_bench(args.sessions, baseline, args.duration))
    print_report(report)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
