"""One call to the simulated upstream: its aiortc peer, the scripted interviewer, what it heard.

Each call is one aiortc peer that answers with a speaking audio track and takes the offerer's
``oai-events`` data channel. Once that channel opens (or, with no channel, once the peer
connects) it plays a :class:`~gateway.sim.script.Script`: it asks each question
(speech-shaped audio plus the GA response events, transcript deltas paced by the words actually
played), waits for the candidate to speak (energy VAD on the incoming audio), commits the turn
and — only if the session enables input transcription — reports the scripted answer as the
transcription, then moves on; after the last answer it says the closing line. Every server event
also goes to the call's sideband sockets.

The client events that steer a turn follow the contract: ``response.cancel`` ends the response
in progress (``response.done`` with status ``cancelled`` and the transcript of the words
played; the error ``response_cancel_not_active`` when none is), ``output_audio_buffer.clear``
cuts its audio (``output_audio_buffer.cleared``), and ``response.create`` starts a response
(``conversation_already_has_active_response`` while one runs). The simulator reads no
instructions: a response it is asked for is the line it is on said again (the question
awaiting an answer, or cut short), which is what the gateway asks for when a candidate is
back from an absence. Generation and playback are one thing here, so a cancel also stops the
audio at once.

Not simulated: barge-in (speech during a response does not cancel it), text-only responses,
and tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.media.ice import host_addresses
from gateway.sessions.events import EventError, parse_event
from gateway.sim.contract import ApiError, checked_session, new_id, session_view, transcription
from gateway.sim.script import Script
from gateway.sim.sideband import Sidebands
from gateway.sim.speech import SpeechTrack, VoiceActivity, VoiceActivityDetector
from gateway.upstream.openai import EVENTS_LABEL, merge_session


@dataclass(frozen=True, slots=True)
class HeardSpeech:
    """One candidate turn the simulator's VAD committed."""

    item_id: str
    audio_start_ms: int
    audio_end_ms: int
    question_index: int | None  # the question it answered; None if heard out of turn


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What every call of one simulated upstream shares: the script and how it is performed."""

    script: Script
    words_per_second: float
    vad_hangover_ms: int
    ice_addresses: tuple[str, ...]


@dataclass(slots=True)
class _Response:
    response_id: str
    item_id: str
    words: list[str] = field(default_factory=list)
    cancelled: bool = False


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
        self.sidebands = Sidebands(call_id)
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._start_when_connected = False
        self._conversation_id = new_id("conv")
        self._last_item_id: str | None = None
        self._awaiting_answer: int | None = None
        self._answered = asyncio.Event()
        self._speech_item: str | None = None
        self._speech_start_ms = 0
        self._last_response_id: str | None = None
        #: the (role, text) of the messages a client restored with conversation.item.create
        self.restored: list[tuple[str, str]] = []
        #: the response being spoken, and the line the interviewer is on (what it repeats)
        self._current: _Response | None = None
        self._line: str | None = None
        #: every client event type received (data channel and sideband), in order
        self.client_events: list[str] = []

    @property
    def transcription_enabled(self) -> bool:
        return transcription(self.session) is not None

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
        if channel.label != EVENTS_LABEL or self._channel is not None:
            return
        self._channel = channel
        channel.on("message", self.handle_frontend_message)
        self._start()

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self._start_when_connected:
            self._start()
        elif state in ("failed", "closed") and not self.hung_up:
            self._spawn(self._peer_gone(state))

    async def _peer_gone(self, state: str) -> None:
        """The offerer's peer connection failed or closed: the call is over."""
        await self.hangup()

    def _start(self) -> None:
        if not self._started and not self.hung_up:
            self._started = True
            self._spawn(self._interview())

    # ---- events out

    def emit(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """Send one server event to the data channel and every sideband socket, and record it."""
        event = {"type": event_type, "event_id": new_id("event"), **fields}
        if self.hung_up:
            return event
        self.events.append(event)
        text = json.dumps(event)
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(text)
        self.sidebands.publish(text)
        return event

    def _error(self, message: str, code: str, *, param: str | None, client_event: Any) -> None:
        error = ApiError(400, message, code=code, param=param).body()
        error["event_id"] = client_event if isinstance(client_event, str) else None
        self.emit("error", error=error)

    # ---- client events in (data channel and sideband)

    def handle_frontend_message(self, data: str | bytes) -> None:
        """A client event on the offerer's data channel: the Realtime contract takes it as it
        takes one on the sideband."""
        self.handle_client_message(data)

    def handle_client_message(self, data: str | bytes) -> None:
        try:
            event = parse_event(data)
        except EventError as exc:
            self._error(str(exc), "invalid_event", param=None, client_event=None)
            return
        self.client_events.append(event["type"])
        steer = {
            "conversation.item.create": self._restore_item,
            "response.cancel": self._cancel_response,
            "output_audio_buffer.clear": self._clear_audio,
            "response.create": self._create_response,
        }.get(event["type"])
        if steer is not None:
            steer(event)
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
            update = checked_session(event.get("session"))
        except ApiError as exc:
            self._error(
                exc.message,
                exc.code or "invalid_value",
                param=exc.param,
                client_event=event.get("event_id"),
            )
            return
        # session.update semantics: nested objects merge, anything else (null too) replaces.
        self.session = merge_session(self.session, update)
        self.emit("session.updated", session=self.view())

    def _restore_item(self, event: dict[str, Any]) -> None:
        """``conversation.item.create`` of a message: a resumed conversation's earlier turn."""
        item = event.get("item")
        if not isinstance(item, dict) or not isinstance(item.get("content"), list):
            self._error("item must be a message", "invalid_value", param="item", client_event=None)
            return
        texts = [c.get("text") for c in item["content"] if isinstance(c, dict)]
        text = " ".join(t for t in texts if isinstance(t, str))
        self.restored.append((str(item.get("role")), text))
        added = {**item, "id": new_id("item"), "object": "realtime.item", "status": "completed"}
        for kind in ("conversation.item.added", "conversation.item.done"):
            self.emit(kind, item=added, previous_item_id=self._last_item_id)
        self._last_item_id = added["id"]

    def _cancel_response(self, event: dict[str, Any]) -> None:
        if self._current is None:
            self._error(
                "Cancellation failed: no active response found",
                "response_cancel_not_active",
                param=None,
                client_event=event.get("event_id"),
            )
            return
        self._current.cancelled = True
        self.track.interrupt()  # _speak wakes and reports the response cancelled

    def _clear_audio(self, event: dict[str, Any]) -> None:
        self.track.interrupt()
        if self._current is not None:
            self._current.cancelled = True
        if self._last_response_id is not None:
            self.emit("output_audio_buffer.cleared", response_id=self._last_response_id)

    def _create_response(self, event: dict[str, Any]) -> None:
        if self._current is not None or self._line is None:
            self._error(
                "Conversation already has an active response in progress"
                if self._current is not None
                else "the simulated interviewer has not spoken yet: nothing to say again",
                "conversation_already_has_active_response"
                if self._current is not None
                else "invalid_value",
                param=None,
                client_event=event.get("event_id"),
            )
            return
        self._spawn(self._speak(self._line))

    def view(self) -> dict[str, Any]:
        return session_view(self.session, self.options.vad_hangover_ms)

    # ---- the interviewer

    def _announce(self) -> None:
        """The first server event of a call, once its events can be delivered."""
        self.emit("session.created", session=self.view())

    async def _interview(self) -> None:
        self._announce()
        # A resumed conversation goes on from its first question the candidate did not answer.
        answered = {q for (r, q), (nr, _) in zip(self.restored, self.restored[1:], strict=False)
                    if r == "assistant" and nr == "user"}  # fmt: skip
        try:
            for index, turn in enumerate(self.options.script.turns):
                if turn.question in answered:
                    continue
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
        if status in ("completed", "cancelled"):
            tokens = len(r.words)
            response["usage"] = {"input_tokens": 0, "output_tokens": tokens, "total_tokens": tokens}
        if status == "cancelled":
            response["status_details"] = {"type": "cancelled", "reason": "client_cancelled"}
        return response

    async def _speak(self, text: str) -> None:
        r = _Response(new_id("resp"), new_id("item"))
        self._current, self._line, self._last_response_id = r, text, r.response_id
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

        try:
            await self.track.say(text, on_word=on_word)
        except asyncio.CancelledError:
            if not r.cancelled or self.hung_up:
                raise
        finally:
            self._current = None
        done = "cancelled" if r.cancelled else "completed"
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
            "incomplete" if r.cancelled else "completed",
            [{"type": "output_audio", "transcript": transcript}],
        )
        self.emit("response.output_item.done", response_id=r.response_id, output_index=0, item=item)
        self.emit("conversation.item.done", item=item, previous_item_id=self._last_item_id)
        self.emit("response.done", response=self._response(r, done, [item]))
        if not r.cancelled:  # a cancelled one's audio was cut (output_audio_buffer.cleared)
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
            self._speech_item = new_id("item")
            self._speech_start_ms = activity.audio_ms
            self._speech_began(self._speech_item, activity.audio_ms)
            return
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        question, self._awaiting_answer = self._awaiting_answer, None
        self.heard.append(HeardSpeech(item_id, self._speech_start_ms, activity.audio_ms, question))
        self._speech_ended(item_id, activity.audio_ms, question)
        if question is not None:
            self._answered.set()

    def _speech_began(self, item_id: str, audio_ms: int) -> None:
        """The VAD heard the candidate start a turn."""
        self.emit("input_audio_buffer.speech_started", audio_start_ms=audio_ms, item_id=item_id)

    def _speech_ended(self, item_id: str, audio_ms: int, question: int | None) -> None:
        """The VAD committed the candidate's turn (``question``: the one it answered, if any)."""
        self.emit("input_audio_buffer.speech_stopped", audio_end_ms=audio_ms, item_id=item_id)
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
        if self.transcription_enabled:
            self._transcribe(item_id, question, audio_ms - self._speech_start_ms)

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
        self.sidebands.close()
        await self.pc.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.ended.set()
