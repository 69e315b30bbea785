"""What the recorder knows of each video codec it records as it came: VP8 and H.264.

A recorded video frame is never decoded, so all the recorder needs of a codec is: which frames
are keyframes (a segment begins with one, and says so to players), a template from which
FFmpeg's muxer learns the codec's parameters without opening a codec (``template``), and the
container a segment of it is written in. VP8 goes into WebM; H.264 is not a WebM codec, so it
goes into Matroska (WebM is Matroska restricted to VP8/VP9/AV1 and Opus/Vorbis), whose muxer
stores the parameter sets as the track's ``avcC`` and each access unit with length prefixes
instead of start codes: the NAL units themselves, as the candidate's encoder made them.

aiortc's depacketizer (RFC 6184: single NAL unit, STAP-A and FU-A packets) hands an H.264
frame on as an Annex B access unit, each NAL unit after a start code; browsers send the SPS
and PPS with every IDR picture, and a keyframe that comes without them begins its segment with
the last ones that came.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

#: H.264 NAL unit types (ITU-T H.264 table 7-1) the recorder looks for
_IDR, _SPS, _PPS = 5, 7, 8
_START = b"\x00\x00\x01"


class NotAKeyframe(ValueError):
    """A segment cannot begin with this frame: not a keyframe, or its codec parameters are
    not in it (a VP8 key frame's header, an H.264 IDR's parameter sets)."""


@dataclass(frozen=True)
class Template:
    """A small file (``data``, read by FFmpeg's ``demuxer``) whose one stream carries the
    codec and its parameters, for ``add_stream_from_template``, and the picture size, which
    FFmpeg would only learn from it by decoding."""

    data: bytes
    demuxer: str
    width: int
    height: int


class VideoCodec(ABC):
    """One codec's facts for recording: its row name, its container, its keyframes."""

    #: the ``video_segments.codec`` of its segments
    name: str
    #: its SDP/RTP MIME type, lower-case (``video/vp8``)
    mime_type: str
    #: FFmpeg's muxer for its segments and the file name extension that goes with it
    container: str
    extension: str

    @abstractmethod
    def is_keyframe(self, frame: bytes) -> bool:
        """Whether a decoder can begin at ``frame`` (the flag a container's block carries)."""

    @abstractmethod
    def template(self, keyframe: bytes) -> Template:
        """What a segment that ``keyframe`` begins needs to know of its stream, read without
        a decoder. Raises ``NotAKeyframe``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Vp8(VideoCodec):
    """VP8 (RFC 6386): a key frame's tag bit and its header's picture size (an IVF template)."""

    name = "vp8"
    mime_type = "video/vp8"
    container = "webm"
    extension = "webm"

    def is_keyframe(self, frame: bytes) -> bool:
        # a frame tag's first bit is 0 for a key frame (RFC 6386 section 9.1)
        return bool(frame) and not frame[0] & 1

    def template(self, keyframe: bytes) -> Template:
        width, height = vp8_size(keyframe)
        header = struct.pack(
            "<4sHH4sHHIIII", b"DKIF", 0, 32, b"VP80", width, height, 90000, 1, 1, 0
        )
        frame = struct.pack("<IQ", len(keyframe), 0) + keyframe
        return Template(header + frame, "ivf", width, height)


def vp8_size(keyframe: bytes) -> tuple[int, int]:
    """(width, height) from a VP8 key frame's header (RFC 6386 section 9.1)."""
    if len(keyframe) < 10 or keyframe[0] & 1 or keyframe[3:6] != b"\x9d\x01\x2a":
        raise NotAKeyframe("not a VP8 key frame")
    width, height = struct.unpack_from("<HH", keyframe, 6)
    return width & 0x3FFF, height & 0x3FFF


class H264(VideoCodec):
    """H.264 (RFC 6184): an access unit holding an IDR slice is a keyframe; its SPS and PPS,
    alone in an Annex B stream, are the template (no slice in it, so nothing to decode), and
    the SPS says the picture size. One instance per track: it remembers the last parameter
    sets, for an IDR that comes without them."""

    name = "h264"
    mime_type = "video/h264"
    container = "matroska"
    extension = "mkv"

    def __init__(self) -> None:
        #: the template of the last keyframe that carried parameter sets
        self._template: Template | None = None

    def is_keyframe(self, frame: bytes) -> bool:
        return any(unit[0] & 0x1F == _IDR for unit in nal_units(frame))

    def template(self, keyframe: bytes) -> Template:
        units = list(nal_units(keyframe))
        if not any(unit[0] & 0x1F == _IDR for unit in units):
            raise NotAKeyframe("no IDR slice in the H.264 access unit")
        sps = [unit for unit in units if unit[0] & 0x1F == _SPS]
        pps = [unit for unit in units if unit[0] & 0x1F == _PPS]
        if sps and pps:
            width, height = h264_size(sps[0])
            sets = b"".join(b"\x00" + _START + unit for unit in sps + pps)
            self._template = Template(sets, "h264", width, height)
        if self._template is None:
            raise NotAKeyframe("an H.264 IDR without its SPS and PPS, and none came before")
        return self._template


def h264_size(sps: bytes) -> tuple[int, int]:
    """(width, height) of the pictures a sequence parameter set NAL unit describes, cropped
    (ITU-T H.264 section 7.3.2.1.1). Raises ``NotAKeyframe`` for one that cannot be read."""
    try:
        bits = _Bits(sps[1:])
        profile = bits.read(8)
        bits.read(16)  # constraint flags, level
        bits.ue()  # seq_parameter_set_id
        chroma_format = 1
        separate_planes = 0
        if profile in _HIGH_PROFILES:
            chroma_format = bits.ue()
            if chroma_format == 3:
                separate_planes = bits.read(1)
            bits.ue(), bits.ue()  # bit depths
            bits.read(1)  # qpprime_y_zero_transform_bypass_flag
            if bits.read(1):  # seq_scaling_matrix_present_flag
                for index in range(8 if chroma_format != 3 else 12):
                    if bits.read(1):
                        bits.skip_scaling_list(16 if index < 6 else 64)
        bits.ue()  # log2_max_frame_num_minus4
        poc_type = bits.ue()
        if poc_type == 0:
            bits.ue()
        elif poc_type == 1:
            bits.read(1)
            bits.se(), bits.se()
            for _ in range(bits.ue()):
                bits.se()
        bits.ue(), bits.read(1)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
        width_mbs, height_units = bits.ue() + 1, bits.ue() + 1
        frame_mbs_only = bits.read(1)
        if not frame_mbs_only:
            bits.read(1)  # mb_adaptive_frame_field_flag
        bits.read(1)  # direct_8x8_inference_flag
        crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.read(1) else (0, 0, 0, 0)
    except IndexError:
        raise NotAKeyframe("an H.264 SPS cut short") from None
    chroma = 0 if separate_planes else chroma_format
    # crop offsets count chroma samples (4:2:0 halves both ways, 4:2:2 across), and field
    # pairs where pictures may be fields
    crop_x = 2 if chroma in (1, 2) else 1
    crop_y = (2 - frame_mbs_only) * (2 if chroma == 1 else 1)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (crop[2] + crop[3])
    if not (0 < width <= 16384 and 0 < height <= 16384):
        raise NotAKeyframe(f"an H.264 SPS of {width}x{height} pictures")
    return width, height


#: profile_idc values whose SPS carries chroma format, bit depths and scaling matrices
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


class _Bits:
    """An RBSP read bit by bit, most significant first (its emulation prevention bytes gone:
    ``00 00 03`` is ``00 00``). Reading past its end raises ``IndexError``."""

    def __init__(self, payload: bytes) -> None:
        rbsp = payload.replace(b"\x00\x00\x03", b"\x00\x00")
        self._value = int.from_bytes(rbsp, "big")
        self._left = len(rbsp) * 8

    def read(self, count: int) -> int:
        if count > self._left:
            raise IndexError("read past the end of the RBSP")
        self._left -= count
        return (self._value >> self._left) & ((1 << count) - 1)

    def ue(self) -> int:
        """An unsigned Exp-Golomb code (section 9.1)."""
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros > 31:
                raise IndexError("an Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.read(zeros)

    def se(self) -> int:
        """A signed Exp-Golomb code (section 9.1.1)."""
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)

    def skip_scaling_list(self, size: int) -> None:
        """A scaling_list() of ``size`` entries (section 7.3.2.1.1.1), read and dropped."""
        last = following = 8
        for _ in range(size):
            if following:
                following = (last + self.se() + 256) % 256
            last = following or last


def nal_units(access_unit: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex B access unit (start codes of 3 or 4 bytes; emulation
    prevention keeps a start code from appearing inside a unit)."""
    start = access_unit.find(_START)
    while start != -1:
        begin = start + 3
        start = access_unit.find(_START, begin)
        end = len(access_unit) if start == -1 else start
        # a 4-byte start code's leading zero, and any trailing zeros, belong to no unit
        unit = access_unit[begin:end].rstrip(b"\x00")
        if unit:
            yield unit


_CODECS: tuple[type[VideoCodec], ...] = (Vp8, H264)


def codec_where(
    attribute: Literal["name", "mime_type", "extension"], value: str
) -> VideoCodec | None:
    """A new codec object whose ``attribute`` is ``value`` (in any case): the codec a leg
    negotiated, a row names or a spooled file's extension says; None for one not recorded."""
    for codec in _CODECS:
        if getattr(codec, attribute) == value.lower():
            return codec()
    return None
