"""One segment file and its ``video_segments`` row, through the row's states in order.

``begin`` inserts the row (``recording``) as the file is opened; ``complete`` fsyncs and
closes the file (and its directory entry) off the event loop; ``stored`` records its length
and size; ``settled`` records where storage put it (``uploaded``), or that nothing of it could
be kept (``failed``). Each row write waits out a database that is away rather than being
dropped. A file's name says whose track it belongs to and where (``segment_name``), so a
restarted gateway can tell its spooled files apart without any state but the files and rows.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple
from uuid import UUID

from gateway.recording import matroska, opus
from gateway.recording.ogg import whole_pages
from gateway.recording.storage import fsync_directory
from gateway.recording.video_codecs import codec_where
from gateway.sessions.recorder import retry_until_done
from storage import interviews
from storage.database import Database

#: whose track: a voice or video the relay recorded, or (``upstream``) the recording the
#: upstream itself made and the gateway downloaded (``recording.content``)
Participant = Literal["candidate", "interviewer", "upstream"]
Kind = Literal["audio", "video", "content"]
#: each kind's codec (its rows' ``codec``; a video's: VP8 unless its segment names another,
#: the upstream's content: the type it was served as) and file name extension (a video's:
#: its codec's, ``video_codecs``)
CODECS: dict[Kind, str] = {"audio": "opus", "video": "vp8", "content": "application/binary"}
EXTENSIONS: dict[Kind, str] = {"audio": "opus", "video": "webm", "content": "bin"}
_NAME = re.compile(
    r"(candidate|interviewer)-(audio-(\d{5,})\.opus|video-(\d{5,})\.(?:webm|mkv))"
    r"|upstream-content-(\d{5,})\.bin"
)


class SegmentName(NamedTuple):
    participant: Participant
    kind: Kind
    sequence: int


def segment_name(
    participant: Participant, sequence: int, kind: Kind = "audio", codec: str | None = None
) -> str:
    """A segment's file name: ``candidate-audio-00003.opus``, ``candidate-video-00003.webm``
    (``.mkv`` for ``codec`` ``h264``), ``upstream-content-00000.bin``."""
    video = codec_where("name", codec) if kind == "video" and codec else None
    extension = video.extension if video is not None else EXTENSIONS[kind]
    return f"{participant}-{kind}-{sequence:05d}.{extension}"


def parse_segment_name(name: str) -> SegmentName | None:
    """What a name ``segment_name`` made says; None for any other file."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    if match[5] is not None:
        return SegmentName("upstream", "content", int(match[5]))
    participant: Participant = "candidate" if match[1] == "candidate" else "interviewer"
    if match[3] is not None:
        return SegmentName(participant, "audio", int(match[3]))
    return SegmentName(participant, "video", int(match[4]))


def salvage(path: Path, kind: Kind = "audio") -> tuple[int, int]:
    """Cut a segment file left unfinished by a crash back to what whole reached the disk and
    fsync it; (duration in ms, bytes) of what is left (0 ms: nothing survived). Blocking."""
    if kind == "video":
        return matroska.salvage(path)
    if kind == "content":  # written whole before its name was given: nothing to cut
        return 0, path.stat().st_size
    with path.open("r+b") as file:
        end, samples = whole_pages(file.read())
        file.truncate(end)
        file.flush()
        os.fsync(file.fileno())
    return round(samples * 1000 / opus.RATE), end


@dataclass
class SegmentFile:
    tenant_id: UUID
    interview_id: UUID
    participant: Participant
    sequence: int
    path: Path
    started_at: datetime | None
    row_id: UUID | None = field(default=None)
    kind: Kind = "audio"
    #: its row's ``codec``, where the kind's own (``CODECS``) is not it
    codec: str | None = None

    @property
    def key(self) -> str:
        """Its name in storage: ``tenant/interview/file``."""
        return f"{self.tenant_id}/{self.interview_id}/{self.path.name}"

    async def begin(self, db: Database, log_extra: dict[str, str]) -> None:
        async def insert() -> None:
            self.row_id = await interviews.add_video_segment(
                db,
                self.tenant_id,
                self.interview_id,
                participant=self.participant,
                kind=self.kind,
                sequence=self.sequence,
                codec=self.codec or CODECS[self.kind],
                started_at=self.started_at,
                storage_uri=self.path.as_uri(),
            )

        await retry_until_done(f"segment {self.key}", insert, log_extra)

    def complete(self, sink: BinaryIO) -> None:
        """Flush, fsync and close the file: from here a crash cannot lose it (blocking)."""
        sink.flush()
        os.fsync(sink.fileno())
        sink.close()
        fsync_directory(self.path.parent)

    async def stored(
        self, db: Database, duration_ms: int, size: int, log_extra: dict[str, str]
    ) -> None:
        await self._update(db, log_extra, status="stored", duration_ms=duration_ms, bytes=size)

    async def settled(
        self,
        db: Database,
        status: Literal["uploaded", "failed"],
        uri: str | None,
        log_extra: dict[str, str],
    ) -> None:
        await self._update(
            db, log_extra, status=status, **({"storage_uri": uri} if uri is not None else {})
        )

    async def _update(self, db: Database, log_extra: dict[str, str], **fields: object) -> None:
        row_id = self.row_id
        assert row_id is not None, "begin() runs before any update"

        async def update() -> None:
            await interviews.update_video_segment(db, self.tenant_id, row_id, **fields)

        await retry_until_done(f"segment {self.key}", update, log_extra)
