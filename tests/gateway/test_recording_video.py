"""The candidate's camera recorded as it came: a real aiortc candidate sends VP8, or H.264 when
it prefers it (aiortc encodes a synthetic ``VideoStreamTrack`` with libvpx or libx264), the
gateway records the frames its receiver reassembled into keyframe-aligned segments (WebM for
VP8, Matroska for H.264; asking for a keyframe at each boundary) with rows of the codec, and
the combined export holds both voices and the video, remuxed: the video's frames are what the
candidate's encoder produced (an H.264 frame's very NAL units, in Matroska's framing)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder

from gateway.media import aiortc_internals
from gateway.recording import export
from gateway.recording.export import frames
from storage import tenants
from storage.interviews import VideoSegmentRecord
from tests.recording.camera import CODECS, Codec, payload
from tests.security.conftest import ApiTenant

from .conftest import GatewayFactory
from .test_recording import local_path, segments_until
from .test_recording_api import demuxed, duration

pytestmark = pytest.mark.slow


def sent_frames(monkeypatch: pytest.MonkeyPatch, codec: Codec) -> list[bytes]:
    """Every frame an encoder in this process packetizes for sending, in order (the
    candidate's: the gateway sends no video); an H.264 frame as an Annex B access unit."""
    sent: list[bytes] = []
    if codec == "vp8":
        vp8: Callable[..., Any] = Vp8Encoder._packetize.__func__  # type: ignore[attr-defined]

        def vp8_packetize(cls: type, buffer: bytes, picture_id: int) -> list[bytes]:
            if buffer:
                sent.append(buffer)
            return vp8(cls, buffer, picture_id)  # type: ignore[no-any-return]

        monkeypatch.setattr(Vp8Encoder, "_packetize", classmethod(vp8_packetize))
        return sent
    h264: Callable[..., Any] = H264Encoder._packetize.__func__  # type: ignore[attr-defined]

    def h264_packetize(cls: type, packages: Iterable[bytes]) -> list[bytes]:
        units = list(packages)
        if units:
            sent.append(b"".join(b"\x00\x00\x00\x01" + unit for unit in units))
        return h264(cls, iter(units))  # type: ignore[no-any-return]

    monkeypatch.setattr(H264Encoder, "_packetize", classmethod(h264_packetize))
    return sent


def is_subsequence(part: list[list[bytes]], whole: list[list[bytes]]) -> bool:
    remaining = iter(whole)
    return all(any(item == other for other in remaining) for item in part)


def video_rows(rows: list[VideoSegmentRecord]) -> list[VideoSegmentRecord]:
    return [r for r in rows if r.kind == "video"]


@pytest.mark.parametrize("codec", CODECS)
async def test_the_candidates_camera_is_recorded_in_keyframe_aligned_segments_and_exported(
    start_gateway: GatewayFactory,
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    codec: Codec,
) -> None:
    encoded = sent_frames(monkeypatch, codec)
    gateway = await start_gateway(mode="relay", recording="audio", recording_segment_seconds=1.0)
    invitation = await gateway.invite("relay")
    ids = (invitation.tenant_id, invitation.interview_id)
    candidate = gateway.candidate(invitation, video=True if codec == "vp8" else "video/H264")
    await candidate.connect()
    await segments_until(gateway.db, *ids, lambda rows: len(video_rows(rows)) >= 3, within=30)
    assert candidate.client is not None
    await candidate.client.bye()
    await candidate.close()
    record = await gateway.ended_record(invitation)
    rows = await segments_until(
        gateway.db, *ids, lambda rows: all(r.status == "uploaded" for r in rows), within=30
    )
    video = video_rows(rows)
    assert {(r.participant, r.codec) for r in video} == {("candidate", codec)}
    assert [r.sequence for r in video] == list(range(len(video)))
    recorded: list[bytes] = []
    for row in video:
        segment = list(frames(local_path(row.storage_uri or "").read_bytes()))
        assert segment[0][2], f"video segment {row.sequence} does not begin with a keyframe"
        assert row.duration_ms is not None and row.bytes and row.bytes > 0
        recorded += [data for _, data, _, _ in segment]
    # the frames that crossed the gateway, none changed (a frame lost on the way is missing)
    units = [payload(data, codec, stored=True) for data in recorded]
    sent = [payload(frame, codec, stored=False) for frame in encoded]
    assert units and units[0] == sent[0]
    assert is_subsequence(units, sent)

    fmt = "webm" if codec == "vp8" else "mkv"
    out = tmp_path / f"export.{fmt}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "recording", "export",
        str(invitation.interview_id), "--out", str(out),
        env={**os.environ, "DATABASE_URL": fresh_database_url, "GATEWAY_DATA_DIR": str(tmp_path)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    data = out.read_bytes()
    tracks = demuxed(data)
    assert {name: kind for name, (kind, _) in tracks.items()} == {
        "candidate-audio": "opus",
        "interviewer-audio": "opus",
        "candidate-video": codec,
    }
    assert tracks["candidate-video"][1] == recorded  # remuxed, never transcoded
    # the admin API serves the same file, as the type its format is
    async with aiohttp.ClientSession() as http:
        key = await tenants.create_api_key(gateway.db, gateway.tenant_id, "reviewer")
        admin = ApiTenant(gateway.tenant_id, key, gateway, http)
        path = f"/v1/interviews/{invitation.interview_id}/recordings/combined"
        async with await admin.request("GET", path) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == export.CONTENT_TYPES[fmt]
            assert response.headers["Content-Disposition"].endswith(f'-combined.{fmt}"')
            assert await response.read() == data
    began = min(r.started_at for r in rows if r.started_at)
    assert record.ended_at is not None
    interview_seconds = (record.ended_at - began).total_seconds()
    assert abs(duration(data) - interview_seconds) < 0.5, (duration(data), interview_seconds)


async def test_a_camera_nobody_records_is_dropped_as_it_comes_never_decoded(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[object] = []
    monkeypatch.setattr(Vp8Decoder, "decode", lambda self, frame: decoded.append(frame) or [])
    dropped = asyncio.Event()
    frames_dropped: list[object] = []

    def drop(frame: object) -> None:
        frames_dropped.append(frame)
        if len(frames_dropped) == 30:  # a second of the candidate's camera
            dropped.set()

    monkeypatch.setattr(aiortc_internals, "_discard_frame", drop)
    gateway = await start_gateway(mode="relay")
    invitation = await gateway.invite("relay")
    candidate = gateway.candidate(invitation, video=True)
    await candidate.connect()
    await asyncio.wait_for(dropped.wait(), 30)
    assert candidate.client is not None
    await candidate.client.bye()
    await candidate.close()
    await gateway.ended_record(invitation)
    assert decoded == []  # the gateway decoded nothing of it (nor did anything else here)
