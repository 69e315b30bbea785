"""Reading a transcript back, row by row in the session's reading order. (Rows become turns,
GPT-Live's fragments joined, in ``gateway.sessions.turns``: which rows are fragments is the
gateway's event interpreter's knowledge, not storage's.)

A line the browser forwarded (``source = client``) whose ``event_id`` a trusted line (relay,
sideband) also has is not read back: the trusted line is the record, whichever arrived first.
The client's copy stays in the table (migration 0008)."""

from __future__ import annotations

from uuid import UUID

from psycopg.rows import class_row

from storage.database import Database
from storage.transcripts.entries import TranscriptRow


async def read_transcript(db: Database, tenant_id: UUID, session_id: UUID) -> list[TranscriptRow]:
    """A session's transcript in reading order (the order the gateway received the events),
    without the client copies of trusted lines."""
    async with db.tenant(tenant_id) as conn:
        cur = conn.cursor(row_factory=class_row(TranscriptRow))
        await cur.execute(
            "SELECT seq, event_id, item_id, role, text, source, event_type, received_at,"
            " audio_start_ms, audio_end_ms, raw"
            " FROM transcript_entries e WHERE session_id = %s"
            " AND (trusted OR NOT EXISTS (SELECT FROM transcript_entries t"
            "  WHERE t.session_id = e.session_id AND t.event_id = e.event_id AND t.trusted))"
            " ORDER BY seq",
            [session_id],
        )
        return await cur.fetchall()
