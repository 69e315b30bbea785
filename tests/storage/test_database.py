"""Opening the database: the runtime role, and one clear sentence when it cannot be opened."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from storage.database import DatabaseUnavailable, open_database


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://postgres@127.0.0.1:{port}/x", "cannot reach PostgreSQL at 127.0.0.1:{port}"),
        ("not a url", "DATABASE_URL is not a valid PostgreSQL connection string"),
    ],
)
async def test_a_bad_or_unreachable_url_is_one_sentence(
    url: str, expected: str, tmp_path: Path
) -> None:
    port = _closed_port()
    with pytest.raises(DatabaseUnavailable) as info:
        await open_database(url.format(port=port), data_dir=tmp_path)
    message = str(info.value)
    assert message.startswith(expected.format(port=port))
    assert "\n" not in message


async def test_a_missing_database_is_named(postgres_url: str, tmp_path: Path) -> None:
    from psycopg.conninfo import make_conninfo

    with pytest.raises(DatabaseUnavailable, match='database "igw_no_such_db" does not exist'):
        await open_database(make_conninfo(postgres_url, dbname="igw_no_such_db"), data_dir=tmp_path)


@pytest.mark.slow
def test_migrate_command_reports_an_unreachable_server_without_a_traceback(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{_closed_port()}/x"}
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("interview-gateway migrate: cannot reach PostgreSQL at")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_migrate_command_applies_then_reports_up_to_date(empty_database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database_url}
    run = [sys.executable, "-m", "gateway.cli", "migrate"]
    first = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    second = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert (first.returncode, second.returncode) == (0, 0)
    assert first.stdout.startswith("applied: 0001_schema")
    assert second.stdout.strip() == "the database is up to date"


async def test_open_database_migrates_and_uses_the_runtime_role(
    empty_database_url: str, tmp_path: Path
) -> None:
    db = await open_database(empty_database_url, data_dir=tmp_path)
    try:
        assert "user=interview_gateway_app" in db.app_conninfo
        async with db.pool.connection() as conn:
            cur = await conn.execute("SELECT current_user")
            assert await cur.fetchone() == ("interview_gateway_app",)
    finally:
        await db.close()


@pytest.mark.slow
async def test_embedded_server_starts_with_no_url(embedded_data_dir: Path) -> None:
    db = await open_database(None, data_dir=embedded_data_dir, max_size=2)
    try:
        async with db.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM interview_sessions")
            assert await cur.fetchone() == (0,)
    finally:
        await db.close()
    assert (embedded_data_dir / "postgres" / "PG_VERSION").exists()
