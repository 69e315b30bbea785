"""Integrity events: what a candidate's client tried that the gateway refused or undid.

The interview's record must be trustworthy, so an attempt to steer the interviewer (a client
event outside the allowlist, a ``session.update`` the gateway did not make) is kept beside the
transcript, once per interview and kind, with a count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from psycopg.rows import class_row

from storage.database import Database


@dataclass(frozen=True, slots=True)
class IntegrityEvent:
    kind: str
    detail: str
    first_at: datetime
    last_at: datetime
    count: int


async def record_integrity_event(
    db: Database, tenant_id: UUID, interview_id: UUID, kind: str, detail: str, *, count: int = 1
) -> None:
    """Add ``count`` occurrences of ``kind``; the first occurrence's detail is kept."""
    async with db.tenant(tenant_id) as conn:
        await conn.execute(
            "INSERT INTO integrity_events (tenant_id, interview_id, kind, detail, count)"
            " VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (tenant_id, interview_id, kind) DO UPDATE"
            " SET count = integrity_events.count + EXCLUDED.count, last_at = now()",
            [tenant_id, interview_id, kind, detail[:500], count],
        )


async def integrity_events(
    db: Database, tenant_id: UUID, interview_id: UUID
) -> list[IntegrityEvent]:
    async with db.tenant(tenant_id) as conn:
        cur = conn.cursor(row_factory=class_row(IntegrityEvent))
        await cur.execute(
            "SELECT kind, detail, first_at, last_at, count FROM integrity_events"
            " WHERE interview_id = %s ORDER BY first_at, kind",
            [interview_id],
        )
        return await cur.fetchall()
