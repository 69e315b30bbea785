"""The aiohttp endpoint over a real loopback socket, with a handler that records its calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from signaling.client import SignalingClient, SignalingClientError
from signaling.server import (
    Answer,
    IceCandidate,
    SignalingChannel,
    SignalingError,
    signaling_handler,
)
from signaling.tokens import TokenClaims, TokenVerifier
from tests.signaling.signaling_samples import HOST_CANDIDATE, INTERVIEW, LOOPBACK, OFFER, TENANT

Token = Callable[..., str]
WAIT = 5.0  # every wait is bounded; a healthy run never gets near it

ANSWER_SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@dataclass
class RecordingHandler:
    """The gateway's seam, recording what it is told; behaviour is set per test."""

    claims: TokenClaims
    channel: SignalingChannel
    session_id: str = "sess-1"
    reconnect_secret: str = "secret-of-sess-1"
    calls: list[tuple[str, Any]] = field(default_factory=list)
    closes: list[str] = field(default_factory=list)
    offer_gate: asyncio.Event | None = None
    offer_started: asyncio.Event = field(default_factory=asyncio.Event)
    candidates_ended: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    fail_on_event: bool = False

    async def on_offer(self, sdp: str, *, reconnect: bool) -> Answer:
        self.calls.append(("offer", reconnect))
        self.offer_started.set()
        if self.offer_gate is not None:
            await self.offer_gate.wait()
        await self.channel.send_state("connecting")
        return Answer(ANSWER_SDP, "relay")

    async def on_candidate(self, candidate: IceCandidate | None) -> None:
        self.calls.append(("candidate", candidate))
        if candidate is None:
            self.candidates_ended.set()

    async def on_client_event(self, event: dict[str, Any]) -> None:
        self.calls.append(("event", event))
        if self.fail_on_event:
            raise RuntimeError("handler bug")
        await self.channel.send_transcript(
            role="candidate", text=str(event.get("text", "")), final=True, event_id="e1"
        )

    async def on_close(self, reason: str) -> None:
        self.closes.append(reason)
        self.closed.set()


@dataclass
class Gateway:
    """What the fake gateway saw: every handler it made, and a switch to refuse newcomers."""

    url: str
    handlers: list[RecordingHandler] = field(default_factory=list)
    made: asyncio.Queue[RecordingHandler] = field(default_factory=asyncio.Queue)
    refuse_with: SignalingError | None = None
    configure: Callable[[RecordingHandler], None] = lambda handler: None

    async def factory(self, claims: TokenClaims, channel: SignalingChannel) -> RecordingHandler:
        if self.refuse_with is not None:
            raise self.refuse_with
        handler = RecordingHandler(claims, channel)
        self.configure(handler)
        self.handlers.append(handler)
        self.made.put_nowait(handler)
        return handler

    async def next_handler(self) -> RecordingHandler:
        return await asyncio.wait_for(self.made.get(), WAIT)


async def start_gateway(verifier: TokenVerifier, **options: Any) -> tuple[Gateway, web.AppRunner]:
    gateway = Gateway(url="")
    app = web.Application()
    options.setdefault("allow_remote_candidates", LOOPBACK)
    signaling_handler(gateway.factory, verifier, **options).mount(app)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    gateway.url = f"http://127.0.0.1:{port}/v1/interviews/{INTERVIEW}/signal"
    return gateway, runner


@pytest.fixture
async def gateway(verifier: TokenVerifier) -> AsyncIterator[Gateway]:
    gw, runner = await start_gateway(verifier, hello_timeout=WAIT, ping_interval=WAIT)
    yield gw
    await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[SignalingClient]:
    async with SignalingClient(timeout=WAIT) as c:
        yield c


async def roundtrip(client: SignalingClient, id_: str) -> None:
    """Ping and wait for the pong: every frame sent before it has been read by the server."""
    await client.ping(id_)
    while True:
        message = await client.receive()
        if message == {"type": "pong", "id": id_}:
            return


async def next_of(client: SignalingClient, kind: str) -> dict[str, Any]:
    while True:
        message = await client.receive()
        if message["type"] == kind:
            return message


# --- authentication ---


