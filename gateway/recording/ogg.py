"""Opus packets into an Ogg Opus file as they arrive (RFC 7845 on RFC 3533), nothing decoded.

The file starts with the identification header (``OpusHead``) and the comment header
(``OpusTags``), each on a page of its own; then audio pages of whole packets, about one second
each, whose granule positions count the 48 kHz samples of every packet so far (the caller says
how many each packet holds: see ``opus.packet_samples``). Pre-skip is 0: the packets are cut
from a live stream whose encoder priming, if any, lay before the recording, and a pre-skip
would shorten every segment of a recording split into files. A page goes to the file as soon
as it is full, so a file cut short by a crash still plays up to its last whole page; ``finish``
writes the last one with the end-of-stream flag.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

from gateway.recording.opus import RATE

#: A page is written once it holds this many samples (one second): few pages, little overhead.
PAGE_SAMPLES = RATE
_MAX_LACING = 255
_BOS, _EOS = 0x02, 0x04
_PAGE_HEADER = struct.Struct("<4sBBqIIIB")
_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def ogg_crc(data: bytes) -> int:
    """Ogg's page checksum: CRC-32 with polynomial 0x04C11DB7, not reflected, initial value 0,
    no final XOR (RFC 3533 §6).

    zlib's CRC-32 is the same polynomial reflected, with all-ones initial value and final XOR:
    fed bit-reversed bytes, started from a register of 0 and un-XORed, its result bit-reversed
    is Ogg's, computed in C rather than a Python loop over every byte.
    """
    reflected = zlib.crc32(data.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def opus_head(channels: int, pre_skip: int = 0) -> bytes:
    """The identification header (RFC 7845 §5.1): version 1, channel mapping family 0."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, RATE, 0, 0)


def opus_tags(vendor: str) -> bytes:
    """The comment header (RFC 7845 §5.2): the vendor string and no user comments."""
    encoded = vendor.encode()
    return b"OpusTags" + struct.pack("<I", len(encoded)) + encoded + struct.pack("<I", 0)


def _lacing(size: int) -> bytes:
    return b"\xff" * (size // 255) + bytes([size % 255])


class OggOpusWriter:
    """One logical Ogg Opus stream written to ``sink``, packet by packet."""

    def __init__(
        self, sink: BinaryIO, serial: int, *, channels: int = 2, vendor: str = "interview-gateway"
    ) -> None:
        self._sink = sink
        self._serial = serial
        self._sequence = 0
        self.granule = 0
        self.bytes_written = 0
        self._lacing = bytearray()
        self._body = bytearray()
        self._page_samples = 0
        self._write_page(_BOS, 0, [opus_head(channels)])
        self._write_page(0, 0, [opus_tags(vendor)])

    def write(self, packet: bytes, samples: int) -> None:
        """Append one packet lasting ``samples`` (48 kHz); a full page goes out first."""
        lacing = _lacing(len(packet))
        if self._page_samples >= PAGE_SAMPLES or len(self._lacing) + len(lacing) > _MAX_LACING:
            self._flush(0)
        self._lacing += lacing
        self._body += packet
        self._page_samples += samples
        self.granule += samples

    def finish(self) -> None:
        """Write the last page, flagged end of stream; the writer takes no more packets."""
        self._flush(_EOS)

    def _flush(self, flags: int) -> None:
        if not self._lacing and not flags:
            return
        self._write_raw(flags, self.granule, bytes(self._lacing), bytes(self._body))
        self._lacing.clear()
        self._body.clear()
        self._page_samples = 0

    def _write_page(self, flags: int, granule: int, packets: list[bytes]) -> None:
        lacing = b"".join(_lacing(len(p)) for p in packets)
        self._write_raw(flags, granule, lacing, b"".join(packets))

    def _write_raw(self, flags: int, granule: int, lacing: bytes, body: bytes) -> None:
        header = _PAGE_HEADER.pack(
            b"OggS", 0, flags, granule, self._serial, self._sequence, 0, len(lacing)
        )
        page = bytearray(header + lacing + body)
        struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
        self._sink.write(page)
        self._sequence += 1
        self.bytes_written += len(page)


def whole_pages(data: bytes) -> tuple[int, int]:
    """How much of ``data`` is whole pages (each complete and its checksum right, from the
    start), and the last whole page's granule position: what a file cut short by a crash
    still holds. A granule of 0 means no audio page survived, only the headers."""
    offset = granule = 0
    while len(data) - offset >= _PAGE_HEADER.size:
        magic, _, _, page_granule, _, _, crc, count = _PAGE_HEADER.unpack_from(data, offset)
        body_at = offset + _PAGE_HEADER.size + count
        end = body_at + sum(data[offset + _PAGE_HEADER.size : body_at])
        if magic != b"OggS" or body_at > len(data) or end > len(data):
            break
        page = bytearray(data[offset:end])
        page[22:26] = bytes(4)
        if ogg_crc(bytes(page)) != crc:
            break
        offset, granule = end, page_granule
    return offset, granule
