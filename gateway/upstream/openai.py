"""The upstream-client role, and its Realtime implementation (OpenAI's GA WebRTC calls API and
Azure OpenAI's identical one).

Two upstream contracts carry an interview: the Realtime calls API (``RealtimeUpstream``, here)
and GPT-Live (``gateway.upstream.live.LiveUpstream``). Both play one role, ``UpstreamClient``:
create a call from an SDP offer (answer + id), hang it up, join its sideband, say which session
it asks for, and how an earlier conversation is carried into a new call. The relay and the
proxy are written against that role only, so either contract runs in either mode.

This is the only module that reads the upstream API key (``api_key_from_env``), and the key
only ever travels in the headers of requests to the configured upstream (``HttpUpstream``, the
shared base of both clients). Errors raised from here carry the upstream's status and error
code, never a header or the key.

The simulated upstream speaks both contracts, so the gateway reaches it through these very
clients: switching to the real service is a change of base URL and key, nothing else.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import aiohttp
import websockets
from websockets.asyncio.client import ClientConnection

from gateway.redact import REDACTED, Scrubber
from gateway.upstream.integrity import ClientEventPolicy
from storage.transcripts import Role

log = logging.getLogger(__name__)

#: The data channel that carries the Realtime API's client and server events (the contract
#: names it; both legs of a relay, the simulated upstream and headless candidates use it).
EVENTS_LABEL = "oai-events"

#: What the gateway asks of every call unless configured otherwise: input transcription must be
#: on, or the upstream never says what the candidate said.
DEFAULT_SESSION: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime",
    "audio": {
        "input": {"transcription": {"model": "gpt-4o-transcribe"}},
        "output": {"voice": "marin"},
    },
}


def api_key_from_env() -> str | None:
    """The upstream key, read from the environment here and nowhere else."""
    return os.environ.get("OPENAI_API_KEY") or None


def merge_session(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Deep-merge session JSON layers (defaults, deployment, interview): later layers win."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = merge_session(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
    return merged


#: What an ``UpstreamError``'s ``code`` may be: the gateway's own word for what went wrong,
#: never the upstream's (its error code is text it chose, and has been seen to quote the key).
#: A session refused this way ends as ``upstream_<code>``.
UPSTREAM_ERROR_CODES = frozenset(
    {
        "bad_request",  # 400
        "unauthorized",  # 401
        "forbidden",  # 403
        "not_found",  # 404
        "rate_limited",  # 429
        "refused",  # any other 4xx
        "server_error",  # 5xx
        "unreachable",  # no answer at all
        "protocol",  # an answer the contract does not allow
        "sideband_failed",  # the sideband WebSocket did not open
        "failed",  # the upstream leg of a relay failed
    }
)
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
}


def status_code(status: int) -> str:
    """The ``UPSTREAM_ERROR_CODES`` entry for an HTTP error status."""
    return _STATUS_CODES.get(status, "server_error" if status >= 500 else "refused")


class UpstreamError(Exception):
    """The upstream refused or was unreachable. ``code`` is one of ``UPSTREAM_ERROR_CODES``;
    the text is for the log (scrubbed of the key), never for a browser."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "failed"):
        if code not in UPSTREAM_ERROR_CODES:
            raise ValueError(f"not an upstream error code: {code!r}")
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """A call the upstream created: its id (for hangup and the sideband) and its SDP answer."""

    call_id: str
    answer_sdp: str


@dataclass(frozen=True, slots=True)
class CarryOver:
    """How an earlier conversation enters a new call: a session layer merged into the create
    request (GPT-Live's ``input``), and client events sent on the sideband before the browser
    connects (Realtime's ``conversation.item.create``)."""

    session: dict[str, Any] = field(default_factory=dict)
    sideband_events: tuple[str, ...] = ()


#: Auth header styles: OpenAI's bearer token, Azure OpenAI's ``api-key`` header.
AuthHeader = Literal["bearer", "api-key"]


