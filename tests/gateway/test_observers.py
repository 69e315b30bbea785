"""Observers: interviewer and observer tokens watch a live interview read-only, over the real
signaling endpoint of a real gateway, with their joins and leaves on the audit record."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
from collections.abc import Callable
from typing import Any
from uuid import UUID

import aiohttp
import aioice.ice
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.app import JWT_SECRET
from gateway.media import ice
from gateway.media.listen import VOICES
from gateway.sessions.invitations import Invitation, observer_token
from gateway.sessions.session import InterviewSession
from gateway.sim.candidate import SPEECH_RMS, HeadlessCandidate
from signaling.client import SignalingClient, SignalingClientError
from signaling.tokens import issue_token
from storage import tenants, transcripts
from storage.observers import ObserverAuditRow, observer_events
from tests.signaling.signaling_samples import OFFER

from .conftest import GatewayFactory, RunningGateway
from .test_interviews import assert_whole_transcript

WITHIN = 20.0


class Listener:
    """An observer's receive-only aiortc peer: two audio m-lines, both voices heard."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = [0, 0]
        self.loudest = [0.0, 0.0]
        self.heard = asyncio.Event()  # set at every frame
        self._tracks = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._hear)

    async def listen(self, client: SignalingClient) -> None:
        for _ in VOICES:
            self.pc.addTransceiver("audio", direction="recvonly")
        connected = asyncio.Event()
        self.pc.on(
            "connectionstatechange",
            lambda: self.pc.connectionState == "connected" and connected.set(),
        )
        with ice.host_addresses(("127.0.0.1",)):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await client.offer(self.pc.localDescription.sdp)
        assert answer["mode"] == "relay"
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await client.end_of_candidates()
        await asyncio.wait_for(connected.wait(), WITHIN)

    def _hear(self, track: MediaStreamTrack) -> None:
        index, self._tracks = self._tracks, self._tracks + 1

        async def drain() -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await track.recv()
                    samples = frame.to_ndarray().astype(np.float64)
                    self.frames[index] += 1
                    self.heard.set()
                    rms = float(np.sqrt(np.mean(samples**2)))
                    self.loudest[index] = max(self.loudest[index], rms)

        self._tasks.append(asyncio.ensure_future(drain()))

    async def hears(self, more: int, within: float = WITHIN) -> None:
        """Until both voices brought ``more`` frames than they have now."""
        target = [frames + more for frames in self.frames]
        async with asyncio.timeout(within):
            while any(have < want for have, want in zip(self.frames, target, strict=True)):
                self.heard.clear()
                await self.heard.wait()

    def stop_reading(self) -> None:
        """Freeze the peer as a hung browser tab is: its UDP sockets stay open and datagrams
        still arrive, but nothing reads them (no consent answers, no RTCP, no media)."""
        receiver = self.pc.getTransceivers()[0].receiver
        connection = receiver.transport.transport.iceGatherer._connection
        for protocol in connection._protocols:
            protocol.datagram_received = lambda data, addr: None

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()


class Watcher:
    """An observer's client: every message it is sent, in order, read as fast as they come."""

    def __init__(self) -> None:
        self.client = SignalingClient()
        self.messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def join(self, url: str, token: str, role: str | None = None) -> dict[str, Any]:
        welcome = await self.client.connect(url, token, role=role)
        self._reader = asyncio.create_task(self._read())
        return welcome

    async def _read(self) -> None:
        async for message in self.client:
            self.messages.append(message)
            self._arrived.set()
        self._arrived.set()

    @property
    def finals(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "transcript" and m["final"]]

    @property
    def closed(self) -> bool:
        return self._reader is not None and self._reader.done()

    async def until(self, condition: Callable[[], bool], within: float = WITHIN) -> None:
        async with asyncio.timeout(within):
            while not condition():
                if self.closed:
                    raise AssertionError(f"closed before the condition held: {self.messages}")
                self._arrived.clear()
                await self._arrived.wait()

    async def close(self) -> None:
        await self.client.close()


def token_for(
    gateway: RunningGateway,
    invitation: Invitation,
    role: str = "observer",
    subject: str = "hiring-manager",
) -> str:
    token, _ = observer_token(
        gateway.app[JWT_SECRET],
        invitation.tenant_id,
        invitation.interview_id,
        role=role,
        subject=subject,
    )
    return token


async def live_session(gateway: RunningGateway, invitation: Invitation) -> InterviewSession:
    await asyncio.wait_for(gateway.sessions.admitted.wait(), WITHIN)
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    assert session is not None
    return session


