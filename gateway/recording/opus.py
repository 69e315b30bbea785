"""What a recorder needs to know about an Opus packet, read from its TOC byte (RFC 6716 §3.1).

Nothing here decodes audio: a packet's duration is in its first one or two bytes, and a span
the source never sent (packet loss, a candidate away) is filled with packets of zero-length
frames, which a decoder conceals (RFC 6716 §3.2.1; RFC 7845 §4.1 asks a recorder of a lossy
real-time stream to do exactly this rather than let granule positions jump).
"""

from __future__ import annotations

RATE = 48000
#: Samples (48 kHz) per frame for each of the 32 TOC configurations: SILK 10/20/40/60 ms,
#: hybrid 10/20 ms, CELT 2.5/5/10/20 ms.
_FRAME_SAMPLES: tuple[int, ...] = (
    *([480, 960, 1920, 2880] * 3),
    *([480, 960] * 2),
    *([120, 240, 480, 960] * 4),
)
#: The CELT fullband stereo configurations the filler uses: 20 ms frames and 2.5 ms frames.
_FILL_20MS = (31 << 3) | 0b100
_FILL_2_5MS = (28 << 3) | 0b100
#: At most 120 ms in one packet (RFC 6716 §3.2.5): six 20 ms frames.
_FRAMES_PER_FILL = 6
#: The filler's resolution: one 2.5 ms frame.
FILL_QUANTUM = 120


class MalformedPacket(ValueError):
    """Not an Opus packet a decoder would accept (empty, or a code 3 packet without a count)."""


def packet_samples(packet: bytes) -> int:
    """The packet's duration in 48 kHz samples, from its TOC byte (and frame count byte)."""
    if not packet:
        raise MalformedPacket("empty packet")
    toc = packet[0]
    code = toc & 0b11
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(packet) < 2 or not packet[1] & 0x3F:
        raise MalformedPacket("code 3 packet without a frame count")
    else:
        frames = packet[1] & 0x3F
    samples = frames * _FRAME_SAMPLES[toc >> 3]
    if samples > 5760:
        raise MalformedPacket(f"{samples} samples is more than 120 ms")
    return samples


def concealment(samples: int) -> list[bytes]:
    """Packets of zero-length frames lasting ``samples`` rounded down to 2.5 ms: what a
    recorder writes for a span the source did not send, so that the timeline keeps its place.

    Each packet is one or two bytes: 20 ms frames six to a packet, then the rest in 2.5 ms
    frames (fewer than eight, so one more packet at most).
    """
    packets = []
    whole, rest = divmod(samples, 960)
    while whole:
        frames = min(whole, _FRAMES_PER_FILL)
        packets.append(_zero_frames(_FILL_20MS, frames))
        whole -= frames
    if rest >= FILL_QUANTUM:
        packets.append(_zero_frames(_FILL_2_5MS, rest // FILL_QUANTUM))
    return packets


def _zero_frames(toc: int, frames: int) -> bytes:
    # code 0: one frame, the TOC byte alone; code 3 (CBR, no padding): TOC and the frame count.
    return bytes([toc]) if frames == 1 else bytes([toc | 0b11, frames])
