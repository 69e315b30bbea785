"""``interview-gateway recording export INTERVIEW [--out FILE]``: an interview's recording as
one file.

Both voices as separate Opus tracks, and the candidate's video as a VP8 (or H.264) track
when it sent one, of one WebM file (Matroska when the video is H.264, which WebM does not
hold), made of the uploaded segments' packets as they are, remuxed and never transcoded; a
segment that was lost leaves a gap in its place. ``--out`` defaults to ``INTERVIEW.webm``
(``INTERVIEW.mkv``) in the current directory; a file named otherwise still gets the format
the recording needs. Uses
the same settings as ``serve`` (``DATABASE_URL``, ``GATEWAY_RECORDING_STORAGE`` and the rest):
it reads the rows as the interview's own tenant, and the segments from the configured
storage. Exit status 1, with one sentence on stderr, for an unknown interview, one with no
uploaded recording, or storage or a database that cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from uuid import UUID

from gateway.cli.helptext import command_parser
from gateway.config import ConfigError, Settings
from gateway.recording import export
from gateway.recording.storage import StorageError, segment_storage
from storage import interviews
from storage.database import DatabaseUnavailable, open_database


class CommandError(Exception):
    """What the command says on stderr before it exits with status 1."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = command_parser("interview-gateway recording", __doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    export_parser = commands.add_parser("export", help="write an interview's combined recording")
    export_parser.add_argument("interview", type=UUID, metavar="INTERVIEW")
    export_parser.add_argument("--out", type=Path, metavar="FILE")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        out = asyncio.run(_export(Settings.from_env(), args.interview, args.out))
    except (ConfigError, DatabaseUnavailable, CommandError) as exc:
        print(f"interview-gateway recording: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


async def _export(settings: Settings, interview_id: UUID, out: Path | None) -> str:
    db = await open_database(
        settings.database_url,
        data_dir=settings.data_dir,
        migrate=settings.migrate_on_start,
        app_password=settings.db_app_password,
        max_size=2,
    )
    try:
        tenant_id = await interviews.interview_tenant(db, interview_id)
        if tenant_id is None:
            raise CommandError(f"no interview {interview_id}")
        try:
            exported = await export.write(
                db,
                segment_storage(settings),
                tenant_id,
                interview_id,
                out or (lambda fmt: Path(f"{interview_id}.{fmt}")),
            )
        except export.NoRecording:
            raise CommandError(f"interview {interview_id} has no uploaded recording") from None
        except StorageError as exc:
            raise CommandError(str(exc)) from None
        path = exported.path
        return f"wrote {path} ({exported.seconds:.1f} s, {path.stat().st_size} bytes)"
    finally:
        await db.close()
