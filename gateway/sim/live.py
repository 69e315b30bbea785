"""One simulated GPT-Live session: the Realtime call's peer, speech and script, GPT-Live's events.

GPT-Live (``/work/shared/reference/openai-gpt-live.md``; the installed openai-python's
``openai.types.live`` is the contract, and a test validates every event this emits against
it) differs from the Realtime call in what it says, not in how it sounds, so this is
``SimulatedCall`` with its events replaced:

- ``session.started`` (the resolved session) once the data channel opens;
- the interviewer's words as ``session.output_transcript.delta``, one per word as it is played,
  with ``start_ms``/``end_ms`` on the session timeline (milliseconds since the session was
  created), and ``session.usage.updated`` after each utterance;
- a candidate turn, once the VAD commits it, as ``session.input_transcript.delta`` fragments
  (the scripted answer's words spread over the speech heard: the simulator knows the words only
  when the turn is over); GPT-Live always transcribes, no setting needed;
- no turn boundaries and no done events, as the real service;
- ``session.update`` of ``delegation``/``triggers`` -> ``session.updated``; any other field is
  immutable and refused with an ``error`` event;
- ``client.data_channel.allowed_client_events`` (a list: only those; ``"all"`` or absent:
  every one) restricts what the data channel may send, never the sideband; a refused event
  is not applied and gets an ``error`` (code ``client_event_not_allowed``: the SDK documents
  the setting but not the error's code, so that one is this simulator's);
- ``session.close`` -> ``session.closed`` (``close_requested``);
  ``session.instructions.append`` -> ``session.instructions.appended`` (kept in
  ``appended_instructions``; the simulator reads no instructions, as it reads no others);
  other client events -> ``error``;
- ``session.closed`` with the reason and final ``usage`` whenever the session ends: hangup
  (``close_requested``), the peer gone (``connection_lost`` / ``remote_hangup``), or ``end``
  called with another reason (tests use it for ``expired``).

A session created with ``store: true`` serves its content afterwards (``content``, the
upstream's ``GET /live/sessions/{id}/content``): the SDK asks for ``application/binary`` and
names no container, so this one serves what it said as a WAV file (mono PCM16LE at 24 kHz, the
contract's reflected-audio format), each utterance where it began on the session timeline.

A session's ``input`` (startup history) is taken as the conversation so far: the interviewer
goes on from its first question not yet answered there.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import wave
from collections.abc import Mapping
from typing import Any

from gateway.sessions.events import EventError, parse_event
from gateway.sim.call import CallOptions, SimulatedCall
from gateway.sim.contract import ApiError, dig
from gateway.sim.speech import SAMPLE_RATE, synthesize_utterance

#: The stored content's sample rate (the contract's PCM16 rate).
CONTENT_RATE = 24_000

#: Every server event type the simulated GPT-Live session can emit (a test validates each).
LIVE_SERVER_EVENT_TYPES = frozenset(
    {
        "session.started",
        "session.updated",
        "session.output_transcript.delta",
        "session.input_transcript.delta",
        "session.usage.updated",
        "session.closed",
        "session.instructions.appended",
        "error",
    }
)

#: What ``session.update`` may change in a running GPT-Live session (``SessionUpdateConfig``).
UPDATABLE = frozenset({"delegation", "triggers"})

#: How long a simulated session may last, for its ``expires_at``.
SESSION_SECONDS = 3600

#: Longest wait for the data channel to hand ``session.closed`` on before the peer closes.
CLOSE_FLUSH_S = 1.0


def checked_live_session(session: Any) -> dict[str, Any]:
    """``session`` if it can start a GPT-Live session (an object with a ``model``), else the
    API's 400 naming the field."""
    if not isinstance(session, dict):
        raise ApiError(400, "'session' must be a JSON object", code="invalid_type", param="session")
    if not isinstance(session.get("model"), str) or not session["model"]:
        raise ApiError(
            400,
            "'session.model' is required",
            code="missing_required_parameter",
            param="session.model",
        )
    allowed = dig(session, "client", "data_channel", "allowed_client_events")
    if "client" in session and not (
        allowed is None
        or allowed == "all"
        or (isinstance(allowed, list) and all(isinstance(a, str) for a in allowed))
    ):
        raise ApiError(
            400,
            "'allowed_client_events' must be 'all' or a list of client event types",
            code="invalid_type",
            param="session.client.data_channel.allowed_client_events",
        )
    return session


