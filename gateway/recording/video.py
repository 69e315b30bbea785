"""The candidate's video track of a recording: its frames into segments, as they came (VP8 into
WebM, H.264 into Matroska: ``recording.video_codecs``).

A source (``media.video.VideoFrames``) hands on every frame the browser leg received, with its
sender's 90 kHz timestamps; like a voice, each source is anchored once to the recording's
shared timeline, so a reconnect's new source continues the same track after the gap, and the
video stays in step with both voices. Nothing is concealed: a player holds the last picture
across a gap.

A segment must begin with a keyframe (a player can start there; its codec parameters are read
from it), and holds one codec: a reconnect from a browser that negotiated another codec begins
a new segment at the new source's first keyframe. Once a segment holds ``segment_seconds``,
the track asks the sender for a keyframe (PLI, again each second it has not come) and keeps
writing until it comes; the keyframe begins the next segment. A new source's frames are
dropped until its first keyframe, which it is asked for as it is followed and again each
second it has not come (one lost packet of a keyframe loses all of it): its frames before one
could not be decoded on top of the old source's.
Rows and fsyncs go through the interview's one background task, as a voice's do.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, BinaryIO, Protocol

import av
from av.packet import Packet

from gateway.recording.matroska import VideoWriter
from gateway.recording.segments import Participant, SegmentFile, segment_name
from gateway.recording.video_codecs import NotAKeyframe, VideoCodec

if TYPE_CHECKING:
    from gateway.recording.recorder import InterviewRecording

RATE = 90000


class VideoSource(Protocol):
    """Frames of ``codec`` (pts on a 1/90000 time base, ``is_keyframe`` set) to
    ``subscribers``."""

    subscribers: list[Callable[[Packet], None]]
    codec: VideoCodec

    def request_keyframe(self) -> None: ...


class _Subscription:
    def __init__(self, track: VideoTrackRecording, source: VideoSource) -> None:
        self._track = track
        self._source = source
        self._offset: int | None = None
        self._synced = False
        #: the source's pts when it was last asked for its first keyframe
        self._asked_at: int | None = None

    def __call__(self, packet: Packet) -> None:
        track = self._track
        if track.closed or packet.pts is None:
            return
        if self._offset is None:
            self._offset = max(track.owner.elapsed_ticks(), track.position) - packet.pts
        if not self._synced:
            if not packet.is_keyframe:
                # the keyframe asked for as it was followed may not have come (lost on the
                # way, or asked before the sender was heard): asked again each second
                if self._asked_at is None or packet.pts - self._asked_at >= RATE:
                    self._asked_at = packet.pts
                    self._source.request_keyframe()
                return
            self._synced = True
        track.write(self._offset + packet.pts, packet, self._source)


class VideoTrackRecording:
    """One participant's video: the segment being written and where the timeline is."""

    def __init__(self, owner: InterviewRecording, participant: Participant) -> None:
        self.owner = owner
        self.participant = participant
        self.segment_ticks = round(owner.options.segment_seconds * RATE)
        #: timeline position (90 kHz) just after the last frame written
        self.position = 0
        self.closed = False
        #: frames dropped: a keyframe a segment cannot begin with, or one the muxer refused
        self.malformed = 0
        self._finished_bytes = 0
        self._sequence = 0
        self._segment: _OpenSegment | None = None
        self._sources: list[VideoSource] = []

    @property
    def bytes_written(self) -> int:
        segment = self._segment
        return self._finished_bytes + (segment.sink.tell() if segment else 0)

    def follow(self, source: VideoSource) -> None:
        if any(s is source for s in self._sources):
            return
        self._sources.append(source)
        source.subscribers.append(_Subscription(self, source))
        source.request_keyframe()

    def write(self, at: int, packet: Packet, source: VideoSource) -> None:
        """A frame of ``source`` at timeline position ``at`` (90 kHz)."""
        at = max(at, self.position)  # never before a frame already written
        data = bytes(packet)
        segment = self._segment
        codec = source.codec
        try:
            if packet.is_keyframe and (
                segment is None or at >= segment.end or segment.codec is not codec
            ):
                segment = self._begin(at, data, codec)
            elif segment is None or segment.codec is not codec:
                return  # the first keyframe is not here yet
            elif at >= segment.end and at - segment.asked_at >= RATE:
                segment.asked_at = at
                source.request_keyframe()
            segment.writer.write(data, at - segment.start, packet.is_keyframe)
        except (NotAKeyframe, av.FFmpegError):
            # a frame the muxer cannot take is dropped; the packet path never raises
            self.malformed += 1
            return
        segment.last = at
        self.position = at + 1

    def _begin(self, at: int, keyframe: bytes, codec: VideoCodec) -> _OpenSegment:
        """The next segment, which ``keyframe`` begins; the one before it is finished. Raises
        ``NotAKeyframe`` (or the muxer's error) with nothing changed."""
        owner = self.owner
        path = owner.directory / segment_name(self.participant, self._sequence, "video", codec.name)
        file = SegmentFile(
            tenant_id=owner.tenant_id,
            interview_id=owner.interview_id,
            participant=self.participant,
            sequence=self._sequence,
            path=path,
            started_at=owner.started_at + timedelta(seconds=at / RATE),
            kind="video",
            codec=codec.name,
        )
        sink = path.open("w+b")
        try:
            writer = VideoWriter.beginning_with(sink, codec, keyframe)
        except BaseException:
            sink.close()
            path.unlink()
            raise
        self._finish()
        self._segment = _OpenSegment(
            file=file,
            sink=sink,
            writer=writer,
            codec=codec,
            start=at,
            end=at + self.segment_ticks,
            asked_at=at - RATE,
            last=at,
        )
        self._sequence += 1
        owner.submit(lambda: file.begin(owner.options.db, owner.log_extra))
        return self._segment

    def _finish(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        segment.writer.finish()
        size = segment.sink.seek(0, io.SEEK_END)  # the muxer seeks back to write sizes
        self._finished_bytes += size
        # the last frame lasts as long as the one before it did, on average
        frames = segment.writer.frames
        span = segment.last - segment.start
        duration_ms = round((span + (span / (frames - 1) if frames > 1 else 0)) * 1000 / RATE)
        self.owner.settle(segment.file, segment.sink, duration_ms, size)

    def close(self) -> None:
        self.closed = True
        self._finish()


@dataclass
class _OpenSegment:
    file: SegmentFile
    sink: BinaryIO
    writer: VideoWriter
    codec: VideoCodec
    #: timeline positions (90 kHz): its first frame's, where it is full, the last frame's
    start: int
    end: int
    last: int
    #: when the track last asked for the keyframe that would begin the next segment
    asked_at: int
