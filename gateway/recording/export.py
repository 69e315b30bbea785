"""An interview's recording as one file: its segments' packets remuxed, never decoded.

A track (``candidate-audio``, ``interviewer-audio``) is its uploaded segments in sequence,
each segment placed at its ``started_at`` on the interview's timeline (a segment a crash lost
leaves a gap rather than pulling the rest forward). ``export`` writes one track as Ogg Opus,
or both voices as separate tracks of one WebM file (Matroska): each packet is the very bytes
the segment holds, handed to FFmpeg's muxer through PyAV with its timestamp and nothing else,
so nothing is decoded or re-encoded.
"""

from __future__ import annotations

import asyncio
import heapq
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Literal
from uuid import UUID

import av
from av.audio.stream import AudioStream

from gateway.recording import opus
from gateway.recording.storage import SegmentStorage
from storage import interviews
from storage.database import Database
from storage.interviews import VideoSegmentRecord

Format = Literal["ogg", "webm"]
#: What each format is served as.
CONTENT_TYPES: dict[Format, str] = {"ogg": "audio/ogg", "webm": "video/webm"}
#: Track names, in the order a combined file holds them.
TRACKS = ("candidate-audio", "interviewer-audio")
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


def export(tracks: dict[str, list[Segment]], out: Path | io.BytesIO, fmt: Format) -> float:
    """Write ``tracks`` into ``out`` as ``fmt`` (``ogg``: one track only); its duration in
    seconds. Blocking: run it in a thread."""
    if fmt == "ogg" and len(tracks) != 1:
        raise ValueError("an Ogg export holds one track")
    start = min(
        s.record.started_at for segments in tracks.values() for s in segments if s.record.started_at
    )
    # bit-exact: no random stream serials or UIDs, so the same segments always make the same
    # bytes, and a range request may continue a download of an earlier response
    with av.open(out, "w", format=fmt, options={"fflags": "+bitexact"}) as container:
        streams = {}
        for name, segments in tracks.items():
            with av.open(io.BytesIO(segments[0].data)) as first:
                stream = container.add_stream_from_template(first.streams.audio[0])
            stream.metadata["title"] = name
            streams[name] = stream
        ends = []
        timelines = [_timeline(name, segments, start) for name, segments in tracks.items()]
        for pts, name, data in heapq.merge(*timelines):
            packet = av.Packet(data)
            packet.pts = packet.dts = pts
            packet.time_base = TIME_BASE  # the muxer rescales to its own (WebM: 1 ms)
            packet.stream = streams[name]
            container.mux(packet)
            ends.append(pts + opus.packet_samples(data))
    return max(ends, default=0) / opus.RATE


def _timeline(
    name: str, segments: list[Segment], start: datetime
) -> Iterator[tuple[int, str, bytes]]:
    """(pts in 48 kHz samples from ``start``, track, packet) of each packet of a track."""
    position = 0
    for segment in segments:
        began = segment.record.started_at
        if began is not None:
            position = max(position, round((began - start).total_seconds() * opus.RATE))
        for data in packets(segment.data):
            yield position, name, data
            position += opus.packet_samples(data)


def packets(data: bytes) -> Iterator[bytes]:
    """The audio packets of one Ogg Opus segment, as its file holds them (PyAV's demuxer)."""
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        assert isinstance(stream, AudioStream)
        for packet in container.demux(stream):
            if packet.size:
                yield bytes(packet)


async def write(
    db: Database,
    storage: SegmentStorage,
    tenant_id: UUID,
    interview_id: UUID,
    out: Path,
    tracks: tuple[str, ...] = TRACKS,
) -> float:
    """Export ``tracks`` of the interview into the file ``out`` (Ogg for one track, WebM for
    more); its duration in seconds. ``NoRecording``, ``StorageError``."""
    loaded = await load(db, storage, tenant_id, interview_id, tracks)
    fmt: Format = "ogg" if len(tracks) == 1 else "webm"
    return await asyncio.to_thread(export, loaded, out, fmt)
