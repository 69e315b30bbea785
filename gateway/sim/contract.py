"""The Realtime contract as the simulated upstream speaks it: errors, ids, the session's view.

Both the HTTP surface (``upstream.py``) and one call (``call.py``) answer in OpenAI's shapes
(``/work/shared/reference/openai-realtime-webrtc.md``): the same error object over HTTP and as an
``error`` event, the same id prefixes, the same session report in ``client_secrets`` and in
``session.created``/``session.updated``. They live here once so that the two cannot drift apart.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web

#: Every server event type the simulator can emit; a test validates each against openai-python.
SERVER_EVENT_TYPES = frozenset(
    {
        "session.created",
        "session.updated",
        "error",
        "response.created",
        "conversation.item.added",
        "conversation.item.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.content_part.added",
        "response.content_part.done",
        "output_audio_buffer.started",
        "output_audio_buffer.stopped",
        "output_audio_buffer.cleared",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.done",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
    }
)


class ApiError(Exception):
    """An OpenAI-shaped error response: ``{"error": {message, type, code, param}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type = (
            status,
            message,
            code,
            param,
            type_,
        )

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "code": self.code, "param": self.param}

    def response(self) -> web.Response:
        return web.json_response({"error": self.body()}, status=self.status)


def new_id(prefix: str) -> str:
    """An OpenAI-style id (``rtc_...``, ``event_...``): the prefix says what it names."""
    return f"{prefix}_{secrets.token_hex(10)}"


def checked_session(session: Any, param: str = "session") -> dict[str, Any]:
    """``session`` if it is a realtime session object; else the API's 400 naming ``param``."""
    if not isinstance(session, dict):
        raise ApiError(400, f"'{param}' must be a JSON object", code="invalid_type", param=param)
    if session.get("type", "realtime") != "realtime":
        raise ApiError(
            400, f"'{param}.type' must be 'realtime'", code="invalid_value", param=f"{param}.type"
        )
    return session


def dig(data: Mapping[str, Any], *path: str) -> Any:
    """The value at ``path`` in nested JSON objects, or ``None`` where the path breaks off."""
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def transcription(session: Mapping[str, Any]) -> dict[str, str] | None:
    """The input transcription config, if the session turns it on (``null``/absent: off)."""
    config = dig(session, "audio", "input", "transcription")
    if not isinstance(config, Mapping):
        return None
    return {
        k: v
        for k, v in config.items()
        if k in ("model", "language", "prompt") and isinstance(v, str)
    }


def session_view(session: Mapping[str, Any], hangover_ms: int) -> dict[str, Any]:
    """The session as the server reports it: only fields the simulator honours, well-typed."""
    model, voice, instructions = (
        session.get("model"),
        dig(session, "audio", "output", "voice"),
        session.get("instructions"),
    )
    pcm = {"type": "audio/pcm", "rate": 24000}
    return {
        "type": "realtime",
        "model": model if isinstance(model, str) else "gpt-realtime",
        "output_modalities": ["audio"],
        "instructions": instructions if isinstance(instructions, str) else "",
        "audio": {
            "input": {
                "format": pcm,
                "transcription": transcription(session),
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 0,
                    "silence_duration_ms": hangover_ms,
                    "create_response": True,
                    "interrupt_response": False,
                },
            },
            "output": {"format": pcm, "voice": voice if isinstance(voice, str) else "marin"},
        },
    }
