"""One batch into ``transcript_entries``: the SQL, and the connection that runs it.

Nothing here keeps state between batches: :class:`~storage.transcripts.writer.TranscriptWriter`
decides what goes into a batch, over which connection, and what a failure means for the events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors

from storage.transcripts.entries import TranscriptEntry


class TransientWriteError(Exception):
    """The batch may succeed later: the database is away, restarting or busy."""


#: Errors that blame a row's content; anything else (connection lost, server restarting, even
#: missing grants) is the deployment's problem and is retried, never blamed on the events.
_PERMANENT = (errors.IntegrityError, errors.DataError)

#: Each connection's private staging table: a batch arrives by binary COPY (psycopg encodes its
#: rows in C; binary arrays of the same rows cost the client ~11 ms per 1000 in Python) and is
#: gone at commit. Temporary: no WAL, no other session sees it.
_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS transcript_staging (
    ord bigint, tenant_id uuid, session_id uuid, event_id text, item_id text, role text,
    text text, source text, event_type text, received_at timestamptz, audio_start_ms int,
    audio_end_ms int, raw text
) ON COMMIT DELETE ROWS
"""
_COPY = "COPY transcript_staging FROM STDIN (FORMAT BINARY)"
_STAGING_TYPES = (
    "int8", "uuid", "uuid", "text", "text", "text", "text", "text", "text", "timestamptz",
    "int4", "int4", "text",
)  # fmt: skip

#: One tenant's staged rows into ``transcript_entries``. An event is fresh unless its
#: ``event_id`` is stored already *in its trust class* (a client's copy and the relay's or
#: sideband's line are kept apart: migration 0008). Per session, the batch's fresh events
#: are numbered in the order received after the session's counter, which is bumped once (not
#: max(seq) per event: see migration 0004). There is no ON CONFLICT: a row that appeared since
#: the duplicate check (another process writing the same event) fails the batch, which is
#: retried and then skips it, so a duplicate can never consume a number.
_INSERT = """
WITH fresh AS MATERIALIZED (
    -- a scalar subquery (not NOT EXISTS): one unique-index probe per event, never a hash of
    -- the whole table, whatever the planner's estimates under row-level security
    SELECT i.*, row_number() OVER (PARTITION BY i.session_id ORDER BY i.ord) AS rn,
           count(*) OVER (PARTITION BY i.session_id) AS added
    FROM transcript_staging i
    WHERE i.tenant_id = %(tenant_id)s
      AND (SELECT true FROM transcript_entries e
           WHERE e.session_id = i.session_id AND e.event_id = i.event_id
             AND e.trusted = (i.source <> 'client') LIMIT 1) IS NULL
), bumped AS (
    INSERT INTO transcript_counters AS c (tenant_id, session_id, last_seq)
    SELECT f.tenant_id, f.session_id, f.added FROM fresh f WHERE f.rn = 1
    ON CONFLICT (session_id) DO UPDATE SET last_seq = c.last_seq + excluded.last_seq
    RETURNING c.session_id, c.last_seq
)
INSERT INTO transcript_entries (tenant_id, session_id, seq, event_id, item_id, role, text,
                                source, event_type, received_at, audio_start_ms, audio_end_ms,
                                raw)
SELECT f.tenant_id, f.session_id,
       -- the counter is looked up once per session (its first row), not once per event
       f.rn - f.added + max(CASE WHEN f.rn = 1 THEN
           (SELECT b.last_seq FROM bumped b WHERE b.session_id = f.session_id) END)
           OVER (PARTITION BY f.session_id),
       f.event_id, f.item_id, f.role, f.text, f.source, f.event_type, f.received_at,
       f.audio_start_ms, f.audio_end_ms, f.raw::jsonb
FROM fresh f
"""


def _row(ord: int, e: TranscriptEntry) -> tuple[Any, ...]:
    return (
        ord, e.tenant_id, e.session_id, e.event_id, e.item_id, e.role, e.text, e.source,
        e.event_type, e.received_at, e.audio_start_ms, e.audio_end_ms, e.raw,
    )  # fmt: skip


async def connect(conninfo: str) -> psycopg.AsyncConnection[Any]:
    """A connection ready for batches: autocommit, JIT off, its staging table created."""
    try:
        # JIT would compile the batch insert for ~0.4 s at each new plan: all cost, no gain
        conn = await psycopg.AsyncConnection.connect(
            conninfo, options="-c jit=off", autocommit=True
        )
        await conn.execute(_STAGING)
    except psycopg.Error as exc:
        raise TransientWriteError(first_line(exc)) from exc
    return conn


async def write_entries(
    conn: psycopg.AsyncConnection[Any],
    entries: list[TranscriptEntry],
    refuse: Callable[[TranscriptEntry, Exception], None],
) -> int:
    """Inserts the entries in one transaction; returns how many rows are new. When the
    database refuses a row for its content, the entries go one by one: ``refuse`` hears of each
    refused one, and the others are committed. Anything else is a :class:`TransientWriteError`."""
    try:
        return await _insert(conn, entries)
    except errors.UniqueViolation as exc:  # another process wrote the same event: again
        raise TransientWriteError(first_line(exc)) from exc
    except _PERMANENT:
        return await _insert_one_by_one(conn, entries, refuse)
    except psycopg.Error as exc:
        raise TransientWriteError(first_line(exc)) from exc


async def _insert(conn: psycopg.AsyncConnection[Any], entries: list[TranscriptEntry]) -> int:
    tenants = {e.tenant_id: None for e in entries}  # in order of first appearance
    cursors = []
    async with conn.transaction():
        async with conn.cursor().copy(_COPY) as copy:
            copy.set_types(_STAGING_TYPES)
            for ord, entry in enumerate(entries):
                await copy.write_row(_row(ord, entry))
        # one pipeline: every tenant's statements, and the commit, in a single round trip
        async with conn.pipeline():
            for tenant_id in tenants:
                await conn.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant_id)])
                cursors.append(await conn.execute(_INSERT, {"tenant_id": tenant_id}))
    return sum(max(cur.rowcount, 0) for cur in cursors)


async def _insert_one_by_one(
    conn: psycopg.AsyncConnection[Any],
    entries: list[TranscriptEntry],
    refuse: Callable[[TranscriptEntry, Exception], None],
) -> int:
    """Finds the rows the database refuses, hands them to ``refuse``, commits the others."""
    inserted = 0
    for entry in entries:
        try:
            inserted += await _insert(conn, [entry])
        except errors.UniqueViolation as exc:
            raise TransientWriteError(first_line(exc)) from exc
        except _PERMANENT as exc:
            refuse(entry, exc)
        except psycopg.Error as exc:
            raise TransientWriteError(first_line(exc)) from exc
    return inserted


def first_line(exc: BaseException) -> str:
    """libpq's first line (the rest is context), or the error's type when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
