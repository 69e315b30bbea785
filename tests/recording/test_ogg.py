"""Opus packets written into Ogg as they are, read back by FFmpeg (through PyAV)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import av
import numpy as np
import pytest

from gateway.recording import opus
from gateway.recording.ogg import OggOpusWriter, ogg_crc, whole_pages
from gateway.recording.segments import salvage
from gateway.sim.opus_peers import encode_opus
from gateway.sim.speech import synthesize


def bitwise_ogg_crc(data: bytes) -> int:
    """RFC 3533's checksum, one bit at a time: the definition, to check the fast one by."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def test_the_page_checksum_is_rfc_3533s() -> None:
    rng = random.Random(7)
    for size in (0, 1, 27, 300, 4096):
        data = rng.randbytes(size)
        assert ogg_crc(data) == bitwise_ogg_crc(data)


@pytest.fixture(scope="module")
def payloads() -> list[bytes]:
    return encode_opus(synthesize("one two three four five six seven eight", seed=1))


def demuxed(path: Path) -> list[tuple[int, int, bytes]]:
    """(pts, duration, bytes) of every packet FFmpeg finds in the file."""
    with av.open(str(path)) as container:
        return [
            (p.pts, p.duration, bytes(p))
            for p in container.demux(audio=0)
            if p.size and p.pts is not None
        ]


def decoded_samples(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(frame.samples for frame in container.decode(audio=0))


def test_packets_cross_unchanged_and_a_gap_is_concealed_in_its_place(
    tmp_path: Path, payloads: list[bytes]
) -> None:
    path = tmp_path / "voice.opus"
    first, second = payloads[:60], payloads[60:]
    gap = 37 * 960 + 3 * 120  # 0.8975 s: whole 20 ms frames and some 2.5 ms ones
    with path.open("wb") as sink:
        writer = OggOpusWriter(sink, serial=1)
        for packet in first:
            writer.write(packet, opus.packet_samples(packet))
        for filler in opus.concealment(gap):
            writer.write(filler, opus.packet_samples(filler))
        for packet in second:
            writer.write(packet, opus.packet_samples(packet))
        writer.finish()
    assert writer.bytes_written == path.stat().st_size

    packets = demuxed(path)
    real = [data for _, _, data in packets if len(data) > 2]
    assert real == payloads  # byte for byte: nothing was re-encoded
    fillers = [(pts, duration) for pts, duration, data in packets if len(data) <= 2]
    assert fillers[0][0] == 60 * 960  # the gap starts where the first run ended...
    assert sum(duration for _, duration in fillers) == gap  # ...and lasts as long as it was
    total = len(payloads) * 960 + gap
    assert decoded_samples(path) == total
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        assert stream.duration == total  # the last granule position, exactly


def test_a_file_cut_short_plays_up_to_its_last_whole_page(
    tmp_path: Path, payloads: list[bytes]
) -> None:
    sink = io.BytesIO()
    writer = OggOpusWriter(sink, serial=2)
    for packet in payloads:
        writer.write(packet, opus.packet_samples(packet))
    # no finish(): what a process killed mid-segment leaves (the pages written so far)
    path = tmp_path / "cut.opus"
    path.write_bytes(sink.getvalue())
    pages = len(payloads) * 960 // 48000  # whole seconds went out as pages
    assert pages >= 1
    assert decoded_samples(path) == pages * 48000


def test_salvage_cuts_a_torn_file_back_to_its_last_whole_page(
    tmp_path: Path, payloads: list[bytes]
) -> None:
    """What recovery keeps of a segment a crash tore: every whole page and nothing after."""
    sink = io.BytesIO()
    writer = OggOpusWriter(sink, serial=3)
    ends = []  # (file length, granule) after each page
    for packet in payloads:
        before = writer.bytes_written
        writer.write(packet, opus.packet_samples(packet))
        if writer.bytes_written != before:
            ends.append((writer.bytes_written, writer.granule - opus.packet_samples(packet)))
    whole = sink.getvalue()
    assert len(ends) >= 2
    (first_end, first_granule), (second_end, _) = ends[0], ends[1]
    torn = whole[: second_end - 10]  # the second audio page only partly on disk
    assert whole_pages(torn) == (first_end, first_granule)
    corrupt = bytearray(whole[:second_end])
    corrupt[second_end - 1] ^= 0xFF  # a whole second page whose checksum fails
    assert whole_pages(bytes(corrupt)) == (first_end, first_granule)
    header_end = whole.index(b"OggS", whole.index(b"OpusTags"))
    assert whole_pages(whole[: header_end + 5]) == (header_end, 0)  # only the headers

    path = tmp_path / "torn.opus"
    path.write_bytes(torn)
    assert salvage(path) == (round(first_granule * 1000 / opus.RATE), first_end)
    assert path.stat().st_size == first_end
    assert decoded_samples(path) == first_granule
    assert [data for _, _, data in demuxed(path)] == payloads[: len(demuxed(path))]


def test_packet_durations_come_from_the_toc_byte(payloads: list[bytes]) -> None:
    assert {opus.packet_samples(p) for p in payloads} == {960}
    assert opus.packet_samples(bytes([(1 << 3) | 0b01])) == 2 * 960  # SILK 20 ms, two frames
    assert opus.packet_samples(bytes([(15 << 3) | 0b11, 3])) == 3 * 960  # hybrid, code 3
    with pytest.raises(opus.MalformedPacket):
        opus.packet_samples(b"")
    with pytest.raises(opus.MalformedPacket):
        opus.packet_samples(bytes([(31 << 3) | 0b11, 7]))  # 140 ms is more than a packet holds


def test_concealment_lasts_what_was_missing_to_the_quantum() -> None:
    for samples in (0, 119, 120, 960, 5760, 5880, 48000, 48000 + 959):
        filled = sum(opus.packet_samples(p) for p in opus.concealment(samples))
        assert samples - opus.FILL_QUANTUM < filled <= samples
        assert filled % opus.FILL_QUANTUM == 0


def test_a_stereo_decoder_reads_concealment_as_silence(tmp_path: Path) -> None:
    path = tmp_path / "quiet.opus"
    with path.open("wb") as sink:
        writer = OggOpusWriter(sink, serial=3)
        for filler in opus.concealment(48000):
            writer.write(filler, opus.packet_samples(filler))
        writer.finish()
    with av.open(str(path)) as container:
        pcm = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert pcm.size == 48000 * 2 and np.abs(pcm).max() < 1e-3
