"""A PostgreSQL server that asks every role for a password (``scram-sha-256`` in pg_hba.conf),
started by these tests from the machine's PostgreSQL binaries on a unix socket in a temporary
directory: ``migrate`` gives the runtime role its password, and then ``serve`` can log in."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from storage.database import DatabaseUnavailable, open_database
from storage.migrate import RUNTIME_ROLE

#: A server of its own per module: slow, like the suite's other tests that start processes.
pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "admin-pw-" + "a" * 16
APP_PASSWORD = "app-pw-" + "b" * 16


def postgres_bin() -> Path | None:
    """The newest installed server's binaries (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def password_server() -> Iterator[str]:
    """Admin URL (with its password) of a private server where every login needs a password."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    # initdb refuses to run as root: the server runs as the postgres user then, in a directory
    # of its own (pytest's tmp_path is private to root).
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="igw-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    (root / "pw").write_text(ADMIN_PASSWORD)
    if as_owner:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        shutil.chown(root / "pw", "postgres")

    def run(*argv: str | Path) -> None:
        subprocess.run([*as_owner, *map(str, argv)], check=True, capture_output=True)

    try:
        run(bindir / "initdb", "-D", data, "-U", "postgres", f"--pwfile={root / 'pw'}",
            "--auth-local=scram-sha-256", "--auth-host=scram-sha-256")  # fmt: skip
        run(bindir / "pg_ctl", "-D", data, "-w", "-l", root / "log", "start",
            "-o", f"-c listen_addresses='' -c unix_socket_directories={sock}")  # fmt: skip
        try:
            yield make_conninfo(
                "", host=str(sock), dbname="postgres", user="postgres", password=ADMIN_PASSWORD
            )
        finally:
            run(bindir / "pg_ctl", "-D", data, "-w", "-m", "fast", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def admin_url(password_server: str) -> Iterator[str]:
    """A fresh database on the password server, and no runtime role left from another test."""
    name = f"igw_pw_{os.urandom(4).hex()}"
    with psycopg.connect(password_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(password_server, dbname=name)
    finally:
        with psycopg.connect(password_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            # the role is server-wide: the next test's migrate creates it again
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(RUNTIME_ROLE)))


def test_the_server_really_asks_for_a_password(password_server: str) -> None:
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(make_conninfo(password_server, password=""), connect_timeout=5)


async def test_migrate_sets_the_runtime_password_and_the_gateway_logs_in_with_it(
    admin_url: str, tmp_path: Path
) -> None:
    db = await open_database(admin_url, data_dir=tmp_path, app_password=APP_PASSWORD)
    try:
        async with db.pool.connection() as conn:
            cur = await conn.execute("SELECT current_user")
            assert (await cur.fetchone()) == (RUNTIME_ROLE,)
    finally:
        await db.close()
    with psycopg.connect(admin_url) as conn:
        row = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", [RUNTIME_ROLE]
        ).fetchone()
    assert row is not None and row[0].startswith("SCRAM-SHA-256$"), "stored as a verifier"
    assert APP_PASSWORD not in row[0]


async def test_without_the_runtime_password_the_gateway_says_what_to_set(
    admin_url: str, tmp_path: Path
) -> None:
    await (await open_database(admin_url, data_dir=tmp_path, app_password=APP_PASSWORD)).close()
    with pytest.raises(DatabaseUnavailable, match="GATEWAY_DB_APP_PASSWORD"):
        await open_database(admin_url, data_dir=tmp_path, migrate=False)
    with pytest.raises(DatabaseUnavailable, match="password authentication failed"):
        await open_database(admin_url, data_dir=tmp_path, migrate=False, app_password="wrong")


async def test_the_migrate_command_then_serve_work_against_the_password_server(
    admin_url: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": admin_url,
        "GATEWAY_DB_APP_PASSWORD": APP_PASSWORD,
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_MIGRATE_ON_START": "0",  # serve must manage with what migrate did
        "GATEWAY_ICE_ADDRESSES": "127.0.0.1",
    }
    migrate = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "migrate", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, errors = await asyncio.wait_for(migrate.communicate(), 60)
    assert migrate.returncode == 0, errors
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--port", "0",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert serve.stdout is not None and serve.stderr is not None
    try:
        first = await asyncio.wait_for(serve.stdout.readline(), 60)
        assert first.startswith(b"interview-gateway listening on"), await serve.stderr.read()
        assert (await asyncio.wait_for(serve.stdout.readline(), 30)).startswith(b"interview room")
        serve.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(serve.wait(), 60) == 0
    finally:
        if serve.returncode is None:
            serve.kill()
            await serve.wait()
