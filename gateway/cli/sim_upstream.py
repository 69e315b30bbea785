"""``interview-gateway sim-upstream``: the OpenAI-compatible simulated interviewer on its own.

It serves OpenAI's Realtime WebRTC endpoints and GPT-Live's (``/v1/realtime/...`` and
``/v1/live/sessions/...``, both at once) with a scripted interviewer, so a gateway
(``OPENAI_BASE_URL=<the printed URL>``, ``GATEWAY_UPSTREAM=openai`` or ``openai-live``) or any
client of either contract can hold whole interviews with no network and no API key. Once it
serves it prints "simulated upstream listening on URL"; it stops on Ctrl-C or SIGTERM, hanging
up every call.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from gateway import media
from gateway.cli.helptext import command_parser
from gateway.sim.script import Script, ScriptError
from gateway.sim.upstream import SimulatedUpstream

LOOPBACK = ("127.0.0.1",)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = command_parser("interview-gateway sim-upstream", __doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", metavar="H", help="address to listen on (127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=8765, metavar="P", help="port to listen on (8765; 0: any)"
    )
    parser.add_argument(
        "--script", type=Path, metavar="FILE", help="interview script JSON (default: built in)"
    )
    parser.add_argument(
        "--words-per-second", type=float, default=3.0, metavar="W", help="speaking speed (3)"
    )
    parser.add_argument(
        "--vad-hangover-ms",
        type=int,
        default=300,
        metavar="MS",
        help="silence that ends a candidate turn (300)",
    )
    parser.add_argument(
        "--ice-address",
        action="append",
        dest="ice_addresses",
        metavar="A",
        help="local address to gather ICE candidates on (repeatable; default 127.0.0.1)",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="require the API key held in this environment variable (default: accept any key)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            print(
                f"sim-upstream: environment variable {args.api_key_env} is not set", file=sys.stderr
            )
            return 2
    try:
        script = Script.load(args.script) if args.script else Script.default()
    except ScriptError as exc:
        print(f"sim-upstream: {exc}", file=sys.stderr)
        return 2
    sim = SimulatedUpstream(
        script=script,
        api_key=api_key,
        ice_addresses=args.ice_addresses or LOOPBACK,
        words_per_second=args.words_per_second,
        vad_hangover_ms=args.vad_hangover_ms,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    media.install()
    asyncio.run(serve(sim, args.host, args.port))
    return 0


async def serve(sim: SimulatedUpstream, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then hang up every call."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    base_url = await sim.start(host, port)
    print(f"simulated upstream listening on {base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.close()
