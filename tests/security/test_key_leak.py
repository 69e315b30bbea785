"""The upstream API key never leaves for anywhere but the upstream.

A recognisable key is set the way an operator sets it (``OPENAI_API_KEY``); interviews run in
relay and proxy mode against an OpenAI-compatible upstream on loopback, and then fail every way
we can make them fail, including an upstream that *echoes the key back* in its error bodies (as
OpenAI's own "Incorrect API key provided: sk-..." does). Every HTTP response (status line,
headers, body), every signaling message, the pages, every captured log line (with tracebacks),
every database row and every file the gateway wrote are scanned for the key and its tail.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
from aiohttp import web

from gateway import logs
from gateway.sessions.invitations import Invitation
from gateway.sim.upstream import SimulatedUpstream
from signaling.client import SignalingClient, SignalingClientError
from signaling.client_protocol import ClientProtocol
from tests.gateway.conftest import FAST_SPEECH
from tests.signaling.signaling_samples import AUDIO, offer_of

from .conftest import GatewayFactory, RunningGateway, make_tenant

KEY = "sk-proj-CANARY" + secrets.token_hex(20)
NEEDLES = (KEY, KEY[-12:], KEY[:24])


class Seen:
    """Everything the outside world got from the gateway, as text."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    async def response(self, where: str, response: aiohttp.ClientResponse) -> None:
        head = f"{response.status} {response.reason}\n" + "\n".join(
            f"{k}: {v}" for k, v in response.headers.items()
        )
        self.add(where, head + "\n" + await response.text(errors="replace"))

    def leaks(self) -> list[str]:
        return [where for where, text in self.texts for needle in NEEDLES if needle in text]


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Seen:
    """Records every message any SignalingClient (and so every headless candidate) receives."""
    record = Seen()
    receive_frame = ClientProtocol.receive_frame

    def recording(self: ClientProtocol, frame: str | bytes) -> None:
        record.add("signaling", frame if isinstance(frame, str) else repr(frame))
        receive_frame(self, frame)

    monkeypatch.setattr(ClientProtocol, "receive_frame", recording)
    return record


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """Logging set up at process start is process-wide: put the root handlers and every
    logger's level and filters back afterwards, so no other test inherits it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = {name: logging.getLogger(name) for name in logging.root.manager.loggerDict}
    saved = {name: (logger.level, logger.filters[:]) for name, logger in loggers.items()}
    yield
    root.handlers[:], root.level = handlers, level
    for name in logging.root.manager.loggerDict:
        logger = logging.getLogger(name)
        saved_level, logger.filters[:] = saved.get(name, (logging.NOTSET, []))
        logger.setLevel(saved_level)


@pytest.fixture
def redacted_logs(logging_restored: None) -> None:
    """What ``serve`` sets up at process start (in ``logs.configure``): credential headers
    that libraries log are blanked."""
    logs.redact_credential_logs()


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    """An upstream that refuses everything and quotes the caller's key back, headers and all."""

    async def refuse(request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "")
        body = {"error": {"message": f"Incorrect API key provided: {key}", "code": "invalid"}}
        return web.json_response(body, status=401, headers={"X-Echo": key})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


async def interview(gateway: RunningGateway, invitation: Invitation) -> str | None:
    report = await gateway.candidate(invitation).run(time_limit=60)
    return report.error


async def scan_http(seen: Seen, gateway: RunningGateway, http: aiohttp.ClientSession) -> None:
    tenant = await make_tenant(gateway, http, "scan")
    created = await tenant.create(mode="proxy", session={"instructions": "hi", "voice": "alloy"})
    paths = [
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/static/room.js",
        "/static/interview-client.js",
        "/static/room.html",
        f"/interview/{created['id']}",
        "/interview/nope",
        "/v1/interviews/nope",
    ]
    for path in paths:
        async with http.get(gateway.base_url + path) as response:
            await seen.response(path, response)
    async with await tenant.request("GET", "/v1/interviews?limit=100") as response:
        await seen.response("list", response)
        items = (await response.json())["items"]
    for item in items:
        for suffix in ("", "/transcript", "/transcript?format=text", "/transcript?format=vtt"):
            async with await tenant.request("GET", f"/v1/interviews/{item['id']}{suffix}") as r:
                await seen.response(suffix or "get", r)


