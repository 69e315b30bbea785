"""Gateway processes, their heartbeats, and the live interviews each one claims.

A crashed gateway cannot record how its interviews ended, so someone else must: every process
registers an id and keeps a heartbeat, claims each interview it serves, and gives the claim
up once the interview's end is recorded. A claim whose gateway's heartbeat is older than the
bound belongs to a dead process; ``lost_claims`` lists them for the reconciler, which
finalizes each interview inside its tenant's transaction and then releases the claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from storage.database import Database

#: What a gateway process is: a worker serves one interview for a front (``gateway.fleet``);
#: every other process is a ``gateway``. The reconciler gives each kind's lost interviews their
#: own end reason.
GatewayKind = Literal["gateway", "worker"]


@dataclass(frozen=True, slots=True)
class Claim:
    interview_id: UUID
    tenant_id: UUID
    gateway_id: UUID
    #: the kind of the process that held it (``gateway`` when its row is gone already)
    kind: GatewayKind = "gateway"


async def register_gateway(
    db: Database, gateway_id: UUID, label: str = "", *, kind: GatewayKind = "gateway"
) -> None:
    async with db.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO gateways (id, label, kind) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
            [gateway_id, label[:200], kind],
        )


async def heartbeat(db: Database, gateway_id: UUID) -> None:
    async with db.pool.connection() as conn:
        await conn.execute("UPDATE gateways SET heartbeat_at = now() WHERE id = %s", [gateway_id])


async def retire_gateway(db: Database, gateway_id: UUID) -> None:
    """A clean shutdown: the process is gone, and it left no claims behind it."""
    async with db.pool.connection() as conn:
        await conn.execute(
            "DELETE FROM gateways g WHERE id = %s"
            " AND NOT EXISTS (SELECT 1 FROM session_claims c WHERE c.gateway_id = g.id)",
            [gateway_id],
        )


async def claim(db: Database, gateway_id: UUID, tenant_id: UUID, interview_id: UUID) -> None:
    """This gateway serves the interview now (a reconnect to another process takes it over)."""
    async with db.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO session_claims (interview_id, tenant_id, gateway_id)"
            " VALUES (%s, %s, %s) ON CONFLICT (interview_id) DO UPDATE"
            " SET gateway_id = EXCLUDED.gateway_id, claimed_at = now()",
            [interview_id, tenant_id, gateway_id],
        )


async def release(db: Database, gateway_id: UUID, interview_id: UUID) -> None:
    async with db.pool.connection() as conn:
        await conn.execute(
            "DELETE FROM session_claims WHERE interview_id = %s AND gateway_id = %s",
            [interview_id, gateway_id],
        )


async def lost_claims(db: Database, lost_after: float) -> list[Claim]:
    """Claims of gateways whose heartbeat is older than ``lost_after`` seconds (or gone)."""
    async with db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT c.interview_id, c.tenant_id, c.gateway_id, coalesce(g.kind, 'gateway')"
            " FROM session_claims c"
            " LEFT JOIN gateways g ON g.id = c.gateway_id"
            " WHERE g.id IS NULL OR g.heartbeat_at < now() - make_interval(secs => %s)"
            " ORDER BY c.claimed_at LIMIT 1000",
            [lost_after],
        )
        return [Claim(*row) for row in await cur.fetchall()]


async def forget_dead_gateways(db: Database, lost_after: float) -> None:
    """Drop the rows of lapsed gateways that hold no claims any more."""
    async with db.pool.connection() as conn:
        await conn.execute(
            "DELETE FROM gateways g WHERE g.heartbeat_at < now() - make_interval(secs => %s)"
            " AND NOT EXISTS (SELECT 1 FROM session_claims c WHERE c.gateway_id = g.id)",
            [lost_after],
        )
