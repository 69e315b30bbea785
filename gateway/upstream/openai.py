"""The client for OpenAI's GA Realtime WebRTC endpoints (and Azure OpenAI's identical ones).

This is the only module that reads the upstream API key, and the key only ever travels in the
headers of requests to the configured upstream. Errors raised from here carry the upstream's
status and error code, never a header or the key.

The simulated upstream speaks the same contract, so the gateway reaches it through this very
client: switching to the real service is a change of base URL and key, nothing else.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import websockets
from websockets.asyncio.client import ClientConnection

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


class UpstreamError(Exception):
    """The upstream refused or was unreachable; ``code`` is stable, the text safe to show."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "upstream_error"):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class RealtimeCall:
    call_id: str
    answer_sdp: str


class RealtimeUpstream:
    """One configured upstream: where it is, how to authenticate, which session to ask for."""

    def __init__(
        self,
        *,
        kind: Literal["openai", "sim"],
        base_url: str,
        api_key: str,
        http: aiohttp.ClientSession,
        auth_header: Literal["bearer", "api-key"] = "bearer",
        session: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.kind = kind
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._api_key = api_key
        self._headers = (
            {"Authorization": f"Bearer {api_key}"}
            if auth_header == "bearer"
            else {"api-key": api_key}
        )
        self.session = merge_session(DEFAULT_SESSION, session)
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:  # never show the headers
        return f"RealtimeUpstream(kind={self.kind!r}, base_url={self.base_url!r})"

    def effective_session(self, session: dict[str, Any] | None = None) -> dict[str, Any]:
        """The session a call is created with: the defaults, the deployment's, the interview's."""
        return merge_session(self.session, session)

    async def create_call(
        self, offer_sdp: str, session: dict[str, Any] | None = None
    ) -> RealtimeCall:
        """POST the offer (multipart ``sdp`` + ``session``: the standard-key shape)."""
        form = aiohttp.FormData()
        form.add_field("sdp", offer_sdp, content_type="application/sdp")
        form.add_field(
            "session",
            json.dumps(self.effective_session(session)),
            content_type="application/json",
        )
        try:
            async with self._http.post(
                f"{self.base_url}/realtime/calls",
                data=form,
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                body = await response.text()
                if response.status != 201:
                    raise self._error_from(response.status, body)
                location = response.headers.get("Location", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(
                f"upstream unreachable: {type(exc).__name__}", code="upstream_unreachable"
            ) from None
        call_id = location.rstrip("/").rsplit("/", 1)[-1]
        if not call_id.startswith("rtc_"):
            raise UpstreamError("upstream answered without a call id", code="upstream_protocol")
        return RealtimeCall(call_id=call_id, answer_sdp=body)

    async def hangup(self, call_id: str) -> bool:
        """End the call upstream; False (and a warning) if that failed.

        A call left open costs money, so a failure is logged loudly; but ending a session must
        not fail because the upstream is gone, so nothing is raised.
        """
        try:
            async with self._http.post(
                f"{self.base_url}/realtime/calls/{call_id}/hangup",
                headers=self._headers,
                timeout=self._timeout,
            ) as response:
                if response.status < 400 or response.status == 404:
                    return True
                error = self._error_from(response.status, await response.text())
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = UpstreamError(f"unreachable: {type(exc).__name__}", code="upstream_unreachable")
        log.warning("hangup of %s failed: %s", call_id, error)
        return False

    async def open_sideband(self, call_id: str) -> ClientConnection:
        """Join the call's sideband WebSocket, which carries the same server events."""
        url = self.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        try:
            return await websockets.connect(
                f"{url}/realtime?call_id={call_id}",
                additional_headers=self._headers,
                open_timeout=self._timeout.total,
                max_size=2**22,
            )
        except (OSError, websockets.InvalidHandshake, TimeoutError) as exc:
            raise UpstreamError(
                f"sideband connection failed: {type(exc).__name__}", code="sideband_failed"
            ) from None

    def _error_from(self, status: int, body: str) -> UpstreamError:
        """Turn the upstream's ``{"error": {...}}`` body into an UpstreamError with its code.

        The real service quotes part of a rejected key in its message: scrub anything key-like.
        """
        try:
            error = json.loads(body)["error"]
            code = str(error.get("code") or error.get("type") or "upstream_error")
            message = str(error.get("message") or code)
        except (ValueError, KeyError, TypeError, AttributeError):
            code, message = "upstream_error", f"upstream answered HTTP {status}"
        message = _KEY_LIKE.sub("[redacted]", message.replace(self._api_key, "[redacted]"))
        return UpstreamError(
            f"upstream refused the call ({status} {code}): {message}", status=status, code=code
        )


_KEY_LIKE = re.compile(r"\b(?:sk|ek|rk)[-_][A-Za-z0-9_*.\-]{4,}")
