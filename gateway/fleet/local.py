"""The ``local`` backend: each worker is an ``interview-gateway serve --role worker`` process on
this machine, a child of the front.

It keeps the Machines API's contract so the front cannot tell it from Fly: ``create`` with
``skip_launch`` only records the worker (``created``), ``start`` spawns the process
(``starting``), which is ``started`` once it prints where it listens (by then its database,
writer and upstream are open, so started means ready); when the process exits the worker is
``destroyed`` and gone from ``list``, as a Machine with ``auto_destroy`` and ``restart: no`` is.

A worker dies with its front (``PR_SET_PDEATHSIG``, SIGTERM: it drains): a front killed outright
leaves no process behind that nobody could list, since another front's ``local`` backend sees
only its own children.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import logging
import os
import secrets
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from gateway.fleet.backend import (
    CapacityError,
    WaitTimeout,
    Worker,
    WorkerNotFound,
    WorkerSpec,
    WorkerState,
)

log = logging.getLogger(__name__)

#: what a starting worker prints once it listens (``serve``'s first line)
LISTENING = " listening on "
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The child gets SIGTERM when the front that forked it dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Entry:
    worker: Worker
    spec: WorkerSpec
    data_dir: Path
    process: asyncio.subprocess.Process | None = None
    watcher: asyncio.Task[None] | None = None
    logs: list[str] = field(default_factory=list)


class LocalBackend:
    """Worker processes on this machine, at most ``max_workers`` at once."""

    name = "local"

    def __init__(self, data_dir: Path, *, max_workers: int) -> None:
        #: each worker's own data directory (its transcript journal) is made under this
        self.data_dir = data_dir
        self.max_workers = max_workers
        self._entries: dict[str, _Entry] = {}
        self._changed = asyncio.Condition()
        self._serial = itertools.count(1)
        #: workers gone since start, by why: ``done`` (exited 0), ``failed`` (exited non-zero),
        #: ``killed`` (a signal, or :meth:`destroy`)
        self.exits: Counter[str] = Counter()

    # -- the interface ----------------------------------------------------------------------

    async def create(self, spec: WorkerSpec, *, skip_launch: bool = False) -> Worker:
        if len(self._entries) >= self.max_workers:
            raise CapacityError(f"this machine runs {self.max_workers} workers already")
        worker_id = f"local-{next(self._serial)}-{secrets.token_hex(4)}"
        entry = _Entry(
            Worker(worker_id, "created", dict(spec.metadata)), spec, self.data_dir / worker_id
        )
        self._entries[worker_id] = entry
        if not skip_launch:
            await self.start(worker_id)
        return entry.worker

    async def start(self, worker_id: str, metadata: Mapping[str, str] | None = None) -> None:
        entry = self._entry(worker_id)
        if metadata:
            entry.worker = replace(entry.worker, metadata={**entry.worker.metadata, **metadata})
        if entry.process is not None:
            return
        entry.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **entry.spec.env, "GATEWAY_DATA_DIR": str(entry.data_dir)}
        # loopback and a port of the system's choosing, unless the spec says where (the Fly
        # stand-in gives each Machine an address of its own and Fly's one port)
        host = entry.spec.env.get("GATEWAY_HOST", "127.0.0.1")
        port = entry.spec.env.get("GATEWAY_PORT", "0")
        await self._set(entry, "starting")
        entry.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", "--role", "worker",
            "--host", host, "--port", port, "--no-invite",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        entry.watcher = asyncio.create_task(self._watch(entry), name=f"worker {worker_id}")

    async def wait(self, worker_id: str, state: WorkerState, within: float) -> Worker:
        def reached() -> bool:
            entry = self._entries.get(worker_id)
            current = entry.worker.state if entry is not None else "destroyed"
            return current == state or current == "destroyed"

        if worker_id not in self._entries and state != "destroyed":
            raise WorkerNotFound(f"no worker {worker_id}")
        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(reached)
        except TimeoutError:
            raise WaitTimeout(f"worker {worker_id} was not {state} within {within:g} s") from None
        entry = self._entries.get(worker_id)
        worker = entry.worker if entry is not None else Worker(worker_id, "destroyed", {})
        if worker.state != state:
            tail = " | ".join(entry.logs[-3:]) if entry is not None else ""
            raise WorkerNotFound(f"worker {worker_id} exited before it was {state}: {tail}")
        return worker

    async def stop(self, worker_id: str) -> None:
        entry = self._entry(worker_id)
        if entry.process is not None and entry.process.returncode is None:
            await self._set(entry, "stopping")
            entry.process.send_signal(signal.SIGTERM)

    async def destroy(self, worker_id: str) -> None:
        entry = self._entries.get(worker_id)
        if entry is None:
            return
        if entry.process is None:
            await self._gone(entry, clean=True)
            return
        if entry.process.returncode is None:
            await self._set(entry, "destroying")
            entry.process.kill()
        if entry.watcher is not None:
            await asyncio.shield(entry.watcher)

    async def list(self, metadata: Mapping[str, str]) -> list[Worker]:
        return [
            e.worker
            for e in self._entries.values()
            if all(e.worker.metadata.get(k) == v for k, v in metadata.items())
        ]

    def pid(self, worker_id: str) -> int | None:
        """The worker's process id while it runs (for an operator, or a test that kills it)."""
        entry = self._entries.get(worker_id)
        return entry.process.pid if entry is not None and entry.process is not None else None

    async def close(self) -> None:
        """Nothing of its own to release: workers outlive this object only as long as the
        process does (they die with it)."""

    # -- the processes ----------------------------------------------------------------------

    def _entry(self, worker_id: str) -> _Entry:
        entry = self._entries.get(worker_id)
        if entry is None:
            raise WorkerNotFound(f"no worker {worker_id}")
        return entry

    async def _set(self, entry: _Entry, state: WorkerState, address: str | None = None) -> None:
        entry.worker = replace(
            entry.worker, state=state, address=entry.worker.address if address is None else address
        )
        async with self._changed:
            self._changed.notify_all()

    async def _watch(self, entry: _Entry) -> None:
        """Reads the worker's output (its first line says where it listens, the last few are
        kept for an error message) until it exits; then the worker is destroyed."""
        process = entry.process
        assert process is not None and process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()
            entry.logs = [*entry.logs[-19:], line]
            if LISTENING in line and entry.worker.state == "starting":
                await self._set(entry, "started", line.split(LISTENING, 1)[1].split()[0])
        code = await process.wait()
        self.exits["done" if code == 0 else "killed" if code < 0 else "failed"] += 1
        if code == 0:
            log.info("worker %s exited", entry.worker.id)
        else:
            log.warning("worker %s exited (%s): %s", entry.worker.id, code, " | ".join(entry.logs))
        await self._gone(entry, clean=code == 0)

    async def _gone(self, entry: _Entry, *, clean: bool) -> None:
        """The worker is destroyed. Its data directory goes with it after a clean exit (its
        journal was flushed); after a crash it stays, for the lines its journal may hold."""
        self._entries.pop(entry.worker.id, None)
        if clean:
            shutil.rmtree(entry.data_dir, ignore_errors=True)
        await self._set(entry, "destroyed")
