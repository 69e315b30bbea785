"""The admin API's recording endpoints: list an interview's recordings, download a track or
the combined export, delete them. ``docs/http-api.md`` is the manual.

Every handler authenticates as the admin API does (``AdminApi.tenant``) and reads rows only
inside that tenant's row-level-security transaction, so another tenant's interview is absent
(404) here as everywhere. A download is built from the segments in storage into a temporary
file (remuxed, never transcoded: ``recording.export``) and served by aiohttp's
``FileResponse``, which answers range requests; the file is removed once sent.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import Any
from uuid import UUID

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from gateway.http.errors import api_error
from gateway.http.openapi import COMBINED
from gateway.recording import apivideo, content, export
from gateway.recording.storage import SegmentStorage, StorageError
from gateway.sessions.manager import SessionManager
from storage import interviews
from storage.database import Database


class RecordingsApi:
    def __init__(
        self,
        authenticate: Callable[[web.Request], Awaitable[UUID]],
        *,
        database: Callable[[], Database],
        sessions: Callable[[], SessionManager],
        storage: SegmentStorage,
        scratch_dir: Path,
    ) -> None:
        self._authenticate = authenticate
        self._database = database
        self._sessions = sessions
        self.storage = storage
        #: where downloads are put together before they are sent
        self.scratch_dir = scratch_dir

    def __repr__(self) -> str:
        return "RecordingsApi()"

    def mount(self, app: web.Application) -> None:
        base = "/v1/interviews/{interview_id}/recordings"
        app.router.add_get(base, self.list_recordings)
        app.router.add_delete(base, self.delete_recordings)
        app.router.add_get(base + "/{track}", self.download)

    async def list_recordings(self, request: web.Request) -> web.Response:
        tenant_id, interview_id = await self._interview(request)
        rows = await interviews.list_video_segments(self._database(), tenant_id, interview_id)
        base = f"/v1/interviews/{interview_id}/recordings"
        tracks: dict[str, dict[str, Any]] = {}
        for record in rows:
            name = export.track_name(record)
            track = tracks.setdefault(
                name,
                {
                    "track": name,
                    "participant": record.participant,
                    "kind": record.kind,
                    "codec": record.codec,
                    "segments": 0,
                    "uploaded": 0,
                    "duration_ms": 0,
                    "bytes": 0,
                    "download_url": f"{base}/{name}",
                },
            )
            track["segments"] += 1
            if record.status == "uploaded":
                track["uploaded"] += 1
                track["duration_ms"] += record.duration_ms or 0
                track["bytes"] += record.bytes or 0
        return web.json_response(
            {
                "interview_id": str(interview_id),
                "tracks": list(tracks.values()),
                "combined_url": f"{base}/{COMBINED}" if tracks else None,
                "segments": [_segment_json(r) for r in rows],
            }
        )

    async def download(self, request: web.Request) -> web.StreamResponse:
        tenant_id, interview_id = await self._interview(request)
        track = request.match_info["track"]
        if track == content.TRACK:
            return await self._upstream_content(request, tenant_id, interview_id)
        tracks: tuple[str, ...]
        if track == COMBINED:
            tracks = export.TRACKS
        elif track in export.TRACKS:
            tracks = (track,)
        else:
            raise api_error(404, "not_found", f"no track {track!r}; see the recordings list")
        path = self._scratch_path()
        try:
            exported = await export.write(
                self._database(), self.storage, tenant_id, interview_id, path, tracks
            )
        except export.NoRecording:
            path.unlink(missing_ok=True)
            raise api_error(404, "no_recording", f"no uploaded recording of {track}") from None
        except StorageError:
            path.unlink(missing_ok=True)
            raise api_error(
                503, "storage_unavailable", "the recording's storage cannot be read now"
            ) from None
        fmt = exported.format
        return _ScratchFile(
            path,
            headers={
                "Content-Type": export.CONTENT_TYPES[fmt],
                "Content-Disposition": f'attachment; filename="{interview_id}-{track}.{fmt}"',
            },
        )

    async def _upstream_content(
        self, request: web.Request, tenant_id: UUID, interview_id: UUID
    ) -> web.StreamResponse:
        """The upstream's own recording (``recording.content``), served as stored and as the
        type the upstream named; ``?sequence=N`` for the interview's N-th upstream session."""
        try:
            sequence = int(request.query.get("sequence", "0"))
        except ValueError:
            raise api_error(400, "bad_request", "'sequence' must be an integer") from None
        rows = await interviews.list_video_segments(self._database(), tenant_id, interview_id)
        stored = [
            r
            for r in rows
            if export.track_name(r) == content.TRACK
            and r.sequence == sequence
            and r.status == "uploaded"
            and r.storage_uri
        ]
        if not stored:
            raise api_error(404, "no_recording", f"no uploaded recording of {content.TRACK}")
        record = stored[0]
        assert record.storage_uri is not None
        try:
            data = await self.storage.fetch(record.storage_uri)
        except StorageError:
            raise api_error(
                503, "storage_unavailable", "the recording's storage cannot be read now"
            ) from None
        path = self._scratch_path()
        await asyncio.to_thread(path.write_bytes, data)
        filename = f"{interview_id}-{content.TRACK}-{sequence}.bin"
        return _ScratchFile(
            path,
            headers={
                "Content-Type": record.codec or "application/binary",
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )

    def _scratch_path(self) -> Path:
        """A new empty file in the scratch directory (its descriptor closed: the download
        writes it by name and ``_ScratchFile`` removes it once sent)."""
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.scratch_dir)
        os.close(fd)
        return Path(name)

    async def delete_recordings(self, request: web.Request) -> web.Response:
        tenant_id, interview_id = await self._interview(request)
        if self._sessions().live(tenant_id, interview_id) is not None:
            raise api_error(409, "interview_live", "the interview is still being recorded")
        db = self._database()
        rows = await interviews.list_video_segments(db, tenant_id, interview_id)
        if any(record.status in ("recording", "stored") for record in rows):
            # on a gateway's disk, on its way to storage: deleting the row now would leave
            # the file for that gateway's next start to upload again
            raise api_error(
                409, "upload_pending", "some segments are not uploaded yet; try again later"
            )
        try:
            await apivideo.delete_videos(self.storage, rows)
            for record in rows:
                if record.status == "uploaded" and record.storage_uri:
                    await self.storage.delete(record.storage_uri)
        except StorageError:
            raise api_error(
                503, "storage_unavailable", "the recording's storage cannot be reached"
            ) from None
        await interviews.delete_video_segments(db, tenant_id, interview_id)
        return web.Response(status=204)

    async def _interview(self, request: web.Request) -> tuple[UUID, UUID]:
        """The caller's tenant and the interview named in the path, which must be theirs."""
        tenant_id = await self._authenticate(request)
        try:
            interview_id = UUID(request.match_info["interview_id"])
        except ValueError:
            raise api_error(404, "not_found", "no such interview") from None
        if await interviews.get_session(self._database(), tenant_id, interview_id) is None:
            raise api_error(404, "not_found", "no such interview")
        return tenant_id, interview_id


class _ScratchFile(web.FileResponse):
    """A file put together for one response (ranges answered by ``FileResponse``), removed
    once sent, or once sending failed."""

    def __init__(self, path: Path, headers: dict[str, str]) -> None:
        super().__init__(path, headers=headers)
        self.scratch = path

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            return await super().prepare(request)
        finally:
            await asyncio.to_thread(self.scratch.unlink, missing_ok=True)


def _segment_json(record: interviews.VideoSegmentRecord) -> dict[str, Any]:
    return {
        "track": export.track_name(record),
        "sequence": record.sequence,
        "status": record.status,
        "codec": record.codec,
        "started_at": record.started_at.astimezone(UTC).isoformat() if record.started_at else None,
        "duration_ms": record.duration_ms,
        "bytes": record.bytes,
        "video_id": record.video_id,
        "video_url": record.video_url,
    }
