"""Interview sessions, the options each was created with, and their video segments.

Every function works inside :meth:`Database.tenant`, so a caller that names the wrong tenant
finds nothing and changes nothing; the row-level security policies, not these queries, are
what guarantee it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from storage.database import Database

SessionStatus = Literal["created", "waiting", "connecting", "active", "ended", "failed"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"ended", "failed"})

#: Columns :func:`update_session` may set; jsonb ones are wrapped for the driver.
SESSION_FIELDS: frozenset[str] = frozenset(
    {
        "status",
        "actual_mode",
        "upstream_kind",
        "upstream_call_id",
        "connection_state",
        "ice_state",
        "selected_pair",
        "connected_at",
        "candidate_ref",
        "metadata",
    }
)
SEGMENT_FIELDS: frozenset[str] = frozenset(
    {
        "storage_uri",
        "codec",
        "started_at",
        "duration_ms",
        "bytes",
        "status",
        "video_id",
        "video_url",
    }
)
_JSON_FIELDS = frozenset({"selected_pair", "metadata"})


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: UUID
    tenant_id: UUID
    status: SessionStatus
    requested_mode: str
    actual_mode: str | None
    upstream_kind: str | None
    upstream_call_id: str | None
    connection_state: str | None
    ice_state: str | None
    selected_pair: dict[str, Any] | None
    connected_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    candidate_ref: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class VideoSegmentRecord:
    id: UUID
    tenant_id: UUID
    session_id: UUID
    participant: str
    kind: str
    sequence: int
    storage_uri: str | None
    codec: str | None
    started_at: datetime | None
    duration_ms: int | None
    bytes: int | None
    status: str
    created_at: datetime
    updated_at: datetime
    #: the video the interview was published as (api.video), and its player URL
    video_id: str | None
    video_url: str | None


_SESSION_COLUMNS = sql.SQL(", ").join(
    sql.Identifier(name) for name in SessionRecord.__dataclass_fields__
)
_SEGMENT_COLUMNS = sql.SQL(", ").join(
    sql.Identifier(name) for name in VideoSegmentRecord.__dataclass_fields__
)


def _assignments(fields: dict[str, Any], allowed: frozenset[str]) -> tuple[sql.Composable, list]:
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot set {', '.join(sorted(unknown))}")
    values = [Jsonb(v) if k in _JSON_FIELDS and v is not None else v for k, v in fields.items()]
    clause = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(name)) for name in fields)
    return clause, values


async def create_session(
    db: Database,
    tenant_id: UUID,
    *,
    requested_mode: str,
    candidate_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> UUID:
    """A new interview session in status 'created'."""
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(
            "INSERT INTO interview_sessions (tenant_id, requested_mode, candidate_ref, metadata)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            [tenant_id, requested_mode, candidate_ref, Jsonb(metadata or {})],
        )
        row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def update_session(db: Database, tenant_id: UUID, session_id: UUID, **fields: Any) -> bool:
    """Sets the given fields unless the session has ended; True when a row changed.

    Terminal statuses go through :func:`end_session`, which also records when and why.
    """
    if fields.get("status") in TERMINAL_STATUSES:
        raise ValueError("use end_session() to end or fail a session")
    if not fields:
        return False
    assignments, values = _assignments(fields, SESSION_FIELDS)
    query = sql.SQL(
        "UPDATE interview_sessions SET {} WHERE id = %s AND status NOT IN ('ended', 'failed')"
    ).format(assignments)
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(query, [*values, session_id])
        return cur.rowcount == 1


async def end_session(
    db: Database,
    tenant_id: UUID,
    session_id: UUID,
    *,
    status: Literal["ended", "failed"],
    reason: str,
    at: datetime | None = None,
) -> bool:
    """Records the session's end once; False when it had already ended (the first end stands).

    ``at`` is when it ended (default: now), for an end recorded later than it happened."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"status must be 'ended' or 'failed', got {status!r}")
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(
            "UPDATE interview_sessions SET status = %s,"
            " ended_at = coalesce(%s, now()), end_reason = %s"
            " WHERE id = %s AND status NOT IN ('ended', 'failed')",
            [status, at, reason, session_id],
        )
        return cur.rowcount == 1


