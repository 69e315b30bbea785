"""``GATEWAY_RECORDING_STORAGE=apivideo``: once a recorded interview has settled, its combined
export (both voices and the camera) goes to a video created for it on api.video, uploaded in
chunks that each say their place with ``Content-Range``, and every segment row names the video
and its player URL. api.video is its stand-in (``gateway.sim.apivideo``) on loopback."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import av
import pytest
from aiohttp import web

from gateway.recording import export
from gateway.recording.storage import ApiVideoSettings, LocalStorage
from gateway.sim.apivideo import ApiVideoStandIn
from storage import tenants
from tests.security.conftest import ApiTenant

from .conftest import GatewayFactory
from .test_recording import segments_until

pytestmark = pytest.mark.slow

KEY = "apivideo-test-key-" + "k" * 20
CHUNK = 16 * 1024  # small, so that even a short interview goes up in several chunks


@pytest.fixture
async def apivideo() -> AsyncIterator[tuple[ApiVideoStandIn, str]]:
    stand_in = ApiVideoStandIn(KEY, min_chunk=CHUNK)
    runner = web.AppRunner(stand_in.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield stand_in, f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_a_settled_recording_is_published_as_one_video_in_chunks(
    start_gateway: GatewayFactory,
    tmp_path: Path,
    apivideo: tuple[ApiVideoStandIn, str],
) -> None:
    stand_in, url = apivideo
    gateway = await start_gateway(
        mode="relay",
        recording="audio",
        recording_segment_seconds=1.0,
        recording_storage="apivideo",
        recording_apivideo=ApiVideoSettings(api_key=KEY, base_url=url, chunk_bytes=CHUNK),
    )
    invitation = await gateway.invite("relay")
    ids = (invitation.tenant_id, invitation.interview_id)
    candidate = gateway.candidate(invitation, video=True)
    await candidate.connect()
    await segments_until(
        gateway.db, *ids, lambda rows: sum(r.kind == "video" for r in rows) >= 3, within=30
    )
    assert candidate.client is not None
    await candidate.client.bye()
    await candidate.close()
    await gateway.ended_record(invitation)
    rows = await segments_until(
        gateway.db, *ids, lambda rows: rows and all(r.video_id for r in rows), within=60
    )

    [video] = stand_in.videos.values()
    assert video.complete and video.title == f"interview {invitation.interview_id}"
    assert {(r.video_id, r.video_url) for r in rows} == {
        (video.video_id, f"{url}/vod/{video.video_id}")
    }
    assert all(r.status == "uploaded" for r in rows)
    # chunked: in order, each placed by its Content-Range, together the whole file
    total = len(video.data)
    assert len(video.chunks) >= 2
    assert [start for start, _, _ in video.chunks] == [0] + [
        end + 1 for _, end, _ in video.chunks[:-1]
    ]
    assert {t for _, _, t in video.chunks} == {total} and video.chunks[-1][1] == total - 1
    # what was uploaded is the interview's combined export, as the gateway itself makes it
    loaded = await export.load(gateway.db, LocalStorage(tmp_path / "recordings"), *ids)
    expected = io.BytesIO()
    export.export(loaded, expected, "webm")
    assert bytes(video.data) == expected.getvalue()
    with av.open(io.BytesIO(bytes(video.data))) as container:
        assert sorted(s.codec_context.name for s in container.streams) == ["opus", "opus", "vp8"]
    # the key bought a token; every other call carried the token (the stand-in checks)
    assert stand_in.requests[0] == ("POST", "/auth/api-key")

    # the listing names the video; deleting the recording deletes the video too
    async with aiohttp.ClientSession() as http:
        key = await tenants.create_api_key(gateway.db, gateway.tenant_id, "owner")
        owner = ApiTenant(gateway.tenant_id, key, gateway, http)
        path = f"/v1/interviews/{invitation.interview_id}/recordings"
        async with await owner.request("GET", path) as response:
            listing = await response.json()
        assert {(s["video_id"], s["video_url"]) for s in listing["segments"]} == {
            (video.video_id, f"{url}/vod/{video.video_id}")
        }  # the admin API shows where each segment was published
        async with await owner.request("DELETE", path) as response:
            assert response.status == 204
    assert stand_in.videos == {}
