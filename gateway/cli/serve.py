"""``interview-gateway serve``: the gateway, its HTTP API and signaling on one port.

With no configuration at all it starts the embedded PostgreSQL server and an in-process
simulated upstream, and prints where it listens and a ready-to-use invitation link.

SIGINT (Ctrl-C) and SIGTERM stop it at any moment, and it exits 0: a start-up still under way is
abandoned, and what it had started is stopped (the embedded PostgreSQL server included) before
the process exits. A running gateway ends every session, recorded as ``shutdown``; on SIGTERM
it drains first: it admits no new interview (``/readyz`` says ``draining``) and gives the live
ones up to ``GATEWAY_DRAIN_TIMEOUT`` seconds to finish. A second signal cuts the drain short.

``--role`` picks what the process is: ``standalone`` (the default) serves interviews itself; a
``front`` serves the API and pages and hands each interview to a worker process of its own
(``--backend local``, see ``gateway.fleet``); a ``worker`` serves one interview and exits when
it ends (or when none came within ``GATEWAY_WORKER_IDLE_TIMEOUT``).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.sessions.manager import SessionManager

#: The signals that stop ``serve``: SIGINT at once, SIGTERM after a drain.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """SIGINT and SIGTERM, caught from the command's first instant until the process exits.

    Before the event loop runs, a signal is only recorded: loading aiortc and opening the
    database take seconds on a busy machine, and a Ctrl-C in that time must be neither lost nor
    a traceback. Inside the loop, :meth:`wait` returns once one has arrived, however early. After
    the loop, while the interpreter stops the embedded server, signals are ignored: the process
    is already on its way out, and dying there would leave the server running.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        #: how many have arrived
        self.count = 0
        self._arrived: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        self.count += 1
        loop, arrived = self._loop, self._arrived
        if loop is not None and arrived is not None and not loop.is_closed():
            loop.call_soon_threadsafe(arrived.set)  # wakes a loop blocked in select()

    async def wait(self, after: int = 0) -> None:
        """Returns once more than ``after`` signals have arrived since :meth:`install`."""
        self._arrived = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        while self.count <= after:
            self._arrived.clear()
            await self._arrived.wait()