class UpstreamClient(Protocol):
    """One configured upstream contract; what the relay and the proxy need of it."""

    #: what the upstream is, for the session row (``openai``, ``openai-live``, ``sim``, ...)
    kind: str
    #: session fields (as paths) the gateway owns and restores when a client changes them
    guarded_fields: tuple[tuple[str, ...], ...]
    #: client events (JSON text) that stop the interviewer mid-turn while the candidate is
    #: away (relay mode); empty where the contract has none
    pause_events: tuple[str, ...]
    #: client events (JSON text) that have the interviewer ask its last question again once
    #: the candidate is back from an absence; empty where the contract has none
    repeat_events: tuple[str, ...]

    def effective_session(self, session: dict[str, Any] | None = None) -> dict[str, Any]:
        """The session a call is created with: the defaults, the deployment's, the interview's."""

    async def create_call(
        self, offer_sdp: str, session: dict[str, Any] | None = None
    ) -> UpstreamCall:
        """Send the offer; ``UpstreamError`` (with the upstream's status and code) if refused."""

    async def hangup(self, call_id: str) -> bool:
        """End the call upstream; False (and a warning) if that failed, never raises."""

    async def open_sideband(self, call_id: str) -> ClientConnection:
        """Join the call's sideband WebSocket (its server events; client events accepted)."""

    def carry_over(self, conversation: Sequence[tuple[Role, str]]) -> CarryOver:
        """How ``conversation`` (final lines, in order) enters a new call of this contract."""

    def restricting_frontend(self, policy: ClientEventPolicy) -> dict[str, Any]:
        """The session layer that makes the upstream itself refuse, on the browser's data
        channel, every client event ``policy`` refuses (proxy mode); ``{}`` where the contract
        has no such setting."""