def _history(session: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (role, text) of a session's startup ``input`` messages."""
    items = session.get("input")
    history = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("content"), list):
            continue
        texts = [c.get("text") for c in item["content"] if isinstance(c, dict)]
        history.append((str(item.get("role")), " ".join(t for t in texts if isinstance(t, str))))
    return history


class SimulatedLiveSession(SimulatedCall):
    """One GPT-Live WebRTC session: its peer, the scripted interviewer, GPT-Live's events."""

    def __init__(self, session_id: str, session: dict[str, Any], options: CallOptions) -> None:
        super().__init__(session_id, session, options)
        self.restored = _history(session)
        self._created = time.monotonic()
        self._expires_at = int(time.time()) + SESSION_SECONDS
        self._input_start_ms = 0
        self.closed_reason: str | None = None
        #: client event types the data channel sent that the session's creator did not allow
        self.refused_frontend_events: list[str] = []
        #: the content of every accepted session.instructions.append, in order
        self.appended_instructions: list[str] = []
        #: (start on the session timeline in ms, text) of each utterance, for ``content``
        self.spoken: list[tuple[int, str]] = []

    @property
    def transcription_enabled(self) -> bool:
        return True  # GPT-Live transcribes both sides, always

    def _ms(self) -> int:
        """Now, on the session timeline."""
        return round((time.monotonic() - self._created) * 1000)

    def view(self) -> dict[str, Any]:
        """The session as the server reports it (``SessionResource``)."""
        voice = dig(self.session, "audio", "output", "voice")
        resource: dict[str, Any] = {
            "id": self.id,
            "status": "active",
            "expires_at": self._expires_at,
            "model": self.session["model"],
            "audio": {"output": {"voice": voice if isinstance(voice, str) else "marin"}},
            "instructions": self.session.get("instructions") or "",
        }
        return resource | {k: self.session[k] for k in UPDATABLE if k in self.session}

    def _usage(self) -> dict[str, Any]:
        return {"seconds": int(time.monotonic() - self._created)}

    def _announce(self) -> None:
        self.emit("session.started", session=self.view())

    # ---- the interviewer

    async def _speak(self, text: str) -> None:
        last_end = self._ms()
        self.spoken.append((last_end, text))

        def on_word(index: int, word: str) -> None:
            nonlocal last_end
            end = self._ms()
            delta = word if index == 0 else f" {word}"
            self.emit("session.output_transcript.delta", delta=delta, start_ms=last_end, end_ms=end)
            last_end = end

        await self.track.say(text, on_word=on_word)
        self.emit("session.usage.updated", usage=self._usage())

    @property
    def stored(self) -> bool:
        """Whether the session was created to be kept (``store``) for its content download."""
        return self.session.get("store") is True

    def content(self) -> bytes:
        """The session's recording: the interviewer's speech on the session timeline as WAV
        (mono PCM16LE, 24 kHz), silence between utterances."""
        step = SAMPLE_RATE // CONTENT_RATE
        track = self.track
        pieces: list[bytes] = []
        at = 0  # samples at CONTENT_RATE written so far
        for start_ms, text in self.spoken:
            utterance = synthesize_utterance(
                text, words_per_second=track.words_per_second, pitch_hz=track.pitch_hz,
                seed=track.seed,
            )  # fmt: skip
            begin = max(at, start_ms * CONTENT_RATE // 1000)
            pieces.append(bytes(2 * (begin - at)))
            samples = utterance.samples[::step].astype("<i2")
            pieces.append(samples.tobytes())
            at = begin + len(samples)
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(CONTENT_RATE)
            wav.writeframes(b"".join(pieces))
        return out.getvalue()

    # ---- the candidate

    def _speech_began(self, item_id: str, audio_ms: int) -> None:
        self._input_start_ms = self._ms()

    def _speech_ended(self, item_id: str, audio_ms: int, question: int | None) -> None:
        """The scripted answer, word by word, over the speech heard (the VAD's hangover is
        silence after it). Speech out of turn is not understood: no fragments."""
        if question is None:
            return
        words = self.options.script.turns[question].answer.split()
        start = self._input_start_ms
        end = max(start + len(words), self._ms() - self.options.vad_hangover_ms)
        step = (end - start) / len(words)
        for index, word in enumerate(words):
            self.emit(
                "session.input_transcript.delta",
                delta=word if index == 0 else f" {word}",
                start_ms=round(start + index * step),
                end_ms=round(start + (index + 1) * step),
            )

    # ---- client events

    def handle_frontend_message(self, data: str | bytes) -> None:
        """The data channel passes only the events the session's creator allowed it."""
        allowed = dig(self.session, "client", "data_channel", "allowed_client_events")
        try:
            kind = parse_event(data)["type"] if isinstance(allowed, list) else None
        except EventError:
            kind = None  # unreadable: refused as such below
        if kind is not None and kind not in allowed:
            self.refused_frontend_events.append(kind)
            self._live_error(
                f"client event {kind!r} is not allowed on this session's data channel",
                "client_event_not_allowed",
                param="type",
                client_event_id=None,
            )
            return
        self.handle_client_message(data)

    def handle_client_message(self, data: str | bytes) -> None:
        try:
            event = parse_event(data)
        except EventError as exc:
            self._live_error(str(exc), "invalid_event", param=None, client_event_id=None)
            return
        client_event_id = event.get("event_id")
        client_event_id = client_event_id if isinstance(client_event_id, str) else None
        self.client_events.append(event["type"])
        if event["type"] == "session.close":
            self._spawn(self.end("close_requested"))
        elif event["type"] == "session.instructions.append":
            self._append_instructions(event.get("content"), client_event_id)
        elif event["type"] == "session.update":
            self._update(event.get("session"), client_event_id)
        else:
            self._live_error(
                f"the simulated GPT-Live session does not support client event {event['type']!r}",
                "unsupported_client_event",
                param="type",
                client_event_id=client_event_id,
            )

    def _append_instructions(self, content: Any, client_event_id: str | None) -> None:
        if not isinstance(content, str) or not content:
            self._live_error(
                "'content' must be a non-empty string", "invalid_type", "content", client_event_id
            )
            return
        self.appended_instructions.append(content)
        now = self._ms()
        extra = {"client_event_id": client_event_id} if client_event_id else {}
        self.emit("session.instructions.appended", start_ms=now, end_ms=now, **extra)

    def _update(self, update: Any, client_event_id: str | None) -> None:
        if not isinstance(update, dict):
            self._live_error(
                "'session' must be a JSON object", "invalid_type", "session", client_event_id
            )
            return
        fixed = sorted(set(update) - UPDATABLE)
        if fixed:
            self._live_error(
                f"'session.{fixed[0]}' cannot be changed after the session started",
                "unknown_parameter",
                f"session.{fixed[0]}",
                client_event_id,
            )
            return
        self.session = {**self.session, **update}
        extra = {"client_event_id": client_event_id} if client_event_id else {}
        self.emit("session.updated", session=self.view(), **extra)

    def _live_error(
        self, message: str, code: str, param: str | None, client_event_id: str | None
    ) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        if client_event_id is not None:
            error["client_event_id"] = client_event_id
        self.emit("error", error=error)

    # ---- the end

    async def _peer_gone(self, state: str) -> None:
        await self.end("connection_lost" if state == "failed" else "remote_hangup")

    async def hangup(self) -> None:
        """The hangup endpoint: the session closes as ``close_requested``."""
        await self.end("close_requested")

    async def end(self, reason: str) -> None:
        """Close the session: ``session.closed`` (``reason``, the final snapshot and usage) on
        the data channel and the sidebands, then the peer, once."""
        if self.closed_reason is None and not self.hung_up:
            self.closed_reason = reason
            self.emit("session.closed", reason=reason, session=self.view(), usage=self._usage())
            await self._flushed()
        await super().hangup()

    async def _flushed(self) -> None:
        """Let the data channel hand what it holds to SCTP before the peer closes (bounded)."""
        channel = self._channel
        if channel is None or channel.readyState != "open" or channel.bufferedAmount == 0:
            return
        drained = asyncio.Event()
        channel.on("bufferedamountlow", drained.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained.wait(), CLOSE_FLUSH_S)
