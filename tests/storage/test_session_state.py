"""The session state writer: every change lands, in order, through a real database outage and a
restart, and nothing waits for the database meanwhile."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from storage import gateways, interviews, tenants
from storage.database import Database
from storage.integrity import integrity_events
from storage.session_state import StateChange, StateWriter
from tests.outages import outage

TIMEOUT = 30


async def a_session(db: Database) -> tuple[UUID, UUID]:
    tenant = await tenants.create_tenant(db, "state")
    return tenant, await interviews.create_session(db, tenant, requested_mode="relay")


async def until_backlog_empty(writer: StateWriter) -> None:
    async with asyncio.timeout(TIMEOUT):
        while writer.backlog:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def lifecycle(tenant: UUID, interview: UUID, gateway_id: UUID) -> list[StateChange]:
    """A whole interview's changes, as a session makes them."""
    return [
        StateChange.update(tenant, interview, status="waiting"),
        StateChange.update(tenant, interview, status="connecting"),
        StateChange.update(tenant, interview, actual_mode="relay", upstream_call_id="call_1"),
        StateChange.update(
            tenant,
            interview,
            status="active",
            connected_at=datetime.now(UTC),
            selected_pair="host 127.0.0.1 -> host 127.0.0.1",
        ),
        StateChange.note(tenant, interview, "client_event_refused", "session.update", 1),
        StateChange.end(tenant, interview, "ended", "bye"),
        StateChange.update(tenant, interview, status="active"),  # late: the end stands
        StateChange.release(tenant, interview, gateway_id),
    ]


async def assert_final(db: Database, tenant: UUID, interview: UUID, ended_by: float) -> None:
    record = await interviews.get_session(db, tenant, interview)
    assert record is not None
    assert (record.status, record.end_reason, record.actual_mode) == ("ended", "bye", "relay")
    assert record.upstream_call_id == "call_1" and record.selected_pair is not None
    assert record.connected_at is not None and record.ended_at is not None
    # the end's own time, not when it reached the database
    assert record.connected_at <= record.ended_at
    assert record.ended_at.timestamp() <= ended_by
    [event] = await integrity_events(db, tenant, interview)
    assert (event.kind, event.count) == ("client_event_refused", 1)
    async with db.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM session_claims")
        assert await cur.fetchone() == (0,)


async def claimed(db: Database, tenant: UUID, interview: UUID) -> UUID:
    gateway_id = uuid4()
    await gateways.register_gateway(db, gateway_id)
    await gateways.claim(db, gateway_id, tenant, interview)
    return gateway_id


async def test_changes_land_in_order_and_the_end_stands(db: Database, tmp_path: Path) -> None:
    tenant, interview = await a_session(db)
    writer = StateWriter(db, tmp_path / "state")
    await writer.start()
    last = 0
    for change in lifecycle(tenant, interview, await claimed(db, tenant, interview)):
        last = writer.submit(change)
    ended_by = time.time()
    await asyncio.wait_for(writer.durable(last), TIMEOUT)
    await until_backlog_empty(writer)
    assert writer.journaled == 0  # a healthy database: nothing went to disk
    await writer.close()
    await assert_final(db, tenant, interview, ended_by)


@pytest.mark.slow
async def test_changes_made_during_an_outage_are_journaled_and_land_after_it(
    db: Database, tmp_path: Path, postgres_url: str, fresh_database_url: str
) -> None:
    tenant, interview = await a_session(db)
    gateway_id = await claimed(db, tenant, interview)
    writer = StateWriter(db, tmp_path / "state", write_timeout=0.5, max_backoff=0.3)
    await writer.start()
    with outage(postgres_url, fresh_database_url):
        started = time.monotonic()
        last = 0
        for change in lifecycle(tenant, interview, gateway_id):
            last = writer.submit(change)
        ended_by = time.time()
        # safe on disk without the database, after the write timeout (not the pool's 30 s)
        await asyncio.wait_for(writer.durable(last), TIMEOUT)
        assert time.monotonic() - started < 15
        assert writer.journaled >= 1 and writer.backlog >= 1
        assert writer.end_pending(interview)  # the row still looks live: not to be joined
    await until_backlog_empty(writer)
    assert not writer.end_pending(interview)
    await writer.close()
    await assert_final(db, tenant, interview, ended_by)


@pytest.mark.slow
async def test_what_a_closed_writer_left_in_its_journal_lands_at_the_next_start(
    db: Database, tmp_path: Path, postgres_url: str, fresh_database_url: str
) -> None:
    tenant, interview = await a_session(db)
    gateway_id = await claimed(db, tenant, interview)
    first = StateWriter(db, tmp_path / "state", write_timeout=0.5)
    await first.start()
    with outage(postgres_url, fresh_database_url):
        changes = lifecycle(tenant, interview, gateway_id)
        for change in changes[:3]:
            first.submit(change)
        await asyncio.wait_for(first.durable(3), TIMEOUT)  # journaled
        for change in changes[3:]:
            first.submit(change)
        ended_by = time.time()
        closing = time.monotonic()
        await first.close()
        assert time.monotonic() - closing < 10  # close does not wait out the pool's 30 s
        assert first.backlog > 0  # all of it is in the journal
    record = await interviews.get_session(db, tenant, interview)
    assert record is not None and record.status == "created"  # nothing landed yet
    second = StateWriter(db, tmp_path / "state")
    await second.start()  # replays before it returns
    assert second.backlog == 0
    # a change made after the restart comes after the replayed ones (the end stands)
    second.submit(StateChange.update(tenant, interview, status="connecting"))
    await until_backlog_empty(second)
    await second.close()
    await assert_final(db, tenant, interview, ended_by)
