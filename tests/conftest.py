"""Shared fixtures: one real PostgreSQL server per test session, a fresh database per test.

The server is ``DATABASE_URL`` when set (inside ``scripts/test``'s network namespace only unix
sockets reach a machine's server, e.g. ``postgresql://postgres@/postgres?host=/var/run/postgresql``)
and otherwise an embedded ``pgserver`` in a temporary directory, started once. Each test gets its
own database, cloned from a template that was migrated once, so tests cannot see each other.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from storage.database import Database, open_database
from storage.migrate import migrate


def pytest_configure(config: pytest.Config) -> None:
    """As every gateway process does at start: the media stack's one explicit set-up (the
    suite's peers gather on loopback where a test does not say otherwise)."""
    from gateway import media

    media.install(["127.0.0.1"])


def with_dbname(conninfo: str, dbname: str) -> str:
    """The same server and user, another database."""
    return make_conninfo(conninfo, dbname=dbname)


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    """Creates database ``name`` (a copy of ``template`` if given); returns its admin URL."""
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(query)
    return with_dbname(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Admin URL of the session's PostgreSQL server (its ``postgres`` database)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    with embedded_server_dir() as directory:
        server = pgserver.get_server(directory / "data", cleanup_mode="delete")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()


@contextmanager
def embedded_server_dir() -> Iterator[Path]:
    """A directory for an embedded server's files, outside pytest's temporary root.

    Run as root, pgserver runs PostgreSQL as the user ``pgserver``; pytest makes its root
    (``/tmp/pytest-of-root``) 0700 again whenever any pytest session starts, so on a machine
    where another suite starts meanwhile, a server under it can no longer reach its own files.
    """
    path = Path(tempfile.mkdtemp(prefix="igw-test-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A gateway data dir in which an embedded server may be started (see embedded_server_dir)."""
    with embedded_server_dir() as path:
        yield path


@pytest.fixture(scope="session")
def template_database(postgres_url: str) -> Iterator[str]:
    """A database migrated once per test session, the template of every fresh database."""
    name = f"igw_template_{os.getpid()}"
    drop_database(postgres_url, name)
    url = create_database(postgres_url, name)
    asyncio.run(migrate(url))
    try:
        yield name
    finally:
        drop_database(postgres_url, name)


@pytest.fixture
def empty_database_url(postgres_url: str) -> Iterator[str]:
    """Admin URL of a brand new database with nothing in it."""
    name = f"igw_test_{uuid.uuid4().hex[:12]}"
    url = create_database(postgres_url, name)
    try:
        yield url
    finally:
        drop_database(postgres_url, name)


@pytest.fixture
def fresh_database_url(postgres_url: str, template_database: str) -> Iterator[str]:
    """Admin URL of a brand new, migrated database (a copy of the template)."""
    name = f"igw_test_{uuid.uuid4().hex[:12]}"
    url = create_database(postgres_url, name, template=template_database)
    try:
        yield url
    finally:
        drop_database(postgres_url, name)


@pytest.fixture
async def db(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    """An open :class:`Database` (the runtime role's pool) on a fresh database."""
    database = await open_database(fresh_database_url, data_dir=tmp_path, migrate=False)
    try:
        yield database
    finally:
        await database.close()
