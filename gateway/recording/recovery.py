"""At start, what a gateway that stopped (or was killed) left in its spool goes to storage.

The spool holds ``tenant/interview/segment`` files; each file's row (found by the file's name,
``segments.parse_segment_name``) says how far it got:

- ``uploaded``: storage has it; the spooled copy is what was left to remove, and is removed.
- ``stored`` (or ``failed``, left by an older version): complete and fsync'd; uploaded.
- ``recording``, or no row at all (killed before the row was written): the segment being
  written when the process died. Whatever whole pages (a video's: whole clusters of frames)
  reached the disk are kept (``salvage``), the row gets their length and size and says
  ``stored``, and the file is uploaded; a file in which no audio page (no frame) survived is
  removed and its row says ``failed``. So a kill loses at most
  the unwritten tail of one segment per track.

- a ``stored`` row whose file the spool no longer holds: storage took it (local storage
  renames the file away) before the process died, or nothing did. ``SegmentStorage.find``
  tells which: the row says ``uploaded`` with that URI, or ``failed``.

Recovery reads rows tenant by tenant (each directory name is a tenant), under row-level
security like every other query. It assumes one gateway per data directory: a spool is never
shared, so no file in it belongs to a live interview of another process.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

from gateway.recording.segments import (
    SegmentFile,
    SegmentName,
    parse_segment_name,
    salvage,
    segment_name,
)
from gateway.recording.storage import StorageError
from gateway.recording.uploads import Uploader
from gateway.recording.video_codecs import codec_where
from storage import interviews
from storage.database import Database

log = logging.getLogger(__name__)


@dataclass
class Recovered:
    """What one recovery found: segments handed to the uploader (of which ``salvaged`` were
    cut back to their whole pages), ``lost`` (``failed``), and ``removed``: already in storage
    (a leftover spooled copy removed, or a row settled)."""

    uploading: int = 0
    salvaged: int = 0
    lost: int = 0
    removed: int = 0


async def recover(spool_dir: Path, db: Database, uploader: Uploader) -> Recovered:
    """Find every spooled segment, settle its row, and queue its upload (see the module)."""
    found = Recovered()
    for tenant_id, interview_dir in await asyncio.to_thread(_interview_dirs, spool_dir):
        await _recover_interview(db, uploader, tenant_id, interview_dir, found)
    if found.uploading or found.lost or found.removed:
        log.info(
            "recovered the recording spool: %d segments to upload (%d salvaged), %d lost,"
            " %d already uploaded", found.uploading, found.salvaged, found.lost, found.removed,
        )  # fmt: skip
    return found


def _interview_dirs(spool_dir: Path) -> list[tuple[UUID, Path]]:
    """(tenant, directory) of each interview in the spool; anything else there is left be."""
    dirs = []
    for tenant_dir in sorted(spool_dir.iterdir()) if spool_dir.is_dir() else []:
        tenant_id = _uuid(tenant_dir.name)
        if tenant_id is None or not tenant_dir.is_dir():
            continue
        dirs += [
            (tenant_id, d) for d in sorted(tenant_dir.iterdir()) if _uuid(d.name) and d.is_dir()
        ]
    return dirs


def _uuid(name: str) -> UUID | None:
    try:
        return UUID(name)
    except ValueError:
        return None


async def _recover_interview(
    db: Database, uploader: Uploader, tenant_id: UUID, directory: Path, found: Recovered
) -> None:
    interview_id = UUID(directory.name)
    extra = {"interview_id": str(interview_id), "tenant_id": str(tenant_id)}
    rows = {
        SegmentName(row.participant, row.kind, row.sequence): row  # type: ignore[arg-type]
        for row in await interviews.list_video_segments(db, tenant_id, interview_id)
    }
    names = sorted(
        (parsed, path)
        for path in await asyncio.to_thread(lambda: list(directory.iterdir()))
        if (parsed := parse_segment_name(path.name)) is not None
    )
    for name, path in names:
        row = rows.get(name)
        if row is not None and row.status == "uploaded":
            await asyncio.to_thread(path.unlink, missing_ok=True)
            found.removed += 1
            continue
        file = SegmentFile(
            tenant_id=tenant_id,
            interview_id=interview_id,
            participant=name.participant,
            sequence=name.sequence,
            path=path,
            started_at=_started_at(rows, name),
            row_id=row.id if row is not None else None,
            kind=name.kind,
            codec=_video_codec(path) if name.kind == "video" else None,
        )
        if row is None:
            await file.begin(db, extra)
        if row is None or row.status == "recording":
            duration_ms, size = await asyncio.to_thread(salvage, path, name.kind)
            if not duration_ms:
                await asyncio.to_thread(path.unlink)
                await file.settled(db, "failed", None, extra)
                found.lost += 1
                continue
            await file.stored(db, duration_ms, size, extra)
            found.salvaged += 1
        uploader.submit(file, extra)
        found.uploading += 1
    spooled = {parsed for parsed, _ in names}
    for name, row in rows.items():
        if row.status != "stored" or name in spooled:
            continue
        file = SegmentFile(
            tenant_id=tenant_id,
            interview_id=interview_id,
            participant=name.participant,
            sequence=name.sequence,
            path=directory / segment_name(name.participant, name.sequence, name.kind, row.codec),
            started_at=row.started_at,
            row_id=row.id,
            kind=name.kind,
            codec=row.codec,
        )
        try:
            uri = await uploader.storage.find(file.key)
        except StorageError as exc:
            log.warning("segment %s left stored: %s", file.key, exc, extra=extra)
            continue
        await file.settled(db, "uploaded" if uri else "failed", uri, extra)
        found.removed += uri is not None
        found.lost += uri is None


def _started_at(
    rows: dict[SegmentName, interviews.VideoSegmentRecord], name: SegmentName
) -> datetime | None:
    """A segment's start: its row's, or (no row) where the one before it ended."""
    if (row := rows.get(name)) is not None:
        return row.started_at
    before = rows.get(name._replace(sequence=name.sequence - 1))
    if before is None or before.started_at is None or before.duration_ms is None:
        return None
    return before.started_at + timedelta(milliseconds=before.duration_ms)


def _video_codec(path: Path) -> str | None:
    """The codec a spooled video segment's extension names (its row's, if it has none yet)."""
    codec = codec_where("extension", path.suffix.removeprefix("."))
    return codec.name if codec is not None else None
