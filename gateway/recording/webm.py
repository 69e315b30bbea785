"""One WebM file of VP8 frames as they came: FFmpeg's muxer through PyAV, no codec opened.

PyAV muxes pre-encoded packets into a stream made from a template; the template here is a
one-frame IVF file built in memory around the segment's first (key) frame, whose header
FFmpeg's IVF demuxer reads the codec and picture size from, so neither an encoder nor a
decoder is ever opened. Each frame is written with its pts (90 kHz, from the segment's start;
the muxer keeps milliseconds) and its keyframe flag; nothing else about it changes.
"""

from __future__ import annotations

import io
import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
from av.packet import Packet

TIME_BASE = Fraction(1, 90000)


class NotAKeyframe(ValueError):
    """A VP8 segment must begin with a key frame (its picture size is read from it)."""


def vp8_size(keyframe: bytes) -> tuple[int, int]:
    """(width, height) from a VP8 key frame's header (RFC 6386 section 9.1)."""
    if len(keyframe) < 10 or keyframe[0] & 1 or keyframe[3:6] != b"\x9d\x01\x2a":
        raise NotAKeyframe("not a VP8 key frame")
    width, height = struct.unpack_from("<HH", keyframe, 6)
    return width & 0x3FFF, height & 0x3FFF


def _ivf(keyframe: bytes) -> bytes:
    width, height = vp8_size(keyframe)
    header = struct.pack("<4sHH4sHHIIII", b"DKIF", 0, 32, b"VP80", width, height, 90000, 1, 1, 0)
    return header + struct.pack("<IQ", len(keyframe), 0) + keyframe


class WebmVp8Writer:
    """One VP8 track written to ``sink`` (seekable: the muxer writes sizes and cues at the end)."""

    def __init__(self, sink: BinaryIO, keyframe: bytes) -> None:
        with av.open(io.BytesIO(_ivf(keyframe)), "r", format="ivf") as template:
            self._container = av.open(sink, "w", format="webm", options={"fflags": "+bitexact"})
            self._stream = self._container.add_stream_from_template(template.streams.video[0])
        self._stream.time_base = TIME_BASE
        self.frames = 0
        #: pts of the last frame written (90 kHz from the segment's start)
        self.last_pts = 0

    def write(self, data: bytes, pts: int, keyframe: bool) -> None:
        packet = Packet(data)
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        packet.is_keyframe = keyframe
        packet.stream = self._stream
        self._container.mux(packet)
        self.frames += 1
        self.last_pts = pts

    def finish(self) -> None:
        """Write the trailer (sizes, cues); the sink stays open, for its fsync."""
        self._container.close()


def salvage(path: Path) -> tuple[int, int]:
    """Rewrite a segment file a crash left unfinished with the frames that reached the disk
    (FFmpeg's muxer writes whole clusters), fsync'd; (duration in ms, bytes) of what is left,
    (0, 0) if no frame survived (the file is left as it was). Blocking."""
    kept: list[tuple[bytes, int, bool]] = []
    try:
        with av.open(str(path), "r", format="webm") as torn:
            stream = torn.streams.video[0]
            scale = (stream.time_base or Fraction(1, 1000)) / TIME_BASE
            for packet in torn.demux(stream):
                if packet.size and packet.pts is not None:
                    kept.append((bytes(packet), round(packet.pts * scale), packet.is_keyframe))
    except (av.FFmpegError, IndexError):
        pass  # what was read before the tear is kept
    if not kept or not kept[0][2]:
        return 0, 0
    rewritten = path.with_name(path.name + ".salvaged")
    with rewritten.open("w+b") as sink:
        writer = WebmVp8Writer(sink, kept[0][0])
        for data, pts, keyframe in kept:
            writer.write(data, pts, keyframe)
        writer.finish()
        size = sink.seek(0, io.SEEK_END)
        sink.flush()
        os.fsync(sink.fileno())
    rewritten.replace(path)
    return round(kept[-1][1] * 1000 / 90000), size
