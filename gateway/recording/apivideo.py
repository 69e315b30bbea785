"""api.video as where recordings end up: a video per interview, its combined export uploaded.

api.video stores whole videos, not segments, so ``ApiVideoStorage`` keeps the segments where
local storage does (the admin API's downloads and the export are made from them) and, once an
interview's recording has settled, publishes it (``publish``): the combined export
(``export.write``: both voices and the video, remuxed) goes to a video created for the
interview, and every segment row of it gets the video's id and player URL. Deleting the
recording (the admin API, retention) deletes the video too (``delete_videos``). A gateway
stopped before it published an interview does not publish it later.

The client follows api.video's documented API (https://docs.api.video): an access token from
``POST /auth/api-key`` (``{"apiKey"}`` → ``access_token``, ``expires_in``), renewed before it
expires; ``POST /videos`` (``{"title"}`` → 201, ``videoId``); ``POST /videos/{videoId}/source``
as ``multipart/form-data`` with the file in ``file``, in chunks (each but the last at least
5 MiB) that each say their place with ``Content-Range: bytes FROM-TO/TOTAL``; the last
chunk's 201 answer is the video, its ``assets.player`` the URL kept; ``DELETE
/videos/{videoId}`` → 204. The API key is sent only to ``/auth/api-key`` and is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import aiohttp

from gateway.recording import export
from gateway.recording.storage import (
    ApiVideoSettings,
    LocalStorage,
    SegmentStorage,
    StorageError,
)
from storage import interviews
from storage.database import Database

log = logging.getLogger(__name__)

#: seconds before a token's expiry at which it is renewed
TOKEN_MARGIN = 60.0


@dataclass(frozen=True)
class Video:
    video_id: str
    player_url: str | None


class ApiVideoClient:
    """The few calls of api.video's API that publishing needs. Errors: ``StorageError``."""

    def __init__(self, settings: ApiVideoSettings) -> None:
        self.settings = settings
        self._token: str | None = None
        self._expires = 0.0

    async def create_video(self, http: aiohttp.ClientSession, title: str) -> Video:
        body = await self._call(http, "POST", "/videos", json={"title": title})
        return _video(body)

    async def upload(
        self, http: aiohttp.ClientSession, video_id: str, path: Path, content_type: str
    ) -> Video:
        """``path`` as the video's source, in ``chunk_bytes`` chunks with ``Content-Range``."""
        total = path.stat().st_size
        chunk = max(1, self.settings.chunk_bytes)
        body: dict[str, Any] = {}
        with path.open("rb") as source:
            for start in range(0, max(total, 1), chunk):
                data = source.read(chunk)
                end = start + len(data) - 1
                form = aiohttp.FormData()
                form.add_field("file", data, filename=path.name, content_type=content_type)
                headers = {"Content-Range": f"bytes {start}-{end}/{total}"}
                body = await self._call(
                    http, "POST", f"/videos/{video_id}/source", data=form, headers=headers
                )
        return _video(body)

    async def delete_video(self, http: aiohttp.ClientSession, video_id: str) -> None:
        await self._call(http, "DELETE", f"/videos/{video_id}", missing_ok=True)

    async def _call(
        self,
        http: aiohttp.ClientSession,
        method: str,
        path: str,
        *,
        missing_ok: bool = False,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        token = await self._access_token(http)
        url = self.settings.base_url.rstrip("/") + path
        auth = {"Authorization": f"Bearer {token}", **(headers or {})}
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with http.request(
                method, url, headers=auth, timeout=timeout, **kwargs
            ) as response:
                if response.status == 404 and missing_ok:
                    return {}
                if response.status >= 300:
                    text = (await response.text())[:200]
                    raise StorageError(f"api.video {method} {path}: {response.status} {text}")
                if response.status == 204:
                    return {}
                result: dict[str, Any] = await response.json()
                return result
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise StorageError(f"api.video {method} {path}: {exc}") from exc

    async def _access_token(self, http: aiohttp.ClientSession) -> str:
        if self._token is not None and time.monotonic() < self._expires - TOKEN_MARGIN:
            return self._token
        url = self.settings.base_url.rstrip("/") + "/auth/api-key"
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with http.post(
                url, json={"apiKey": self.settings.api_key}, timeout=timeout
            ) as response:
                if response.status != 200:
                    raise StorageError(f"api.video refused the API key: {response.status}")
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise StorageError(f"api.video authentication: {exc}") from exc
        self._token = str(body["access_token"])
        self._expires = time.monotonic() + float(body.get("expires_in", 3600))
        return self._token


def _video(body: dict[str, Any]) -> Video:
    if "videoId" not in body:
        raise StorageError("api.video answered without a videoId")
    assets = body.get("assets") or {}
    return Video(video_id=str(body["videoId"]), player_url=assets.get("player"))


class ApiVideoStorage(LocalStorage):
    """Segments on the local disk (``LocalStorage``); each settled interview published."""

    def __init__(self, root: Path, settings: ApiVideoSettings) -> None:
        super().__init__(root)
        self.client = ApiVideoClient(settings)

    async def publish(self, db: Database, tenant_id: UUID, interview_id: UUID) -> Video:
        """Upload the interview's combined export to a new video; record it on every row.
        ``StorageError`` (nothing recorded: it can be tried again), ``export.NoRecording``."""
        with tempfile.TemporaryDirectory(prefix="igw-apivideo-") as tmp:
            exported = await export.write(
                db, self, tenant_id, interview_id, lambda fmt: Path(tmp) / f"{interview_id}.{fmt}"
            )
            content_type = export.CONTENT_TYPES[exported.format]
            async with aiohttp.ClientSession() as http:
                video = await self.client.create_video(http, f"interview {interview_id}")
                video = await self.client.upload(http, video.video_id, exported.path, content_type)
        for row in await interviews.list_video_segments(db, tenant_id, interview_id):
            await interviews.update_video_segment(
                db, tenant_id, row.id, video_id=video.video_id, video_url=video.player_url
            )
        return video

    async def delete_video(self, video_id: str) -> None:
        """Delete a published video (one already gone is no error). ``StorageError``."""
        async with aiohttp.ClientSession() as http:
            await self.client.delete_video(http, video_id)


class Published(Protocol):
    """A segment row as far as its published video goes."""

    @property
    def video_id(self) -> str | None: ...


async def delete_videos(storage: SegmentStorage, records: Iterable[Published]) -> None:
    """Delete the videos ``records`` were published as, when storage is api.video: with a
    recording's segments goes its published copy. ``StorageError``."""
    if isinstance(storage, ApiVideoStorage):
        for video_id in sorted({r.video_id for r in records if r.video_id}):
            await storage.delete_video(video_id)


async def publish_when_settled(
    storage: ApiVideoStorage,
    db: Database,
    tenant_id: UUID,
    interview_id: UUID,
    settled: Awaitable[None],
    retry_seconds: float,
    log_extra: dict[str, str],
) -> None:
    """Once ``settled`` (every segment of the interview uploaded or failed), publish; retried
    with doubling waits (at most a minute) while api.video refuses."""
    await settled
    delay = retry_seconds
    while True:
        try:
            video = await storage.publish(db, tenant_id, interview_id)
        except export.NoRecording:
            return
        except StorageError as exc:
            log.warning("recording not published to api.video (%s); retrying", exc, extra=log_extra)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 60.0)
        except Exception:
            log.exception("recording not published to api.video", extra=log_extra)
            return
        else:
            log.info("recording published to api.video as %s", video.video_id, extra=log_extra)
            return
