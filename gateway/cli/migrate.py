"""``interview-gateway migrate``: apply the database migrations and exit.

Uses the same settings as ``serve`` (``DATABASE_URL``, else the embedded server in the data
directory); with ``GATEWAY_DB_APP_PASSWORD`` it also sets the runtime role's password. A bad
URL or an unreachable server is one sentence on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import sys

from gateway.cli.helptext import command_parser
from gateway.config import ConfigError, Settings
from storage.database import DatabaseUnavailable, migrate_database, resolve_admin_conninfo


async def _migrate(settings: Settings) -> list[str]:
    admin = await resolve_admin_conninfo(settings.database_url, data_dir=settings.data_dir)
    return await migrate_database(admin, app_password=settings.db_app_password)


def main(argv: list[str]) -> int:
    parser = command_parser("interview-gateway migrate", __doc__)
    parser.parse_args(argv)
    try:
        applied = asyncio.run(_migrate(Settings.from_env()))
    except (ConfigError, DatabaseUnavailable) as exc:
        print(f"interview-gateway migrate: {exc}", file=sys.stderr)
        return 1
    print(f"applied: {', '.join(applied)}" if applied else "the database is up to date")
    return 0
