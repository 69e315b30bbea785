"""Hostile input (hypothesis): signaling frames, SDP offers and trickled candidates, admin API
bodies. Nothing crashes or hangs, every refusal is a clear error (never ``internal``, never a
500), and healthy relay interviews of another tenant carry on meanwhile.

Most cases run sans I/O, where they are cheap: frames through the server's protocol, and SDP
mutations through the signaling's checks and then, when those accept one, through aiortc's own
parser (``setRemoteDescription`` on a fresh peer connection, which opens no socket). A smaller
number run through a real gateway: frames, offers to a relay (so that aiortc's parser in the
gateway reads them) with candidates trickled after them, and admin API bodies. The gateway runs
on an event loop of its own thread, so that hypothesis can drive plain synchronous examples
against it; each example's I/O is submitted to that loop with a timeout, which is what "never
hangs" means here. ``CASES`` counts every case; the module's last test prints the counts
(``-s`` shows them). Example counts are bounded to keep the file under a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import DATABASE, JWT_SECRET, create_app
from gateway.config import Settings
from gateway.sessions import manager
from gateway.sessions.invitations import Invitation, invite
from gateway.sim.candidate import CandidateReport
from signaling.candidates import CandidatePolicy
from signaling.errors import SignalingError
from signaling.sdp import parse_offer, with_explicit_directions, with_opus_parameters
from storage import tenants
from tests.conftest import create_database, drop_database
from tests.gateway.conftest import FAST_SPEECH, RunningGateway
from tests.signaling.signaling_samples import (
    AUDIO,
    CHROME_OFFER,
    DATA,
    FIREFOX_OFFER,
    LOOPBACK,
    OFFER,
    OFFER_AV,
    VIDEO,
    frames,
    json_values,
    offer_of,
)
from tests.signaling.test_signaling_properties import check_errors_are_clear, session_in

T = TypeVar("T")
#: The gateway's thread (aioice, the simulated upstream) draws from the ``random`` module while
#: hypothesis generates examples in the test's thread; hypothesis mistakes that for a strategy
#: using ``random`` and warns. It is not one, and the examples stay reproducible.
pytestmark = [pytest.mark.filterwarnings("ignore:Do not use the `random` module"), pytest.mark.slow]
EXAMPLE_TIMEOUT = 30.0
#: Close codes a fuzzed socket may end with: normal, going away, too big, invalid UTF-8, ours.
CLOSE_CODES = {1000, 1001, 1007, 1009, *range(4000, 5000)}
ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: How many cases each fuzz target ran (reported at the end of the module).
CASES: Counter[str] = Counter()


@dataclasses.dataclass
class FuzzGateway:
    gateway: RunningGateway
    loop: asyncio.AbstractEventLoop
    http: aiohttp.ClientSession
    api_key: str
    healthy: asyncio.Future[list[CandidateReport]]
    stop_healthy: asyncio.Event

    def run(self, coro: Awaitable[T], timeout: float = EXAMPLE_TIMEOUT) -> T:
        """Run ``coro`` on the gateway's loop; a hang is a TimeoutError, i.e. a failure."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    async def invitation(self, mode: str = "proxy") -> Invitation:
        g = self.gateway
        return await invite(g.db, g.app[JWT_SECRET], g.tenant_id, mode=mode)


async def healthy_interviews(
    gateway: RunningGateway, tenant_id: uuid.UUID, stop: asyncio.Event
) -> list[CandidateReport]:
    """Relay interviews of another tenant, back to back, until told to stop (at most 20)."""
    reports = []
    for _ in range(20):
        invitation = await invite(gateway.db, gateway.app[JWT_SECRET], tenant_id, mode="relay")
        reports.append(await gateway.candidate(invitation).run(time_limit=60))
        if stop.is_set():
            break
    return reports


