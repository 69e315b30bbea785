"""Migrations: applied from empty, once each, safely under concurrency; the schema's invariants."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from storage.migrate import RUNTIME_ROLE, available_migrations, migrate

ALL = [m.version for m in available_migrations()]


def _recorded(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


async def test_migrations_apply_from_empty_then_a_second_run_is_a_no_op(
    empty_database_url: str,
) -> None:
    assert await migrate(empty_database_url) == ALL
    assert await migrate(empty_database_url) == []
    assert _recorded(empty_database_url) == ALL


@pytest.mark.slow
def test_two_processes_migrating_at_once_apply_each_migration_once(
    empty_database_url: str,
) -> None:
    code = (
        "import asyncio, json, sys; from storage.migrate import migrate;"
        "print(json.dumps(asyncio.run(migrate(sys.argv[1]))))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, empty_database_url], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    applied = [v for out in outputs for v in json.loads(out)]
    assert sorted(applied) == ALL  # every migration by exactly one of the two
    assert _recorded(empty_database_url) == ALL


#: Tables that hold no tenant's data: the migration log, and which gateway process serves which
#: interview (ids and heartbeats only, read across tenants by the reconciler).
PROCESS_TABLES = ("schema_migrations", "gateways", "session_claims", "worker_claims")


def _tables(conn: psycopg.Connection) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r'"
            " AND relnamespace = 'public'::regnamespace AND relname <> ALL(%s)",
            [list(PROCESS_TABLES)],
        )
    ]


def test_every_tenant_table_has_forced_row_level_security(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        tables = _tables(conn)
        assert set(tables) >= {
            "tenants",
            "interview_sessions",
            "transcript_entries",
            "video_segments",
        }
        for table in tables:
            enabled, forced, policies = conn.execute(
                "SELECT relrowsecurity, relforcerowsecurity,"
                " (SELECT count(*) FROM pg_policy WHERE polrelid = c.oid)"
                " FROM pg_class c WHERE relname = %s AND relnamespace = 'public'::regnamespace",
                [table],
            ).fetchone()  # type: ignore[misc]
            assert (table, enabled, forced, policies > 0) == (table, True, True, True)


def test_every_table_with_updated_at_has_the_trigger(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        rows = conn.execute(
            "SELECT c.relname, EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = c.oid"
            "   AND t.tgfoid = 'set_updated_at'::regproc)"
            " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
            " WHERE a.attname = 'updated_at' AND c.relkind = 'r'"
            "   AND c.relnamespace = 'public'::regnamespace"
        ).fetchall()
    assert {name for name, _ in rows} == {"interview_sessions", "video_segments"}
    assert all(has for _, has in rows)


def test_runtime_role_is_neither_superuser_nor_bypassrls(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as conn:
        row = conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = %s",
            [RUNTIME_ROLE],
        ).fetchone()
    assert row == (False, False, True)


@pytest.mark.parametrize("version", ALL)
def test_migration_files_are_numbered_and_named(version: str) -> None:
    number, _, name = version.partition("_")
    assert number.isdigit() and len(number) == 4 and name


async def test_the_counter_migration_continues_existing_transcripts(
    empty_database_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0004 adds per-session counters: a database that already holds transcripts must carry on
    numbering each session after its last line, not restart at 1 (a unique violation forever)."""
    from uuid import uuid4

    from storage import migrate as migrate_module
    from storage.database import open_database
    from storage.transcripts import TranscriptEntry, TranscriptWriter, read_transcript

    before = [m for m in available_migrations() if m.version < "0004"]
    monkeypatch.setattr(migrate_module, "available_migrations", lambda: before)
    await migrate(empty_database_url)
    tenant, session = uuid4(), uuid4()
    with psycopg.connect(empty_database_url, autocommit=True) as conn:  # the owner: no policies
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, 'old')", [tenant])
        conn.execute(
            "INSERT INTO interview_sessions (id, tenant_id, requested_mode)"
            " VALUES (%s, %s, 'auto')",
            [session, tenant],
        )
        for seq in (1, 2, 3):
            conn.execute(
                "INSERT INTO transcript_entries (tenant_id, session_id, seq, event_id, role, text,"
                " source, event_type, received_at) VALUES (%s, %s, %s, %s, 'interviewer', %s,"
                " 'relay', 'response.output_audio_transcript.done', now())",
                [tenant, session, seq, f"old_{seq}", f"line {seq}"],
            )
    monkeypatch.undo()
    assert await migrate(empty_database_url) == [
        m.version for m in available_migrations() if m.version >= "0004"
    ]
    db = await open_database(empty_database_url, data_dir=tmp_path, migrate=False)
    writer = TranscriptWriter(db, tmp_path / "journal")
    await writer.start()
    writer.submit(
        TranscriptEntry(
            tenant_id=tenant,
            session_id=session,
            event_id="new_1",
            role="candidate",
            text="line 4",
            source="relay",
            event_type="conversation.item.input_audio_transcription.completed",
        )
    )
    await writer.close()
    rows = await read_transcript(db, tenant, session)
    await db.close()
    assert [(row.seq, row.text) for row in rows] == [(n, f"line {n}") for n in (1, 2, 3, 4)]
