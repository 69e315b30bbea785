"""The connection to PostgreSQL: an external server (``DATABASE_URL``) or an embedded one.

Two identities are kept apart on purpose. The *admin* connection string (the URL's owner or
superuser) runs migrations. The gateway itself works through :data:`RUNTIME_ROLE`, which is
neither superuser nor BYPASSRLS, so the row-level security policies bind the gateway too; every
tenant's work happens inside :meth:`Database.tenant`, a transaction that names its tenant.

With no URL, :func:`open_database` starts a private PostgreSQL server from the ``pgserver``
wheel in ``data_dir / "postgres"``: it listens on a unix socket only, needs no setup, and stops
when the last process using it exits (pgserver counts the processes and stops it at exit). It
starts in a thread, which a cancelled :func:`open_database` cannot interrupt: ``asyncio.run``
waits for that thread before it returns, so a server that finished starting after a Ctrl-C is
still known to the process, and stopped as it exits.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import UUID

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from storage.migrate import RUNTIME_ROLE
from storage.migrate import migrate as apply_migrations

#: Seconds to wait for a server before calling it unreachable.
CONNECT_TIMEOUT = 5


class DatabaseUnavailable(Exception):
    """The database cannot be used; ``str()`` is one sentence fit for an operator's terminal."""


class Database:
    """An open database: the runtime role's pool, and the connection strings behind it."""

    def __init__(self, admin_conninfo: str, app_conninfo: str, pool: AsyncConnectionPool) -> None:
        self.admin_conninfo = admin_conninfo
        self.app_conninfo = app_conninfo
        self.pool = pool

    @asynccontextmanager
    async def tenant(self, tenant_id: UUID) -> AsyncIterator[psycopg.AsyncConnection]:
        """A transaction in which the policies show and accept exactly ``tenant_id``'s rows."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant_id)])
            yield conn

    async def close(self) -> None:
        await self.pool.close()


def describe_server(conninfo: str) -> str:
    """Where a connection string points, for messages: ``host:port/db`` or the socket dir."""
    params = conninfo_to_dict(conninfo)
    host = str(params.get("host") or "the default unix socket")
    port = str(params.get("port") or 5432)
    where = host if host.startswith("/") else f"{host}:{port}"
    return f"{where}/{params.get('dbname') or params.get('user') or ''}".rstrip("/")


def _reason(exc: BaseException) -> str:
    """The useful tail of libpq's message: 'connection refused', 'database "x" does not exist'."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    tail = first.rsplit(" failed: ", 1)[-1].removeprefix("connection failed: ")
    tail = tail.removeprefix("FATAL:").strip()
    return tail[:1].lower() + tail[1:] if tail else type(exc).__name__


def app_conninfo_for(admin_conninfo: str, password: str | None = None) -> str:
    """The runtime role's connection string: the admin's server and database, another user
    (and its own password, never the admin's)."""
    params = conninfo_to_dict(admin_conninfo)
    params.pop("password", None)
    params["user"] = RUNTIME_ROLE
    if password is not None:
        params["password"] = password
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    return make_conninfo("", **params)


def _start_embedded(pgdata: Path) -> str:
    """Starts (or joins) the embedded server for ``pgdata``; returns its admin URL."""
    import pgserver  # imported here: starting a server is the only reason to load it

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        raise DatabaseUnavailable(
            f"cannot start the embedded PostgreSQL server in {pgdata} "
            f"({type(exc).__name__}); its log is {pgdata / 'log'}"
        ) from exc
    return str(server.get_uri())


async def _check_reachable(conninfo: str, *, what: str) -> None:
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL{what} at {describe_server(conninfo)}: {_reason(exc)}"
        ) from None
    await conn.close()


async def resolve_admin_conninfo(url: str | None, *, data_dir: Path) -> str:
    """The admin connection string of a reachable server: ``url``, or the embedded server's."""
    if url is None:
        admin = await asyncio.to_thread(_start_embedded, data_dir / "postgres")
    else:
        try:
            conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise DatabaseUnavailable(
                f"DATABASE_URL is not a valid PostgreSQL connection string: {_reason(exc)}"
            ) from None
        admin = url
    await _check_reachable(admin, what="")
    return admin


async def migrate_database(admin_conninfo: str, *, app_password: str | None = None) -> list[str]:
    """Applies missing migrations (and sets the runtime role's password when given); a failure
    is one sentence (:class:`DatabaseUnavailable`)."""
    try:
        return await apply_migrations(admin_conninfo, app_password=app_password)
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot migrate the database at {describe_server(admin_conninfo)}: {_reason(exc)}"
        ) from None


async def open_database(
    url: str | None,
    *,
    data_dir: Path,
    migrate: bool = True,
    app_password: str | None = None,
    min_size: int = 1,
    max_size: int = 10,
) -> Database:
    """Opens the configured database (the embedded one when ``url`` is None), migrated on request.

    The runtime role logs in with ``app_password`` (``GATEWAY_DB_APP_PASSWORD``), which a
    migration run here also sets. Raises :class:`DatabaseUnavailable` with one clear sentence
    for a malformed URL, an unreachable server, an unmigrated database, a runtime role that
    cannot log in, or one that would bypass security.
    """
    admin = await resolve_admin_conninfo(url, data_dir=data_dir)
    if migrate:
        await migrate_database(admin, app_password=app_password)
    app = app_conninfo_for(admin, app_password)
    await _check_reachable(
        app,
        what=f" as {RUNTIME_ROLE} (has `interview-gateway migrate` been run, with the same "
        "GATEWAY_DB_APP_PASSWORD when the server asks for passwords?)",
    )
    pool = AsyncConnectionPool(
        app,
        min_size=min_size,
        max_size=max_size,
        open=False,
        check=AsyncConnectionPool.check_connection,
        name="gateway",
    )
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
        await _refuse_privileged_role(pool)
    except BaseException:  # refused, or cancelled (a Ctrl-C during start-up): close what opened
        await pool.close()
        raise
    return Database(admin, app, pool)


async def _refuse_privileged_role(pool: AsyncConnectionPool) -> None:
    """A superuser or BYPASSRLS runtime role would silently void every policy: refuse it."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        row = await cur.fetchone()
    if row is None or row[0]:
        raise DatabaseUnavailable(
            f"the runtime role {RUNTIME_ROLE} is a superuser or bypasses row-level security; "
            "refusing to run with tenant isolation switched off"
        )