@pytest.fixture(scope="module")
def fuzz(
    postgres_url: str,
    template_database: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[FuzzGateway]:
    name = f"igw_fuzz_{uuid.uuid4().hex[:12]}"
    url = create_database(postgres_url, name, template=template_database)
    # Admissions come by the hundred here, beside healthy interviews, in a process whose GIL
    # hypothesis shares: on a busy machine one can wait more than the 2 s after which
    # admission says ``database_unavailable`` (tested in test_database_outage). What this
    # module tests is the handling of frames, so admission may wait as long as a frame may.
    patch = pytest.MonkeyPatch()
    patch.setattr(manager, "DATABASE_WAIT", EXAMPLE_TIMEOUT)
    request.addfinalizer(patch.undo)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzzed-gateway", daemon=True)
    thread.start()

    async def start() -> FuzzGateway:
        settings = Settings(
            database_url=url,
            data_dir=Path(tmp_path_factory.mktemp("fuzz")),
            jwt_secret="fuzz-secret-" + "z" * 32,
            ice_addresses=("127.0.0.1",),
            # the suite runs on loopback: its peers' candidates are 127.0.0.1, allowed here
            ice_allow_remote=("127.0.0.0/8",),
            sim_words_per_second=FAST_SPEECH,
            reconnect_grace=0.2,
            hello_timeout=3.0,
            rate_api_per_ip=0,
            rate_api_per_tenant=0,
            rate_signal_per_ip=0,
            rate_signal_per_tenant=0,
            max_sessions_per_tenant=100_000,
        )
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        db = app[DATABASE]
        fuzzed = await tenants.create_tenant(db, "fuzzed")
        calm = await tenants.create_tenant(db, "calm")
        gateway = RunningGateway(app, runner, f"http://127.0.0.1:{runner.addresses[0][1]}", fuzzed)
        stop = asyncio.Event()
        return FuzzGateway(
            gateway=gateway,
            loop=loop,
            http=aiohttp.ClientSession(),
            api_key=await tenants.create_api_key(db, fuzzed),
            healthy=asyncio.ensure_future(healthy_interviews(gateway, calm, stop)),
            stop_healthy=stop,
        )

    env = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield env
    finally:

        async def stop() -> None:
            env.stop_healthy.set()
            env.healthy.cancel()
            await asyncio.gather(env.healthy, return_exceptions=True)
            await env.http.close()
            await env.gateway.stop()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        drop_database(postgres_url, name)


def check_error(message: dict[str, Any]) -> None:
    """A clear error: a stable code (never ``internal``), a message, a fatal flag."""
    assert ERROR_CODE.fullmatch(str(message.get("code"))), message
    assert message["code"] != "internal", message
    assert isinstance(message.get("message"), str) and message["message"], message
    assert isinstance(message.get("fatal"), bool), message


async def drain_until_pong(ws: aiohttp.ClientWebSocketResponse, ping_id: str) -> None:
    """Read until our ping is answered or the socket closes cleanly; check every error."""
    async for frame in ws:
        if frame.type is not aiohttp.WSMsgType.TEXT:
            continue
        message = json.loads(frame.data)
        if message.get("type") == "error":
            check_error(message)
        if message.get("type") == "pong" and message.get("id") == ping_id:
            return
    assert ws.close_code in CLOSE_CODES, ws.close_code


async def hello(env: FuzzGateway, mode: str = "proxy") -> aiohttp.ClientWebSocketResponse:
    invitation = await env.invitation(mode)
    ws = await env.http.ws_connect(invitation.signal_url(env.gateway.base_url), max_msg_size=0)
    await ws.send_json({"type": "hello", "token": invitation.token})
    welcome = await ws.receive_json(timeout=10)
    assert welcome["type"] == "welcome", welcome
    return ws


# -- signaling frames, sans I/O ----------------------------------------------------------------


@settings(max_examples=3000, deadline=None, database=None)
@given(
    phase=st.sampled_from(["fresh", "ready", "answered"]),
    batch=st.lists(frames, min_size=1, max_size=3),
)
def test_fuzzed_frames_get_clear_errors_from_the_server_protocol(
    phase: str, batch: list[str | bytes]
) -> None:
    session = session_in(phase)
    for frame in batch:
        session.receive_frame(frame)
        assert all(e["code"] != "internal" for e in check_errors_are_clear(session.actions()))
    CASES["signaling frames, sans I/O"] += 1


# -- SDP offers -----------------------------------------------------------------------------

BASES = [OFFER, OFFER_AV, offer_of(AUDIO), offer_of(VIDEO, DATA), CHROME_OFFER, FIREFOX_OFFER]
#: Candidate addresses of every class the policy knows, a hostname or two, a public one.
CANDIDATE_HOSTS = (
    *("127.0.0.1", "169.254.169.254", "10.0.0.1", "::1", "fe80::1", "::ffff:10.0.0.1"),
    *("100.64.0.1", "fd00::1", "224.0.0.1", "x.local", "example.com", "203.0.113.9", "0.0.0.0"),
)
#: Whole lines: attributes a WebRTC stack reads, well-formed or not, and candidates of every
#: address class, in the SDP's own format.
sdp_lines = st.one_of(
    st.sampled_from(
        [
            "a=mid:0",
            "a=mid:7",
            "m=audio 9 RTP/AVP 0",
            "m=video 0 UDP/TLS/RTP/SAVPF 96",
            "m=application 9 DTLS/SCTP 5000",
            "c=IN IP4 0.0.0.0",
            "c=IN IP4",
            "a=group:BUNDLE 0 1 2 3",
            "a=group:BUNDLE",
            "a=rtpmap:111 opus/48000/2",
            "a=rtpmap:96 opus",
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:97 rtx/90000",
            "a=rtpmap:96 H264/90000",
            "a=fmtp:96 profile-level-id=zzzzzz",
            "a=fmtp:96 profile-level-id=ff0000;packetization-mode=1",
            "a=fmtp:97 apt=96",
            "a=fmtp:111 minptime=x",
            "a=rtcp-fb:111",
            "a=rtcp-fb:* nack",
            "a=setup:active",
            "a=setup:holdconn",
            "a=setup",
            "a=fingerprint",
            "a=fingerprint:sha-256 ZZ",
            "a=ice-ufrag:",
            "a=ice-lite",
            "a=ice-options:trickle",
            "a=extmap:1/sendonly urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=extmap:x y",
            "a=ssrc:1 cname:x",
            "a=ssrc:1",
            "a=ssrc-group:FID 1 2",
            "a=sctpmap:5000 webrtc-datachannel 1024",
            "a=sctp-port:0",
            "a=max-message-size:99999999999999999999",
            "a=rtcp:9 IN IP6 ::",
            "a=msid-semantic: WMS *",
            "a=end-of-candidates",
            "a=inactive",
            "a=recvonly",
            "v=1",
            "t=0 0",
            "a=" + "x" * 5000,
        ]
    ),
    st.sampled_from(CANDIDATE_HOSTS).map(
        lambda host: f"a=candidate:1 1 udp 2122260223 {host} 9 typ host"
    ),
    st.text(max_size=60).map(lambda t: t.replace("\r", "").replace("\n", "")),
)
#: Values for an existing ``a=name:value`` line: numbers, separators, nothing.
sdp_values = st.one_of(
    st.text(alphabet="0123456789 /:;=-*abcxyzABCXYZ.", max_size=24),
    st.sampled_from(["", " ", "0", "-1", "99999999999", "1/2/3", "x y z", "111 ", "٣"]),
)


@st.composite
def mutated_offers(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(BASES)).split("\r\n")
    for _ in range(draw(st.integers(0, 4))):
        op = draw(
            st.sampled_from(["delete", "duplicate", "insert", "replace", "revalue", "truncate"])
        )
        index = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "delete" and lines:
            del lines[index]
        elif op == "duplicate" and lines:
            lines.insert(index, lines[index])
        elif op == "insert":
            lines.insert(index, draw(sdp_lines))
        elif op == "replace" and lines:
            lines[index] = draw(sdp_lines)
        elif op == "revalue" and lines:
            name = lines[index].partition(":")[0]
            lines[index] = f"{name}:{draw(sdp_values)}"
        else:
            lines = lines[:index]
    separator = draw(st.sampled_from(["\r\n", "\r\n", "\n", "\r"]))
    return separator.join(lines)


#: What the relay turns into ``bad_sdp`` when aiortc raises it (gateway/media/relay.py).
AIORTC_REFUSALS = (ValueError, AssertionError)
SANS_IO_POLICY = CandidatePolicy(LOOPBACK)
#: One loop for the sans-I/O cases (peer connections need one, though they open no socket).
SANS_IO_LOOP = asyncio.new_event_loop()


async def aiortc_reads(sdp: str) -> tuple[str, set[str]]:
    """Give the offer to aiortc as the relay's browser leg does (gateway/media/relay.py):
    directions written out, the offer read (what it refuses there is ``bad_sdp``), an audio
    track added, an answer made and the offer's Opus parameters applied to it (anything raised
    there would be ``internal``). What it made
    of the offer, and its remote candidates. The answer is made but not set: no socket opens."""
    pc = RTCPeerConnection()
    track = AudioStreamTrack()
    try:
        try:
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=with_explicit_directions(sdp), type="offer")
            )
        except AIORTC_REFUSALS:
            return "refused by aiortc", set()
        transports = {t.receiver.transport.transport for t in pc.getTransceivers()}
        if pc.sctp is not None:
            transports.add(pc.sctp.transport.transport)
        if any(t.kind == "audio" for t in pc.getTransceivers()):
            pc.addTrack(track)
            answer = await pc.createAnswer()
            # as the relay does: the offer's Opus parameters, read back from aiortc's own
            # writing of the offer (where a c= address it read but cannot write failed)
            with_opus_parameters(answer.sdp, pc.remoteDescription.sdp)
        return "read", {c.ip for t in transports for c in t.getRemoteCandidates()}
    finally:
        track.stop()
        await pc.close()


