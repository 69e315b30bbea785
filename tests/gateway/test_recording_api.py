"""A recorded interview through the admin API and the export command: listed, downloaded
(range requests too), exported as one WebM with both voices whose packets are the segments'
own bytes, and deleted; another tenant's key can do none of it."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path
from uuid import UUID

import aiohttp
import av
import pytest

from gateway.app import SETTINGS
from gateway.recording import retention
from gateway.recording.export import packets
from gateway.recording.storage import segment_storage
from gateway.sessions.invitations import Invitation
from storage import interviews, tenants
from tests.security.conftest import ApiTenant, make_tenant

from .conftest import GatewayFactory
from .test_recording import by_track, local_path, segments_until

pytestmark = pytest.mark.slow


def demuxed(data: bytes) -> dict[str, tuple[str, list[bytes]]]:
    """Each stream's title, codec and packets, of a file PyAV opens."""
    streams: dict[str, tuple[str, list[bytes]]] = {}
    with av.open(io.BytesIO(data)) as container:
        titles = {s.index: s.metadata.get("title", str(s.index)) for s in container.streams}
        codecs = {s.index: s.codec_context.name for s in container.streams}
        for index, title in titles.items():
            streams[title] = (codecs[index], [])
        for packet in container.demux():
            if packet.size:
                streams[titles[packet.stream.index]][1].append(bytes(packet))
    return streams


