"""A warm pool of workers, so that a claim takes one ready to go instead of creating one.

On ``local`` the pool holds started workers, which already listen: a cold worker takes seconds
to load aiortc and open the database. On ``fly`` it holds Machines created with
``skip_launch`` (image pulled, VM reserved, no CPU billed): a claim is a start, not a create.

A pooled worker is a plain worker that no interview claims yet (it serves whichever the front
forwards to it first, and only that one). The pool is refilled in the background after every
take; what it holds is this front's alone (the reaper leaves its workers be).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from gateway.fleet.backend import BackendError, Worker, WorkerBackend, WorkerSpec

log = logging.getLogger(__name__)

#: a pooled worker waits for its interview as long as the pool keeps it
POOLED_IDLE_TIMEOUT = str(24 * 3600)


class WarmPool:
    def __init__(
        self,
        backend: WorkerBackend,
        *,
        size: int,
        metadata: Mapping[str, str],
        env: Mapping[str, str],
        start_timeout: float,
        launch: bool = True,
    ) -> None:
        self.backend = backend
        self.size = size
        #: whether pooled workers are started (they wait, listening, for their interview) or
        #: only created (Fly's ``skip_launch``: stopped, image pulled; a claim starts one)
        self.launch = launch
        idle = {"GATEWAY_WORKER_IDLE_TIMEOUT": POOLED_IDLE_TIMEOUT} if launch else {}
        self.spec = WorkerSpec(metadata={**metadata, "pooled": "1"}, env={**env, **idle})
        self.start_timeout = start_timeout
        self._ready: list[Worker] = []
        #: workers being created or booted now: one at a time when they boot, any number when
        #: they are only created (nothing runs on a ``skip_launch`` Machine)
        self._booting = 0
        self._boot_ids: set[str] = set()
        self._at_once = 1 if launch else size
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ids(self) -> set[str]:
        """Every worker the pool holds or is starting (none of them claimed)."""
        return {w.id for w in self._ready} | self._boot_ids

    def __len__(self) -> int:
        return len(self._ready)

    def take(self) -> Worker | None:
        """A started worker, or None when the pool is empty; the pool refills itself."""
        worker = self._ready.pop() if self._ready else None
        self.refill()
        return worker

    def refill(self) -> None:
        """Add workers until the pool is full. Started ones boot one at a time: a booting
        worker is the heaviest thing on the machine (it loads aiortc), and the interviews
        running beside it must not starve. Created ones (``skip_launch``) all at once."""
        while self._booting < self._at_once and len(self._ready) + self._booting < self.size:
            self._booting += 1
            task = asyncio.create_task(self._boot())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def full(self) -> None:
        """Returns once the pool holds ``size`` started workers (a bench's warm start)."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._ready) >= self.size)

    async def _boot(self) -> None:
        worker_id: str | None = None
        try:
            worker = await self.backend.create(self.spec, skip_launch=not self.launch)
            worker_id = worker.id
            self._boot_ids.add(worker_id)
            if self.launch:
                worker = await self.backend.wait(worker_id, "started", self.start_timeout)
        except BackendError as exc:
            log.warning("could not start a pooled worker (%s)", exc)
            if worker_id is not None:
                with contextlib.suppress(BackendError):  # else unclaimed: the reaper's
                    await self.backend.destroy(worker_id)
            return  # the next take tries again
        finally:
            self._booting -= 1
            self._boot_ids.discard(worker_id or "")
        async with self._changed:
            self._ready.append(worker)
            self._changed.notify_all()
        self.refill()

    async def close(self) -> None:
        """Stop filling; the workers themselves are the front's to stop."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
