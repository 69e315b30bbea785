"""Stored segments into storage, in the background, until storage takes them.

A segment reaches the uploader once its file is fsync'd in the spool and its row says
``stored``; from there nothing an interview does waits on storage. Each upload is tried until
``SegmentStorage.put`` takes it, waiting ``retry_seconds`` after the first refusal and twice as
long after each next one (at most ``RETRY_MOST``), so storage that is away for a while only
makes segments queue on disk. Then the row says ``uploaded`` with the storage URI, and only
then is the spooled file (if storage copied rather than moved it) removed: a crash anywhere in
between leaves a ``stored`` row with its file in the spool, which the next start uploads again
under the same key (``recovery``), so a segment ends up in storage once whatever happens.

A segment already queued or being uploaded is not queued twice (recovery and a live recording
never race for one file).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from gateway.recording.segments import SegmentFile
from gateway.recording.storage import SegmentStorage, StorageError
from storage.database import Database

log = logging.getLogger(__name__)

#: The longest wait between two attempts, however long storage has been away.
RETRY_MOST = 60.0
#: Uploads under way at once: enough to keep up with many interviews, few enough for a small
#: storage endpoint.
CONCURRENCY = 4


class Uploader:
    """A gateway's upload queue: ``submit`` never blocks; ``close`` stops the workers."""

    def __init__(self, db: Database, storage: SegmentStorage, *, retry_seconds: float) -> None:
        self.db = db
        self.storage = storage
        self.retry_seconds = retry_seconds
        self._queue: asyncio.Queue[tuple[SegmentFile, dict[str, str]]] = asyncio.Queue()
        self._pending: set[str] = set()
        self._changed = asyncio.Condition()
        self._workers: list[asyncio.Task[None]] = []

    def submit(self, file: SegmentFile, log_extra: dict[str, str]) -> None:
        """Upload ``file`` (its row ``stored``) when a worker is free; once per segment."""
        if file.key in self._pending:
            return
        self._pending.add(file.key)
        self._queue.put_nowait((file, log_extra))
        if not self._workers:
            self._workers = [asyncio.ensure_future(self._work()) for _ in range(CONCURRENCY)]

    @property
    def pending(self) -> int:
        """Segments queued or being uploaded."""
        return len(self._pending)

    async def drained(self, prefix: str) -> None:
        """Return once no segment whose key starts with ``prefix`` (``tenant/interview/``) is
        queued or being uploaded: each has been uploaded, or has failed."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: not any(key.startswith(prefix) for key in self._pending)
            )

    async def close(self, within: float) -> None:
        """Give the queue ``within`` seconds to empty, then stop; what is left stays ``stored``
        in the spool for the next start."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), within)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    async def _work(self) -> None:
        while True:
            file, extra = await self._queue.get()
            try:
                await self._upload(file, extra)
            except Exception:
                log.exception("segment %s not uploaded", file.key, extra=extra)
            finally:
                self._pending.discard(file.key)
                self._queue.task_done()
                async with self._changed:
                    self._changed.notify_all()

    async def _upload(self, file: SegmentFile, extra: dict[str, str]) -> None:
        delay = self.retry_seconds
        failures = 0
        while True:
            if not await asyncio.to_thread(file.path.is_file):
                # nothing left to upload (removed by hand): retrying would never end
                log.error("segment %s vanished from the spool", file.key, extra=extra)
                await file.settled(self.db, "failed", None, extra)
                return
            try:
                uri = await self.storage.put(file.key, file.path)
            except StorageError as exc:
                failures += 1
                # the first refusal says why (its first line: clients' errors run to pages);
                # the rest, while storage stays away, only at debug level
                log.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "segment %s not uploaded (%s); retrying in %.1f s",
                    file.key, str(exc).splitlines()[0][:300], delay,
                    extra=extra,
                )  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, max(RETRY_MOST, self.retry_seconds))
            else:
                break
        if failures:
            log.info(
                "segment %s uploaded after %d failed attempts", file.key, failures, extra=extra
            )
        await file.settled(self.db, "uploaded", uri, extra)
        await asyncio.to_thread(file.path.unlink, missing_ok=True)