def parse_args(argv: list[str]) -> argparse.Namespace:
    from gateway.cli.helptext import command_parser
    from gateway.config import BACKENDS, MODES, PROCESS_ROLES

    parser = command_parser("interview-gateway serve", __doc__)
    parser.epilog = (
        "Every setting is an environment variable (GATEWAY_*, DATABASE_URL, OPENAI_*): the"
        " Configuration table of README.md lists each with its default; a bad value stops"
        " start-up with one sentence naming it."
    )
    parser.add_argument("--host", help="address to listen on (GATEWAY_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (GATEWAY_PORT, default 8080)")
    parser.add_argument("--mode", choices=MODES, help="session mode (GATEWAY_MODE, default auto)")
    parser.add_argument(
        "--role",
        choices=PROCESS_ROLES,
        help="what this process is (GATEWAY_ROLE, default standalone)",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, help="where a front's workers run (GATEWAY_BACKEND, local)"
    )
    parser.add_argument(
        "--no-invite", action="store_true", help="do not create and print an invitation at start"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    stop = StopSignals()
    stop.install()
    # Everything else is imported only now, with the signals caught: see StopSignals.
    from gateway import event_loop, logs, media
    from gateway.config import ConfigError, Settings
    from gateway.upstream.openai import api_key_from_env
    from storage.database import DatabaseUnavailable

    args = parse_args(argv)
    # the storage keys too: a client library's error may quote a request
    logs.configure(
        secrets=[
            api_key_from_env(),
            os.environ.get("GATEWAY_RECORDING_APIVIDEO_KEY"),
            os.environ.get("GATEWAY_RECORDING_S3_SECRET_ACCESS_KEY"),
        ]
    )
    try:
        settings = Settings.from_env(
            host=args.host, port=args.port, mode=args.mode, role=args.role, backend=args.backend
        )
        settings.prepare_data_dir()
    except ConfigError as exc:
        print(f"interview-gateway: {exc}", file=sys.stderr)
        return 1
    try:
        media.install(settings.ice_addresses)
        event_loop.run(
            serve(settings, stop, invite_at_start=not args.no_invite), settings.event_loop
        )
    except (ConfigError, DatabaseUnavailable) as exc:
        print(f"interview-gateway: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            where = f"{settings.host}:{settings.port}"
            print(f"interview-gateway: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
        else:
            print(f"interview-gateway: {exc}", file=sys.stderr)
        return 1
    return 0


async def serve(settings: Settings, stop: StopSignals, *, invite_at_start: bool = True) -> None:
    """Starts the gateway and runs it until ``stop``; a stop during start-up abandons it.

    Either way the runner's cleanup closes, in reverse, whatever start-up had opened; the
    embedded PostgreSQL server, started in a thread that cannot be interrupted, is stopped when
    the process exits, once that thread is done (see :mod:`storage.database`).
    """
    from aiohttp import web

    from gateway import heap
    from gateway.app import DATABASE, JWT_SECRET, SESSIONS, create_app
    from gateway.cli import listening
    from gateway.fleet.worker import until_done
    from gateway.http.connections import GatewayRunner
    from gateway.http.urls import PublicUrls
    from gateway.sessions.invitations import default_tenant, invite

    app = create_app(settings)
    runner = GatewayRunner(
        app,
        per_ip=settings.http_pending_per_ip,
        urls=PublicUrls.from_settings(settings),
        handle_signals=False,
    )

    async def start() -> None:
        """Opens everything (database, writer, upstream, sessions), listens, invites."""
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = runner.addresses[0][1]  # the real port when asked for port 0
        base_url = settings.public_url or f"http://{settings.host}:{port}"
        print(
            f"interview-gateway listening on {base_url} (mode {settings.mode},"
            f" role {settings.role}, event loop {settings.event_loop})",
            flush=True,
        )
        listening.record(settings.data_dir, base_url)
        heap.freeze_start_up()
        if invite_at_start:
            tenant_id = await default_tenant(app[DATABASE], settings.data_dir)
            invitation = await invite(app[DATABASE], app[JWT_SECRET], tenant_id, mode=settings.mode)
            print(f"interview room: {invitation.room_url(base_url)}", flush=True)
            print(f"candidate token: {invitation.token}", flush=True)

    stopped = asyncio.create_task(stop.wait(), name="stop-signals")
    starting = asyncio.create_task(start(), name="start-up")
    try:
        await asyncio.wait({stopped, starting}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            print("interview-gateway: interrupted during start-up; stopping", file=sys.stderr)
            starting.cancel()
            await asyncio.wait({starting})
            if starting.cancelled():
                return
        starting.result()  # start-up's own error, if it failed
        if settings.role == "worker":
            done = asyncio.create_task(until_done(app[SESSIONS], settings.worker_idle_timeout))
            await asyncio.wait({stopped, done}, return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            if done.done() and not done.cancelled():
                print(f"interview-gateway: worker done ({done.result()})", flush=True)
                return
        await stopped
        if stop.received == signal.SIGTERM and settings.drain_timeout > 0:
            await drain(app[SESSIONS], settings.drain_timeout, stop)
        print("interview-gateway: shutting down, ending every session", flush=True)
    finally:
        stopped.cancel()
        listening.forget(settings.data_dir)
        await runner.cleanup()


async def drain(sessions: SessionManager, seconds: float, stop: StopSignals) -> None:
    """Let live interviews finish, for ``seconds`` at most or until another signal."""
    print(
        f"interview-gateway: draining: no new interviews; {len(sessions)} live ones have"
        f" {seconds:g} s to finish",
        flush=True,
    )
    again = asyncio.create_task(stop.wait(after=stop.count))
    drained = asyncio.create_task(sessions.drain(seconds))
    try:
        await asyncio.wait({again, drained}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        again.cancel()
        drained.cancel()