@settings(max_examples=6500, deadline=None, database=None)
@given(sdp=mutated_offers())
def test_fuzzed_sdp_the_signaling_accepts_is_read_or_refused_cleanly_by_aiortc(sdp: str) -> None:
    """What the checks accept never crashes aiortc (anything but the errors the relay turns into
    bad_sdp would be ``internal``), and no refused candidate address reaches its ICE agent."""
    try:
        parse_offer(sdp)
    except SignalingError as exc:
        assert exc.code in ("bad_sdp", "no_audio") and exc.message
        CASES[f"sdp, sans I/O: {exc.code}"] += 1
        return
    screened = SANS_IO_POLICY.screen_offer(sdp)
    outcome, addresses = SANS_IO_LOOP.run_until_complete(aiortc_reads(screened.sdp))
    assert all(SANS_IO_POLICY.refusal(address) is None for address in addresses), addresses
    CASES[f"sdp, sans I/O: {outcome}"] += 1


# -- through the real gateway: signaling frames ----------------------------------------------------


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sequence=st.lists(frames, min_size=1, max_size=6))
def test_fuzzed_signaling_frames_get_clear_errors(
    fuzz: FuzzGateway, sequence: list[str | bytes]
) -> None:
    async def exchange() -> None:
        ws = await hello(fuzz)
        try:
            for frame in sequence:
                if ws.closed:
                    break
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
            if not ws.closed:
                await ws.send_json({"type": "ping", "id": "fuzz-final"})
            await drain_until_pong(ws, "fuzz-final")
        finally:
            await ws.close()

    fuzz.run(exchange())
    CASES["signaling frames"] += 1


