"""Observers' audit: one row when someone starts watching a live interview and one when they
stop, with who (the token's subject), as what (``interviewer`` or ``observer``) and why it
ended. Rows are only ever added: the record of who saw an interview must not be editable by the
gateway that wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from psycopg.rows import class_row

from storage.database import Database

AuditEvent = Literal["join", "leave"]


@dataclass(frozen=True, slots=True)
class ObserverAuditRow:
    observer_id: UUID
    subject: str | None
    role: str
    event: str
    reason: str | None
    at: datetime


async def record_observer_event(
    db: Database,
    tenant_id: UUID,
    interview_id: UUID,
    observer_id: UUID,
    *,
    subject: str | None,
    role: str,
    event: AuditEvent,
    reason: str | None = None,
) -> None:
    """Add one audit row; ``observer_id`` ties a leave to its join."""
    async with db.tenant(tenant_id) as conn:
        await conn.execute(
            "INSERT INTO observer_audit"
            " (tenant_id, interview_id, observer_id, subject, role, event, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [tenant_id, interview_id, observer_id, subject, role, event, reason],
        )


async def observer_events(
    db: Database, tenant_id: UUID, interview_id: UUID
) -> list[ObserverAuditRow]:
    """The interview's audit rows, oldest first."""
    async with db.tenant(tenant_id) as conn:
        cur = conn.cursor(row_factory=class_row(ObserverAuditRow))
        await cur.execute(
            "SELECT observer_id, subject, role, event, reason, at FROM observer_audit"
            " WHERE interview_id = %s ORDER BY at, event",
            [interview_id],
        )
        return await cur.fetchall()
