"""An OpenAI-compatible simulated upstream: the Realtime GA WebRTC contract, a scripted interviewer.

Tests, benchmarks and the ``simulate`` command need an AI interviewer that speaks the same HTTP,
SDP and event language as OpenAI (``/work/shared/reference/openai-realtime-webrtc.md``) without
a network: so the gateway's upstream code is exercised exactly as it will be against the real
service, and the real service stays a drop-in. It serves, under ``/v1``:

- ``POST /realtime/calls`` (multipart ``sdp`` + ``session`` with a standard key, or a raw
  ``application/sdp`` offer with an ``ek_`` key) -> ``201`` + SDP answer + ``Location``;
- ``POST /realtime/client_secrets`` -> an ephemeral ``ek_`` key;
- ``GET /realtime?call_id=`` -> the sideband WebSocket (the call's server events; client events);
- ``POST /realtime/calls/{id}/hangup``;
- the beta shape (``?model=``, ``OpenAI-Beta``) -> ``400 beta_api_shape_disabled``.

Each call is one aiortc peer that answers with a speaking audio track and takes the offerer's
``oai-events`` data channel. Once that channel opens it plays a :class:`Script`: it asks each
question (speech-shaped audio plus the GA response events, transcript deltas paced by the words
actually played), waits for the candidate to speak (energy VAD on the incoming audio), commits
the turn and — only if the session enables input transcription — reports the scripted answer as
the transcription, then moves on; after the last answer it says the closing line.

Not simulated: barge-in (speech during a response does not cancel it), text-only responses,
tools, and ``response.create`` (the scripted interviewer speaks first, on its own).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.events import EventError, parse_event
from gateway.ice import host_addresses
from gateway.speech import SpeechTrack, VoiceActivity, VoiceActivityDetector

log = logging.getLogger(__name__)

DEFAULT_SCRIPT_PATH = Path(__file__).with_name("interview_script.json")
EVENTS_CHANNEL = "oai-events"
_MAX_SDP_BYTES = 64 * 1024
_MAX_SESSION_BYTES = 64 * 1024
_SIDEBAND_QUEUE = 1024  # events buffered per sideband socket before it counts as too slow

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


# --------------------------------------------------------------------------- the script


class ScriptError(ValueError):
    """A script file that cannot drive an interview."""


@dataclass(frozen=True, slots=True)
class ScriptTurn:
    question: str
    answer: str  # what the candidate is expected to say; reported as its transcription


@dataclass(frozen=True, slots=True)
class Script:
    """Questions with expected answers, and a closing line. JSON: ``{"questions": [{"question",
    "answer"}, ...], "closing": "..."}``."""

    turns: tuple[ScriptTurn, ...]
    closing: str

    @classmethod
    def from_dict(cls, data: Any) -> Script:
        if not isinstance(data, dict):
            raise ScriptError("a script is a JSON object with 'questions' and 'closing'")
        questions = data.get("questions")
        if not isinstance(questions, list) or not questions:
            raise ScriptError("'questions' must be a non-empty list")
        turns = []
        for number, entry in enumerate(questions, 1):
            if not isinstance(entry, dict):
                raise ScriptError(f"question {number} must be an object")
            question, answer = entry.get("question"), entry.get("answer")
            if not isinstance(question, str) or not question.split():
                raise ScriptError(f"question {number}: 'question' must be non-empty text")
            if not isinstance(answer, str) or not answer.split():
                raise ScriptError(f"question {number}: 'answer' must be non-empty text")
            turns.append(ScriptTurn(question, answer))
        closing = data.get("closing")
        if not isinstance(closing, str) or not closing.split():
            raise ScriptError("'closing' must be non-empty text")
        return cls(tuple(turns), closing)

    @classmethod
    def load(cls, path: str | Path) -> Script:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ScriptError(f"cannot read script {path}: {exc}") from None
        try:
            return cls.from_dict(data)
        except ScriptError as exc:
            raise ScriptError(f"{path}: {exc}") from None

    @classmethod
    def default(cls) -> Script:
        return cls.load(DEFAULT_SCRIPT_PATH)


# --------------------------------------------------------------------------- errors and sessions


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


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def _merged(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``session.update`` semantics: nested objects merge, anything else (``null`` too) replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _checked_session(session: Any, param: str = "session") -> dict[str, Any]:
    if not isinstance(session, dict):
        raise ApiError(400, f"'{param}' must be a JSON object", code="invalid_type", param=param)
    if session.get("type", "realtime") != "realtime":
        raise ApiError(
            400, f"'{param}.type' must be 'realtime'", code="invalid_value", param=f"{param}.type"
        )
    return session


def _dig(data: Mapping[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def _transcription(session: Mapping[str, Any]) -> dict[str, str] | None:
    """The input transcription config, if the session turns it on (``null``/absent: off)."""
    config = _dig(session, "audio", "input", "transcription")
    if not isinstance(config, Mapping):
        return None
    return {
        k: v
        for k, v in config.items()
        if k in ("model", "language", "prompt") and isinstance(v, str)
    }


def _session_view(session: Mapping[str, Any], hangover_ms: int) -> dict[str, Any]:
    """The session as the server reports it: only fields the simulator honours, well-typed."""
    model, voice, instructions = (
        session.get("model"),
        _dig(session, "audio", "output", "voice"),
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
                "transcription": _transcription(session),
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


# --------------------------------------------------------------------------- one call


@dataclass(frozen=True, slots=True)
class HeardSpeech:
    """One candidate turn the simulator's VAD committed."""

    item_id: str
    audio_start_ms: int
    audio_end_ms: int
    question_index: int | None  # the question it answered; None if heard out of turn


