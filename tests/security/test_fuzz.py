"""Hostile input against a running gateway (hypothesis): signaling frames, SDP offers and admin
API bodies. The gateway never crashes or hangs, always answers with a clear error (never
``internal``, never a 500), and healthy relay interviews of another tenant carry on meanwhile.

The gateway runs on an event loop of its own thread, so that hypothesis can drive plain
synchronous examples against it; each example's I/O is submitted to that loop with a timeout,
which is what "never hangs" means here. Example counts are bounded to keep the file near 30 s.
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import DATABASE, JWT_SECRET, create_app
from gateway.config import Settings
from gateway.sessions.invitations import Invitation, invite
from gateway.sim.candidate import CandidateReport
from storage import interviews, tenants
from tests.conftest import create_database, drop_database
from tests.gateway.conftest import FAST_SPEECH, RunningGateway
from tests.signaling.signaling_samples import (
    AUDIO,
    DATA,
    OFFER,
    OFFER_AV,
    VIDEO,
    frames,
    json_values,
    offer_of,
)

T = TypeVar("T")
#: The gateway's thread (aioice, the simulated upstream) draws from the ``random`` module while
#: hypothesis generates examples in the test's thread; hypothesis mistakes that for a strategy
#: using ``random`` and warns. It is not one, and the examples stay reproducible.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module")
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

    async def invitation(self) -> Invitation:
        g = self.gateway
        return await invite(g.db, g.app[JWT_SECRET], g.tenant_id, mode="proxy")


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
    postgres_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzGateway]:
    name = f"igw_fuzz_{uuid.uuid4().hex[:12]}"
    url = create_database(postgres_url, name, template=template_database)
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
        fuzzed = await interviews.create_tenant(db, "fuzzed")
        calm = await interviews.create_tenant(db, "calm")
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


async def hello(env: FuzzGateway) -> aiohttp.ClientWebSocketResponse:
    invitation = await env.invitation()
    ws = await env.http.ws_connect(invitation.signal_url(env.gateway.base_url), max_msg_size=0)
    await ws.send_json({"type": "hello", "token": invitation.token})
    welcome = await ws.receive_json(timeout=10)
    assert welcome["type"] == "welcome", welcome
    return ws


# -- signaling frames -----------------------------------------------------------------------


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


# -- SDP offers -----------------------------------------------------------------------------

BASES = [OFFER, OFFER_AV, offer_of(AUDIO), offer_of(VIDEO, DATA)]
sdp_lines = st.one_of(
    st.sampled_from(
        [
            "a=mid:0",
            "m=audio 9 RTP/AVP 0",
            "c=IN IP4 0.0.0.0",
            "a=group:BUNDLE 0 1 2 3",
            "a=rtpmap:111 opus/48000/2",
            "a=setup:active",
            "m=application 0 x y",
            "v=1",
            "t=0 0",
            "a=fingerprint:sha-256 ZZ",
            "a=ice-ufrag:",
            "a=inactive",
            "a=" + "x" * 5000,
        ]
    ),
    st.text(max_size=60).map(lambda t: t.replace("\r", "").replace("\n", "")),
)


@st.composite
def mutated_offers(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(BASES)).split("\r\n")
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["delete", "duplicate", "insert", "replace", "truncate"]))
        index = draw(st.integers(0, max(0, len(lines) - 1)))
        if op == "delete" and lines:
            del lines[index]
        elif op == "duplicate" and lines:
            lines.insert(index, lines[index])
        elif op == "insert":
            lines.insert(index, draw(sdp_lines))
        elif op == "replace" and lines:
            lines[index] = draw(sdp_lines)
        else:
            lines = lines[:index]
    separator = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    return separator.join(lines)


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(sdp=mutated_offers())
def test_fuzzed_sdp_offers_are_answered_or_refused_clearly(fuzz: FuzzGateway, sdp: str) -> None:
    async def exchange() -> str:
        ws = await hello(fuzz)
        try:
            await ws.send_json({"type": "offer", "sdp": sdp})
            async for frame in ws:
                message = json.loads(frame.data)
                if message["type"] == "answer":
                    assert message["mode"] in ("relay", "proxy") and message["sdp"]
                    return "answer"
                if message["type"] == "error":
                    check_error(message)
                    return str(message["code"])
            assert ws.close_code in CLOSE_CODES
            return "closed"
        finally:
            await ws.close()

    CASES[f"sdp offers: {fuzz.run(exchange())}"] += 1


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
