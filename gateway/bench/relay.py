"""``interview-gateway bench relay``: the relay's fast path against aiortc's ``MediaRelay``.

One run measures three set-ups of the same simulated peers (near = browsers, far = AI
upstreams, each its own process: ``relay_peers``) carrying marked full-duplex Opus for
``--duration`` seconds: the peers connected directly, through the gateway's ``Relay`` (fast
path), and through a stock aiortc relay (``MediaRelay``: decode, jitter buffer, re-encode, with
aiortc's own audio-level code). With ``--udp-mux``, a fourth set-up runs the fast path with
every ICE agent of the relay on one shared UDP socket (``mux``, as ``GATEWAY_ICE_UDP_PORT``
does). With ``--record``, a set-up between the fast path and the baseline runs the fast path
recording both voices of every session (``recorded``: Ogg segments, fsync'd, a row each in the
configured database, uploaded to local storage; ``relay_recording``), so that recording's cost
is the difference of two set-ups of one run. With ``--observers K``, the fast path runs twice
more, right after its first run, with 1 and then K observers of every session (``relay_peers
listen``: one receive-only listen-in peer connection per observer, fed both voices by
``Relay.listen_in`` as in the gateway). The relay runs alone in its process (``relay_process``,
on the event loop ``--event-loop`` names, as ``GATEWAY_EVENT_LOOP`` names the gateway's), whose
CPU (getrusage, all threads) and resident memory are read at the start and end of the measured
window, and its UDP sockets at the most (``udp_sockets``, sampled from ``/proc`` every
``SOCKET_SAMPLE_S`` by the bench's own process, not the relay's).

Figures: CPU per session, frames delivered / frames sent at the far ends, one-way latency of
the marks minus the direct connection's median (``added_latency_ms``), resident MB per session;
recorded, the bytes its recordings wrote per minute per session. With observers: the relay's
CPU per observer (with K observers per session minus with none, divided by K x sessions) and
the candidate's added latency (the sessions' p50 with K observers minus with none,
``added_latency_ms_p50``). The baseline runs at most 4 sessions unless told
otherwise (``--baseline-sessions``): beyond ~6 it
saturates, and a saturated relay's CPU per session is just one core divided by N (at 20 it
delivered 22 % of the frames, 235 ms late).
Everything stays on 127.0.0.1: the command re-runs itself in a network namespace holding only
loopback when it can (root), and pins ICE to 127.0.0.1 in every process regardless.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

import aiohttp
import aiortc

from gateway.bench import relay_peers, relay_process
from gateway.bench.processes import Process
from gateway.bench.udp_sockets import udp_drops, udp_sockets
from gateway.cli.helptext import command_parser
from gateway.config import ConfigError, Settings
from gateway.event_loop import EVENT_LOOPS
from gateway.sim.opus_peers import FRAME_SECONDS, MARK_PERIOD

MODULE = "gateway.bench.relay"
MAX_SESSIONS = 50
MAX_OBSERVERS = 20
BASELINE_SESSIONS = 4
MAX_DURATION = 120.0
NETNS_MARK = "IGW_BENCH_NETNS"
DRAIN_SECONDS = 1.0  # after the sources stop, for packets still in flight
SOCKET_SAMPLE_S = 0.5
#: the ``recorded`` object of the JSON report (issue 17's contract)
RECORDED_KEYS = ("cpu_percent_per_session", "delivered_ratio", "bytes_per_minute_per_session")


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        response.raise_for_status()
        return await response.json()


class SocketPeak:
    """The most UDP sockets a process held at any sample, and the kernel's drops on them."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0

    def drops(self) -> int:
        return udp_drops(self.pid)

    async def run(self) -> None:
        while True:
            self.peak = max(self.peak, len(udp_sockets(self.pid)))
            await asyncio.sleep(SOCKET_SAMPLE_S)


