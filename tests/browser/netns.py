"""Network namespaces for the TURN tests: a candidate and a gateway that cannot reach each other,
both reaching a third namespace where a real coturn runs.

The topology (every address lives only inside namespaces this module creates, joined by veth
pairs; the TURN namespace does not forward, so no packet crosses from one side to the other)::

    candidate 10.99.2.1 ─veth─ 10.99.2.2 [turn: coturn 10.99.0.1] 10.99.1.2 ─veth─ 10.99.1.1 gateway
    (a route to 10.99.0.1 only)                                   (a route to 10.99.0.1 only)

Signaling is not media: the browser still needs the gateway's HTTP port, as it would through a
reverse proxy. :class:`Bridge` carries TCP from the candidate's loopback to the gateway's (its
sockets are created inside each namespace), so the page is on ``http://127.0.0.1``, a secure
context where the microphone may be used, and ICE has no way across but the TURN server.
Needs root (``ip netns``); the tests skip without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

TURN_ADDRESS = "10.99.0.1"
TURN_PORT = 3478
GATEWAY_ADDRESS = "10.99.1.1"
CANDIDATE_ADDRESS = "10.99.2.1"

_CLONE_NEWNET = 0x40000000

T = TypeVar("T")


def can_make_namespaces() -> bool:
    """Root with ``ip``: creating a throwaway namespace works."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"igw-probe-{secrets.token_hex(3)}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", name], check=True)
    return True


@dataclass(frozen=True)
class Namespace:
    name: str

    def command(self, *argv: str | Path) -> list[str]:
        """``argv`` run inside this namespace (``ip netns exec`` execs it: same process)."""
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True)

    def run(self, work: Callable[[], T]) -> Future[T]:
        """``work()`` on a new thread that entered this namespace (a thread's network namespace
        is its own, and sockets keep the one they were made in for life)."""
        done: Future[T] = Future()

        def enter_and_work() -> None:
            try:
                with open(f"/run/netns/{self.name}") as handle:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {self.name} failed")
                done.set_result(work())
            except BaseException as exc:  # handed to whoever waits on the future
                done.set_exception(exc)

        threading.Thread(target=enter_and_work, name=f"netns-{self.name}").start()
        return done

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket of this namespace (made at once: the wait is a thread's start)."""
        return self.run(lambda: socket.socket(socket.AF_INET, kind)).result()


@dataclass(frozen=True)
class Topology:
    turn: Namespace
    candidate: Namespace
    gateway: Namespace


@contextlib.contextmanager
def isolated_sides() -> Iterator[Topology]:
    """Create the three namespaces and their links; delete them (and so the links) after."""
    prefix = f"igw-{secrets.token_hex(3)}"
    topology = Topology(*(Namespace(f"{prefix}-{part}") for part in ("turn", "cand", "gw")))
    made: list[Namespace] = []
    try:
        for ns in (topology.turn, topology.candidate, topology.gateway):
            subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
            made.append(ns)
            ns.ip("link", "set", "lo", "up")
        turn = topology.turn
        turn.ip("addr", "add", f"{TURN_ADDRESS}/32", "dev", "lo")
        subprocess.run(
            turn.command("sysctl", "-qw", "net.ipv4.ip_forward=0"), check=True, capture_output=True
        )
        for side, link, here, there in (
            (topology.gateway, "to-gw", GATEWAY_ADDRESS, "10.99.1.2"),
            (topology.candidate, "to-cand", CANDIDATE_ADDRESS, "10.99.2.2"),
        ):
            veth_peer = ("peer", "name", "to-turn", "netns", side.name)
            turn.ip("link", "add", link, "type", "veth", *veth_peer)
            turn.ip("addr", "add", f"{there}/30", "dev", link)
            turn.ip("link", "set", link, "up")
            side.ip("addr", "add", f"{here}/30", "dev", "to-turn")
            side.ip("link", "set", "to-turn", "up")
            side.ip("route", "add", f"{TURN_ADDRESS}/32", "via", there)
        yield topology
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)


class Bridge:
    """TCP from ``listen`` (address, port) in one namespace to ``target`` in another."""

    def __init__(
        self, source: Namespace, listen: tuple[str, int], target: Namespace, to: tuple[str, int]
    ) -> None:
        self._source, self._listen = source, listen
        self._target, self._to = target, to
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        sock = self._source.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(self._listen)
        self._server = await asyncio.start_server(self._accepted, sock=sock)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            sock = self._target.socket()
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, self._to)
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
            await splice((reader, writer), (up_reader, up_writer))
        finally:
            writer.transport.abort()
            self._tasks.discard(task)


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def splice(a: Streams, b: Streams) -> None:
    """Copy both ways until either side ends; then both are cut."""

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()

    await asyncio.gather(pipe(a[0], b[1]), pipe(b[0], a[1]))


class Output:
    """The lines a process writes, read as they come; a test waits for the line it needs."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._ended = False
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while True:
            line = (await stream.readline()).decode(errors="replace")
            async with self._changed:
                self._ended = not line
                if line:
                    self.lines.append(line)
                self._changed.notify_all()
            if not line:
                return

    async def wait_for(self, text: str) -> str:
        """The first line containing ``text``; RuntimeError if the output ends without it
        (callers bound the wait)."""

        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        async with self._changed:
            await self._changed.wait_for(lambda: found() is not None or self._ended)
        line = found()
        if line is None:
            raise RuntimeError(f"no {text!r} before the output ended: {''.join(self.lines[-20:])}")
        return line

    async def closed(self) -> None:
        await self._task


async def stop(process: asyncio.subprocess.Process, *outputs: Output) -> None:
    """Terminate (SIGTERM, then SIGKILL after 10 s) and reap; read what it wrote to the end."""
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
    for output in outputs:
        await output.closed()


class Coturn:
    """Debian's coturn in ``ns``, on ``TURN_ADDRESS``, taking TURN REST API credentials made
    with ``secret`` (``use-auth-secret``) and no others."""

    def __init__(self, ns: Namespace, secret: str, workdir: Path) -> None:
        self.ns, self.secret, self.workdir = ns, secret, workdir
        self._process: asyncio.subprocess.Process | None = None
        self.output: Output | None = None

    async def start(self) -> None:
        conf = self.workdir / "turnserver.conf"
        conf.write_text(
            "\n".join(
                [
                    f"listening-ip={TURN_ADDRESS}",
                    f"relay-ip={TURN_ADDRESS}",
                    f"listening-port={TURN_PORT}",
                    "use-auth-secret",
                    f"static-auth-secret={self.secret}",
                    "realm=interview.test",
                    "fingerprint",
                    "no-tls",
                    "no-dtls",
                    "no-cli",
                    f"userdb={self.workdir / 'turndb'}",
                    f"pidfile={self.workdir / 'turnserver.pid'}",
                    "log-file=stdout",
                    "simple-log",
                    "verbose",
                    "",
                ]
            )
        )
        self._process = await asyncio.create_subprocess_exec(
            *self.ns.command("turnserver", "-c", conf),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self._process.stdout is not None
        self.output = Output(self._process.stdout)
        async with asyncio.timeout(20):
            await self.output.wait_for(f"UDP listener opened on: {TURN_ADDRESS}:{TURN_PORT}")

    async def stop(self) -> None:
        if self._process is not None:
            await stop(self._process, *([self.output] if self.output else []))
