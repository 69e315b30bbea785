"""The bench's child processes, both ends: each serves HTTP controls and says ``READY <port>``.

``bench relay`` runs every role (the peers, the relay under measurement) in a process of its
own, so that one role's CPU is not another's and the relay's can be read alone. A child serves
its controls on a free loopback port and prints ``READY <port>`` as its first line; the bench
starts it, waits for that line, drives it over HTTP and finally posts ``/control/exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import aiohttp
from aiohttp import web

from gateway import heap

READY_TIMEOUT = 120.0
EXIT_TIMEOUT = 10.0


async def serve(app: web.Application, done: asyncio.Event) -> None:
    """The child's end: serve ``app`` on a free loopback port, say so, run until ``done``."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    heap.freeze_start_up()  # as the gateway does once it serves
    print(f"READY {port}", flush=True)
    try:
        await done.wait()
    finally:
        await runner.cleanup()


class Process:
    """The bench's end: a started child and the URL of its controls."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, *args: str) -> Process:
        """Run ``python -m ARGS`` and wait until it says ``READY``."""
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
        """Ask the child to exit; kill it if it has not within ``EXIT_TIMEOUT``."""
        with contextlib.suppress(aiohttp.ClientError):
            await http.post(f"{self.url}/control/exit")
        try:
            async with asyncio.timeout(EXIT_TIMEOUT):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
