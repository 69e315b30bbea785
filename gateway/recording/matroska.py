"""One video segment file of frames as they came: FFmpeg's Matroska (or WebM) muxer through
PyAV, no codec opened.

PyAV muxes pre-encoded packets into a stream made from a template: a small file built in
memory around the segment's first (key) frame (``VideoCodec.template``: a one-frame IVF file
for VP8, the SPS and PPS for H.264) from which FFmpeg's demuxer reads the codec and picture
size, so neither an encoder nor a decoder is ever opened. Each frame is written with its pts
(90 kHz, from the segment's start; the muxer keeps milliseconds) and its keyframe flag;
nothing else about it changes.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
from av.container import InputContainer
from av.packet import Packet
from av.video.stream import VideoStream

from gateway.recording.video_codecs import VideoCodec, codec_where

TIME_BASE = Fraction(1, 90000)


class VideoWriter:
    """One video track written to ``sink`` (seekable: the muxer writes sizes and cues at the
    end) as ``container``, with the codec parameters of ``template``'s stream."""

    def __init__(self, sink: BinaryIO, container: str, template: VideoStream) -> None:
        self._container = av.open(sink, "w", format=container, options={"fflags": "+bitexact"})
        self._stream = self._container.add_stream_from_template(template)
        self._stream.time_base = TIME_BASE
        self.frames = 0

    @classmethod
    def beginning_with(cls, sink: BinaryIO, codec: VideoCodec, keyframe: bytes) -> VideoWriter:
        """A segment of ``codec`` that ``keyframe`` begins. Raises ``NotAKeyframe``."""
        template = codec.template(keyframe)
        with av.open(io.BytesIO(template.data), "r", format=template.demuxer) as probe:
            writer = cls(sink, codec.container, probe.streams.video[0])
        context = writer._stream.codec_context
        context.width, context.height = template.width, template.height
        return writer

    def write(self, data: bytes, pts: int, keyframe: bool) -> None:
        packet = Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        packet.is_keyframe = keyframe
        packet.stream = self._stream
        self._container.mux(packet)
        self.frames += 1

    def finish(self) -> None:
        """Write the trailer (sizes, cues); the sink stays open, for its fsync."""
        self._container.close()


def salvage(path: Path) -> tuple[int, int]:
    """Rewrite a segment file a crash left unfinished with the frames that reached the disk
    (FFmpeg's muxer writes whole clusters), remuxed with the file's own codec parameters and
    fsync'd; (duration in ms, bytes) of what is left, (0, 0) if no frame survived (the file is
    left as it was). Its container is the one its name's extension says. Blocking."""
    codec = codec_where("extension", path.suffix.removeprefix("."))
    if codec is None:
        raise ValueError(f"{path.name} is not a video segment")
    try:
        torn = av.open(str(path), "r", format=codec.container)
    except av.FFmpegError:
        return 0, 0  # not even the header reached the disk
    with torn:
        if not torn.streams.video:
            return 0, 0  # torn inside its track's header
        stream = torn.streams.video[0]
        kept = _whole_frames(torn, stream)
        if not kept or not kept[0][2]:
            return 0, 0
        rewritten = path.with_name(path.name + ".salvaged")
        with rewritten.open("w+b") as sink:
            writer = VideoWriter(sink, codec.container, stream)
            for data, pts, keyframe in kept:
                writer.write(data, pts, keyframe)
            writer.finish()
            size = sink.seek(0, io.SEEK_END)
            sink.flush()
            os.fsync(sink.fileno())
    rewritten.replace(path)
    return round(kept[-1][1] * 1000 / 90000), size


def _whole_frames(torn: InputContainer, stream: VideoStream) -> list[tuple[bytes, int, bool]]:
    """(bytes, pts at 90 kHz, keyframe) of each frame read before the tear."""
    kept: list[tuple[bytes, int, bool]] = []
    scale = (stream.time_base or Fraction(1, 1000)) / TIME_BASE
    try:
        for packet in torn.demux(stream):
            if packet.size and packet.pts is not None:
                kept.append((bytes(packet), round(packet.pts * scale), packet.is_keyframe))
    except av.FFmpegError:
        pass  # what was read before the tear is kept
    return kept
