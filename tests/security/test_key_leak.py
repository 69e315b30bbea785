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
from gateway.sim.contract import ApiError
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

    def leaks(self, needles: tuple[str, ...] = NEEDLES) -> list[str]:
        return [where for where, text in self.texts for needle in needles if needle in text]


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
    handlers, level, factory = root.handlers[:], root.level, logging.getLogRecordFactory()
    loggers = {name: logging.getLogger(name) for name in logging.root.manager.loggerDict}
    saved = {name: (logger.level, logger.filters[:]) for name, logger in loggers.items()}
    yield
    root.handlers[:], root.level = handlers, level
    logging.setLogRecordFactory(factory)
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


def test_the_logging_set_up_at_start_blanks_credential_headers_and_the_key_in_any_shape(
    logging_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    azure = secrets.token_hex(16)  # Azure OpenAI's keys: 32 hex digits, no sk- prefix
    logs.configure("DEBUG", json_lines=True, secrets=[azure])
    for header in ("Authorization: Bearer", "api-key:", "OpenAI-API-Key:"):
        logging.getLogger("websockets.client").debug("> %s %s", header, KEY)
    logging.getLogger("websockets.client").debug("< Set-Cookie: %s", "session=cookie-secret")
    logging.getLogger("any.library").warning("upstream said %r", {"code": azure[5:]})
    try:
        raise RuntimeError(f"quoted back: {azure.upper()} {azure}")
    except RuntimeError:
        logging.getLogger("gateway.anywhere").exception("failed")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 6 and all("[redacted]" in line for line in lines)
    needles = (*NEEDLES, azure, azure[5:], azure[-12:], "cookie-secret")
    assert not any(needle in line for line in lines for needle in needles)
    assert "RuntimeError" in lines[-1]  # the traceback is kept, the key blanked in it


async def test_an_upstream_error_quoting_a_key_of_any_shape_reaches_no_browser_row_log_or_label(
    start_gateway: GatewayFactory,
    seen: Seen,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    logging_restored: None,
) -> None:
    """A key without OpenAI's ``sk-`` shape, quoted back whole in the upstream's error code
    and without its first characters in its message: the browser gets a code of the fixed
    set, the row and the metric label a reason of the fixed set, and no log line has it."""
    key = "AzureStyle" + secrets.token_hex(16)
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    logs.redact_credential_logs()  # what serve does at process start (logs.configure)...
    logs.scrub_secret_logs([key])  # ...without taking the log capture's place
    upstream = SimulatedUpstream(api_key=key, words_per_second=FAST_SPEECH)
    base_url = await upstream.start("127.0.0.1", 0)
    upstream.refusal = ApiError(
        401, f"Incorrect API key provided: {key[3:]}", code=f"invalid_api_key:{key}"
    )
    try:
        gateway = await start_gateway(mode="auto", upstream="openai", upstream_base_url=base_url)
        codes, reasons = {}, {}
        for mode in ("proxy", "relay"):
            invitation = await gateway.invite(mode)
            async with SignalingClient() as client:
                await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
                with pytest.raises(SignalingClientError) as refused:
                    await client.offer(offer_of(AUDIO))
            codes[mode] = refused.value.code
            reasons[mode] = (await gateway.ended_record(invitation)).end_reason
        async with aiohttp.ClientSession() as http, http.get(f"{gateway.base_url}/metrics") as r:
            seen.add("metrics", await r.text())
    finally:
        await upstream.close()
    assert codes == {"proxy": "upstream_unavailable", "relay": "relay_unavailable"}
    assert reasons == {"proxy": "upstream_unauthorized", "relay": "relay_unavailable"}
    assert 'gateway_sessions_ended_total{reason="upstream_unauthorized"} 1.0' in seen.texts[-1][1]
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert refusals and all("[redacted]" in r.getMessage() for r in refusals)  # logged, blanked
    for record in caplog.records:
        seen.add(f"log:{record.name}", logging.Formatter("%(message)s").format(record))
    assert seen.leaks((key, key[3:], key[-12:])) == []
