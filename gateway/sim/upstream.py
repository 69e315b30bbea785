"""An OpenAI-compatible simulated upstream: the Realtime GA WebRTC contract and GPT-Live, served at
once (chosen by path), one scripted interviewer.

Tests, benchmarks and the ``simulate`` command need an AI interviewer that speaks the same HTTP,
SDP and event language as OpenAI (``/work/shared/reference/openai-realtime-webrtc.md``) without
a network: so the gateway's upstream code is exercised exactly as it will be against the real
service, and the real service stays a drop-in. This module is the HTTP service (the
``sim-upstream`` command and ``serve`` without an API key run it); it serves, under ``/v1``:

- ``POST /realtime/calls`` (multipart ``sdp`` + ``session`` with a standard key, or a raw
  ``application/sdp`` offer with an ``ek_`` key) -> ``201`` + SDP answer + ``Location``;
- ``POST /realtime/client_secrets`` -> an ephemeral ``ek_`` key;
- ``GET /realtime?call_id=`` -> the sideband WebSocket (the call's server events; client events);
- ``POST /realtime/calls/{id}/hangup``;
- the beta shape (``?model=``, ``OpenAI-Beta``) -> ``400 beta_api_shape_disabled``;
- GPT-Live: ``POST /live/sessions`` (JSON ``session`` + ``transport``) -> ``200`` +
  ``{"session": {"id"}, "transport": {"type": "webrtc", "sdp"}}``;
  ``POST /live/sessions/{id}/hangup``; ``GET /live/sessions/{id}/attach`` (the sideband).

What one call does (the peer, the interviewer, the events) is in :mod:`.call` (GPT-Live's
events: :mod:`.live`), its sideband in
:mod:`.sideband`, the shapes both answer in in :mod:`.contract`; the script it plays, in
:mod:`.script`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from gateway.sim import sideband
from gateway.sim.call import CallOptions, SimulatedCall
from gateway.sim.contract import ApiError, checked_session, dig, new_id, session_view
from gateway.sim.live import SimulatedLiveSession, checked_live_session
from gateway.sim.script import Script
from gateway.upstream.openai import merge_session

log = logging.getLogger(__name__)

_MAX_SDP_BYTES = 64 * 1024
_MAX_SESSION_BYTES = 64 * 1024


# --------------------------------------------------------------------------- the HTTP service


@dataclass(slots=True)
class _EphemeralKey:
    expires_at: int
    session: dict[str, Any]


class SimulatedUpstream:
    """The OpenAI-compatible service, in-process (``start``/``close``) or as a command."""

    def __init__(
        self,
        *,
        script: Script | None = None,
        api_key: str | None = None,
        ice_addresses: Sequence[str] = ("127.0.0.1",),
        words_per_second: float = 3.0,
        vad_hangover_ms: int = 300,
        keep_ended_calls: int = 256,
    ) -> None:
        self.options = CallOptions(
            script or Script.default(), words_per_second, vad_hangover_ms, tuple(ice_addresses)
        )
        self.calls: dict[str, SimulatedCall] = {}
        self._api_key = api_key
        #: When set, every request that presents the standard key is refused with it (after
        #: the key check): tests make it quote the key back, as the real service's 401 does.
        self.refusal: ApiError | None = None
        #: How many of the next recording downloads fail with a 503 (an outage, for tests);
        #: and every session id whose content was served, once per download.
        self.content_failures = 0
        self.content_served: list[str] = []
        self._keep_ended_calls = keep_ended_calls
        self._ephemeral: dict[str, _EphemeralKey] = {}
        self._runner: web.AppRunner | None = None
        self.base_url: str | None = None  # set by start()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_api_errors])
        app.add_routes(
            [
                web.post("/v1/realtime/calls", self._create_call),
                web.post("/v1/realtime/calls/{call_id}/hangup", self._hangup),
                web.post("/v1/realtime/client_secrets", self._client_secrets),
                web.get("/v1/realtime", self._realtime_socket),
                web.post("/v1/realtime", self._beta_shape),
                web.post("/v1/live/sessions", self._create_live_session),
                web.post("/v1/live/sessions/{call_id}/hangup", self._hangup),
                web.get("/v1/live/sessions/{call_id}/attach", self._attach),
                web.get("/v1/live/sessions/{call_id}/content", self._content),
            ]
        )
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port); returns the base URL, ``http://.../v1``."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}/v1"
        return self.base_url

    async def close(self) -> None:
        """Hang up every call, then stop serving."""
        await asyncio.gather(*(call.hangup() for call in list(self.calls.values())))
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- auth

    def _bearer(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(
                401, "no API key provided (Authorization: Bearer ...)", code="missing_api_key"
            )
        return key.strip()

    def _standard_key(self, request: web.Request) -> None:
        key = self._bearer(request)
        if key.startswith("ek_"):
            raise ApiError(
                401,
                "this endpoint needs a standard API key, not an ephemeral key",
                code="invalid_api_key",
            )
        if self._api_key is not None and not hmac.compare_digest(key, self._api_key):
            raise ApiError(401, "incorrect API key provided", code="invalid_api_key")
        if self.refusal is not None:
            raise self.refusal

    def _ephemeral_session(self, key: str) -> dict[str, Any]:
        entry = self._ephemeral.get(key)
        if entry is None or entry.expires_at <= time.time():
            raise ApiError(
                401, "the ephemeral key is unknown or has expired", code="invalid_api_key"
            )
        return entry.session

    # ---- routes

    async def _beta_shape(self, request: web.Request) -> web.StreamResponse:
        raise _beta_error()

    async def _create_call(self, request: web.Request) -> web.Response:
        if "model" in request.query or "OpenAI-Beta" in request.headers:
            raise _beta_error()
        if request.content_type == "multipart/form-data":
            key = self._bearer(request)
            base = self._ephemeral_session(key) if key.startswith("ek_") else None
            if base is None:
                self._standard_key(request)
            sdp, session = await _read_offer_parts(request)
            if session is None and base is None:
                raise ApiError(
                    400,
                    "missing the 'session' part (required with a standard key)",
                    code="missing_required_parameter",
                    param="session",
                )
            session = merge_session(base, session)
        elif request.content_type == "application/sdp":
            key = self._bearer(request)
            if not key.startswith("ek_"):
                self._standard_key(request)
                raise ApiError(
                    400,
                    "with a standard API key, send multipart/form-data with "
                    "'sdp' and 'session' parts",
                    code="missing_required_parameter",
                    param="session",
                )
            session = self._ephemeral_session(key)
            sdp = await _read_text(request.content.read, _MAX_SDP_BYTES, "sdp")
        else:
            raise ApiError(
                400,
                f"unsupported Content-Type {request.content_type!r}: use "
                "multipart/form-data or application/sdp",
                code="invalid_content_type",
            )
        if not sdp.lstrip().startswith("v=0"):
            raise ApiError(
                400, "the 'sdp' part is not an SDP offer", code="invalid_offer", param="sdp"
            )
        call = SimulatedCall(new_id("rtc"), dict(session), self.options)
        answer = await self._answered(call, sdp, "call")
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/v1/realtime/calls/{call.id}"},
        )

    async def _answered(self, call: Any, sdp: str, what: str) -> str:
        """The call's answer to ``sdp``, the call kept; a call that cannot answer is hung up."""
        try:
            answer: str = await call.answer(sdp)
        except BaseException:
            await call.hangup()
            raise
        self._remember(call)
        log.info("%s %s: answered", what, call.id)
        return answer

    def _remember(self, call: SimulatedCall) -> None:
        """Keep ended calls for inspection, only the most recent few: the simulator runs long."""
        self.calls[call.id] = call
        ended = [c for c in self.calls.values() if c.ended.is_set()]
        for old in ended[: max(0, len(ended) - self._keep_ended_calls)]:
            del self.calls[old.id]

    def _call(self, call_id: str | None, *, live: bool = False) -> SimulatedCall:
        """A running call (``live``: a GPT-Live session), else the contract's 404."""
        call = self.calls.get(call_id or "")
        if call is None or call.hung_up or isinstance(call, SimulatedLiveSession) != live:
            what = "session" if live else "call"
            raise ApiError(
                404,
                f"no such {what} (or it has ended)",
                code=f"{what}_not_found",
                param=f"{what}_id",
            )
        return call

    async def _hangup(self, request: web.Request) -> web.Response:
        self._standard_key(request)
        live = request.path.startswith("/v1/live/")
        call = self._call(request.match_info["call_id"], live=live)
        await call.hangup()
        log.info("call %s: hung up", call.id)
        return web.json_response({})

    async def _create_live_session(self, request: web.Request) -> web.Response:
        """GPT-Live's create: a JSON body with the startup session and the WebRTC offer."""
        self._standard_key(request)
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_type")
        session = checked_live_session(body.get("session"))
        transport = body.get("transport")
        sdp = dig(transport, "sdp") if isinstance(transport, dict) else None
        if dig(body, "transport", "type") != "webrtc":
            raise ApiError(400, "'transport.type' must be 'webrtc'", code="invalid_value",
                           param="transport.type")  # fmt: skip
        if not isinstance(sdp, str) or not sdp.lstrip().startswith("v=0"):
            raise ApiError(400, "'transport.sdp' is not an SDP offer", code="invalid_offer",
                           param="transport.sdp")  # fmt: skip
        call = SimulatedLiveSession(new_id("live"), dict(session), self.options)
        answer = await self._answered(call, sdp, "live session")
        return web.json_response(
            {"session": {"id": call.id}, "transport": {"type": "webrtc", "sdp": answer}}
        )

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        """GPT-Live's sideband: a trusted observer of one session (no ``session.start``)."""
        self._standard_key(request)
        call = self._call(request.match_info["call_id"], live=True)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await sideband.serve(ws, call.sidebands, call.handle_client_message)
        return ws

    async def _content(self, request: web.Request) -> web.Response:
        """GPT-Live's recording download (``download_recording``): a stored session's content,
        as ``application/binary``, once the session is over or while it runs."""
        self._standard_key(request)
        call = self.calls.get(request.match_info["call_id"])
        if not isinstance(call, SimulatedLiveSession) or not call.stored:
            raise ApiError(404, "no such stored session", code="session_not_found",
                           param="session_id")  # fmt: skip
        if self.content_failures > 0:
            self.content_failures -= 1
            raise ApiError(503, "the content is not available yet", code="server_error")
        self.content_served.append(call.id)
        return web.Response(body=call.content(), content_type="application/binary")

    async def _client_secrets(self, request: web.Request) -> web.Response:
        self._standard_key(request)
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_type")
        seconds = dig(body, "expires_after", "seconds")
        seconds = 600 if seconds is None else seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 10 <= seconds <= 7200:
            raise ApiError(
                400,
                "'expires_after.seconds' must be an integer from 10 to 7200",
                code="invalid_value",
                param="expires_after.seconds",
            )
        session = checked_session(
            body.get("session", {"type": "realtime", "model": "gpt-realtime"})
        )
        value = "ek_" + secrets.token_urlsafe(24)
        expires_at = int(time.time()) + seconds
        now = time.time()
        self._ephemeral = {k: v for k, v in self._ephemeral.items() if v.expires_at > now}
        self._ephemeral[value] = _EphemeralKey(expires_at, session)
        view = session_view(session, self.options.vad_hangover_ms)
        view |= {"id": new_id("sess"), "object": "realtime.session", "expires_at": expires_at}
        return web.json_response({"value": value, "expires_at": expires_at, "session": view})

    async def _realtime_socket(self, request: web.Request) -> web.StreamResponse:
        if "model" in request.query or "OpenAI-Beta" in request.headers:
            raise _beta_error()
        self._standard_key(request)
        if "call_id" not in request.query:
            raise ApiError(
                400,
                "missing 'call_id' (the sideband joins an existing call)",
                code="missing_required_parameter",
                param="call_id",
            )
        call = self._call(request.query["call_id"])
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await sideband.serve(ws, call.sidebands, call.handle_client_message)
        return ws