async def scan_storage(seen: Seen, gateway: RunningGateway, data_dir: Path) -> None:
    async with await psycopg.AsyncConnection.connect(gateway.db.admin_conninfo) as conn:
        for table in ("interview_sessions", "transcript_entries", "tenants", "api_keys"):
            cur = await conn.execute(f"SELECT t::text FROM {table} t")
            seen.add(f"db:{table}", "\n".join(row[0] for row in await cur.fetchall()))
    for path in data_dir.rglob("*"):
        if path.is_file() and "postgres" not in path.parts:
            seen.add(f"file:{path.name}", path.read_bytes().decode(errors="replace"))


@pytest.mark.slow
async def test_the_upstream_key_appears_nowhere_but_upstream(
    start_gateway: GatewayFactory,
    seen: Seen,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    echo_url: str,
    redacted_logs: None,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    upstream = SimulatedUpstream(api_key=KEY, words_per_second=FAST_SPEECH)
    base_url = await upstream.start("127.0.0.1", 0)
    errors: dict[str, str | None] = {}
    try:
        good = await start_gateway(mode="auto", upstream="openai", upstream_base_url=base_url)
        for mode in ("relay", "proxy"):
            errors[mode] = await interview(good, await good.invite(mode))
        # failures: the upstream quoting the key back, in both modes; an unreachable upstream;
        # a relay with no capacity; a bad offer; a bad token
        bad = await start_gateway(mode="auto", upstream="openai", upstream_base_url=echo_url)
        for mode in ("relay", "proxy"):
            errors[f"echo-{mode}"] = await interview(bad, await bad.invite(mode))
        gone = await start_gateway(
            mode="auto", upstream="openai", upstream_base_url="http://127.0.0.1:9/v1"
        )
        errors["unreachable"] = await interview(gone, await gone.invite("proxy"))
        full = await start_gateway(
            mode="relay", upstream="openai", upstream_base_url=base_url, max_relay_sessions=0
        )
        errors["no-capacity"] = await interview(full, await full.invite("relay"))
        invitation = await bad.invite("proxy")
        async with SignalingClient() as client:
            await client.connect(invitation.signal_url(bad.base_url), invitation.token)
            for sdp in ("v=0\r\nbroken", offer_of(AUDIO)):
                try:
                    await client.offer(sdp)
                except SignalingClientError as exc:
                    seen.add("offer error", str(exc))
        async with SignalingClient() as client:
            try:
                await client.connect(invitation.signal_url(bad.base_url), "forged.token.here")
            except SignalingClientError as exc:
                seen.add("hello error", str(exc))
        async with aiohttp.ClientSession() as http:
            for gateway in (good, bad, gone, full):
                await gateway.writer.flush()
                await scan_http(seen, gateway, http)
        for gateway in (good, bad, gone, full):
            await scan_storage(seen, gateway, tmp_path)
    finally:
        await upstream.close()
    assert errors["relay"] is None and errors["proxy"] is None, errors
    assert all(errors[k] for k in ("echo-relay", "echo-proxy", "unreachable", "no-capacity"))
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        seen.add(f"log:{record.name}", formatter.format(record))
    for where, error in errors.items():
        seen.add(f"report:{where}", str(error))
    assert len(seen.texts) > 100 and any(w == "signaling" for w, _ in seen.texts)
    assert seen.leaks() == []


def test_the_logging_set_up_at_start_blanks_credential_headers(
    logging_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("DEBUG", json_lines=True)
    for header in ("Authorization: Bearer", "api-key:", "OpenAI-API-Key:"):
        logging.getLogger("websockets.client").debug("> %s %s", header, KEY)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all("[redacted]" in line for line in lines)
    assert not any(needle in line for line in lines for needle in NEEDLES)
