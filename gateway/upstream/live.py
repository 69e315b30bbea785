"""The client for GPT-Live (``/v1/live/sessions``; OpenAI's and Azure OpenAI's), the second
implementation of the upstream-client role (``gateway.upstream.openai.UpstreamClient``).

What differs from the Realtime calls API (``/work/shared/reference/openai-gpt-live.md``; the
installed openai-python's ``openai/resources/live/`` and ``openai/types/live/`` are the
contract this follows):

- create is JSON ``{"session": ..., "transport": {"type": "webrtc", "sdp": OFFER}}``, answered
  with ``{"session": {"id"}, "transport": {"type": "webrtc", "sdp": ANSWER}}``;
- hangup is ``POST /live/sessions/{id}/hangup``; the sideband is the WebSocket
  ``/live/sessions/{id}/attach`` (no ``session.start`` on it);
- the session's instructions, model and voice are fixed at start, so an earlier conversation
  goes into a new call as its startup ``input`` items, not as client events; and only
  ``delegation`` and ``triggers`` can change later, so those are what the gateway guards;
- the session can be told which client events the browser's data channel may send
  (``client.data_channel.allowed_client_events``), so in proxy mode the upstream enforces the
  gateway's allowlist;
- a session created with ``store: true`` can be downloaded afterwards
  (``GET /live/sessions/{id}/content``, the SDK's ``download_recording``: opaque bytes,
  ``Accept: application/binary``), which is how the gateway records on GPT-Live in proxy mode
  too (``recording.content``);
- nothing stops the interviewer mid-turn: the contract has no ``response.cancel`` and no
  output-audio clear (``session.input_audio.mute`` mutes what the model hears, not what it
  says; ``response.create`` needs Responses delegation), so a relay pauses nothing while the
  candidate is away, and on their return appends instructions to repeat the last question
  (``session.instructions.append``, the contract's way to steer a running session).

The key is handed in by the composition root, which reads it through
``openai.api_key_from_env``; like the Realtime client, this one sends it only in the headers of
requests to the configured upstream.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection

from gateway.upstream.integrity import ClientEventPolicy
from gateway.upstream.openai import (
    REPEAT_INSTRUCTIONS,
    CarryOver,
    HttpUpstream,
    UpstreamCall,
    UpstreamError,
)
from storage.transcripts import Role

#: What the gateway asks of every GPT-Live session unless configured otherwise. GPT-Live
#: transcribes both sides on its own: there is no transcription setting to turn on.
DEFAULT_LIVE_SESSION: dict[str, Any] = {
    "model": "gpt-live-1",
    "audio": {"output": {"voice": "marin"}},
}

#: The only session fields a running GPT-Live session lets ``session.update`` change.
LIVE_GUARDED_FIELDS: tuple[tuple[str, ...], ...] = (("delegation",), ("triggers",))

#: Every client event type of the contract (``openai.types.live.ClientEvent``; a test keeps
#: this in step with the installed SDK), for ``client.data_channel.allowed_client_events``.
LIVE_CLIENT_EVENTS: tuple[str, ...] = (
    "session.start",
    "session.update",
    "session.close",
    "session.input_audio.append",
    "session.input_audio.mute",
    "session.input_audio.unmute",
    "session.output_audio.fixture.play",
    "session.instructions.append",
    "session.thinking.append",
    "session.commentary.append",
    "decision.create",
    "decision.item.create",
    "decision.item.delete",
    "response.item.create",
    "response.create",
)

#: Once the candidate is back from an absence: instructions to repeat the last question
#: (``InstructionsAppendEvent``; ``delegation_id`` null: general session context).
LIVE_REPEAT_EVENTS: tuple[str, ...] = (
    json.dumps(
        {
            "type": "session.instructions.append",
            "content": REPEAT_INSTRUCTIONS,
            "delegation_id": None,
        }
    ),
)

#: Seconds one recording download may take (a whole interview's media, in one response).
CONTENT_TIMEOUT = 300.0

#: GPT-Live's startup history takes at most this many messages.
MAX_INPUT_ITEMS = 128


def initial_item(role: Role, text: str) -> dict[str, Any]:
    """One earlier line as a GPT-Live startup ``input`` message (``InitialItemParam``)."""
    if role == "interviewer":
        return {"type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": text}]}  # fmt: skip
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


class LiveUpstream(HttpUpstream):
    """GPT-Live over WebRTC: JSON create, the session id in the body, ``/attach`` sideband."""

    defaults = DEFAULT_LIVE_SESSION
    guarded_fields = LIVE_GUARDED_FIELDS
    #: the contract has nothing that stops the interviewer mid-turn (module docstring)
    pause_events: tuple[str, ...] = ()
    repeat_events = LIVE_REPEAT_EVENTS

    async def create_call(
        self, offer_sdp: str, session: dict[str, Any] | None = None
    ) -> UpstreamCall:
        """POST the offer as ``transport.sdp``; the answer and id come back in the JSON body."""
        body = {
            "session": self.effective_session(session),
            "transport": {"type": "webrtc", "sdp": offer_sdp},
        }
        status, text, _ = await self._post("/live/sessions", json=body)
        if status not in (200, 201):
            raise self._error_from(status, text)
        try:
            created = json.loads(text)
            session_id, answer = created["session"]["id"], created["transport"]["sdp"]
        except (ValueError, KeyError, TypeError):
            raise UpstreamError(
                "upstream answered without a session id and SDP answer", code="protocol"
            ) from None
        if not isinstance(session_id, str) or not session_id or not isinstance(answer, str):
            raise UpstreamError("upstream answered a malformed session", code="protocol")
        return UpstreamCall(call_id=session_id, answer_sdp=answer)

    async def hangup(self, call_id: str) -> bool:
        return await self._hangup(call_id, f"/live/sessions/{call_id}/hangup")

    def storing(self) -> dict[str, Any]:
        """What a session's config needs for its recording to be downloadable afterwards."""
        return {"store": True}

    async def download_recording(self, call_id: str) -> tuple[str, bytes]:
        """The stored session's content, as (its content type, its bytes). ``UpstreamError``:
        its ``status`` says whether trying again may help (5xx, 429, unreachable: None)."""
        status, kind, body = await self._get_binary(
            f"/live/sessions/{call_id}/content", CONTENT_TIMEOUT
        )
        if status != 200:
            raise self._error_from(status, body.decode("utf-8", "replace"))
        return kind, body

    async def open_sideband(self, call_id: str) -> ClientConnection:
        """Attach to the session as a trusted observer: the same server events as the data
        channel, and client events accepted."""
        return await self._websocket(f"/live/sessions/{call_id}/attach")

    def restricting_frontend(self, policy: ClientEventPolicy) -> dict[str, Any]:
        """GPT-Live lets the server that creates a session say which client events the
        untrusted WebRTC frontend may send on its data channel (``ClientConfig``; the sideband
        is not restricted): the deployment's allowlist, enforced by the upstream itself."""
        allowed = policy.admitted(LIVE_CLIENT_EVENTS)
        return {"client": {"data_channel": {"allowed_client_events": allowed}}}

    def carry_over(self, conversation: Sequence[tuple[Role, str]]) -> CarryOver:
        """The most recent lines as the new session's startup ``input`` (the API's limit)."""
        items = [initial_item(role, text) for role, text in conversation if text.strip()]
        return CarryOver(session={"input": items[-MAX_INPUT_ITEMS:]} if items else {})
