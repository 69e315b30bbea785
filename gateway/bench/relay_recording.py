"""The recording under measurement in ``bench relay --record`` (its ``recorded`` set-up).

The relay process records every session as the gateway does with ``GATEWAY_RECORDING=audio``:
an interview row per session in the configured database (``DATABASE_URL``, else the embedded
one), both voices taken from the forwarders' ``subscribers`` into Ogg segments, fsync'd, a
``video_segments`` row each, and uploaded to local storage in a temporary directory, all in
the relay's own process so that its CPU is counted with the relay's. The tenant it creates
(and with it every row) and the directory are removed at the end.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from uuid import UUID

from gateway.config import Settings
from gateway.recording.recorder import InterviewRecording, RecordingOptions, Recordings
from gateway.recording.storage import LocalStorage
from storage import interviews
from storage.database import Database, open_database
from storage.tenants import create_tenant


class BenchRecordings:
    """A gateway's recordings for one bench run: a tenant, a spool and storage of its own."""

    def __init__(
        self, db: Database, tenant: UUID, directory: tempfile.TemporaryDirectory[str]
    ) -> None:
        self._db = db
        self._tenant = tenant
        self._directory = directory
        root = Path(directory.name)
        self.recordings = Recordings(
            RecordingOptions(
                db=db, storage=LocalStorage(root / "recordings"), spool_dir=root / "spool"
            )
        )
        self.started: list[InterviewRecording] = []

    @classmethod
    async def open(cls, settings: Settings) -> BenchRecordings:
        db = await open_database(
            settings.database_url, data_dir=settings.data_dir, migrate=settings.migrate_on_start
        )
        tenant = await create_tenant(db, "bench relay --record")
        return cls(db, tenant, tempfile.TemporaryDirectory(prefix="igw-bench-record-"))

    async def start(self) -> InterviewRecording:
        """The recording of one new relayed session (its interview row created first)."""
        interview = await interviews.create_session(self._db, self._tenant, requested_mode="relay")
        recording = self.recordings.start(self._tenant, interview)
        self.started.append(recording)
        return recording

    @property
    def bytes_written(self) -> int:
        return sum(recording.bytes_written for recording in self.started)

    async def close(self) -> None:
        """Once the relays closed (their recordings with them): settle, then remove it all."""
        try:
            await self.recordings.close()
        finally:
            async with self._db.tenant(self._tenant) as conn:
                await conn.execute("DELETE FROM tenants WHERE id = %s", [self._tenant])
            await self._db.close()
            self._directory.cleanup()