async def test_hello_with_a_good_token_is_welcomed(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    welcome = await client.connect(gateway.url, token(role="candidate"))
    assert welcome == {
        "type": "welcome",
        "interview_id": INTERVIEW,
        "role": "candidate",
        "session_id": "sess-1",
        "ping_interval": WAIT,
        "silence_timeout": 1.5 * WAIT,
        "max_message_size": 64 * 1024,
        "ice_servers": [],
        "reconnect_secret": "secret-of-sess-1",
    }
    handler = await gateway.next_handler()
    assert (handler.claims.tenant_id, handler.claims.interview_id) == ("tenant-a", INTERVIEW)
    assert handler.channel.reconnect_secret is None


async def test_the_reconnect_secret_of_hello_reaches_the_handler_factory(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    await client.connect(gateway.url, token(role="candidate"), reconnect_secret="from-welcome")
    handler = await gateway.next_handler()
    assert handler.channel.reconnect_secret == "from-welcome"


@pytest.mark.parametrize(
    ("overrides", "code", "close_code"),
    [
        (None, "token_missing", 4100),
        ({"secret": "forged-secret-0123456789abcdef-012345"}, "token_invalid", 4101),
        ({"ttl": -5}, "token_expired", 4102),
        ({"interview_id": "iv-other"}, "wrong_interview", 4103),
    ],
)
async def test_bad_tokens_get_an_error_then_a_4xxx_close(
    gateway: Gateway,
    client: SignalingClient,
    token: Token,
    overrides: dict[str, Any] | None,
    code: str,
    close_code: int,
) -> None:
    with pytest.raises(SignalingClientError) as refused:
        await client.connect(gateway.url, None if overrides is None else token(**overrides))
    assert refused.value.code == code
    assert await client.wait_closed() == close_code
    assert gateway.handlers == []


async def test_a_socket_that_never_says_hello_is_closed(
    verifier: TokenVerifier, client: SignalingClient
) -> None:
    gw, runner = await start_gateway(verifier, hello_timeout=0.2)
    try:
        await client.open(gw.url)
        error = await client.receive()
        assert (error["type"], error["code"], error["fatal"]) == ("error", "hello_timeout", True)
        assert await client.wait_closed() == 4006
    finally:
        await runner.cleanup()


async def test_a_gateway_refusal_closes_with_its_code(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    gateway.refuse_with = SignalingError("interview_ended", "this interview is over")
    with pytest.raises(SignalingClientError) as refused:
        await client.connect(gateway.url, token())
    assert refused.value.code == "interview_ended"
    assert await client.wait_closed() == 4301


# --- offer, answer, trickle ---


async def test_offer_answer_and_trickle(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    await client.connect(gateway.url, token())
    answer = await client.offer(OFFER)
    assert answer == {"type": "answer", "sdp": ANSWER_SDP, "mode": "relay"}
    await client.candidate(HOST_CANDIDATE, sdp_mid="0")
    await client.end_of_candidates()
    handler = await gateway.next_handler()
    await asyncio.wait_for(handler.candidates_ended.wait(), WAIT)
    assert handler.calls == [
        ("offer", False),
        ("candidate", IceCandidate(HOST_CANDIDATE, "0", 0)),
        ("candidate", None),
    ]
    assert await next_of(client, "state") == {"type": "state", "state": "connecting"}


async def test_candidates_sent_while_the_offer_is_handled_wait_for_it(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    gate = asyncio.Event()

    def hold_offers(handler: RecordingHandler) -> None:
        handler.offer_gate = gate

    gateway.configure = hold_offers
    await client.connect(gateway.url, token())
    handler = await gateway.next_handler()
    answer = asyncio.create_task(client.offer(OFFER))
    await asyncio.wait_for(handler.offer_started.wait(), WAIT)
    await client.candidate(HOST_CANDIDATE, sdp_mline_index=1)
    await client.candidate(None)
    await roundtrip(client, "after-candidates")  # keepalive still answered while on_offer runs
    assert handler.calls == [("offer", False)]
    gate.set()
    assert (await answer)["mode"] == "relay"
    await asyncio.wait_for(handler.candidates_ended.wait(), WAIT)
    assert [kind for kind, _ in handler.calls] == ["offer", "candidate", "candidate"]


async def test_second_offer_is_refused_but_reconnect_is_delivered(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    await client.connect(gateway.url, token())
    await client.offer(OFFER)
    with pytest.raises(SignalingClientError) as refused:
        await client.offer(OFFER)
    assert refused.value.code == "offer_already_made"
    assert (await client.offer(OFFER, reconnect=True))["type"] == "answer"
    handler = await gateway.next_handler()
    assert handler.calls == [("offer", False), ("offer", True)]


async def test_bad_sdp_is_refused_and_the_client_may_retry(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    await client.connect(gateway.url, token())
    with pytest.raises(SignalingClientError) as refused:
        await client.offer("v=0\r\nnonsense\r\n")
    assert refused.value.code == "bad_sdp"
    assert (await client.offer(OFFER))["type"] == "answer"


# --- bad input ---


async def test_malformed_json_and_unknown_types_are_survivable(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    await client.connect(gateway.url, token())
    await client.send_raw("{oops")
    await client.send_raw('{"type": "warp"}')
    await client.send_raw(b"\x01\x02")
    codes = [(await next_of(client, "error"))["code"] for _ in range(3)]
    assert codes == ["bad_json", "unknown_type", "bad_message"]
    await roundtrip(client, "still-alive")


async def test_an_oversize_frame_gets_too_large_and_the_socket_lives(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    await client.connect(gateway.url, token())
    await client.send_event({"type": "x", "pad": "z" * (70 * 1024)})
    error = await next_of(client, "error")
    assert (error["code"], error["fatal"]) == ("too_large", False)
    await roundtrip(client, "still-alive")
    assert (await gateway.next_handler()).calls == []


async def test_a_huge_frame_is_cut_off_by_aiohttp(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    await client.connect(gateway.url, token())
    handler = await gateway.next_handler()
    await client.send_raw("z" * (1024 * 1024))
    assert await client.wait_closed() == 1009
    await asyncio.wait_for(handler.closed.wait(), WAIT)
    assert handler.closes == ["too_large"]


# --- isolation and closing ---


async def test_a_misbehaving_connection_does_not_disturb_a_healthy_one(
    gateway: Gateway, token: Token
) -> None:
    async with (
        SignalingClient(timeout=WAIT) as bad,
        SignalingClient(timeout=WAIT) as good,
    ):
        await bad.connect(gateway.url, token())
        bad_handler = await gateway.next_handler()
        bad_handler.fail_on_event = True
        await good.connect(gateway.url, token())
        good_handler = await gateway.next_handler()
        await good.offer(OFFER)

        for junk in ("{", "[]", '{"type":"nope"}', "z" * 70_000):
            await bad.send_raw(junk)
        await bad.send_event({"type": "boom"})
        await good.send_event({"type": "x", "text": "I am fine"})

        internal = await next_of(bad, "error")
        while internal["code"] != "internal":
            internal = await next_of(bad, "error")
        assert internal["fatal"] is True
        assert await bad.wait_closed() == 4500
        await asyncio.wait_for(bad_handler.closed.wait(), WAIT)
        assert bad_handler.closes == ["internal"]

        transcript = await next_of(good, "transcript")
        assert (transcript["text"], transcript["final"]) == ("I am fine", True)
        await roundtrip(good, "after")
        assert good_handler.closes == []
        await good.bye()
        await asyncio.wait_for(good_handler.closed.wait(), WAIT)
        assert good_handler.closes == ["bye"]


async def test_on_close_runs_once_when_the_client_vanishes(gateway: Gateway, token: Token) -> None:
    client = SignalingClient(timeout=WAIT)
    await client.connect(gateway.url, token())
    handler = await gateway.next_handler()
    await client.close()
    await asyncio.wait_for(handler.closed.wait(), WAIT)
    assert handler.closes == ["disconnected"]


async def test_gateway_close_sends_bye_and_notifies_the_handler(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    await client.connect(gateway.url, token())
    handler = await gateway.next_handler()
    await handler.channel.close("time_limit")
    assert await next_of(client, "bye") == {"type": "bye", "reason": "time_limit"}
    assert await client.wait_closed() == 1000
    await asyncio.wait_for(handler.closed.wait(), WAIT)
    assert handler.closes == ["time_limit"]
    await handler.channel.send_state("ignored")  # a closed channel drops sends quietly


async def test_a_silent_client_is_dropped_by_keepalive(
    verifier: TokenVerifier, token: Token
) -> None:
    gw, runner = await start_gateway(verifier, ping_interval=0.1)
    try:
        async with SignalingClient(timeout=WAIT, answer_pings=False) as mute:
            await mute.connect(gw.url, token())
            handler = await gw.next_handler()
            assert (await next_of(mute, "ping"))["id"] == 1
            error = await next_of(mute, "error")
            assert (error["code"], error["fatal"]) == ("ping_timeout", True)
            assert await mute.wait_closed() == 4007
            await asyncio.wait_for(handler.closed.wait(), WAIT)
            assert handler.closes == ["ping_timeout"]
    finally:
        await runner.cleanup()


async def test_server_shutdown_says_bye_and_closes_every_handler(
    verifier: TokenVerifier, client: SignalingClient, token: Token
) -> None:
    gw, runner = await start_gateway(verifier)
    await client.connect(gw.url, token())
    handler = await gw.next_handler()
    await runner.cleanup()
    assert handler.closes == ["shutdown"]  # on_shutdown waited for it
    assert await next_of(client, "bye") == {"type": "bye", "reason": "shutdown"}
    assert await client.wait_closed() == 1001


async def test_frames_from_the_client_reach_the_handler_as_sent(
    gateway: Gateway, client: SignalingClient, token: Token
) -> None:
    await client.connect(gateway.url, token())
    events = [{"type": "conversation.item.added", "n": n, "text": "é✓"} for n in range(20)]
    for event in events:
        await client.send_event(event)
    handler = await gateway.next_handler()
    for _ in events:
        await next_of(client, "transcript")
    assert [payload for kind, payload in handler.calls if kind == "event"] == events


# --- logging ---


async def test_every_log_line_names_the_interview_and_once_verified_the_tenant(
    gateway: Gateway, token: Token, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="signaling.server")
    async with SignalingClient(timeout=WAIT) as forged:
        with pytest.raises(SignalingClientError):
            await forged.connect(gateway.url, token(secret="forged-secret-0123456789abcdef-012345"))
        await forged.wait_closed()
    async with SignalingClient(timeout=WAIT) as client:
        await client.connect(gateway.url, token())
        handler = await gateway.next_handler()
        await client.send_raw("{oops")
        await next_of(client, "error")
        await client.bye()
        await asyncio.wait_for(handler.closed.wait(), WAIT)

    lines = [r for r in caplog.records if r.name == "signaling.server"]
    assert lines and all(getattr(r, "interview_id", None) == INTERVIEW for r in lines)
    refused = [r for r in lines if "token_invalid" in r.getMessage()]
    admitted = [r for r in lines if "bad_json" in r.getMessage() or "(bye)" in r.getMessage()]
    assert refused and not any(hasattr(r, "tenant_id") for r in refused)
    assert len(admitted) == 2 and all(getattr(r, "tenant_id", None) == TENANT for r in admitted)


async def test_handler_calls_cut_off_by_the_close_are_logged_not_dropped_silently(
    gateway: Gateway, token: Token, caplog: pytest.LogCaptureFixture
) -> None:
    stuck = asyncio.Event()  # never set: the handler's event call outlives the socket

    def block_events(handler: RecordingHandler) -> None:
        async def on_client_event(event: dict[str, Any]) -> None:
            await stuck.wait()

        handler.on_client_event = on_client_event  # type: ignore[method-assign]

    gateway.configure = block_events
    async with SignalingClient(timeout=WAIT) as client:
        await client.connect(gateway.url, token())
        handler = await gateway.next_handler()
        await client.send_event({"type": "x"})
        await client.send_event({"type": "y"})
    await asyncio.wait_for(handler.closed.wait(), WAIT)
    (warning,) = [r for r in caplog.records if "unfinished" in r.getMessage()]
    assert warning.levelno == logging.WARNING and "1 still queued" in warning.getMessage()
    assert (getattr(warning, "interview_id", None), getattr(warning, "tenant_id", None)) == (
        INTERVIEW,
        TENANT,
    )
