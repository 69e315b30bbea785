"""The upstream's own recording of an interview, downloaded into the gateway's storage.

GPT-Live keeps a session created with ``store: true`` and serves its content afterwards
(``GET /live/sessions/{id}/content``, the SDK's ``download_recording``: opaque bytes asked for
as ``application/binary``; the SDK names no container). Proxy mode holds no media of its own,
so on GPT-Live this download is the one recording it can have; in relay mode it is a track
beside the relay's own. Each upstream session of the interview (a proxied candidate who
reconnects gets a new one) becomes one row of the track ``upstream-content``: participant
``upstream``, kind ``content``, ``sequence`` the session's place in the interview, ``codec``
the content type the upstream served (``application/binary`` if it named none).

The download runs after the interview, in the background (``Recordings.fetch_content``): the
interview never waits for it, and a closing gateway cancels it rather than wait. A refusal
that may pass (5xx, 429, the upstream unreachable) is retried with a doubling wait, at most
``ATTEMPTS`` times; any other refusal (404: the session was not stored) ends it. The file is
fsync'd in the spool under a name recovery ignores, its row written ``stored``, then it is
renamed to its segment name and handed to the ``Uploader``, so from there it goes to storage
exactly as a relayed segment does, once, and survives a restart (``recovery``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from uuid import UUID

from gateway.recording.segments import SegmentFile, segment_name
from gateway.recording.storage import fsync_directory
from gateway.recording.uploads import RETRY_MOST, Uploader
from gateway.sessions.recorder import retry_until_done
from gateway.upstream.openai import UpstreamError
from storage import interviews
from storage.database import Database

log = logging.getLogger(__name__)

#: ``(session id) -> (content type, bytes)``: ``LiveUpstream.download_recording``.
Download = Callable[[str], Awaitable[tuple[str, bytes]]]
#: The track's name in the recordings API (``export.track_name`` of its rows).
TRACK = "upstream-content"
#: Downloads tried per upstream session before the gateway gives up on it.
ATTEMPTS = 8


def retryable(error: UpstreamError) -> bool:
    """Whether trying again may help: the upstream unreachable, overloaded or failing."""
    return error.status is None or error.status >= 500 or error.status == 429


async def fetch_all(
    db: Database,
    uploader: Uploader,
    directory: Path,
    tenant_id: UUID,
    interview_id: UUID,
    session_ids: Sequence[str],
    download: Download,
    retry_seconds: float,
) -> None:
    """Download each upstream session's content into the spool and queue its upload; a
    session whose row exists already (fetched before) is not fetched again."""
    extra = {"interview_id": str(interview_id), "tenant_id": str(tenant_id)}
    rows = await interviews.list_video_segments(db, tenant_id, interview_id)
    done = {row.sequence for row in rows if row.participant == "upstream"}
    for sequence, session_id in enumerate(session_ids):
        if sequence in done:
            continue
        content = await _download(download, session_id, retry_seconds, extra)
        if content is None:
            continue
        kind, data = content
        file = SegmentFile(
            tenant_id=tenant_id,
            interview_id=interview_id,
            participant="upstream",
            sequence=sequence,
            path=directory / segment_name("upstream", sequence, "content"),
            started_at=None,
            kind="content",
        )
        partial = file.path.with_name(file.path.name + ".part")
        await asyncio.to_thread(_write, partial, data)

        async def insert(file: SegmentFile = file, kind: str = kind, size: int = len(data)) -> None:
            file.row_id = await interviews.add_video_segment(
                db, tenant_id, interview_id, participant="upstream", kind="content",
                sequence=file.sequence, codec=kind, bytes=size, status="stored",
                storage_uri=file.path.as_uri(),
            )  # fmt: skip

        await retry_until_done(f"upstream content {file.key}", insert, extra)
        await asyncio.to_thread(_rename, partial, file.path)
        log.info("upstream content of %s: %d bytes (%s)", session_id, len(data), kind, extra=extra)
        uploader.submit(file, extra)


async def _download(
    download: Download, session_id: str, retry_seconds: float, extra: dict[str, str]
) -> tuple[str, bytes] | None:
    delay = retry_seconds
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await download(session_id)
        except UpstreamError as exc:  # its text is scrubbed of the key
            if not retryable(exc) or attempt == ATTEMPTS:
                log.warning(
                    "upstream content of %s not downloaded after %d attempts: %s",
                    session_id, attempt, exc, extra=extra,
                )  # fmt: skip
                return None
            log.info(
                "upstream content of %s: attempt %d failed (%s); retrying in %.1f s",
                session_id, attempt, exc.code, delay, extra=extra,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, max(RETRY_MOST, retry_seconds))
    return None


def _write(path: Path, data: bytes) -> None:
    """The whole content, fsync'd (blocking)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as sink:
        sink.write(data)
        sink.flush()
        os.fsync(sink.fileno())


def _rename(source: Path, target: Path) -> None:
    os.replace(source, target)
    fsync_directory(target.parent)
