"""One relayed interview's recording: each voice its own track of Ogg Opus segments (and the
candidate's video, when it sends VP8 or H.264, a track of WebM or Matroska segments:
``recording.video``).

The relay's forwarders hand every Opus packet they send on to ``subscribers``; a track here is
one of them, so recording reads the very packets that cross the gateway, neither decoded nor
re-encoded. Where a packet belongs comes from its forwarder's timestamps (the RTP clock,
already rebased across a candidate's reconnect), anchored once per source to the time since
the recording started, so both voices share one timeline from the same zero. A span with no
packets (loss, a candidate away, an interviewer not yet speaking) is filled with concealment
packets (``opus.concealment``), so every track is continuous and a gap stays where it was.

A track is cut into segments of ``segment_seconds`` of that timeline, one Ogg file each in
the spool directory. Each has a ``video_segments`` row: ``recording`` while written, ``stored``
once the file is complete and fsync'd, then ``uploaded`` with its storage URI once the
gateway's ``Uploader`` got it into storage (retrying while storage is away). A process killed
mid-interview therefore loses at most the unwritten tail of the segments being written (one
per track): at the next start, ``recovery`` keeps their whole pages and uploads whatever the
spool still holds. The packet path only appends to a buffered file; fsyncs and rows happen in
order on one background task per interview, which waits out a database that is away
(``retry_until_done``); uploads happen on the uploader's tasks, so nothing waits on storage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from uuid import UUID

from gateway.recording import content, opus, retention, video
from gateway.recording.apivideo import ApiVideoStorage, publish_when_settled
from gateway.recording.ogg import OggOpusWriter
from gateway.recording.recovery import recover
from gateway.recording.segments import Participant, SegmentFile, segment_name
from gateway.recording.storage import SegmentStorage
from gateway.recording.uploads import Uploader
from gateway.recording.video import VideoSource, VideoTrackRecording
from storage.database import Database

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]
#: Seconds a closing gateway waits for its recordings' last rows.
SETTLE_TIMEOUT = 10.0


class PacketSource(Protocol):
    """A forwarder whose every packet goes to ``subscribers`` as its payload and pts (on a
    1/48000 time base)."""

    subscribers: list[Callable[[bytes, int], None]]


@dataclass(frozen=True)
class RecordingOptions:
    """How a gateway records: one per gateway, shared by its interviews' recordings."""

    db: Database
    storage: SegmentStorage
    #: where segments are written and fsync'd before storage takes them
    spool_dir: Path
    segment_seconds: float = 10.0
    #: seconds before an upload that storage refused is tried again (doubling each time)
    retry_seconds: float = 1.0
    #: days a segment is kept before ``retention`` deletes it (0: forever)
    retention_days: float = 0.0


