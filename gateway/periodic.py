"""A background duty run every so many seconds, that waits out an outage instead of dying.

The reconciler's heartbeat and the fleet's reaper both need the same loop: sleep, do the work,
and when the database (or a backend) is away, say so once and try again next time, without
flooding the log or ending the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, seconds: float, work: Callable[[], Awaitable[object]], what: str) -> None:
        self._seconds = seconds
        self._work = work
        self._what = what
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._what)

    async def _run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._seconds)
            try:
                await self._work()
            except Exception as exc:  # the database or a backend is away: wait it out
                if not failing:
                    log.warning("%s failed (%s); retrying", self._what, exc)
                failing = True
            else:
                if failing:
                    log.info("%s works again", self._what)
                failing = False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