# -- ... SDP offers to a relay, with trickled candidates ---------------------------------


trickled = st.one_of(
    sdp_lines.map(lambda line: line.removeprefix("a=")),
    st.text(max_size=80),
)


#: Errors that answer a trickled candidate rather than the offer.
CANDIDATE_CODES = frozenset(
    {"bad_candidate", "unknown_mline", "candidate_refused", "offer_required"}
)


async def offer_outcome(ws: aiohttp.ClientWebSocketResponse) -> str:
    """Read until the offer is answered or refused; check every error on the way."""
    async for frame in ws:
        message = json.loads(frame.data)
        if message["type"] == "answer":
            assert message["mode"] == "relay" and message["sdp"]
            return "answer"
        if message["type"] == "error":
            check_error(message)
            if message["code"] not in CANDIDATE_CODES:
                return str(message["code"])
    assert ws.close_code in CLOSE_CODES
    return "closed"


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sdp=mutated_offers(), candidates=st.lists(trickled, max_size=3))
def test_fuzzed_sdp_offers_are_answered_or_refused_clearly(
    fuzz: FuzzGateway, sdp: str, candidates: list[str]
) -> None:
    """Through a relay, whose browser leg hands the offer to aiortc's parser in the gateway."""

    async def exchange() -> str:
        ws = await hello(fuzz, "relay")
        try:
            await ws.send_json({"type": "offer", "sdp": sdp})
            for candidate in candidates:
                await ws.send_json({"type": "candidate", "candidate": candidate, "sdpMid": "0"})
            outcome = await offer_outcome(ws)
            if not ws.closed:
                await ws.send_json({"type": "ping", "id": "fuzz-final"})
                await drain_until_pong(ws, "fuzz-final")
            return outcome
        finally:
            await ws.close()

    CASES[f"sdp offers, relay: {fuzz.run(exchange())}"] += 1


