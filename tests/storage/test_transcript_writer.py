"""The transcript writer with a healthy database: order, idempotence, bad input, readers."""

from __future__ import annotations

import json
import random
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from storage import interviews, tenants
from storage.database import Database
from storage.transcripts import (
    TranscriptEntry,
    TranscriptWriter,
    read_transcript,
)


def entry(
    tenant: UUID, session: UUID, event_id: str, text: str = "", **kw: object
) -> TranscriptEntry:
    role = kw.pop("role", "candidate")
    return TranscriptEntry(
        tenant,
        session,
        event_id,
        role,
        text or f"text of {event_id}",
        "relay",  # type: ignore[arg-type]
        "conversation.item.input_audio_transcription.completed",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def session(db: Database) -> tuple[UUID, UUID]:
    tenant = await tenants.create_tenant(db, "acme")
    return tenant, await interviews.create_session(db, tenant, requested_mode="relay")


@pytest.fixture
async def writer(db: Database, tmp_path: Path) -> TranscriptWriter:
    w = TranscriptWriter(db, tmp_path / "journal", batch_size=7)
    await w.start()
    yield w  # type: ignore[misc]
    await w.close()


async def test_entries_are_stored_with_every_field_and_read_back(
    db: Database, writer: TranscriptWriter, session: tuple[UUID, UUID]
) -> None:
    tenant, sid = session
    raw = '{"type": "x", "transcript": "Hello, world", "nested": {"a": [1, 2]}}'
    writer.submit(
        entry(
            tenant,
            sid,
            "ev-1",
            "Hello, world",
            item_id="item-1",
            audio_start_ms=120,
            audio_end_ms=980,
            raw=raw,
        )
    )
    await writer.flush()
    [row] = await read_transcript(db, tenant, sid)
    assert (row.seq, row.event_id, row.item_id, row.text) == (1, "ev-1", "item-1", "Hello, world")
    assert (row.audio_start_ms, row.audio_end_ms, row.raw) == (120, 980, json.loads(raw))


async def test_reading_order_is_the_order_received_not_ids_or_timestamps(
    db: Database, writer: TranscriptWriter, session: tuple[UUID, UUID]
) -> None:
    tenant, sid = session
    ids = [f"ev-{n:03d}" for n in range(40)]
    random.Random(7).shuffle(ids)  # out-of-order event ids (and later-received, earlier-stamped)
    for n, event_id in enumerate(ids):
        role = "interviewer" if n % 2 else "candidate"
        writer.submit(entry(tenant, sid, event_id, f"line {n}", role=role))
    await writer.flush()
    rows = await read_transcript(db, tenant, sid)
    assert [r.event_id for r in rows] == ids
    assert [r.seq for r in rows] == list(range(1, 41))
    assert [(r.role, r.text) for r in rows[:2]] == [
        ("candidate", "line 0"),
        ("interviewer", "line 1"),
    ]


async def test_duplicates_are_one_row_and_never_take_a_number(
    db: Database, writer: TranscriptWriter, session: tuple[UUID, UUID]
) -> None:
    tenant, sid = session
    plan = ["a", "b", "a", "c", "b", "b", "d"]  # repeats inside one batch (size 7)
    for event_id in plan:
        writer.submit(entry(tenant, sid, event_id, f"first {event_id}"))
    await writer.flush()
    for event_id in ["c", "e", "a"]:  # and across batches, with different text
        writer.submit(entry(tenant, sid, event_id, f"second {event_id}"))
    await writer.flush()
    rows = await read_transcript(db, tenant, sid)
    assert [(r.seq, r.event_id, r.text) for r in rows] == [
        (1, "a", "first a"),
        (2, "b", "first b"),
        (3, "c", "first c"),
        (4, "d", "first d"),
        (5, "e", "second e"),
    ]
    assert (writer.stats.committed, writer.stats.duplicates) == (5, 5)


async def test_same_event_id_in_two_sessions_is_two_rows(
    db: Database, writer: TranscriptWriter, session: tuple[UUID, UUID]
) -> None:
    tenant, sid = session
    other = await interviews.create_session(db, tenant, requested_mode="proxy")
    writer.submit(entry(tenant, sid, "same"))
    writer.submit(entry(tenant, other, "same"))
    await writer.flush()
    assert len(await read_transcript(db, tenant, sid)) == 1
    assert len(await read_transcript(db, tenant, other)) == 1


async def test_a_batch_mixing_tenants_lands_each_row_with_its_tenant(
    db: Database, writer: TranscriptWriter
) -> None:
    sessions = []
    for name in "ABC":
        t = await tenants.create_tenant(db, name)
        sessions.append((t, await interviews.create_session(db, t, requested_mode="relay")))
    for n in range(30):
        t, s = sessions[n % 3]
        writer.submit(entry(t, s, f"ev{n}"))
    await writer.flush()
    for k, (t, s) in enumerate(sessions):
        rows = await read_transcript(db, t, s)
        assert [r.event_id for r in rows] == [f"ev{n}" for n in range(k, 30, 3)]


async def test_rows_the_database_refuses_are_set_aside_and_the_rest_committed(
    db: Database, writer: TranscriptWriter, session: tuple[UUID, UUID], tmp_path: Path
) -> None:
    tenant, sid = session
    writer.submit(entry(tenant, sid, "ok-1"))
    writer.submit(entry(tenant, uuid4(), "no-such-session"))
    writer.submit(entry(tenant, sid, "bad-json", raw="{not json"))
    writer.submit(entry(tenant, sid, "ok-2"))
    await writer.flush()
    assert [r.event_id for r in await read_transcript(db, tenant, sid)] == ["ok-1", "ok-2"]
    assert writer.stats.rejected == 2
    rejected = [json.loads(line) for line in (tmp_path / "journal" / "rejected.jsonl").open()]
    # two sessions, written side by side: their order in the file is not theirs to keep
    assert sorted(json.loads(r["line"])["event_id"] for r in rejected) == [
        "bad-json",
        "no-such-session",
    ]
    assert all(r["reason"] for r in rejected)


def test_invalid_entries_are_refused_at_once() -> None:
    with pytest.raises(ValueError, match="role"):
        entry(uuid4(), uuid4(), "x", role="narrator")
    with pytest.raises(ValueError, match="event_id"):
        entry(uuid4(), uuid4(), "")


async def test_many_sessions_many_batches_exactly_once(
    db: Database, tmp_path: Path, session: tuple[UUID, UUID]
) -> None:
    tenant, _ = session
    sids = [await interviews.create_session(db, tenant, requested_mode="relay") for _ in range(5)]
    w = TranscriptWriter(db, tmp_path / "j2", batch_size=50, max_pending=100)
    await w.start()
    for n in range(2000):
        w.submit(entry(tenant, sids[n % 5], f"ev{n}"))
        if n % 300 == 0:
            w.submit(entry(tenant, sids[n % 5], f"ev{n}"))  # a duplicate now and then
    await w.close()
    for k, sid in enumerate(sids):
        rows = await read_transcript(db, tenant, sid)
        assert [r.event_id for r in rows] == [f"ev{n}" for n in range(k, 2000, 5)]
        assert [r.seq for r in rows] == list(range(1, 401))
    assert w.stats.committed == 2000
    assert w.stats.journaled > 0  # a producer faster than the database spilled to the journal


@pytest.mark.parametrize("connections", [1, 3])
async def test_any_number_of_connections_keeps_each_sessions_order(
    db: Database, tmp_path: Path, session: tuple[UUID, UUID], connections: int
) -> None:
    tenant, _ = session
    sids = [await interviews.create_session(db, tenant, requested_mode="relay") for _ in range(7)]
    w = TranscriptWriter(db, tmp_path / "j", batch_size=40, connections=connections)
    await w.start()
    for n in range(700):
        w.submit(entry(tenant, sids[n % 7], f"ev{n}"))
    await w.close()
    for k, sid in enumerate(sids):
        rows = await read_transcript(db, tenant, sid)
        assert [(r.seq, r.event_id) for r in rows] == [
            (seq, f"ev{n}") for seq, n in enumerate(range(k, 700, 7), start=1)
        ]


async def test_two_writers_storing_the_same_events_leave_one_dense_transcript(
    db: Database, tmp_path: Path, session: tuple[UUID, UUID]
) -> None:
    """Two sources (two processes, say) racing on one session: each event once, numbers
    dense, the order the events were received in."""
    tenant, sid = session
    writers = [
        TranscriptWriter(db, tmp_path / f"j{k}", batch_size=25, max_backoff=0.05) for k in range(2)
    ]
    for w in writers:
        await w.start()
    for n in range(600):
        for w in writers:
            w.submit(entry(tenant, sid, f"ev{n:04d}"))
    for w in writers:
        await w.close()
    rows = await read_transcript(db, tenant, sid)
    assert [(r.seq, r.event_id) for r in rows] == [(n + 1, f"ev{n:04d}") for n in range(600)]
    assert sum(w.stats.committed for w in writers) == 600