class Recordings:
    """A gateway's recordings: starts one per interview, and waits for their last rows."""

    def __init__(self, options: RecordingOptions) -> None:
        self.options = options
        self.uploader = Uploader(options.db, options.storage, retry_seconds=options.retry_seconds)
        self._finishing: set[asyncio.Task[None]] = set()
        #: interviews' exports on their way to api.video (``ApiVideoStorage`` only)
        self._publishing: set[asyncio.Task[None]] = set()
        self._background: list[asyncio.Task[Any]] = []
        #: upstream recordings being downloaded (``recording.content``)
        self._downloading: set[asyncio.Task[None]] = set()

    def recover(self) -> None:
        """Upload, in the background, what an earlier process left in the spool; and start
        the retention job, when segments have an age limit."""
        options = self.options
        self._background = [
            asyncio.ensure_future(recover(options.spool_dir, options.db, self.uploader))
        ]
        if options.retention_days > 0:
            age = options.retention_days * 86400
            self._background.append(
                asyncio.ensure_future(retention.run(options.db, options.storage, age))
            )

    def start(self, tenant_id: UUID, interview_id: UUID) -> InterviewRecording:
        recording = InterviewRecording(self.options, self.uploader, tenant_id, interview_id)
        task = recording.worker
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        if isinstance(self.options.storage, ApiVideoStorage):
            self._publish(recording, self.options.storage)
        return recording

    def fetch_content(
        self,
        tenant_id: UUID,
        interview_id: UUID,
        session_ids: Sequence[str],
        download: content.Download,
    ) -> asyncio.Task[None]:
        """Download the upstream's own recording of each session, in the background, into
        storage as the track ``upstream-content`` (``recording.content``)."""
        options = self.options
        task = asyncio.ensure_future(
            content.fetch_all(
                options.db,
                self.uploader,
                options.spool_dir / str(tenant_id) / str(interview_id),
                tenant_id,
                interview_id,
                tuple(session_ids),
                download,
                options.retry_seconds,
            )
        )
        self._downloading.add(task)
        task.add_done_callback(self._downloaded)
        return task

    def _downloaded(self, task: asyncio.Task[None]) -> None:
        self._downloading.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("upstream content not fetched", exc_info=error)

    def _publish(self, recording: InterviewRecording, storage: ApiVideoStorage) -> None:
        """Once the recording's rows and uploads have settled, its export goes to api.video."""

        async def settled() -> None:
            await asyncio.shield(recording.worker)
            prefix = f"{recording.tenant_id}/{recording.interview_id}/"
            await self.uploader.drained(prefix)

        task = asyncio.ensure_future(
            publish_when_settled(
                storage,
                self.options.db,
                recording.tenant_id,
                recording.interview_id,
                settled(),
                self.options.retry_seconds,
                recording.log_extra,
            )
        )
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def close(self) -> None:
        """Give the interviews' outstanding fsyncs, rows and uploads ``SETTLE_TIMEOUT`` to
        finish (a segment left ``stored`` or ``recording`` is on disk for the next start)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        if self._downloading:
            log.warning("closing: %d upstream recording downloads dropped", len(self._downloading))
        for task in (*self._background, *self._downloading):
            task.cancel()  # a download not finished is not waited for
        if self._finishing:
            await asyncio.wait(list(self._finishing), timeout=SETTLE_TIMEOUT)
        if self._publishing:
            await asyncio.wait(
                list(self._publishing), timeout=max(0.1, deadline - time.monotonic())
            )
            for publishing in self._publishing:
                publishing.cancel()
        await self.uploader.close(max(0.0, deadline - time.monotonic()))


class InterviewRecording:
    """The tracks of one interview and the background task that settles their segments."""

    def __init__(
        self, options: RecordingOptions, uploader: Uploader, tenant_id: UUID, interview_id: UUID
    ) -> None:
        self.options = options
        self.uploader = uploader
        self.tenant_id = tenant_id
        self.interview_id = interview_id
        self.log_extra = {"interview_id": str(interview_id), "tenant_id": str(tenant_id)}
        self.started_at = datetime.now(UTC)
        self._started = time.monotonic()
        self.directory = options.spool_dir / str(tenant_id) / str(interview_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.tracks: dict[Participant, AudioTrackRecording] = {}
        self.video: dict[Participant, VideoTrackRecording] = {}
        self._jobs: asyncio.Queue[Job | None] = asyncio.Queue()
        self.worker = asyncio.ensure_future(self._run())

    def follow(self, participant: Participant, source: PacketSource) -> None:
        """Record ``source``'s packets as ``participant``'s voice from now on (a new
        forwarder of the same voice, after a reconnect, continues the same track)."""
        track = self.tracks.get(participant)
        if track is None:
            track = self.tracks[participant] = AudioTrackRecording(self, participant)
        track.follow(source)

    def follow_video(self, participant: Participant, source: VideoSource) -> None:
        """Record ``source``'s frames as ``participant``'s video (``recording.video``)."""
        track = self.video.get(participant)
        if track is None:
            track = self.video[participant] = VideoTrackRecording(self, participant)
        track.follow(source)

    @property
    def bytes_written(self) -> int:
        """Bytes of Ogg its tracks have written so far (what ``bench relay --record`` counts)."""
        audio = sum(track.bytes_written for track in self.tracks.values())
        return audio + sum(track.bytes_written for track in self.video.values())

    def elapsed_samples(self) -> int:
        """Where on the shared timeline ``now`` is, in 48 kHz samples."""
        return round((time.monotonic() - self._started) * opus.RATE)

    def elapsed_ticks(self) -> int:
        """Where on the shared timeline ``now`` is, on video's 90 kHz clock."""
        return round((time.monotonic() - self._started) * video.RATE)

    def submit(self, job: Job) -> None:
        self._jobs.put_nowait(job)

    def settle(self, file: SegmentFile, sink: BinaryIO, duration_ms: int, size: int) -> None:
        """A finished segment of any track: fsync'd and closed off the loop, its row
        ``stored``, then handed to the uploader; in order with this recording's other row
        writes (``submit``), so a row is never ``stored`` before it was begun."""
        extra = self.log_extra

        async def settle() -> None:
            await asyncio.to_thread(file.complete, sink)
            await file.stored(self.options.db, duration_ms, size, extra)
            self.uploader.submit(file, extra)

        self.submit(settle)

    def close(self) -> None:
        """Stop recording: every track's last segment is finished; its row settles later."""
        for track in self.tracks.values():
            track.close()
        for video_track in self.video.values():
            video_track.close()
        self._jobs.put_nowait(None)

    async def _run(self) -> None:
        while (job := await self._jobs.get()) is not None:
            try:
                await job()
            except Exception:
                log.exception("a recording job failed", extra=self.log_extra)


