"""An interview's recording as one file: its segments' packets remuxed, never decoded.

A track (``candidate-audio``, ``interviewer-audio``, ``candidate-video``) is its uploaded
segments in sequence, each segment placed at its ``started_at`` on the interview's timeline (a
segment a crash lost leaves a gap rather than pulling the rest forward). ``export`` writes one
voice as Ogg Opus, or the tracks as separate tracks of one WebM file (Matroska when the video
is H.264, which WebM does not hold): each packet
is the very bytes the segment holds, handed to FFmpeg's muxer through PyAV with its timestamp
(and a video frame's keyframe flag) and nothing else, so nothing is decoded or re-encoded.
"""

from __future__ import annotations

import asyncio
import heapq
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Literal, NamedTuple
from uuid import UUID

import av
from av.audio.stream import AudioStream

from gateway.recording import opus
from gateway.recording.storage import SegmentStorage
from gateway.recording.video_codecs import codec_where
from storage import interviews
from storage.database import Database
from storage.interviews import VideoSegmentRecord

#: an export's format, named as its file name's extension
Format = Literal["ogg", "webm", "mkv"]
#: What each format is served as (Matroska: RFC 9559's media type), and FFmpeg's muxer for it.
CONTENT_TYPES: dict[Format, str] = {
    "ogg": "audio/ogg",
    "webm": "video/webm",
    "mkv": "video/matroska",
}
MUXERS: dict[Format, str] = {"ogg": "ogg", "webm": "webm", "mkv": "matroska"}
#: Track names, in the order a combined file holds them.
TRACKS = ("candidate-audio", "interviewer-audio", "candidate-video")
TIME_BASE = Fraction(1, opus.RATE)


class NoRecording(LookupError):
    """The interview (or the track asked for) has no uploaded segment to export."""


@dataclass(frozen=True)
class Segment:
    """One uploaded segment's file, and where on the interview's timeline it starts."""

    record: VideoSegmentRecord
    data: bytes


def track_name(record: VideoSegmentRecord) -> str:
    return f"{record.participant}-{record.kind}"


async def load(
    db: Database,
    storage: SegmentStorage,
    tenant_id: UUID,
    interview_id: UUID,
    tracks: tuple[str, ...] = TRACKS,
) -> dict[str, list[Segment]]:
    """The uploaded segments of ``tracks``, read from storage, by track in sequence order.
    Raises ``NoRecording`` if none has any, ``StorageError`` if storage cannot be read."""
    rows = await interviews.list_video_segments(db, tenant_id, interview_id)
    loaded: dict[str, list[Segment]] = {}
    for record in rows:
        name = track_name(record)
        if name in tracks and record.status == "uploaded" and record.storage_uri:
            data = await storage.fetch(record.storage_uri)
            loaded.setdefault(name, []).append(Segment(record, data))
    if not loaded:
        raise NoRecording(f"no uploaded segment of {', '.join(tracks)}")
    return {name: loaded[name] for name in tracks if name in loaded}


def format_of(tracks: dict[str, list[Segment]]) -> Format:
    """Ogg for one voice alone; otherwise (video, or more than one track) WebM, or Matroska
    when a video segment's codec is one whose segments are Matroska (``video_codecs``)."""
    if len(tracks) == 1 and next(iter(tracks)).endswith("-audio"):
        return "ogg"
    videos = {
        s.record.codec for segments in tracks.values() for s in segments if s.record.kind == "video"
    }
    codecs = (codec_where("name", name) for name in videos if name)
    return "mkv" if any(c is not None and c.container == "matroska" for c in codecs) else "webm"


def export(tracks: dict[str, list[Segment]], out: Path | io.BytesIO, fmt: Format) -> float:
    """Write ``tracks`` into ``out`` as ``fmt`` (``ogg``: one voice only); its duration in
    seconds. Blocking: run it in a thread."""
    if fmt == "ogg" and (len(tracks) != 1 or any(n.endswith("-video") for n in tracks)):
        raise ValueError("an Ogg export holds one voice")
    start = min(
        s.record.started_at for segments in tracks.values() for s in segments if s.record.started_at
    )
    # bit-exact: no random stream serials or UIDs, so the same segments always make the same
    # bytes, and a range request may continue a download of an earlier response
    with av.open(out, "w", format=MUXERS[fmt], options={"fflags": "+bitexact"}) as container:
        streams = {}
        for name, segments in tracks.items():
            with av.open(io.BytesIO(segments[0].data)) as first:
                stream = container.add_stream_from_template(first.streams[0])
            stream.metadata["title"] = name
            streams[name] = stream
        ends = []
        timelines = [_timeline(name, segments, start) for name, segments in tracks.items()]
        for pts, name, data, keyframe, length in heapq.merge(*timelines):
            packet = av.Packet(data)
            packet.pts = packet.dts = pts
            packet.time_base = TIME_BASE  # the muxer rescales to its own (Matroska: 1 ms)
            if keyframe is not None:
                packet.is_keyframe = keyframe
            packet.stream = streams[name]
            container.mux(packet)
            ends.append(pts + length)
    return max(ends, default=0) / opus.RATE


#: one packet on the export's timeline: (pts in 48 kHz samples from the start, track, its
#: bytes, its keyframe flag (video; None for audio), how long it lasts in samples)
Placed = tuple[int, str, bytes, bool | None, int]


def _timeline(name: str, segments: list[Segment], start: datetime) -> Iterator[Placed]:
    """Each packet of a track, placed: a segment at its ``started_at``, a voice's packets one
    after the other by their durations, a video's frames at their own timestamps."""
    position = 0
    for segment in segments:
        began = segment.record.started_at
        if began is not None:
            position = max(position, round((began - start).total_seconds() * opus.RATE))
        if segment.record.kind == "video":
            end = position
            for at, data, keyframe, length in frames(segment.data):
                yield position + at, name, data, keyframe, length
                end = position + at + length
            position = end
            continue
        for data in packets(segment.data):
            samples = opus.packet_samples(data)
            yield position, name, data, None, samples
            position += samples


def packets(data: bytes) -> Iterator[bytes]:
    """The audio packets of one Ogg Opus segment, as its file holds them (PyAV's demuxer)."""
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        assert isinstance(stream, AudioStream)
        for packet in container.demux(stream):
            if packet.size:
                yield bytes(packet)


def frames(data: bytes) -> Iterator[tuple[int, bytes, bool, int]]:
    """(pts, bytes, keyframe, duration) of each frame of one video segment (WebM or Matroska),
    times in 48 kHz samples from the segment's start (the file keeps milliseconds: exact)."""
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.video[0]
        scale = stream.time_base * opus.RATE if stream.time_base else Fraction(opus.RATE, 1000)
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                length = round((packet.duration or 0) * scale)
                yield round(packet.pts * scale), bytes(packet), packet.is_keyframe, length


async def write(
    db: Database,
    storage: SegmentStorage,
    tenant_id: UUID,
    interview_id: UUID,
    out: Path | Callable[[Format], Path],
    tracks: tuple[str, ...] = TRACKS,
) -> Exported:
    """Export ``tracks`` of the interview into the file ``out`` (or the one ``out`` names for
    the format, ``format_of``). ``NoRecording``, ``StorageError``."""
    loaded = await load(db, storage, tenant_id, interview_id, tracks)
    fmt = format_of(loaded)
    path = out if isinstance(out, Path) else out(fmt)
    seconds = await asyncio.to_thread(export, loaded, path, fmt)
    return Exported(path, fmt, seconds)


class Exported(NamedTuple):
    """Where an export went, in which format, and how long it lasts (seconds)."""

    path: Path
    format: Format
    seconds: float
