"""Row-level security, through the gateway's own runtime role: a tenant sees and touches only
its own rows, in every table."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import errors

from storage import interviews
from storage.database import Database
from storage.tenants import create_tenant
from storage.transcripts import TranscriptEntry, TranscriptWriter


@dataclass
class Tenant:
    id: UUID
    session: UUID
    segment: UUID


async def _seed(db: Database, name: str, writer: TranscriptWriter) -> Tenant:
    tenant = await create_tenant(db, name)
    session = await interviews.create_session(db, tenant, requested_mode="relay")
    segment = await interviews.add_video_segment(
        db, tenant, session, participant="candidate", kind="video", sequence=0
    )
    writer.submit(
        TranscriptEntry(tenant, session, "ev1", "candidate", f"{name} speaks", "relay", "t")
    )
    return Tenant(tenant, session, segment)


@pytest.fixture
async def tenants(db: Database, tmp_path: Any) -> tuple[Tenant, Tenant]:
    writer = TranscriptWriter(db, tmp_path / "journal")
    await writer.start()
    a, b = await _seed(db, "A", writer), await _seed(db, "B", writer)
    await writer.close()
    assert writer.stats.committed == 2
    return a, b


#: table -> (its tenant column, a harmless assignment for UPDATE)
TABLES: dict[str, tuple[str, str]] = {
    "tenants": ("id", "name = 'stolen'"),
    "interview_sessions": ("tenant_id", "candidate_ref = 'stolen'"),
    "transcript_entries": ("tenant_id", "text = 'stolen'"),
    "video_segments": ("tenant_id", "codec = 'stolen'"),
}


def _insert_for(table: str, victim: Tenant) -> tuple[str, list[Any]]:
    """An INSERT of a row that belongs to ``victim``."""
    if table == "tenants":
        return "INSERT INTO tenants (id, name) VALUES (%s, 'x')", [uuid.uuid4()]
    if table == "interview_sessions":
        return (
            "INSERT INTO interview_sessions (tenant_id, requested_mode) VALUES (%s, 'relay')",
            [victim.id],
        )
    if table == "transcript_entries":
        return (
            "INSERT INTO transcript_entries (tenant_id, session_id, seq, event_id, role, text,"
            " source, event_type, received_at) VALUES (%s, %s, 99, 'evX', 'candidate', 'x',"
            " 'relay', 't', now())",
            [victim.id, victim.session],
        )
    return (
        "INSERT INTO video_segments (tenant_id, session_id, participant, kind, sequence)"
        " VALUES (%s, %s, 'candidate', 'audio', 7)",
        [victim.id, victim.session],
    )


async def _count(db: Database, as_tenant: UUID, table: str, owner: UUID) -> int:
    column = TABLES[table][0]
    async with db.tenant(as_tenant) as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {table} WHERE {column} = %s", [owner])
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("table", TABLES)
async def test_a_tenant_cannot_read_another_tenants_rows(
    db: Database, tenants: tuple[Tenant, Tenant], table: str
) -> None:
    a, b = tenants
    assert await _count(db, a.id, table, a.id) == 1
    assert await _count(db, a.id, table, b.id) == 0
    async with db.tenant(a.id) as conn:  # not even without a filter
        cur = await conn.execute(f"SELECT {TABLES[table][0]} FROM {table}")
        assert {r[0] for r in await cur.fetchall()} == {a.id}


@pytest.mark.parametrize("table", TABLES)
async def test_a_tenant_cannot_update_or_delete_another_tenants_rows(
    db: Database, tenants: tuple[Tenant, Tenant], table: str
) -> None:
    a, b = tenants
    column, assignment = TABLES[table]
    async with db.tenant(a.id) as conn:
        cur = await conn.execute(f"UPDATE {table} SET {assignment} WHERE {column} = %s", [b.id])
        assert cur.rowcount == 0
        cur = await conn.execute(f"DELETE FROM {table} WHERE {column} = %s", [b.id])
        assert cur.rowcount == 0
    assert await _count(db, b.id, table, b.id) == 1
    async with db.tenant(b.id) as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {table} WHERE {assignment}")
        assert (await cur.fetchone()) == (0,)


@pytest.mark.parametrize("table", TABLES)
async def test_a_tenant_cannot_insert_rows_for_another_tenant(
    db: Database, tenants: tuple[Tenant, Tenant], table: str
) -> None:
    a, b = tenants
    query, params = _insert_for(table, b)
    with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
        async with db.tenant(a.id) as conn:
            await conn.execute(query, params)
    assert await _count(db, b.id, table, b.id) == 1


@pytest.mark.parametrize("table", TABLES)
async def test_a_tenant_cannot_hand_its_rows_to_another_tenant(
    db: Database, tenants: tuple[Tenant, Tenant], table: str
) -> None:
    a, b = tenants
    column = TABLES[table][0]
    with pytest.raises(psycopg.Error):  # the policy's WITH CHECK, or the composite key
        async with db.tenant(a.id) as conn:
            await conn.execute(f"UPDATE {table} SET {column} = %s", [b.id])
    assert await _count(db, a.id, table, a.id) == 1


@pytest.mark.parametrize("table", TABLES)
async def test_without_a_tenant_nothing_is_visible(
    db: Database, tenants: tuple[Tenant, Tenant], table: str
) -> None:
    async with db.pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM {table}")
        assert (await cur.fetchone()) == (0,)


async def test_the_gateway_role_is_not_privileged(db: Database) -> None:
    async with db.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        assert await cur.fetchone() == ("interview_gateway_app", False, False)
