"""Applies the numbered SQL migrations in ``storage/migrations`` in order, each exactly once.

Applied versions are recorded in ``schema_migrations``. A session-level advisory lock serialises
concurrent migrators (two gateway processes starting at once): the second waits, then finds
nothing left to do. Each migration runs in its own transaction together with its record, so a
failed migration leaves neither half-applied schema nor a false record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

#: An arbitrary constant shared by every migrator of this schema ("igw-migr" in ASCII).
MIGRATION_LOCK_KEY = 0x6967772D6D696772

RUNTIME_ROLE = "interview_gateway_app"


@dataclass(frozen=True, slots=True)
class Migration:
    version: str  # the file name without ".sql", e.g. "0001_schema"
    sql: str


def available_migrations() -> list[Migration]:
    """The migration files shipped in the package, in the order they must be applied."""
    folder = Path(__file__).with_name("migrations")
    files = sorted(f for f in folder.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [Migration(f.stem, f.read_text(encoding="utf-8")) for f in files]


async def migrate(admin_conninfo: str, *, app_password: str | None = None) -> list[str]:
    """Applies what is missing; returns the versions applied by this call (empty: up to date).

    With ``app_password``, the runtime role gets it too, so that it can log in to a server that
    asks for passwords (``scram-sha-256`` in pg_hba.conf); without, its password is left alone.
    """
    applied_now: list[str] = []
    async with await psycopg.AsyncConnection.connect(admin_conninfo, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for migration in available_migrations():
                if migration.version in done:
                    continue
                async with conn.transaction():
                    # no parameters: psycopg sends the file as one simple query, statements and all
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", [migration.version]
                    )
                applied_now.append(migration.version)
            if app_password is not None:
                await _set_runtime_password(conn, app_password)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
    return applied_now


async def _set_runtime_password(conn: psycopg.AsyncConnection, password: str) -> None:
    """Sets the runtime role's password as a verifier made here, with the server's own
    algorithm (libpq's PQencryptPasswordConn), so the password itself never crosses the wire
    and cannot land in the server's statement log."""
    cur = await conn.execute("SHOW password_encryption")
    row = await cur.fetchone()
    algorithm = (row[0] if row else "scram-sha-256").encode()
    verifier = conn.pgconn.encrypt_password(password.encode(), RUNTIME_ROLE.encode(), algorithm)
    await conn.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(RUNTIME_ROLE), sql.Literal(verifier.decode())
        )
    )
