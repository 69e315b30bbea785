"""Recordings past their age are deleted: the media from storage, then the row.

``GATEWAY_RECORDING_RETENTION_DAYS`` (0: keep forever) is an age from a segment's creation.
Only settled segments go (``uploaded``, ``failed``): one still in the spool waits until it is
uploaded, so recovery never re-uploads what retention already removed. Every gateway that
records runs the job, hourly; two deleting the same segment is harmless (a delete of what is
gone is no error, and the row goes once).
"""

from __future__ import annotations

import asyncio
import logging

from gateway.recording import apivideo
from gateway.recording.storage import SegmentStorage, StorageError
from storage import interviews
from storage.database import Database

log = logging.getLogger(__name__)

#: Seconds between two runs of the job.
INTERVAL = 3600.0
#: Segments handled per query.
BATCH = 500


async def expire(db: Database, storage: SegmentStorage, age_s: float) -> int:
    """Delete every settled segment older than ``age_s`` seconds; how many went. A segment
    whose media storage would not delete stays, for the next run."""
    deleted = 0
    while True:
        expired = await interviews.expired_video_segments(db, age_s, BATCH)
        kept = 0
        for segment in expired:
            if segment.status == "uploaded" and segment.storage_uri:
                try:
                    await apivideo.delete_videos(storage, [segment])
                    await storage.delete(segment.storage_uri)
                except StorageError as exc:
                    log.warning("expired segment %s kept: %s", segment.id, exc)
                    kept += 1
                    continue
            deleted += await interviews.delete_video_segment(db, segment.tenant_id, segment.id)
        if len(expired) < BATCH or kept == len(expired):
            return deleted


async def run(db: Database, storage: SegmentStorage, age_s: float) -> None:
    """The job: ``expire`` now and every ``INTERVAL`` seconds until cancelled."""
    while True:
        try:
            if deleted := await expire(db, storage, age_s):
                log.info("deleted %d recording segments past their retention", deleted)
        except Exception:
            log.exception("the recording retention job failed; it runs again in an hour")
        await asyncio.sleep(INTERVAL)