def _beta_error() -> ApiError:
    return ApiError(
        400,
        "the beta Realtime API shape is disabled: use POST /v1/realtime/calls",
        code="beta_api_shape_disabled",
    )


@web.middleware
async def _api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every failure leaves as an OpenAI-shaped JSON error (and never echoes a request header)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return ApiError(exc.status, exc.reason, code=None).response()


async def _read_text(read: Callable[[int], Awaitable[bytes]], limit: int, param: str) -> str:
    """Read a body (or part) as UTF-8 text, refusing more than ``limit`` bytes."""
    data = bytearray()
    while chunk := await read(16 * 1024):
        data += chunk
        if len(data) > limit:
            raise ApiError(
                400, f"'{param}' is larger than {limit} bytes", code="invalid_value", param=param
            )
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ApiError(
            400, f"'{param}' is not UTF-8 text", code="invalid_value", param=param
        ) from None


async def _read_offer_parts(request: web.Request) -> tuple[str, dict[str, Any] | None]:
    """The ``sdp`` and ``session`` parts of a multipart offer (other parts are ignored)."""
    sdp: str | None = None
    session: dict[str, Any] | None = None
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "sdp":
            sdp = await _read_text(part.read_chunk, _MAX_SDP_BYTES, "sdp")
        elif part.name == "session":
            text = await _read_text(part.read_chunk, _MAX_SESSION_BYTES, "session")
            try:
                parsed = json.loads(text)
            except ValueError:
                raise ApiError(
                    400,
                    "the 'session' part is not valid JSON",
                    code="invalid_json",
                    param="session",
                ) from None
            session = checked_session(parsed)
    if sdp is None:
        raise ApiError(
            400, "missing the 'sdp' part", code="missing_required_parameter", param="sdp"
        )
    return sdp, session