@dataclass(frozen=True, slots=True)
class CallOptions:
    script: Script
    words_per_second: float
    vad_hangover_ms: int
    ice_addresses: tuple[str, ...]


@dataclass(slots=True)
class _Response:
    response_id: str
    item_id: str
    words: list[str] = field(default_factory=list)


class SimulatedCall:
    """One WebRTC call: its peer, the scripted interviewer, and everything it sent and heard."""

    def __init__(self, call_id: str, session: dict[str, Any], options: CallOptions) -> None:
        self.id = call_id
        self.session = session
        self.options = options
        self.events: list[dict[str, Any]] = []  # every server event sent, in order
        self.heard: list[HeardSpeech] = []
        self.hung_up = False
        self.finished = asyncio.Event()  # the closing line has been spoken
        self.ended = asyncio.Event()  # the call is over (hangup, peer gone, shutdown)
        self.track = SpeechTrack(words_per_second=options.words_per_second)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._channel: RTCDataChannel | None = None
        self._sidebands: set[asyncio.Queue[str | None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._start_when_connected = False
        self._conversation_id = _new_id("conv")
        self._last_item_id: str | None = None
        self._awaiting_answer: int | None = None
        self._answered = asyncio.Event()
        self._speech_item: str | None = None
        self._speech_start_ms = 0

    @property
    def transcription_enabled(self) -> bool:
        return _transcription(self.session) is not None

    # ---- set-up

    async def answer(self, offer_sdp: str) -> str:
        """Apply the offer; return the SDP answer (one sendrecv audio track, the data channel)."""
        pc = self.pc
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc raises several types for a malformed SDP
            raise ApiError(
                400, f"invalid SDP offer: {exc}", code="invalid_offer", param="sdp"
            ) from None
        if not any(t.kind == "audio" for t in pc.getTransceivers()):
            raise ApiError(
                400, "the SDP offer has no audio m-line", code="invalid_offer", param="sdp"
            )
        pc.addTrack(self.track)
        answer = await pc.createAnswer()
        with host_addresses(self.options.ice_addresses):
            await pc.setLocalDescription(answer)
        if "m=application" not in offer_sdp:
            self._start_when_connected = True  # no data channel: events go to sidebands only
        return pc.localDescription.sdp

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._spawn(self._listen(track) if track.kind == "audio" else self._drain(track))

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_CHANNEL or self._channel is not None:
            return
        self._channel = channel
        channel.on("message", self.handle_client_message)
        self._start()

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self._start_when_connected:
            self._start()
        elif state in ("failed", "closed") and not self.hung_up:
            self._spawn(self.hangup())

    def _start(self) -> None:
        if not self._started and not self.hung_up:
            self._started = True
            self._spawn(self._interview())

    # ---- events out

    def emit(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """Send one server event to the data channel and every sideband socket, and record it."""
        event = {"type": event_type, "event_id": _new_id("event"), **fields}
        if self.hung_up:
            return event
        self.events.append(event)
        text = json.dumps(event)
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(text)
        for queue in list(self._sidebands):
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                log.warning("call %s: a sideband socket fell behind; closing it", self.id)
                self._sidebands.discard(queue)
                _close_sideband(queue)
        return event

    def join_sideband(self) -> asyncio.Queue[str | None]:
        """A queue of this call's server events from now on; ``None`` means close the socket."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(_SIDEBAND_QUEUE)
        self._sidebands.add(queue)
        return queue

    def leave_sideband(self, queue: asyncio.Queue[str | None]) -> None:
        self._sidebands.discard(queue)

    def _error(self, message: str, code: str, *, param: str | None, client_event: Any) -> None:
        error = ApiError(400, message, code=code, param=param).body()
        error["event_id"] = client_event if isinstance(client_event, str) else None
        self.emit("error", error=error)

    # ---- client events in (data channel and sideband)

    def handle_client_message(self, data: str | bytes) -> None:
        try:
            event = parse_event(data)
        except EventError as exc:
            self._error(str(exc), "invalid_event", param=None, client_event=None)
            return
        if event["type"] != "session.update":
            self._error(
                f"the simulated upstream does not support client event {event['type']!r}",
                "invalid_value",
                param="type",
                client_event=event.get("event_id"),
            )
            return
        try:
            update = _checked_session(event.get("session"))
        except ApiError as exc:
            self._error(
                exc.message,
                exc.code or "invalid_value",
                param=exc.param,
                client_event=event.get("event_id"),
            )
            return
        self.session = _merged(self.session, update)
        self.emit("session.updated", session=self.view())

    def view(self) -> dict[str, Any]:
        return _session_view(self.session, self.options.vad_hangover_ms)

    # ---- the interviewer

    async def _interview(self) -> None:
        self.emit("session.created", session=self.view())
        try:
            for index, turn in enumerate(self.options.script.turns):
                await self._speak(turn.question)
                self._answered.clear()
                self._awaiting_answer = index
                await self._answered.wait()
            await self._speak(self.options.script.closing)
        except asyncio.CancelledError:
            if self.hung_up:
                return  # the future of an utterance cut short by hangup
            raise
        self.finished.set()

    def _item(self, item_id: str, role: str, status: str, content: list[Any]) -> dict[str, Any]:
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": role,
            "status": status,
            "content": content,
        }

    def _response(self, r: _Response, status: str, output: list[Any]) -> dict[str, Any]:
        response: dict[str, Any] = {
            "id": r.response_id,
            "object": "realtime.response",
            "status": status,
            "conversation_id": self._conversation_id,
            "output_modalities": ["audio"],
            "audio": {"output": {"voice": self.view()["audio"]["output"]["voice"]}},
            "output": output,
        }
        if status == "completed":
            tokens = len(r.words)
            response["usage"] = {"input_tokens": 0, "output_tokens": tokens, "total_tokens": tokens}
        return response

    async def _speak(self, text: str) -> None:
        r = _Response(_new_id("resp"), _new_id("item"))
        ids = {"response_id": r.response_id, "item_id": r.item_id, "output_index": 0}
        self.emit("response.created", response=self._response(r, "in_progress", []))
        item = self._item(r.item_id, "assistant", "in_progress", [])
        self.emit("conversation.item.added", item=item, previous_item_id=self._last_item_id)
        self.emit(
            "response.output_item.added", response_id=r.response_id, output_index=0, item=item
        )
        self.emit(
            "response.content_part.added",
            **ids,
            content_index=0,
            part={"type": "audio", "transcript": ""},
        )
        self.emit("output_audio_buffer.started", response_id=r.response_id)

        def on_word(index: int, word: str) -> None:
            r.words.append(word)
            self.emit(
                "response.output_audio_transcript.delta",
                **ids,
                content_index=0,
                delta=word if index == 0 else f" {word}",
            )

        await self.track.say(text, on_word=on_word)
        transcript = " ".join(r.words)
        self.emit(
            "response.output_audio_transcript.done", **ids, content_index=0, transcript=transcript
        )
        self.emit(
            "response.content_part.done",
            **ids,
            content_index=0,
            part={"type": "audio", "transcript": transcript},
        )
        item = self._item(
            r.item_id,
            "assistant",
            "completed",
            [{"type": "output_audio", "transcript": transcript}],
        )
        self.emit("response.output_item.done", response_id=r.response_id, output_index=0, item=item)
        self.emit("conversation.item.done", item=item, previous_item_id=self._last_item_id)
        self.emit("response.done", response=self._response(r, "completed", [item]))
        self.emit("output_audio_buffer.stopped", response_id=r.response_id)
        self._last_item_id = r.item_id

    # ---- the candidate

    async def _drain(self, track: MediaStreamTrack) -> None:
        """Read and drop a track we do not use (video): aiortc queues unread frames unboundedly."""
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()

    async def _listen(self, track: MediaStreamTrack) -> None:
        vad = VoiceActivityDetector(hangover_ms=self.options.vad_hangover_ms)
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                for activity in vad.feed(frame):  # type: ignore[arg-type]
                    self._on_voice(activity)

    def _on_voice(self, activity: VoiceActivity) -> None:
        if activity.kind == "speech_started":
            self._speech_item = _new_id("item")
            self._speech_start_ms = activity.audio_ms
            self.emit(
                "input_audio_buffer.speech_started",
                audio_start_ms=activity.audio_ms,
                item_id=self._speech_item,
            )
            return
        item_id = self._speech_item or _new_id("item")
        self._speech_item = None
        self.emit(
            "input_audio_buffer.speech_stopped", audio_end_ms=activity.audio_ms, item_id=item_id
        )
        previous, self._last_item_id = self._last_item_id, item_id
        self.emit("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous)
        content = [{"type": "input_audio", "transcript": None}]
        self.emit(
            "conversation.item.added",
            previous_item_id=previous,
            item=self._item(item_id, "user", "in_progress", content),
        )
        self.emit(
            "conversation.item.done",
            previous_item_id=previous,
            item=self._item(item_id, "user", "completed", content),
        )
        question, self._awaiting_answer = self._awaiting_answer, None
        self.heard.append(HeardSpeech(item_id, self._speech_start_ms, activity.audio_ms, question))
        if self.transcription_enabled:
            self._transcribe(item_id, question, activity.audio_ms - self._speech_start_ms)
        if question is not None:
            self._answered.set()

    def _transcribe(self, item_id: str, question: int | None, duration_ms: int) -> None:
        """The simulator 'understands' only answers to its questions: it knows them by heart."""
        if question is None:
            self.emit(
                "conversation.item.input_audio_transcription.failed",
                item_id=item_id,
                content_index=0,
                error={
                    "type": "transcription_error",
                    "code": "unattributed_speech",
                    "message": "speech heard out of turn",
                },
            )
            return
        self.emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=self.options.script.turns[question].answer,
            usage={"type": "duration", "seconds": round(duration_ms / 1000, 3)},
        )

    # ---- the end

    async def hangup(self) -> None:
        """End the call: stop speaking and listening, close the peer and the sideband sockets."""
        if self.hung_up:
            await self.ended.wait()
            return
        self.hung_up = True
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        self.track.stop()
        for queue in self._sidebands:
            _close_sideband(queue)
        self._sidebands.clear()
        await self.pc.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.ended.set()


def _close_sideband(queue: asyncio.Queue[str | None]) -> None:
    """Tell the socket's writer to close after what is queued (dropping the oldest if full)."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(None)


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
            session = _merged(base or {}, session or {})
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
        call = SimulatedCall(_new_id("rtc"), dict(session), self.options)
        try:
            answer = await call.answer(sdp)
        except BaseException:
            await call.hangup()
            raise
        self._remember(call)
        log.info("call %s: answered", call.id)
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/v1/realtime/calls/{call.id}"},
        )

    def _remember(self, call: SimulatedCall) -> None:
        """Keep ended calls for inspection, only the most recent few: the simulator runs long."""
        self.calls[call.id] = call
        ended = [c for c in self.calls.values() if c.ended.is_set()]
        for old in ended[: max(0, len(ended) - self._keep_ended_calls)]:
            del self.calls[old.id]

    def _call(self, call_id: str | None) -> SimulatedCall:
        call = self.calls.get(call_id or "")
        if call is None or call.hung_up:
            raise ApiError(
                404, "no such call (or it has ended)", code="call_not_found", param="call_id"
            )
        return call

    async def _hangup(self, request: web.Request) -> web.Response:
        self._standard_key(request)
        call = self._call(request.match_info["call_id"])
        await call.hangup()
        log.info("call %s: hung up", call.id)
        return web.json_response({})

    async def _client_secrets(self, request: web.Request) -> web.Response:
        self._standard_key(request)
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            raise ApiError(400, "the body is not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_type")
        seconds = _dig(body, "expires_after", "seconds")
        seconds = 600 if seconds is None else seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 10 <= seconds <= 7200:
            raise ApiError(
                400,
                "'expires_after.seconds' must be an integer from 10 to 7200",
                code="invalid_value",
                param="expires_after.seconds",
            )
        session = _checked_session(
            body.get("session", {"type": "realtime", "model": "gpt-realtime"})
        )
        value = "ek_" + secrets.token_urlsafe(24)
        expires_at = int(time.time()) + seconds
        now = time.time()
        self._ephemeral = {k: v for k, v in self._ephemeral.items() if v.expires_at > now}
        self._ephemeral[value] = _EphemeralKey(expires_at, session)
        view = _session_view(session, self.options.vad_hangover_ms)
        view |= {"id": _new_id("sess"), "object": "realtime.session", "expires_at": expires_at}
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
        queue = call.join_sideband()
        writer = asyncio.create_task(_write_sideband(ws, queue))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    call.handle_client_message(message.data)
        finally:
            call.leave_sideband(queue)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
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
            session = _checked_session(parsed)
    if sdp is None:
        raise ApiError(
            400, "missing the 'sdp' part", code="missing_required_parameter", param="sdp"
        )
    return sdp, session


async def _write_sideband(ws: web.WebSocketResponse, queue: asyncio.Queue[str | None]) -> None:
    while (text := await queue.get()) is not None:
        await ws.send_str(text)
    await ws.close()


# --------------------------------------------------------------------------- the command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interview-gateway sim-upstream",
        description="Run the OpenAI-compatible simulated upstream (a scripted AI interviewer).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--script", type=Path, help="interview script JSON (default: built in)")
    parser.add_argument("--words-per-second", type=float, default=3.0, help="speaking speed")
    parser.add_argument(
        "--vad-hangover-ms", type=int, default=300, help="silence that ends a candidate turn"
    )
    parser.add_argument(
        "--ice-address",
        action="append",
        dest="ice_addresses",
        help="local address to gather ICE candidates on (repeatable; default 127.0.0.1)",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="require the API key held in this environment variable (default: accept any key)",
    )
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            print(
                f"sim-upstream: environment variable {args.api_key_env} is not set", file=sys.stderr
            )
            return 2
    try:
        script = Script.load(args.script) if args.script else Script.default()
    except ScriptError as exc:
        print(f"sim-upstream: {exc}", file=sys.stderr)
        return 2
    sim = SimulatedUpstream(
        script=script,
        api_key=api_key,
        ice_addresses=args.ice_addresses or ("127.0.0.1",),
        words_per_second=args.words_per_second,
        vad_hangover_ms=args.vad_hangover_ms,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_serve(sim, args.host, args.port))
    return 0


async def _serve(sim: SimulatedUpstream, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    base_url = await sim.start(host, port)
    print(f"simulated upstream listening on {base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.close()
