"""The one module that reaches into aiortc's internals, and why each reach is worth it.

Supported aiortc versions: 1.15 and 1.16 (``SUPPORTED``); ``tests/media/test_aiortc_internals.py``
fails loudly if a name used here moves, so an aiortc upgrade cannot silently undo a fix.

- ``aiortc.rtp.compute_audio_level_dbov``: every sent audio frame's RFC 6465 level is computed
  in a pure-Python per-sample loop (~0.8 ms of a 20 ms frame, a third of a relayed session's
  CPU). The numpy version below returns the identical value in ~5 µs.
- ``RTCRtpReceiver.__jitter_buffer``: aiortc's receiver always decodes, and its audio jitter
  buffer holds ~4 frames (80 ms) before releasing one. A relay that forwards Opus needs neither:
  ``tap_receiver`` puts a ``PacketTap`` in the buffer's place, which hands every packet (after
  SRTP, statistics for RTCP receiver reports, and RTX unwrapping, which all stay aiortc's) to a
  callback and releases nothing to the decoder. The far end keeps its own jitter buffer.
- The same attribute for video: ``tap_frames`` wraps the real buffer (``FrameTap``), so aiortc
  still assembles each frame from its depacketized RTP payloads (and still asks for a keyframe,
  by PLI, when packets were lost), but the frame goes to a callback, not to the decoder: the
  candidate's VP8 is recorded as it came. ``request_keyframe`` sends that PLI
  (``RTCRtpReceiver._send_rtcp_pli``) when a recording needs a keyframe to start a segment.
- ``RTCRtpTransceiver._codecs``: the codecs negotiated for a transceiver (first = the one that is
  sent), which aiortc does not expose; the relay forwards only when both legs agree on Opus.

The sending half needs no reach: ``RTCRtpSender`` packetizes pre-encoded ``av.Packet``s as they
come (``MediaPlayer(decode=False)`` relies on it), stamping its own SSRC and sequence numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import aiortc
import aiortc.rtp
import numpy as np
from aiortc import RTCRtpReceiver, RTCRtpTransceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from av import AudioFrame

SUPPORTED = ("1.15", "1.16")

_MAX_SAMPLE = 32767.0
#: aiortc's own level function, kept to check the replacement against.
STOCK_AUDIO_LEVEL = aiortc.rtp.compute_audio_level_dbov
#: The name-mangled attribute of ``RTCRtpReceiver`` that holds its jitter buffer.
JITTER_BUFFER_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"


def compute_audio_level_dbov(frame: AudioFrame) -> int:
    """RFC 6465 Appendix A audio level, exactly as aiortc computes it (same buffer, same scale)."""
    samples = np.frombuffer(memoryview(frame.planes[0]), dtype=np.int16).astype(np.float64)
    energy = float(np.dot(samples, samples))
    rms = math.sqrt(energy / (frame.samples * _MAX_SAMPLE * _MAX_SAMPLE))
    if rms <= 0:
        return -127
    return round(min(max(20 * math.log10(rms), -127), 0))


def install() -> None:
    """Apply the replacements (idempotent): every process that runs aiortc peers calls this."""
    aiortc.rtp.compute_audio_level_dbov = compute_audio_level_dbov  # type: ignore[assignment]


def version_supported(version: str = aiortc.__version__) -> bool:
    return version.startswith(SUPPORTED)


class PacketTap:
    """Stands in for a receiver's jitter buffer: every packet goes to ``on_packet``, none is kept.

    ``RTCRtpReceiver._handle_rtp_packet`` calls ``add(packet)`` and decodes the frame it returns;
    returning none keeps the decoder thread idle. ``original`` is the real buffer, put back by
    ``restore_decoder``.
    """

    def __init__(self, on_packet: Callable[[RtpPacket], None], original: object) -> None:
        self.on_packet = on_packet
        self.original = original

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.on_packet(packet)
        return False, None


def tap_receiver(
    receiver: RTCRtpReceiver, on_packet: Callable[[RtpPacket], None]
) -> Callable[[], None]:
    """Route ``receiver``'s RTP packets to ``on_packet`` instead of its decoder.

    Returns the detach function: from then on the receiver's packets go nowhere, not back to
    its decoder (a stopped route, or one moved to a reconnected peer's new receiver: decoding
    what no one reads would cost CPU and fill the track's queue); it does nothing if another
    tap has since taken the receiver's packets. ``restore_decoder`` gives the decoder back.
    """
    current = getattr(receiver, JITTER_BUFFER_ATTRIBUTE)
    original = current.original if isinstance(current, PacketTap) else current
    tap = PacketTap(on_packet, original)
    setattr(receiver, JITTER_BUFFER_ATTRIBUTE, tap)

    def detach() -> None:
        tap.on_packet = _discard

    return detach


def restore_decoder(receiver: RTCRtpReceiver) -> None:
    """Give ``receiver`` back its real jitter buffer (and decoder), whatever tap is in place:
    for a route that must decode what an earlier, forwarding route tapped."""
    current = getattr(receiver, JITTER_BUFFER_ATTRIBUTE)
    if isinstance(current, PacketTap):
        setattr(receiver, JITTER_BUFFER_ATTRIBUTE, current.original)


def _discard(packet: RtpPacket) -> None:
    pass


class FrameTap:
    """Wraps a video receiver's jitter buffer: frames it completes go to ``on_frame``, none to
    the decoder; its PLIs (packets lost) still go out. ``ssrc``: the sender's, once heard."""

    def __init__(self, on_frame: Callable[[JitterFrame], None], original: object) -> None:
        self.on_frame = on_frame
        self.original = original
        self.ssrc: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.ssrc = packet.ssrc
        pli, frame = self.original.add(packet)  # type: ignore[attr-defined]
        if frame is not None:
            self.on_frame(frame)
        return pli, None


def tap_frames(
    receiver: RTCRtpReceiver, on_frame: Callable[[JitterFrame], None]
) -> Callable[[], None]:
    """Route the frames ``receiver``'s jitter buffer assembles (depacketized, RTP timestamps)
    to ``on_frame`` instead of its decoder; returns the detach function (frames go nowhere)."""
    current = getattr(receiver, JITTER_BUFFER_ATTRIBUTE)
    original = current.original if isinstance(current, (PacketTap, FrameTap)) else current
    tap = FrameTap(on_frame, original)
    setattr(receiver, JITTER_BUFFER_ATTRIBUTE, tap)

    def detach() -> None:
        tap.on_frame = _discard_frame

    return detach


def _discard_frame(frame: JitterFrame) -> None:
    pass


async def request_keyframe(receiver: RTCRtpReceiver) -> None:
    """Ask the sender of a tapped video receiver for a keyframe (RTCP PLI); nothing before
    its first packet (no SSRC to name yet)."""
    tap = getattr(receiver, JITTER_BUFFER_ATTRIBUTE)
    if isinstance(tap, FrameTap) and tap.ssrc is not None:
        await receiver._send_rtcp_pli(tap.ssrc)


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The transceiver's negotiated codecs, preferred first (empty before negotiation)."""
    return list(transceiver._codecs)