class _Subscription:
    """One forwarder feeding a track: its timestamps, placed once on the shared timeline."""

    def __init__(self, track: AudioTrackRecording) -> None:
        self._track = track
        self._offset: int | None = None

    def __call__(self, data: bytes, pts: int) -> None:
        track = self._track
        if track.closed:
            return
        try:
            samples = opus.packet_samples(data)
        except opus.MalformedPacket:
            track.malformed += 1
            return
        if self._offset is None:
            self._offset = max(track.owner.elapsed_samples(), track.position) - pts
        track.write(self._offset + pts, data, samples)


class AudioTrackRecording:
    """One voice: its timeline position and the segment being written."""

    def __init__(self, owner: InterviewRecording, participant: Participant) -> None:
        self.owner = owner
        self.participant = participant
        seconds = owner.options.segment_seconds
        self.segment_samples = max(opus.FILL_QUANTUM, round(seconds * opus.RATE))
        #: samples on the timeline so far (the next packet's place, unless it comes later)
        self.position = 0
        self.malformed = 0
        self.closed = False
        #: bytes of the segments finished so far
        self._finished_bytes = 0
        self._sequence = 0
        self._segment: _OpenSegment | None = None
        self._sources: list[PacketSource] = []

    def follow(self, source: PacketSource) -> None:
        if any(s is source for s in self._sources):
            return
        self._sources.append(source)
        source.subscribers.append(_Subscription(self))

    @property
    def bytes_written(self) -> int:
        segment = self._segment
        return self._finished_bytes + (segment.writer.bytes_written if segment else 0)

    def write(self, at: int, packet: bytes, samples: int) -> None:
        """``packet`` at timeline position ``at``: what lies between is concealed first."""
        while at - self.position >= opus.FILL_QUANTUM:
            room = self._writable().end - self.position
            span = min(at - self.position, max(room, opus.FILL_QUANTUM))
            for filler in opus.concealment(span):
                self._append(filler, opus.packet_samples(filler))
        self._append(packet, samples)

    def _append(self, packet: bytes, samples: int) -> None:
        segment = self._writable()
        segment.writer.write(packet, samples)
        self.position += samples

    def _writable(self) -> _OpenSegment:
        """The segment the next packet goes into: a new one once the current one is full."""
        if self._segment is not None and self.position < self._segment.end:
            return self._segment
        self._finish()
        path = self.owner.directory / segment_name(self.participant, self._sequence)
        file = SegmentFile(
            tenant_id=self.owner.tenant_id,
            interview_id=self.owner.interview_id,
            participant=self.participant,
            sequence=self._sequence,
            path=path,
            started_at=self.owner.started_at + timedelta(seconds=self.position / opus.RATE),
        )
        sink = path.open("wb")
        self._segment = _OpenSegment(
            file=file,
            sink=sink,
            writer=OggOpusWriter(sink, serial=self._sequence),
            end=self.position + self.segment_samples,
        )
        self._sequence += 1
        self.owner.submit(lambda: file.begin(self.owner.options.db, self.owner.log_extra))
        return self._segment

    def _finish(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        writer = segment.writer
        writer.finish()
        self._finished_bytes += writer.bytes_written
        duration_ms = round(writer.granule * 1000 / opus.RATE)
        self.owner.settle(segment.file, segment.sink, duration_ms, writer.bytes_written)

    def close(self) -> None:
        self.closed = True
        self._finish()


@dataclass
class _OpenSegment:
    file: SegmentFile
    sink: BinaryIO
    writer: OggOpusWriter
    #: the timeline position at which the segment is full
    end: int