async def audit_rows(
    gateway: RunningGateway, invitation: Invitation, count: int
) -> list[ObserverAuditRow]:
    """The interview's audit rows once there are ``count`` (leave rows land after the socket
    closed; the database is the witness)."""
    async with asyncio.timeout(WITHIN):
        while True:
            rows = await observer_events(gateway.db, invitation.tenant_id, invitation.interview_id)
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_two_observers_see_every_line_once_in_order_and_the_candidate_is_unaffected(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay")
    invitation = await gateway.invite("relay")
    url = invitation.signal_url(gateway.base_url)
    interview = asyncio.create_task(gateway.candidate(invitation).run(time_limit=60))
    await live_session(gateway, invitation)
    early, late = Watcher(), Watcher()
    ears = [Listener(), Listener()]
    welcome = await early.join(url, token_for(gateway, invitation, "interviewer", "lead"))
    assert welcome["role"] == "interviewer"
    await early.until(lambda: {"type": "state", "state": "connected"} in early.messages)
    await ears[0].listen(early.client)
    await early.until(lambda: len(early.finals) >= 3)  # halfway through the interview
    await late.join(url, token_for(gateway, invitation, "observer", "panel"))
    await ears[1].listen(late.client)
    report = await interview
    assert report.error is None, report.error
    await early.until(lambda: early.closed)
    await late.until(lambda: late.closed)

    await gateway.writer.flush()
    rows = await transcripts.read_transcript(
        gateway.db, invitation.tenant_id, invitation.interview_id
    )
    assert_whole_transcript(rows, "relay")  # the candidate's interview, as without observers
    stored = [(row.event_id, row.role, row.text) for row in rows]
    candidate_saw = [(m["event_id"], m["role"], m["text"]) for m in report.transcript]
    assert candidate_saw == stored
    for watcher in (early, late):
        assert [(m["event_id"], m["role"], m["text"]) for m in watcher.finals] == stored
        assert watcher.messages[-2:] == [
            {"type": "state", "state": "ended", "detail": {"reason": "bye"}},
            {"type": "bye", "reason": "interview_ended"},
        ]
    # the late one heard the interview's state, then the lines so far, then the rest live
    assert late.messages[0] == {"type": "state", "state": "connected"}
    # both voices reached both listeners, as two tracks: the candidate's, the interviewer's
    for ear in ears:
        assert all(frames > 50 for frames in ear.frames), ear.frames
        assert all(rms > SPEECH_RMS for rms in ear.loudest), ear.loudest
        await ear.close()
    await early.close()
    await late.close()

    audit = await audit_rows(gateway, invitation, 4)
    assert sorted((r.subject, r.role, r.event, r.reason) for r in audit) == [
        ("lead", "interviewer", "join", None),
        ("lead", "interviewer", "leave", "interview_ended"),
        ("panel", "observer", "join", None),
        ("panel", "observer", "leave", "interview_ended"),
    ]
    assert audit[0].subject == "lead" and audit[0].event == "join"


async def stuck_observer(url: str, token: str) -> socket.socket:
    """A WebSocket client that says hello, reads its welcome and then never reads again, with
    a receive buffer as small as the kernel allows (so the gateway's sends back up soon)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setblocking(False)
    parts = aiohttp.client.URL(url)
    await loop.sock_connect(sock, (parts.host, parts.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.host}:{parts.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    received = b""
    while b"\r\n\r\n" not in received:
        received += await loop.sock_recv(sock, 1)  # byte by byte: nothing past the headers
    assert received.startswith(b"HTTP/1.1 101"), received
    hello = json.dumps({"type": "hello", "token": token, "role": "observer"}).encode()
    mask = os.urandom(4)
    header = bytes([0x81]) + (
        bytes([0x80 | len(hello)])
        if len(hello) < 126
        else bytes([0x80 | 126]) + struct.pack("!H", len(hello))
    )
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(hello))
    await loop.sock_sendall(sock, header + mask + masked)
    head = await loop.sock_recv(sock, 2)
    length = head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", await loop.sock_recv(sock, 2))[0]
    welcome = b""
    while len(welcome) < length:
        welcome += await loop.sock_recv(sock, length - len(welcome))
    assert json.loads(welcome)["type"] == "welcome"
    return sock


def delta(n: int, text: str) -> str:
    """An interviewer's live line, as the relay's data channel carries it."""
    return json.dumps(
        {
            "type": "response.output_audio_transcript.delta",
            "event_id": f"ev_{n}",
            "item_id": "item_flood",
            "delta": text,
        }
    )


async def test_an_observer_that_stops_reading_is_dropped_and_nobody_else_waits(
    start_gateway: GatewayFactory,
) -> None:
    """No media is needed: lines go to the candidate's socket and to observers from the
    session's listener, which the upstream call feeds (here: large live lines, one by one)."""
    gateway = await start_gateway(mode="relay", observer_queue=8)
    invitation = await gateway.invite("relay")
    url = invitation.signal_url(gateway.base_url)
    candidate = Watcher()
    await candidate.join(url, invitation.token)
    session = await live_session(gateway, invitation)
    stuck = await stuck_observer(url, token_for(gateway, invitation, subject="stuck"))
    reader = Watcher()
    await reader.join(url, token_for(gateway, invitation, subject="reader"))
    assert len(session.observers) == 2
    text = "x" * 60_000
    sent = 0
    for n in range(1000):  # bounded: a few MB fill any loopback socket's buffers
        session.server_event(delta(n, text), "relay")
        sent += 1
        await reader.until(lambda: len(reader.messages) >= sent)  # noqa: B023
        await candidate.until(lambda: len(candidate.messages) >= sent)  # noqa: B023
        if len(session.observers) == 1:
            break
    assert len(session.observers) == 1, "the stuck observer was never dropped"
    session.server_event(delta(10_000, "still here"), "relay")
    await reader.until(lambda: reader.messages[-1].get("text") == "still here")
    await candidate.until(lambda: candidate.messages[-1].get("text") == "still here")
    assert [m["event_id"] for m in candidate.messages] == [
        *(f"ev_{n}" for n in range(sent)),
        "ev_10000",
    ]
    assert [m["event_id"] for m in reader.messages] == [m["event_id"] for m in candidate.messages]
    assert not session.losses  # observers never count as the candidate
    rows = await audit_rows(gateway, invitation, 3)
    assert [(r.subject, r.event, r.reason) for r in rows if r.event == "leave"] == [
        ("stuck", "leave", "observer_lagging")
    ]
    stuck.close()
    await reader.close()
    await candidate.close()


@pytest.mark.slow
async def test_a_listen_in_peer_that_stops_reading_is_dropped_and_nobody_else_waits(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stuck peer fails ICE consent freshness (RFC 7675, ``gateway.media.ice``'s loop):
    its interval is shortened from 5 s to 0.5 s here and each check retransmitted once rather
    than three times (for every peer of the test, the interview's too), so that six checks in
    a row unanswered take ~12 s rather than ~75 s. The candidate hears the first question and
    says nothing more until the test is done (its microphone sends silence), so the interview
    stays live however long that takes."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.5)
    monkeypatch.setattr(ice, "CONSENT_RETRANSMISSIONS", 1)
    gateway = await start_gateway(mode="relay")
    invitation = await gateway.invite("relay")
    url = invitation.signal_url(gateway.base_url)
    candidate = HeadlessCandidate(
        url, invitation.token, interview_id=str(invitation.interview_id), answers=[]
    )
    await candidate.connect()
    session = await live_session(gateway, invitation)
    stuck, steady = Watcher(), Watcher()
    ears = {stuck: Listener(), steady: Listener()}
    for watcher, subject in ((stuck, "stuck"), (steady, "steady")):
        await watcher.join(url, token_for(gateway, invitation, subject=subject))
        await watcher.until(lambda: {"type": "state", "state": "connected"} in watcher.messages)  # noqa: B023
        await ears[watcher].listen(watcher.client)
    await ears[stuck].hears(10)
    ears[stuck].stop_reading()

    def lost() -> bool:
        return any(m.get("code") == "listen_lost" for m in stuck.messages)

    await stuck.until(lost, within=90)
    error = next(m for m in stuck.messages if m.get("code") == "listen_lost")
    assert error["fatal"] is False  # its socket reads on: it watches on, and may offer again
    heard = list(ears[stuck].frames)
    await ears[steady].hears(50)  # the other observer hears both voices on
    assert ears[stuck].frames == heard
    assert len(session.observers) == 2  # nobody left: only the stuck peer was let go
    assert not session.losses and session.current is not None  # the candidate never noticed
    assert candidate.report.error is None, candidate.report.error
    await steady.until(lambda: len(steady.finals) >= 1)  # the first question, to both
    assert candidate.client is not None
    await candidate.client.bye()
    for watcher in (stuck, steady):
        await watcher.until(lambda: watcher.closed)  # noqa: B023
    await candidate.close()
    await gateway.writer.flush()
    rows = await transcripts.read_transcript(
        gateway.db, invitation.tenant_id, invitation.interview_id
    )
    stored = [(row.event_id, row.role, row.text) for row in rows]
    assert stored and stored == [
        (m["event_id"], m["role"], m["text"]) for m in candidate.report.transcript
    ]
    for watcher in (stuck, steady):
        assert [(m["event_id"], m["role"], m["text"]) for m in watcher.finals] == stored
        assert watcher.messages[-1] == {"type": "bye", "reason": "interview_ended"}
    audit = await audit_rows(gateway, invitation, 4)
    assert sorted((r.subject, r.event, r.reason) for r in audit) == [
        ("steady", "join", None),
        ("steady", "leave", "interview_ended"),
        ("stuck", "join", None),
        ("stuck", "leave", "interview_ended"),
    ]
    for ear in ears.values():
        await ear.close()
    await stuck.close()
    await steady.close()


async def test_observers_cannot_send_anything_into_the_interview(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay")
    invitation = await gateway.invite("relay")
    url = invitation.signal_url(gateway.base_url)
    candidate = Watcher()
    await candidate.join(url, invitation.token)
    session = await live_session(gateway, invitation)
    observer = Watcher()
    await observer.join(url, token_for(gateway, invitation))
    await observer.client.send({"type": "offer", "sdp": OFFER})
    await observer.until(lambda: any(m["type"] == "error" for m in observer.messages))
    await observer.client.send(
        {"type": "event", "event": {"type": "response.create", "event_id": "e1"}}
    )
    await observer.until(lambda: sum(m["type"] == "error" for m in observer.messages) == 2)
    errors = [m for m in observer.messages if m["type"] == "error"]
    # no call to listen in on yet; and no event reaches the interview, ever
    assert [(e["code"], e["fatal"]) for e in errors] == [
        ("listen_unavailable", False),
        ("observer_read_only", False),
    ]
    assert session.call is None  # the observer's offer did not become the interview's
    await observer.client.bye()
    assert not session.losses and session.current is not None  # the candidate is still there
    await candidate.close()


async def test_refusals_another_interview_a_candidate_token_an_interview_not_live(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay")
    invitation, other = await gateway.invite("relay"), await gateway.invite("relay")
    url = invitation.signal_url(gateway.base_url)

    async def refusal(token: str, role: str | None = "observer", at: str = url) -> str:
        client = SignalingClient()
        try:
            with pytest.raises(SignalingClientError) as refused:
                await client.connect(at, token, role=role)
        finally:
            await client.close()
        return refused.value.code

    # before the candidate joined, nothing is live to watch
    assert await refusal(token_for(gateway, invitation)) == "interview_not_live"
    candidate = Watcher()
    await candidate.join(url, invitation.token)
    await live_session(gateway, invitation)
    assert await refusal(token_for(gateway, other)) == "wrong_interview"
    assert await refusal(invitation.token) == "role_not_allowed"  # a candidate as observer
    assert await refusal(token_for(gateway, invitation), role="candidate") == "role_not_allowed"
    secret = gateway.app[JWT_SECRET]
    candidate_token = issue_token(
        secret,
        tenant_id=str(invitation.tenant_id),
        interview_id=str(invitation.interview_id),
        single_use=False,
    )
    assert await refusal(candidate_token, role="observer") == "role_not_allowed"
    assert await observer_events(gateway.db, invitation.tenant_id, invitation.interview_id) == []
    await candidate.close()


async def test_observer_tokens_from_the_admin_api_and_audit_rows_under_rls(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay")
    invitation = await gateway.invite("relay")
    key = await tenants.create_api_key(gateway.db, gateway.tenant_id, "tests")
    headers = {"Authorization": f"Bearer {key}"}
    path = f"{gateway.base_url}/v1/interviews/{invitation.interview_id}/observer-tokens"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(path, json={"role": "interviewer", "subject": "alice"}) as r:
            assert r.status == 201, await r.text()
            minted = await r.json()
        async with http.post(path, json={"role": "candidate"}) as r:
            assert r.status == 400
        stranger = await tenants.create_tenant(gateway.db, "stranger")
        stranger_key = await tenants.create_api_key(gateway.db, stranger, "s")
        async with http.post(
            path, json={}, headers={"Authorization": f"Bearer {stranger_key}"}
        ) as r:
            assert r.status == 404  # another tenant's interview does not exist for it
    assert (minted["role"], minted["subject"]) == ("interviewer", "alice")
    assert minted["signal_url"].endswith(f"/v1/interviews/{invitation.interview_id}/signal")

    candidate = Watcher()
    await candidate.join(minted["signal_url"], invitation.token)
    await live_session(gateway, invitation)
    observer = Watcher()
    welcome = await observer.join(minted["signal_url"], minted["token"])
    assert welcome["role"] == "interviewer"
    await observer.client.bye()
    rows = await audit_rows(gateway, invitation, 2)
    assert [(r.subject, r.role, r.event, r.reason) for r in rows] == [
        ("alice", "interviewer", "join", None),
        ("alice", "interviewer", "leave", "bye"),
    ]
    assert rows[0].observer_id == rows[1].observer_id
    # row-level security: the other tenant sees none of them, and cannot add one
    assert await observer_events(gateway.db, stranger, invitation.interview_id) == []
    async with gateway.db.tenant(stranger) as conn:
        cur = await conn.execute("SELECT count(*) FROM observer_audit")
        assert (await cur.fetchone()) == (0,)
    with pytest.raises(Exception, match="row-level security"):
        async with gateway.db.tenant(stranger) as conn:
            await conn.execute(
                "INSERT INTO observer_audit (tenant_id, interview_id, observer_id, role, event)"
                " VALUES (%s, %s, %s, 'observer', 'join')",
                [invitation.tenant_id, invitation.interview_id, UUID(int=1)],
            )
    await candidate.close()


@pytest.mark.slow
async def test_call_quality_per_leg_and_per_turn_in_the_database_metrics_and_api(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay", quality_interval=0.3)
    invitation = await gateway.invite("relay")
    candidate = gateway.candidate(invitation)
    interview = asyncio.create_task(candidate.run(time_limit=60))
    session = await live_session(gateway, invitation)
    async with asyncio.timeout(WITHIN):
        await session.losses_reach(lambda: session.call is not None)
    async with aiohttp.ClientSession() as http:
        # while it runs, each leg's last sample is a metric of the live interview
        async with asyncio.timeout(WITHIN):
            while len(latest := session.quality.latest) < 2 or any(  # noqa: ASYNC110 (a timer)
                sample.bitrate_out_kbps is None for sample in latest.values()
            ):
                await asyncio.sleep(0.1)
        async with http.get(f"{gateway.base_url}/metrics") as r:
            metrics = await r.text()
        for leg in ("browser", "upstream"):
            label = f'{{interview_id="{invitation.interview_id}",leg="{leg}"}}'
            assert f"gateway_call_bitrate_out_bits_per_second{label}" in metrics
        report = await interview
        assert report.error is None, report.error
        async with http.get(f"{gateway.base_url}/metrics") as r:
            metrics = await r.text()
        key = await tenants.create_api_key(gateway.db, gateway.tenant_id, "tests")
        path = f"{gateway.base_url}/v1/interviews/{invitation.interview_id}/quality"
        async with http.get(path, headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 200
            summary = await r.json()
        stranger = await tenants.create_tenant(gateway.db, "stranger")
        stranger_key = await tenants.create_api_key(gateway.db, stranger, "s")
        async with http.get(path, headers={"Authorization": f"Bearer {stranger_key}"}) as r:
            assert r.status == 404
    turns = summary["turns"]
    # each answer's end of speech, then the interviewer's next question (or its closing line)
    assert turns["count"] == report.answers_spoken > 0
    assert 0 < turns["latency_ms_p50"] <= turns["latency_ms_p95"] <= turns["latency_ms_max"]
    assert turns["latency_ms_max"] < 10_000
    assert f"gateway_turn_latency_seconds_count {float(turns['count'])}" in metrics
    for leg in ("browser", "upstream"):
        figures = summary["legs"][leg]
        assert figures["samples"] > 3
        assert figures["bitrate_out_kbps"]["p95"] > 8  # voice at times, not silence alone
        assert figures["bitrate_in_kbps"]["p95"] > 8
        assert figures["loss"]["p95"] is not None and figures["loss"]["p95"] < 0.05  # loopback
        assert figures["worst"] is not None
    async with gateway.db.tenant(stranger) as conn:
        for table in ("call_quality", "turn_latency"):
            cur = await conn.execute(f"SELECT count(*) FROM {table}")
            assert (await cur.fetchone()) == (0,)
