"""A worker's one job: serve its interview, then exit (``serve --role worker``).

A front starts a worker for one interview; the worker exits once that interview has ended (its
end recorded by the usual shutdown), or, if its candidate never came, after
``GATEWAY_WORKER_IDLE_TIMEOUT``, so that no process waits forever for an interview that went
elsewhere. Either way it exits 0 and, on Fly, ``auto_destroy`` removes its Machine.
"""

from __future__ import annotations

import asyncio

from gateway.sessions.manager import SessionManager


async def until_done(sessions: SessionManager, idle_timeout: float) -> str:
    """Returns why the worker is done: ``interview over`` or ``no interview came``."""
    try:
        await asyncio.wait_for(sessions.admitted.wait(), idle_timeout)
    except TimeoutError:
        return "no interview came"
    await sessions.served.wait()
    return "interview over"