async def reopen_session(db: Database, tenant_id: UUID, session_id: UUID) -> bool:
    """A ``failed`` session starts again (its link is still good: the interview did not take
    place); False unless it was failed. Everything but the end is kept, the transcript too."""
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(
            "UPDATE interview_sessions SET status = 'waiting', ended_at = NULL, end_reason = NULL"
            " WHERE id = %s AND status = 'failed'",
            [session_id],
        )
        return cur.rowcount == 1


async def get_session(db: Database, tenant_id: UUID, session_id: UUID) -> SessionRecord | None:
    async with db.tenant(tenant_id) as conn:
        cur = conn.cursor(row_factory=class_row(SessionRecord))
        await cur.execute(
            sql.SQL("SELECT {} FROM interview_sessions WHERE id = %s").format(_SESSION_COLUMNS),
            [session_id],
        )
        return await cur.fetchone()


#: Statuses of an interview that is taking place now (a candidate is connecting or connected).
LIVE_STATUSES: frozenset[str] = frozenset({"connecting", "active"})
_NEWEST_FIRST = sql.SQL("created_at DESC, id")
_LIVE_FIRST = sql.SQL("status IN ('connecting', 'active') DESC, created_at DESC, id")


async def list_sessions(
    db: Database, tenant_id: UUID, *, limit: int = 50, offset: int = 0, live_first: bool = False
) -> list[SessionRecord]:
    """The tenant's sessions, newest first; with ``live_first`` (the dashboard) those taking
    place now (``LIVE_STATUSES``) come before all the others."""
    async with db.tenant(tenant_id) as conn:
        cur = conn.cursor(row_factory=class_row(SessionRecord))
        await cur.execute(
            sql.SQL("SELECT {} FROM interview_sessions ORDER BY {} LIMIT %s OFFSET %s").format(
                _SESSION_COLUMNS, _LIVE_FIRST if live_first else _NEWEST_FIRST
            ),
            [limit, offset],
        )
        return await cur.fetchall()


@dataclass(frozen=True, slots=True)
class InterviewOptions:
    """What the admin asked for when creating the interview, beyond its mode."""

    expires_at: datetime | None
    max_duration_s: int | None
    upstream_session: dict[str, Any]
    #: 'audio', 'off', or None: the deployment's choice (GATEWAY_RECORDING)
    recording: str | None = None


async def set_interview_options(
    db: Database,
    tenant_id: UUID,
    interview_id: UUID,
    *,
    expires_at: datetime | None = None,
    max_duration_s: int | None = None,
    upstream_session: dict[str, Any] | None = None,
    recording: Literal["off", "audio"] | None = None,
) -> bool:
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(
            "UPDATE interview_sessions SET expires_at = %s, max_duration_s = %s,"
            " upstream_session = %s, recording = %s WHERE id = %s",
            [expires_at, max_duration_s, Jsonb(upstream_session or {}), recording, interview_id],
        )
        return cur.rowcount == 1


async def get_interview_options(
    db: Database, tenant_id: UUID, interview_id: UUID
) -> InterviewOptions | None:
    async with db.tenant(tenant_id) as conn:
        cur = conn.cursor(row_factory=class_row(InterviewOptions))
        await cur.execute(
            "SELECT expires_at, max_duration_s, upstream_session, recording"
            " FROM interview_sessions WHERE id = %s",
            [interview_id],
        )
        return await cur.fetchone()


async def list_interview_options(
    db: Database, tenant_id: UUID, interview_ids: list[UUID]
) -> dict[UUID, InterviewOptions]:
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(
            "SELECT id, expires_at, max_duration_s, upstream_session, recording"
            " FROM interview_sessions WHERE id = ANY(%s)",
            [interview_ids],
        )
        rows = await cur.fetchall()
    return {row[0]: InterviewOptions(*row[1:]) for row in rows}