def duration(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        assert container.duration is not None
        return container.duration / 1_000_000


async def test_recordings_are_listed_downloaded_exported_and_deleted_by_their_tenant_only(
    start_gateway: GatewayFactory, fresh_database_url: str, tmp_path: Path
) -> None:
    gateway = await start_gateway(mode="relay", recording="audio", recording_segment_seconds=1.0)
    invitation = await gateway.invite("relay")
    ids = (invitation.tenant_id, invitation.interview_id)
    candidate = gateway.candidate(invitation)
    await candidate.connect()
    await segments_until(
        gateway.db,
        *ids,
        lambda rows: len(by_track(rows)) == 2 and all(len(t) >= 3 for t in by_track(rows).values()),
        within=15,
    )
    assert candidate.client is not None
    await candidate.client.bye()
    await candidate.close()
    record = await gateway.ended_record(invitation)
    rows = await segments_until(
        gateway.db, *ids, lambda rows: all(r.status == "uploaded" for r in rows), within=15
    )
    began = min(r.started_at for r in rows if r.started_at)
    assert record.ended_at is not None
    interview_seconds = (record.ended_at - began).total_seconds()
    # the packets each track's segments hold, in order: what every download must carry
    segment_packets = {
        name: [p for r in track for p in packets(local_path(r.storage_uri or "").read_bytes())]
        for name, track in by_track(rows).items()
    }

    async with aiohttp.ClientSession() as http:
        owner = ApiTenant(
            gateway.tenant_id,
            await tenants.create_api_key(gateway.db, gateway.tenant_id, "owner"),
            gateway,
            http,
        )
        other = await make_tenant(gateway, http, "someone else")
        base = f"/v1/interviews/{invitation.interview_id}/recordings"

        # another tenant's key: the interview is not there, for listing, download or delete
        for method, path in [
            ("GET", base),
            ("GET", f"{base}/candidate-audio"),
            ("GET", f"{base}/combined"),
            ("DELETE", base),
        ]:
            async with await other.request(method, path) as response:
                assert response.status == 404, (method, path)
                assert (await response.json())["error"]["code"] == "not_found"

        async with await owner.request("GET", base) as response:
            assert response.status == 200
            listing = await response.json()
        assert {t["track"]: t["segments"] for t in listing["tracks"]} == {
            f"{name}-audio": len(track) for name, track in by_track(rows).items()
        }
        assert all(
            t["uploaded"] == t["segments"] and t["codec"] == "opus" for t in listing["tracks"]
        )
        assert len(listing["segments"]) == len(rows)

        async with await owner.request("GET", f"{base}/candidate-audio") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "audio/ogg"
            track = await response.read()
        assert demuxed(track) == {"candidate-audio": ("opus", segment_packets["candidate"])}
        async with await owner.request(
            "GET", f"{base}/candidate-audio", headers={"Range": "bytes=100-199"}
        ) as response:
            assert response.status == 206
            assert await response.read() == track[100:200]

        # every track the served contract names downloads, as the type it names
        async with http.get(gateway.base_url + "/openapi.json") as response:
            document = await response.json()
        download = document["paths"]["/v1/interviews/{interview_id}/recordings/{track}"]["get"]
        [track_parameter] = [p for p in download["parameters"] if p["name"] == "track"]
        assert set(download["responses"]["200"]["content"]) == {
            "audio/ogg",
            "video/webm",
            "video/matroska",
        }
        files = {}
        for name in track_parameter["schema"]["enum"]:
            async with await owner.request("GET", f"{base}/{name}") as response:
                if name == "candidate-video":  # this candidate sent no camera
                    assert response.status == 404
                    assert (await response.json())["error"]["code"] == "no_recording"
                    continue
                assert response.status == 200, name
                files[name] = (response.headers["Content-Type"], await response.read())
        assert files["interviewer-audio"][0] == "audio/ogg"
        assert demuxed(files["interviewer-audio"][1]) == {
            "interviewer-audio": ("opus", segment_packets["interviewer"])
        }
        content_type, combined = files["combined"]
        assert content_type == "video/webm"

        # the command writes the same combined file
        out = tmp_path / "export.webm"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "recording", "export",
            str(invitation.interview_id), "--out", str(out),
            env={**os.environ, "DATABASE_URL": fresh_database_url,
                 "GATEWAY_DATA_DIR": str(tmp_path)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, stderr.decode()
        assert str(out) in stdout.decode()
        for data in (combined, out.read_bytes()):
            assert demuxed(data) == {
                "candidate-audio": ("opus", segment_packets["candidate"]),
                "interviewer-audio": ("opus", segment_packets["interviewer"]),
            }  # both voices, separate tracks, the very bytes: nothing transcoded
            assert abs(duration(data) - interview_seconds) < 0.5, (
                duration(data),
                interview_seconds,
            )

        async with await other.request("DELETE", base) as response:
            assert response.status == 404
        assert len(await interviews.list_video_segments(gateway.db, *ids)) == len(rows)
        async with await owner.request("DELETE", base) as response:
            assert response.status == 204
        assert await interviews.list_video_segments(gateway.db, *ids) == []
        assert not any(local_path(r.storage_uri or "").exists() for r in rows)
        async with await owner.request("GET", f"{base}/combined") as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "no_recording"


async def test_an_interview_is_recorded_when_it_asks_and_retention_deletes_it_at_its_age(
    start_gateway: GatewayFactory,
) -> None:
    """``GATEWAY_RECORDING=requested``: only the interview created with ``recording: audio``
    is recorded; the one that asks nothing is not, though both are relayed at once. Then the
    retention job deletes the recording once it is past the age it is given."""
    gateway = await start_gateway(
        mode="relay", recording="requested", recording_segment_seconds=1.0
    )
    async with aiohttp.ClientSession() as http:
        tenant = await make_tenant(gateway, http, "opt-in")
        asked, silent = await tenant.create(recording="audio"), await tenant.create()
        async with await tenant.request("POST", "/v1/interviews", json={"recording": "video"}) as r:
            assert r.status == 400 and "recording" in (await r.json())["error"]["message"]
    assert (asked["recording"], silent["recording"]) == ("audio", None)
    invitations = [
        Invitation(tenant.id, UUID(created["id"]), created["token"]) for created in (asked, silent)
    ]
    candidates = [gateway.candidate(invitation) for invitation in invitations]
    for candidate in candidates:
        await candidate.connect()
    await segments_until(
        gateway.db,
        tenant.id,
        invitations[0].interview_id,
        lambda rows: len(by_track(rows)) == 2 and all(len(t) >= 2 for t in by_track(rows).values()),
        within=15,
    )
    # the other interview was relayed just as long, and nothing of it was recorded
    assert gateway.sessions.live(tenant.id, invitations[1].interview_id) is not None
    assert (
        await interviews.list_video_segments(gateway.db, tenant.id, invitations[1].interview_id)
        == []
    )
    for candidate, invitation in zip(candidates, invitations, strict=True):
        assert candidate.client is not None
        await candidate.client.bye()
        await candidate.close()
        await gateway.ended_record(invitation)
    rows = await segments_until(
        gateway.db,
        tenant.id,
        invitations[0].interview_id,
        lambda rows: all(r.status == "uploaded" for r in rows),
        within=15,
    )

    # retention: nothing a day old yet, so nothing goes; with no age allowed, all of it does
    storage = segment_storage(gateway.app[SETTINGS])
    assert await retention.expire(gateway.db, storage, 86400) == 0
    assert all(local_path(r.storage_uri or "").exists() for r in rows)
    assert await retention.expire(gateway.db, storage, 0) == len(rows)
    assert (
        await interviews.list_video_segments(gateway.db, tenant.id, invitations[0].interview_id)
        == []
    )
    assert not any(local_path(r.storage_uri or "").exists() for r in rows)
