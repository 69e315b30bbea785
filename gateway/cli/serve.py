"""``interview-gateway serve``: the gateway, its HTTP API and signaling on one port.

With no configuration at all it starts the embedded PostgreSQL server and an in-process
simulated upstream, and prints where it listens and a ready-to-use invitation link.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from gateway import logs, media
from gateway.app import DATABASE, JWT_SECRET, create_app
from gateway.config import MODES, ConfigError, Settings
from gateway.sessions.invitations import default_tenant, invite
from storage.database import DatabaseUnavailable


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="interview-gateway serve", description=__doc__)
    parser.add_argument("--host", help="address to listen on (GATEWAY_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (GATEWAY_PORT, default 8080)")
    parser.add_argument("--mode", choices=MODES, help="session mode (GATEWAY_MODE, default auto)")
    parser.add_argument(
        "--no-invite", action="store_true", help="do not create and print an invitation at start"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logs.configure()
    try:
        settings = Settings.from_env(host=args.host, port=args.port, mode=args.mode)
        media.install(settings.ice_addresses)
        asyncio.run(serve(settings, invite_at_start=not args.no_invite))
    except (ConfigError, DatabaseUnavailable) as exc:
        print(f"interview-gateway: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the port is taken
        print(
            f"interview-gateway: cannot listen on {args.host}:{args.port}: {exc.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


async def serve(settings: Settings, *, invite_at_start: bool = True) -> None:
    """Run until SIGINT/SIGTERM, then end every session cleanly."""
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = runner.addresses[0][1]  # the real port when asked for port 0
        base_url = settings.public_url or f"http://{settings.host}:{port}"
        print(f"interview-gateway listening on {base_url} (mode {settings.mode})", flush=True)
        if invite_at_start:
            tenant_id = await default_tenant(app[DATABASE], settings.data_dir)
            invitation = await invite(app[DATABASE], app[JWT_SECRET], tenant_id, mode=settings.mode)
            print(f"interview room: {invitation.room_url(base_url)}", flush=True)
            print(f"candidate token: {invitation.token}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        print("interview-gateway: shutting down, ending every session", flush=True)
    finally:
        await runner.cleanup()
