"""A front's fleet, from start to shutdown: backend, front, reaper (``serve --role front``).

At shutdown the front's workers are asked to stop (SIGTERM: each drains its interview, which
ends as ``shutdown`` with its transcript flushed) and given the drain timeout and a margin to
exit; whatever is still there then is destroyed, so a front leaves no worker behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from uuid import UUID

import aiohttp

from gateway.config import Settings
from gateway.fleet.backend import FLEET_KEY, BackendError, WaitTimeout, WorkerBackend
from gateway.fleet.fly import FlyBackend
from gateway.fleet.front import Front, worker_env
from gateway.fleet.local import LocalBackend
from gateway.fleet.pool import WarmPool
from gateway.fleet.reaper import Reaper
from signaling.tokens import TokenVerifier
from storage.database import Database

log = logging.getLogger(__name__)

#: seconds a stopping worker gets beyond its drain timeout to record its end and exit
STOP_MARGIN = 10.0


@dataclass(frozen=True)
class Fleet:
    """A running front's parts, for the app (routing) and for tests and the bench (reaping)."""

    front: Front
    reaper: Reaper
    backend: WorkerBackend
    pool: WarmPool


def make_backend(settings: Settings, http: aiohttp.ClientSession) -> WorkerBackend:
    """The configured backend (the ``fly`` one calls the Machines API through ``http``)."""
    if settings.backend == "fly":
        relayed = settings.mode != "proxy"  # relay and auto relay media through the worker
        return FlyBackend(
            settings.fly,
            http,
            media_udp_port=settings.ice_udp_port if relayed else 0,
            public_addresses=settings.ice_public_addresses,
        )
    return LocalBackend(settings.data_dir / "workers", max_workers=settings.max_workers)


@asynccontextmanager
async def running_front(
    settings: Settings, *, db: Database, secret: str, verifier: TokenVerifier, front_id: UUID
) -> AsyncIterator[Fleet]:
    async with aiohttp.ClientSession() as http:
        backend = make_backend(settings, http)
        front = Front(
            settings,
            db=db,
            backend=backend,
            verifier=verifier,
            front_id=front_id,
            env=worker_env(settings, db, secret),
            http=http,
        )
        pool = front.pool = WarmPool(
            backend,
            size=settings.worker_pool,
            metadata={FLEET_KEY: str(front_id)},
            env=front.env,
            start_timeout=settings.worker_start_timeout,
            launch=backend.name != "fly" or settings.fly.pool == "started",
        )
        reaper = Reaper(
            db,
            backend,
            front_id=front_id,
            lost_after=settings.lost_after,
            start_timeout=settings.worker_start_timeout,
            spare=lambda: pool.ids,
        )
        await reaper.start()
        pool.refill()
        try:
            yield Fleet(front, reaper, backend, pool)
        finally:
            await pool.close()
            await reaper.close()
            await stop_workers(backend, front_id, settings.drain_timeout + STOP_MARGIN)
            await backend.close()


async def stop_workers(backend: WorkerBackend, front_id: UUID, within: float) -> None:
    """Stop every worker of this front, then destroy those still there after ``within``."""
    listed = await backend.list({FLEET_KEY: str(front_id)})
    for idle in (w for w in listed if w.state in ("created", "stopped")):
        await backend.destroy(idle.id)  # nothing runs there to drain (a pooled Machine)
    mine = [w for w in listed if w.state not in ("created", "stopped")]
    for worker in mine:
        with contextlib.suppress(BackendError):
            await backend.stop(worker.id)

    async def gone(worker_id: str) -> None:
        try:
            await backend.wait(worker_id, "destroyed", within)
        except WaitTimeout:
            log.warning("worker %s did not stop in %g s; destroying it", worker_id, within)
            await backend.destroy(worker_id)

    await asyncio.gather(*(gone(w.id) for w in mine))