async def count_sessions(db: Database, tenant_id: UUID) -> int:
    """How many interviews the tenant has, for paging."""
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute("SELECT count(*) FROM interview_sessions")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def add_video_segment(
    db: Database,
    tenant_id: UUID,
    session_id: UUID,
    *,
    participant: Literal["candidate", "interviewer", "upstream"],
    kind: Literal["audio", "video", "content"],
    sequence: int,
    **fields: Any,
) -> UUID:
    """A new segment of one participant's audio or video track (or the upstream's downloaded
    content), status 'recording' by default."""
    names = ["tenant_id", "session_id", "participant", "kind", "sequence"]
    values: list[Any] = [tenant_id, session_id, participant, kind, sequence]
    unknown = set(fields) - SEGMENT_FIELDS
    if unknown:
        raise ValueError(f"cannot set {', '.join(sorted(unknown))}")
    names += list(fields)
    values += list(fields.values())
    query = sql.SQL("INSERT INTO video_segments ({}) VALUES ({}) RETURNING id").format(
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(query, values)
        row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def update_video_segment(
    db: Database, tenant_id: UUID, segment_id: UUID, **fields: Any
) -> bool:
    if not fields:
        return False
    assignments, values = _assignments(fields, SEGMENT_FIELDS)
    query = sql.SQL("UPDATE video_segments SET {} WHERE id = %s").format(assignments)
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(query, [*values, segment_id])
        return cur.rowcount == 1


async def list_video_segments(
    db: Database, tenant_id: UUID, session_id: UUID
) -> list[VideoSegmentRecord]:
    async with db.tenant(tenant_id) as conn:
        cur = conn.cursor(row_factory=class_row(VideoSegmentRecord))
        await cur.execute(
            sql.SQL(
                "SELECT {} FROM video_segments WHERE session_id = %s"
                " ORDER BY participant, kind, sequence"
            ).format(_SEGMENT_COLUMNS),
            [session_id],
        )
        return await cur.fetchall()


async def delete_video_segments(db: Database, tenant_id: UUID, session_id: UUID) -> int:
    """Remove every segment row of one interview (its media is the caller's to delete)."""
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute("DELETE FROM video_segments WHERE session_id = %s", [session_id])
        return cur.rowcount


async def interview_tenant(db: Database, interview_id: UUID) -> UUID | None:
    """Whose interview this is, for an operator's command that names only the interview: read
    as the administrative role, which row-level security does not filter."""
    async with await psycopg.AsyncConnection.connect(db.admin_conninfo) as conn:
        cur = await conn.execute(
            "SELECT tenant_id FROM interview_sessions WHERE id = %s", [interview_id]
        )
        row = await cur.fetchone()
    return UUID(str(row[0])) if row else None


@dataclass(frozen=True, slots=True)
class ExpiredSegment:
    tenant_id: UUID
    id: UUID
    status: str
    storage_uri: str | None
    video_id: str | None


async def expired_video_segments(db: Database, age_s: float, limit: int) -> list[ExpiredSegment]:
    """Up to ``limit`` settled segments (``uploaded`` or ``failed``) of any tenant created more
    than ``age_s`` seconds ago, oldest first: the retention job's work, read as the
    administrative role because it spans tenants (each deletion is then the tenant's own)."""
    async with await psycopg.AsyncConnection.connect(db.admin_conninfo) as conn:
        cur = conn.cursor(row_factory=class_row(ExpiredSegment))
        await cur.execute(
            "SELECT tenant_id, id, status, storage_uri, video_id FROM video_segments"
            " WHERE status IN ('uploaded', 'failed')"
            " AND created_at < now() - make_interval(secs => %s)"
            " ORDER BY created_at LIMIT %s",
            [age_s, limit],
        )
        return await cur.fetchall()


async def delete_video_segment(db: Database, tenant_id: UUID, segment_id: UUID) -> bool:
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute("DELETE FROM video_segments WHERE id = %s", [segment_id])
        return cur.rowcount == 1
