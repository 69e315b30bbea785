"""Reading a transcript back: in the session's reading order, or as plain text."""

from __future__ import annotations

from uuid import UUID

from psycopg.rows import class_row

from storage.database import Database
from storage.transcripts.entries import TranscriptRow

_SPEAKERS: dict[str, str] = {"interviewer": "Interviewer", "candidate": "Candidate"}


async def read_transcript(db: Database, tenant_id: UUID, session_id: UUID) -> list[TranscriptRow]:
    """A session's transcript in reading order (the order the gateway received the events)."""
    async with db.tenant(tenant_id) as conn:
        cur = conn.cursor(row_factory=class_row(TranscriptRow))
        await cur.execute(
            "SELECT seq, event_id, item_id, role, text, source, event_type, received_at,"
            " audio_start_ms, audio_end_ms, raw"
            " FROM transcript_entries WHERE session_id = %s ORDER BY seq",
            [session_id],
        )
        return await cur.fetchall()


async def transcript_text(db: Database, tenant_id: UUID, session_id: UUID) -> str:
    """The transcript as plain text, one ``Speaker: text`` line per entry."""
    rows = await read_transcript(db, tenant_id, session_id)
    return "\n".join(f"{_SPEAKERS[r.role]}: {r.text}" for r in rows)