async def run_phase(
    http: aiohttp.ClientSession,
    mode: str,
    sessions: int,
    duration: float,
    upstream: str = "sim",
    observers: int = 0,
    event_loop: str = "asyncio",
) -> dict[str, Any]:
    """One set-up (``direct``, ``fast``, ``mux`` or ``baseline``): connect, run marked audio,
    report; ``observers`` listen in on each session (fast path and mux only)."""
    peers = relay_peers.__name__
    started: list[Process] = []
    sampler: asyncio.Task[None] | None = None
    try:
        far = await Process.start(peers, "far")
        started.append(far)
        relay: Process | None = None
        target = far.url
        if mode != "direct":
            relay = await Process.start(
                relay_process.__name__, mode, "--upstream", far.url + "/v1", "--contract", upstream,
                "--event-loop", event_loop,
            )  # fmt: skip
            started.append(relay)
            target = relay.url
            sockets = SocketPeak(relay.proc.pid)
            sampler = asyncio.create_task(sockets.run())
            idle = await get_json(http, f"{relay.url}/control/usage")
        near = await Process.start(
            peers, "near", "--target", target + "/v1", "--sessions", str(sessions)
        )
        started.append(near)
        listeners: Process | None = None
        if observers and relay is not None:
            listeners = await Process.start(
                peers, "listen", "--target", relay.url, "--sessions", str(sessions),
                "--observers", str(observers),
            )  # fmt: skip
            started.append(listeners)
        load_before = os.getloadavg()
        for peer in (near, far):
            await http.post(f"{peer.url}/control/go")
        if relay is not None:
            first = await get_json(http, f"{relay.url}/control/usage")
            drops_before = sockets.drops()
        await asyncio.sleep(duration)  # the measured window
        if relay is not None:
            last = await get_json(http, f"{relay.url}/control/usage")
            drops = sockets.drops() - drops_before
        for peer in (near, far):
            await http.post(f"{peer.url}/control/stop")
        await asyncio.sleep(DRAIN_SECONDS)
        near_report = await get_json(http, f"{near.url}/control/report")
        far_report = await get_json(http, f"{far.url}/control/report")
        if listeners is not None:
            heard = await get_json(http, f"{listeners.url}/control/report")
    finally:
        if sampler is not None:
            sampler.cancel()
        for process in reversed(started):
            await process.stop(http)
    result = delivery_and_latency(near_report, far_report)
    result["loadavg_1m"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    if relay is not None:
        cpu = (last["cpu_s"] - first["cpu_s"]) / (last["t"] - first["t"])
        result["cpu_percent"] = round(100 * cpu, 3)
        #: of which in the kernel (on loopback a send also pays for the receiving end's delivery)
        kernel = (last["sys_s"] - first["sys_s"]) / (last["t"] - first["t"])
        result["kernel_cpu_percent"] = round(100 * kernel, 3)
        result["cpu_percent_per_session"] = round(100 * cpu / sessions, 2)
        result["rss_mb_per_session"] = round((last["rss_mb"] - idle["rss_mb"]) / sessions, 2)
        result["udp_sockets"] = sockets.peak
        #: dropped by the kernel in the window, on the relay's sockets (a full receive buffer)
        result["udp_drops"] = drops
        if mode == "recorded":
            written = (last["recorded_bytes"] - first["recorded_bytes"]) / (last["t"] - first["t"])
            result["bytes_per_minute_per_session"] = round(60 * written / sessions)
        if last["demux"] is not None:
            result["demux"] = last["demux"]  # what the mux did with every datagram
    if listeners is not None:
        result["observers_per_session"] = observers
        #: packets of both voices the observers received in all (each session's and voice's
        #: forwarded copies: ~50 a second per voice and observer while the sources send)
        result["observer_packets"] = sum(heard.values())
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


def observer_costs(none: dict[str, Any], many: dict[str, Any], observers: int) -> dict[str, float]:
    """What ``observers`` observers per session cost, from the fast path run with none and
    with them: the relay's CPU per observer (percent of a core) and the sessions' added p50."""
    total = observers * none["sessions"]
    return {
        "cpu_percent_per_observer": round((many["cpu_percent"] - none["cpu_percent"]) / total, 3),
        "added_latency_ms_p50": round(many["latency_ms"]["p50"] - none["latency_ms"]["p50"], 2),
    }


async def run_bench(
    sessions: int,
    baseline_sessions: int,
    duration: float,
    udp_mux: bool = False,
    upstream: str = "sim",
    observers: int = 0,
    record: bool = False,
    event_loop: str = "asyncio",
) -> dict[str, Any]:
    counts = {"direct": sessions, "fast": sessions}
    if record:
        counts["recorded"] = sessions
    counts["baseline"] = baseline_sessions
    if udp_mux:
        counts["mux"] = sessions
    watched: dict[int, dict[str, Any]] = {}
    async with aiohttp.ClientSession() as http:
        phases: dict[str, dict[str, Any]] = {}
        for mode, n in counts.items():
            phases[mode] = await run_phase(http, mode, n, duration, upstream, 0, event_loop)
            if mode == "fast":  # right after it, so that the machine's load is alike
                for k in sorted({1, observers} - {0}):
                    watched[k] = await run_phase(http, "fast", n, duration, upstream, k, event_loop)
    for mode, n in counts.items():
        phases[mode]["sessions"] = n
    direct = phases["direct"]
    for mode in counts:
        if mode != "direct":
            phases[mode]["added_latency_ms"] = added(phases[mode], direct)
    fast_cpu = phases["fast"]["cpu_percent_per_session"]
    extra: dict[str, Any] = {"mux": phases["mux"]} if udp_mux else {}
    if observers:
        for phase in watched.values():
            phase["sessions"] = sessions
            phase["added_latency_ms"] = added(phase, direct)
        extra["with_observers"] = {str(k): phase for k, phase in watched.items()}
        extra["observers"] = observer_costs(phases["fast"], watched[observers], observers)
    if record:
        extra["recorded"] = phases["recorded"]
    return {
        "sessions": sessions,
        "upstream": upstream,
        "event_loop": event_loop,
        "duration_s": duration,
        "cpu_count": os.cpu_count(),
        "aiortc": aiortc.__version__,
        "direct": direct,
        "fast": phases["fast"],
        "baseline": phases["baseline"],
        "cpu_ratio": round(phases["baseline"]["cpu_percent_per_session"] / fast_cpu, 2)
        if fast_cpu
        else None,
        **extra,
    }


def json_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report as ``--json`` prints it: ``recorded`` holds exactly ``RECORDED_KEYS``."""
    if "recorded" not in report:
        return report
    return {**report, "recorded": {key: report["recorded"][key] for key in RECORDED_KEYS}}


def recording_cost(report: dict[str, Any]) -> str:
    """What recording added to the fast path, per session, in the text report."""
    recorded, fast = report["recorded"], report["fast"]["cpu_percent_per_session"]
    extra = recorded["cpu_percent_per_session"] - fast
    on_top = f" ({100 * extra / fast:+.0f} % on top of the fast path)" if fast else ""
    return (
        f"recording: {extra:+.2f} % of a core per session{on_top},"
        f" {recorded['bytes_per_minute_per_session']} bytes per minute per session"
    )


def print_report(report: dict[str, Any]) -> None:
    direct = report["direct"]["latency_ms"]
    print(
        f"relay bench: full-duplex Opus sessions, {report['duration_s']} s per set-up,"
        f" the relay on {report['event_loop']}'s event loop"
    )
    header = (
        "",
        "sessions",
        "CPU %/session",
        "delivered",
        "added p50",
        "added p99",
        "RSS MB/sess",
        "UDP sockets",
        "load 1m",
    )
    print("".join(f"{h:>14}" for h in header))
    watched = report.get("with_observers", {})
    rows: list[tuple[str, dict[str, Any]]] = [(m, report[m]) for m in ("direct", "fast")]
    rows += [(f"fast+{k} obs", phase) for k, phase in watched.items()]
    rows += [(mode, report[mode]) for mode in ("recorded", "baseline", "mux") if mode in report]
    for mode, phase in rows:
        extra = phase.get("added_latency_ms", {"p50": "-", "p99": "-"})
        row = (
            mode,
            phase["sessions"],
            phase.get("cpu_percent_per_session", "-"),
            phase["delivered_ratio"],
            extra["p50"],
            extra["p99"],
            phase.get("rss_mb_per_session", "-"),
            phase.get("udp_sockets", "-"),
            "→".join(map(str, phase["loadavg_1m"])),
        )
        print("".join(f"{v!s:>14}" for v in row))
    print(f"direct one-way latency p50 {direct['p50']} ms, p99 {direct['p99']} ms")
    print(f"cpu_ratio (baseline / fast): {report['cpu_ratio']}")
    if "observers" in report:
        k = max(watched, key=int)
        costs = report["observers"]
        print(
            f"observers ({k} per session against none): "
            f"{costs['cpu_percent_per_observer']} % of a core each, "
            f"the sessions' p50 +{costs['added_latency_ms_p50']} ms"
        )
    if "recorded" in report:
        print(recording_cost(report))


def in_namespace_or_reexec(argv: list[str]) -> None:
    """Re-run under ``unshare --net`` (loopback only) unless already there; needs root."""
    if os.environ.get(NETNS_MARK) or not shutil.which("unshare"):
        return
    command = [sys.executable, "-m", MODULE, *argv]
    with contextlib.suppress(OSError):
        os.execvpe(
            "unshare",
            ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command],
            {**os.environ, NETNS_MARK: "1"},
        )


def main(argv: list[str]) -> int:
    parser = command_parser("interview-gateway bench relay", __doc__)
    parser.add_argument(
        "--sessions", type=int, default=10, metavar="N", help=f"relayed sessions (1-{MAX_SESSIONS})"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        metavar="S",
        help=f"seconds measured per set-up (max {MAX_DURATION:g})",
    )
    parser.add_argument(
        "--baseline-sessions",
        type=int,
        metavar="N",
        help="sessions through MediaRelay (default: --sessions, at most 4, which it carries "
        "unsaturated on 2 cores: saturated, its CPU per session is only 1 core / N)",
    )
    parser.add_argument(
        "--udp-mux",
        action="store_true",
        help="also run the fast path with every ICE agent on one shared UDP socket (mux)",
    )
    parser.add_argument(
        "--upstream",
        choices=relay_process.CONTRACTS,
        default="sim",
        help="the contract the relay's upstream leg speaks: sim (Realtime calls) or sim-live "
        "(GPT-Live); the audio path is the same",
    )
    parser.add_argument(
        "--observers",
        type=int,
        default=0,
        metavar="K",
        help=f"also run the fast path with 1 and K observers listening in on every session "
        f"(1-{MAX_OBSERVERS}): CPU per observer, the candidate's added p50",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="also run the fast path recording both voices of every session (recorded): CPU "
        "with and without recording in one run, and bytes written per minute per session",
    )
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="asyncio",
        help="the relay process's event loop, as GATEWAY_EVENT_LOOP sets the gateway's",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on the last line")
    args = parser.parse_args(argv)
    baseline = args.baseline_sessions or min(args.sessions, BASELINE_SESSIONS)
    if not (
        1 <= args.sessions <= MAX_SESSIONS
        and 1 <= baseline <= MAX_SESSIONS
        and 0 < args.duration <= MAX_DURATION
        and 0 <= args.observers <= MAX_OBSERVERS
    ):
        parser.error(
            f"sessions must be 1-{MAX_SESSIONS}, --duration 0-{MAX_DURATION:g}"
            f" and --observers 1-{MAX_OBSERVERS}"
        )
    if args.record:
        try:
            Settings.from_env()  # the recorded set-up's database: a bad setting fails here
        except ConfigError as exc:
            parser.error(str(exc))
    if os.geteuid() == 0:
        in_namespace_or_reexec(argv)
    report = asyncio.run(
        run_bench(
            args.sessions,
            baseline,
            args.duration,
            args.udp_mux,
            args.upstream,
            args.observers,
            args.record,
            args.event_loop,
        )
    )
    print_report(report)
    if args.json:
        print(json.dumps(json_report(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