class HttpUpstream:
    """What both contracts' clients share: where the upstream is, how to authenticate, the
    session defaults, and turning an error body into a safe ``UpstreamError``."""

    #: the contract's session defaults, under the deployment's and the interview's layers
    defaults: ClassVar[dict[str, Any]]

    def __init__(
        self,
        *,
        kind: str,
        base_url: str,
        api_key: str,
        http: aiohttp.ClientSession,
        auth_header: AuthHeader = "bearer",
        session: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.kind = kind
        self.base_url = base_url.rstrip("/")
        self._http = http
        #: finds the key in what the upstream says back, whole or in part, whatever its shape
        self._scrubber = Scrubber([api_key])
        self._headers = (
            {"Authorization": f"Bearer {api_key}"}
            if auth_header == "bearer"
            else {"api-key": api_key}
        )
        self.session = merge_session(self.defaults, session)
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:  # never show the headers
        return f"{type(self).__name__}(kind={self.kind!r}, base_url={self.base_url!r})"

    def effective_session(self, session: dict[str, Any] | None = None) -> dict[str, Any]:
        """The session a call is created with: the defaults, the deployment's, the interview's."""
        return merge_session(self.session, session)

    def restricting_frontend(self, policy: ClientEventPolicy) -> dict[str, Any]:
        """The Realtime calls API takes no client-event restriction (the ``SessionGuard`` is
        proxy mode's only defence there)."""
        return {}

    async def _post(self, path: str, **kwargs: Any) -> tuple[int, str, str]:
        """POST to the upstream: (status, body, ``Location``); ``UpstreamError`` if unreachable."""
        try:
            async with self._http.post(
                f"{self.base_url}{path}", headers=self._headers, timeout=self._timeout, **kwargs
            ) as response:
                body = await response.text()
                return response.status, body, response.headers.get("Location", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(
                f"upstream unreachable: {type(exc).__name__}", code="unreachable"
            ) from None

    async def _get_binary(self, path: str, seconds: float) -> tuple[int, str, bytes]:
        """GET binary content (``Accept: application/binary``, as the SDK asks for it):
        (status, its ``Content-Type``, body); ``UpstreamError`` if unreachable."""
        try:
            async with self._http.get(
                f"{self.base_url}{path}",
                headers={**self._headers, "Accept": "application/binary"},
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                body = await response.read()
                kind = response.headers.get("Content-Type", "application/binary")
                return response.status, kind, body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(
                f"upstream unreachable: {type(exc).__name__}", code="unreachable"
            ) from None

    async def _hangup(self, call_id: str, path: str) -> bool:
        """POST ``path`` to end ``call_id``; a call left open costs money, so a failure is logged
        loudly, but ending a session must not fail because the upstream is gone."""
        try:
            status, body, _ = await self._post(path)
            if status < 400 or status == 404:
                return True
            error = self._error_from(status, body)
        except UpstreamError as exc:
            error = exc
        log.warning("hangup of %s failed: %s", call_id, error)
        return False

    async def _websocket(self, path: str) -> ClientConnection:
        """Open a sideband WebSocket at ``path`` under the base URL, with the key's headers."""
        url = self.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        try:
            return await websockets.connect(
                f"{url}{path}",
                additional_headers=self._headers,
                open_timeout=self._timeout.total,
                max_size=2**22,
            )
        except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
            raise UpstreamError(
                f"sideband connection failed: {type(exc).__name__}", code="sideband_failed"
            ) from None

    def _error_from(self, status: int, body: str) -> UpstreamError:
        """Turn the upstream's ``{"error": {...}}`` body into an UpstreamError whose code says
        what its status means (``status_code``). The upstream's own code and message go into
        the text, for the log: the real service quotes part of a rejected key in its message,
        and any upstream may put anything in either, so both are scrubbed of the key (in any
        form) and of anything key-like."""
        try:
            error = json.loads(body)["error"]
            said = str(error.get("code") or error.get("type") or "")
            message = str(error.get("message") or "")
        except (ValueError, KeyError, TypeError, AttributeError):
            said, message = "", ""
        said, message = (_KEY_LIKE.sub(REDACTED, self._scrubber.scrub(t)) for t in (said, message))
        return UpstreamError(
            f"upstream refused the call (HTTP {status} {said!r}): {message}"[:500],
            status=status,
            code=status_code(status),
        )


#: Session fields (as paths) that decide what a Realtime interviewer says and what is
#: transcribed; ``integrity.SessionGuard`` restores them.
REALTIME_GUARDED_FIELDS: tuple[tuple[str, ...], ...] = (
    ("instructions",),
    ("audio", "input", "transcription"),
    ("tools",),
    ("tool_choice",),
)


#: What the interviewer is told to do when the candidate comes back from an absence.
REPEAT_INSTRUCTIONS = (
    "The candidate's connection dropped and they are back now. Briefly say so, then repeat "
    "your last question, shortly, and wait for their answer."
)

#: Realtime: cancel the response in progress and drop the audio the WebRTC call still holds
#: for it (``response.cancel``, ``output_audio_buffer.clear``: both client events of the GA
#: contract), so no question is asked to nobody.
REALTIME_PAUSE_EVENTS: tuple[str, ...] = (
    json.dumps({"type": "response.cancel"}),
    json.dumps({"type": "output_audio_buffer.clear"}),
)

#: Realtime: a new response whose instructions (for this response only) ask for the repeat.
REALTIME_REPEAT_EVENTS: tuple[str, ...] = (
    json.dumps({"type": "response.create", "response": {"instructions": REPEAT_INSTRUCTIONS}}),
)


def restored_item(role: Role, text: str) -> dict[str, Any]:
    """A ``conversation.item.create`` that puts one earlier line into a new Realtime call."""
    if role == "interviewer":
        item = {"role": "assistant", "content": [{"type": "output_text", "text": text}]}
    else:
        item = {"role": "user", "content": [{"type": "input_text", "text": text}]}
    return {"type": "conversation.item.create", "item": {"type": "message", **item}}


class RealtimeUpstream(HttpUpstream):
    """The Realtime calls API: multipart create, ``Location`` id, ``?call_id=`` sideband."""

    defaults = DEFAULT_SESSION
    guarded_fields = REALTIME_GUARDED_FIELDS
    pause_events = REALTIME_PAUSE_EVENTS
    repeat_events = REALTIME_REPEAT_EVENTS

    async def create_call(
        self, offer_sdp: str, session: dict[str, Any] | None = None
    ) -> UpstreamCall:
        """POST the offer (multipart ``sdp`` + ``session``: the standard-key shape)."""
        form = aiohttp.FormData()
        form.add_field("sdp", offer_sdp, content_type="application/sdp")
        form.add_field(
            "session",
            json.dumps(self.effective_session(session)),
            content_type="application/json",
        )
        status, body, location = await self._post("/realtime/calls", data=form)
        if status != 201:
            raise self._error_from(status, body)
        call_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not call_id.startswith("rtc_"):
            raise UpstreamError("upstream answered without a call id", code="protocol")
        return UpstreamCall(call_id=call_id, answer_sdp=body)

    async def hangup(self, call_id: str) -> bool:
        return await self._hangup(call_id, f"/realtime/calls/{call_id}/hangup")

    async def open_sideband(self, call_id: str) -> ClientConnection:
        """Join the call's sideband WebSocket, which carries the same server events."""
        return await self._websocket(f"/realtime?call_id={call_id}")

    def carry_over(self, conversation: Sequence[tuple[Role, str]]) -> CarryOver:
        """Each earlier line as a ``conversation.item.create`` on the new call's sideband."""
        return CarryOver(
            sideband_events=tuple(json.dumps(restored_item(r, t)) for r, t in conversation)
        )


_KEY_LIKE = re.compile(r"\b(?:sk|ek|rk)[-_][A-Za-z0-9_*.\-]{4,}")
