"""The candidate's camera recorded as it came: a real aiortc candidate sends VP8 (aiortc encodes
a synthetic ``VideoStreamTrack``), the gateway records the frames its receiver reassembled into
keyframe-aligned WebM segments (asking for a keyframe at each boundary) with ``vp8`` rows, and
the combined export holds both voices and the video, remuxed: the video's frames are the very
bytes the candidate's encoder produced."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiortc.codecs.vpx import Vp8Encoder

from gateway.recording.export import frames
from storage.interviews import VideoSegmentRecord

from .conftest import GatewayFactory
from .test_recording import local_path, segments_until
from .test_recording_api import demuxed, duration

pytestmark = pytest.mark.slow


def sent_frames(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every VP8 frame an encoder in this process packetizes for sending, in order (the
    candidate's: the gateway sends no video)."""
    sent: list[bytes] = []
    packetize: Callable[..., Any] = Vp8Encoder._packetize.__func__  # type: ignore[attr-defined]

    def recording_packetize(cls: type, buffer: bytes, picture_id: int) -> list[bytes]:
        if buffer:
            sent.append(buffer)
        return packetize(cls, buffer, picture_id)  # type: ignore[no-any-return]

    monkeypatch.setattr(Vp8Encoder, "_packetize", classmethod(recording_packetize))
    return sent


def is_subsequence(part: list[bytes], whole: list[bytes]) -> bool:
    remaining = iter(whole)
    return all(any(item == other for other in remaining) for item in part)


def video_rows(rows: list[VideoSegmentRecord]) -> list[VideoSegmentRecord]:
    return [r for r in rows if r.kind == "video"]


async def test_the_candidates_vp8_is_recorded_in_keyframe_aligned_segments_and_exported(
    start_gateway: GatewayFactory,
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = sent_frames(monkeypatch)
    gateway = await start_gateway(mode="relay", recording="audio", recording_segment_seconds=1.0)
    invitation = await gateway.invite("relay")
    ids = (invitation.tenant_id, invitation.interview_id)
    candidate = gateway.candidate(invitation, video=True)
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
    assert {(r.participant, r.codec) for r in video} == {("candidate", "vp8")}
    assert [r.sequence for r in video] == list(range(len(video)))
    recorded: list[bytes] = []
    for row in video:
        segment = list(frames(local_path(row.storage_uri or "").read_bytes()))
        assert segment[0][2], f"video segment {row.sequence} does not begin with a keyframe"
        assert row.duration_ms is not None and row.bytes and row.bytes > 0
        recorded += [data for _, data, _, _ in segment]
    # the frames that crossed the gateway, none changed (a frame lost on the way is missing)
    assert recorded and recorded[0] == sent[0]
    assert is_subsequence(recorded, sent)

    out = tmp_path / "export.webm"
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
    assert {name: codec for name, (codec, _) in tracks.items()} == {
        "candidate-audio": "opus",
        "interviewer-audio": "opus",
        "candidate-video": "vp8",
    }
    assert tracks["candidate-video"][1] == recorded  # remuxed, never transcoded
    began = min(r.started_at for r in rows if r.started_at)
    assert record.ended_at is not None
    interview_seconds = (record.ended_at - began).total_seconds()
    assert abs(duration(data) - interview_seconds) < 0.5, (duration(data), interview_seconds)
