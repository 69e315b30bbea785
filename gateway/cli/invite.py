"""``interview-gateway invite``: create an interview from the command line, print its join URL.

The same as ``POST /v1/interviews`` for an operator at the server: it uses the gateway's own
database and signing secret (the same settings as ``serve``). The join URL is the only thing
on standard output, so ``URL=$(interview-gateway invite --tenant T)`` works; the details go
to standard error. ``--create-tenant NAME`` makes a new tenant and its first API key instead.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from uuid import UUID

from gateway.cli import listening
from gateway.cli.helptext import command_parser
from gateway.config import MODES, ConfigError, Settings
from gateway.sessions.invitations import invite
from storage import tenants
from storage.database import Database, DatabaseUnavailable, open_database


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = command_parser("interview-gateway invite", __doc__)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--tenant", type=UUID, metavar="ID", help="the tenant (its id) the interview belongs to"
    )
    who.add_argument("--create-tenant", metavar="NAME", help="create a tenant and an API key")
    parser.add_argument("--mode", choices=MODES, default="auto", help="session mode (auto)")
    parser.add_argument(
        "--expires-in",
        type=int,
        default=24 * 3600,
        metavar="S",
        help="seconds the invitation stays valid (86400)",
    )
    parser.add_argument(
        "--max-duration", type=int, metavar="S", help="longest interview, in seconds"
    )
    parser.add_argument("--candidate-ref", metavar="REF", help="your reference for the candidate")
    parser.add_argument(
        "--instructions", metavar="TEXT", help="instructions for the AI interviewer"
    )
    parser.add_argument("--voice", metavar="V", help="the AI interviewer's voice, e.g. alloy")
    parser.add_argument(
        "--multi-use", action="store_true", help="the link admits more than once (default: once)"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
        return asyncio.run(run(settings, args))
    except (ConfigError, DatabaseUnavailable) as exc:
        print(f"interview-gateway: {exc}", file=sys.stderr)
        return 1


async def run(settings: Settings, args: argparse.Namespace) -> int:
    db = await open_database(
        settings.database_url,
        data_dir=settings.data_dir,
        migrate=settings.migrate_on_start,
        app_password=settings.db_app_password,
    )
    try:
        if args.create_tenant is not None:
            return await _create_tenant(db, args.create_tenant)
        return await _invite(db, settings, args)
    finally:
        await db.close()


async def _create_tenant(db: Database, name: str) -> int:
    tenant_id = await tenants.create_tenant(db, name)
    key = await tenants.create_api_key(db, tenant_id, "created by interview-gateway invite")
    print(f"tenant {tenant_id}")
    print(f"api key {key}  (shown once; only its hash is stored)")
    return 0


async def _invite(db: Database, settings: Settings, args: argparse.Namespace) -> int:
    from gateway.app import jwt_secret  # the application module loads aiortc; only now

    if not await tenants.tenant_exists(db, args.tenant):
        print(
            f"interview-gateway: no tenant {args.tenant}; make one with --create-tenant NAME",
            file=sys.stderr,
        )
        return 1
    session = {
        name: value
        for name, value in (("instructions", args.instructions), ("voice", args.voice))
        if value is not None
    }
    invitation = await invite(
        db,
        jwt_secret(settings),
        args.tenant,
        mode=args.mode,
        candidate_ref=args.candidate_ref,
        ttl=args.expires_in,
        audience=settings.jwt_audience,
        single_use=not args.multi_use,
        max_duration=args.max_duration,
        upstream_session=session,
    )
    base_url = (
        settings.public_url
        or listening.recorded(settings.data_dir)  # a serve on this data dir, on its real port
        or f"http://{settings.host}:{settings.port}"
    )
    print(invitation.room_url(base_url))
    print(
        f"interview {invitation.interview_id} for tenant {invitation.tenant_id}, "
        f"valid until {invitation.expires_at:%Y-%m-%d %H:%M:%S %Z}",
        file=sys.stderr,
    )
    return 0