# -- admin API bodies -----------------------------------------------------------------------

api_values = st.one_of(
    json_values,
    st.sampled_from(["auto", "relay", "proxy", "alloy", "\x00", "\ud800", 60, 10**30, -1, True]),
)
api_bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            key: api_values
            for key in (
                "mode",
                "expires_in",
                "max_duration",
                "candidate_ref",
                "metadata",
                "single_use",
                "session",
                "extra",
            )
        },
    ).map(lambda body: json.dumps(body)),
    json_values.map(json.dumps),
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=api_bodies, content_type=st.sampled_from(["application/json"] * 5 + ["text/plain"]))
def test_fuzzed_admin_bodies_get_201_or_a_clear_4xx(
    fuzz: FuzzGateway, body: str, content_type: str
) -> None:
    async def exchange() -> int:
        headers = {"Authorization": f"Bearer {fuzz.api_key}", "Content-Type": content_type}
        url = fuzz.gateway.base_url + "/v1/interviews"
        async with fuzz.http.post(
            url, data=body.encode("utf-8", "surrogatepass"), headers=headers
        ) as r:
            payload = await r.json()
            if r.status == 201:
                async with fuzz.http.get(f"{url}/{payload['id']}", headers=headers) as again:
                    assert again.status == 200
            else:
                assert r.status in (400, 413, 415), (r.status, payload)
                assert (
                    ERROR_CODE.fullmatch(payload["error"]["code"]) and payload["error"]["message"]
                )
            return r.status

    CASES[f"admin bodies: {fuzz.run(exchange())}"] += 1


# -- and meanwhile ----------------------------------------------------------------------------


def test_healthy_interviews_carried_on_and_the_gateway_is_well(fuzz: FuzzGateway) -> None:
    """Runs last in this module: the calm tenant's interviews all completed during the fuzzing."""

    async def finish() -> tuple[list[CandidateReport], int]:
        fuzz.stop_healthy.set()
        reports = await fuzz.healthy
        async with fuzz.http.get(fuzz.gateway.base_url + "/healthz") as response:
            return reports, response.status

    reports, health = fuzz.run(finish(), timeout=120)
    assert health == 200
    assert reports and [r.error for r in reports] == [None] * len(reports)
    assert all(r.mode == "relay" and r.audio_frames_received > 0 for r in reports)
    CASES["healthy relay interviews"] = len(reports)
    total = sum(v for k, v in CASES.items() if not k.startswith("healthy"))
    print(
        f"\nfuzz cases: {total} in all; " + ", ".join(f"{k}={v}" for k, v in sorted(CASES.items()))
    )
