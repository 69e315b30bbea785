"""Which worker holds which interview: the claim record of ``gateway.fleet``.

A front that is asked for an interview first *claims* it: one INSERT that only one front can
win (the interview is the primary key), so two fronts racing for the same interview agree on
one worker without a lock held across the worker's start. The winner creates and starts the
worker, records its id (unique: no worker serves two interviews) and then its address once it
is ready; every other front waits for that and routes to the same worker. A claim is dropped
when its worker is gone, by the front that saw it go or by the fleet reaper.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from psycopg.rows import class_row

from storage.database import Database

ClaimState = Literal["claiming", "ready"]


@dataclass(frozen=True, slots=True)
class WorkerClaim:
    interview_id: UUID
    tenant_id: UUID
    front_id: UUID
    backend: str
    worker_id: str | None
    address: str
    state: ClaimState
    claimed_at: datetime
    #: whether the claiming front's heartbeat lapsed (or its row is gone): nobody will finish
    #: a claim that is still ``claiming``
    front_lost: bool = False


_COLUMNS = (
    "c.interview_id, c.tenant_id, c.front_id, c.backend, c.worker_id, c.address, c.state,"
    " c.claimed_at"
)


async def try_claim(
    db: Database, tenant_id: UUID, interview_id: UUID, front_id: UUID, backend: str
) -> bool:
    """Claim the interview for a worker this front will provision; False if already claimed."""
    async with db.pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO worker_claims (interview_id, tenant_id, front_id, backend)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (interview_id) DO NOTHING",
            [interview_id, tenant_id, front_id, backend],
        )
        return cur.rowcount == 1


async def assign(db: Database, interview_id: UUID, front_id: UUID, worker_id: str) -> None:
    """The claiming front's worker for the interview exists now (before it is ready, so the
    reaper can tell it from an orphan)."""
    async with db.pool.connection() as conn:
        await conn.execute(
            "UPDATE worker_claims SET worker_id = %s WHERE interview_id = %s AND front_id = %s",
            [worker_id, interview_id, front_id],
        )


async def mark_ready(db: Database, interview_id: UUID, front_id: UUID, address: str) -> None:
    async with db.pool.connection() as conn:
        await conn.execute(
            "UPDATE worker_claims SET state = 'ready', address = %s"
            " WHERE interview_id = %s AND front_id = %s",
            [address, interview_id, front_id],
        )


async def get_claim(db: Database, interview_id: UUID) -> WorkerClaim | None:
    async with db.pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(WorkerClaim))
        await cur.execute(
            f"SELECT {_COLUMNS} FROM worker_claims c WHERE c.interview_id = %s", [interview_id]
        )
        return await cur.fetchone()


async def drop_claim(db: Database, interview_id: UUID, worker_id: str | None = None) -> None:
    """Forget the interview's claim (only if it still names ``worker_id``, when given)."""
    async with db.pool.connection() as conn:
        await conn.execute(
            "DELETE FROM worker_claims WHERE interview_id = %s"
            " AND (%s::text IS NULL OR worker_id IS NOT DISTINCT FROM %s::text)",
            [interview_id, worker_id, worker_id],
        )


async def all_claims(db: Database, backend: str, lost_after: float) -> list[WorkerClaim]:
    """Every claim on ``backend``, with whether its front still beats (the reaper's input)."""
    async with db.pool.connection() as conn:
        cur = conn.cursor(row_factory=class_row(WorkerClaim))
        await cur.execute(
            f"SELECT {_COLUMNS}, (g.id IS NULL"
            " OR g.heartbeat_at < now() - make_interval(secs => %s)) AS front_lost"
            " FROM worker_claims c LEFT JOIN gateways g ON g.id = c.front_id"
            " WHERE c.backend = %s ORDER BY c.claimed_at LIMIT 10000",
            [lost_after, backend],
        )
        return await cur.fetchall()
