"""Upstream server event -> transcript entry or end: the ONE place that interprets upstream
events, of both contracts (Realtime and GPT-Live).

Transcripts reach the gateway three ways (the relay's data channel, the proxy's sideband socket,
events the browser forwards), in Realtime's GA names, its beta names (old recordings), and
GPT-Live's. Keeping the interpretation here means the three paths and the two contracts cannot
disagree about what a line of transcript is.

Realtime rules, in short:
- deltas (``...transcription.delta``, ``...transcript.delta``, ``...text.delta``) are live lines:
  ``final=False``, shown while someone speaks, never stored;
- ``.completed`` / ``.done`` carry the whole text of a turn: ``final=True``, the stored line;
- ``conversation.item.input_audio_transcription.segment`` (diarized pieces with timing) is a live
  line too: the same item's ``.completed`` repeats its text, so storing both would double it;
- ``conversation.item.input_audio_transcription.failed`` has no text and yields ``None``: a failed
  transcription is an operational event (log it), not a line of transcript;
- anything else, and any event missing its ``event_id`` or text field, yields ``None`` — a
  malformed event from upstream or a browser must never take a session down.

GPT-Live rules:
- ``session.input_transcript.delta`` (candidate) and ``session.output_transcript.delta``
  (interviewer) are the only transcript GPT-Live sends: no turn boundaries, no done event. So
  each is stored (``final=True``) as a *fragment* (``fragment=True``) with its ``start_ms`` /
  ``end_ms`` on the session timeline; ``gateway.sessions.turns`` assembles fragments into turns
  for every reader and for the live lines;
- ``session.closed`` ends the session: ``session_closed`` maps its ``reason`` to an end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from uuid import UUID

from gateway.sessions.recorder import EndStatus
from storage.transcripts import Role, Source, TranscriptEntry


class EventError(ValueError):
    """A data-channel or sideband message that is not a Realtime event at all."""


@dataclass(frozen=True, slots=True)
class TranscriptEvent:
    """What one event says was said: a live line, and, when ``final``, the part of a stored
    ``TranscriptEntry`` that the event itself carries (``entry`` adds where it belongs)."""

    event_id: str
    event_type: str
    role: Role
    text: str
    final: bool
    item_id: str | None = None
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None
    #: a piece of a turn (GPT-Live's deltas), stored, and joined with its turn when read
    fragment: bool = False

    def entry(
        self, tenant_id: UUID, interview_id: UUID, source: Source, raw: str
    ) -> TranscriptEntry:
        """The line to store: only finals are (deltas are shown, never kept)."""
        assert self.final, "only a final line is stored"
        carried = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("final", "fragment")
        }
        return TranscriptEntry(
            tenant_id=tenant_id, session_id=interview_id, source=source, raw=raw, **carried
        )


# event type -> (role, field holding the text, final)
_TRANSCRIPT_EVENTS: dict[str, tuple[Role, str, bool]] = {
    "conversation.item.input_audio_transcription.delta": ("candidate", "delta", False),
    "conversation.item.input_audio_transcription.completed": ("candidate", "transcript", True),
    "conversation.item.input_audio_transcription.segment": ("candidate", "text", False),
    "response.output_audio_transcript.delta": ("interviewer", "delta", False),
    "response.output_audio_transcript.done": ("interviewer", "transcript", True),
    "response.output_text.delta": ("interviewer", "delta", False),
    "response.output_text.done": ("interviewer", "text", True),
    # beta names, still seen in old recordings
    "response.audio_transcript.delta": ("interviewer", "delta", False),
    "response.audio_transcript.done": ("interviewer", "transcript", True),
    "response.text.delta": ("interviewer", "delta", False),
    "response.text.done": ("interviewer", "text", True),
}

#: GPT-Live's transcript fragments: event type -> role (the text is in ``delta``).
_FRAGMENT_EVENTS: dict[str, Role] = {
    "session.input_transcript.delta": "candidate",
    "session.output_transcript.delta": "interviewer",
}

#: The event types that can carry a transcript line (Realtime GA and beta names, GPT-Live).
TRANSCRIPT_EVENT_TYPES = frozenset(_TRANSCRIPT_EVENTS) | frozenset(_FRAGMENT_EVENTS)
#: The stored event types that are fragments of a turn rather than whole turns.
FRAGMENT_EVENT_TYPES = frozenset(_FRAGMENT_EVENTS)


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The upstream closed a GPT-Live session (``session.closed``): how the interview ends.

    ``candidate_loss`` is set for the closes that mean the primary WebRTC peer went away; in
    proxy mode that peer is the candidate's browser, who may come back on a new call.
    """

    upstream_reason: str
    status: EndStatus
    reason: str
    candidate_loss: str | None = None


#: ``session.closed`` reason -> (status, the session's end reason, the candidate's loss if the
#: primary peer is theirs). ``close_requested`` also follows the gateway's own hangup, which
#: arrives once the session is already ending and so changes nothing.
_CLOSE_REASONS: dict[str, tuple[EndStatus, str, str | None]] = {
    "close_requested": ("ended", "upstream_closed", None),
    "expired": ("ended", "upstream_expired", None),
    "content": ("failed", "upstream_content", None),
    "remote_hangup": ("ended", "upstream_remote_hangup", "peer_closed"),
    "connection_lost": ("failed", "upstream_connection_lost", "peer_failed"),
}


#: Every end reason a ``session.closed`` can lead to.
SESSION_CLOSED_REASONS = frozenset(
    {"upstream_closed", *(reason for _, reason, _ in _CLOSE_REASONS.values())}
)


def parse_event(data: str | bytes) -> dict[str, Any]:
    """Decode one message into an event object, or raise :class:`EventError` saying why not."""
    try:
        event = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise EventError(f"event is not valid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise EventError(f"event must be a JSON object, got {type(event).__name__}")
    if not isinstance(event.get("type"), str) or not event["type"]:
        raise EventError('event has no "type" string')
    return event


def _seconds_to_ms(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return round(value * 1000)


def transcript_event(event: Mapping[str, Any]) -> TranscriptEvent | None:
    """The transcript line an event carries, or ``None`` (see the module rules)."""
    event_type = event.get("type")
    if not isinstance(event_type, str):
        return None
    if event_type in _FRAGMENT_EVENTS:
        return _fragment(event, event_type, _FRAGMENT_EVENTS[event_type])
    if event_type not in _TRANSCRIPT_EVENTS:
        return None
    role, text_field, final = _TRANSCRIPT_EVENTS[event_type]
    event_id = event.get("event_id")
    text = event.get(text_field)
    if not isinstance(event_id, str) or not event_id or not isinstance(text, str):
        return None
    item_id = event.get("item_id")
    return TranscriptEvent(
        event_id=event_id,
        event_type=event_type,
        role=role,
        text=text,
        final=final,
        item_id=item_id if isinstance(item_id, str) else None,
        audio_start_ms=_seconds_to_ms(event.get("start")),
        audio_end_ms=_seconds_to_ms(event.get("end")),
    )


def _timeline_ms(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _fragment(event: Mapping[str, Any], event_type: str, role: Role) -> TranscriptEvent | None:
    """A GPT-Live delta: stored as it is, with its place on the session timeline (required by
    the contract: a delta without one cannot be put in its turn, so it is not a line)."""
    event_id, delta = event.get("event_id"), event.get("delta")
    start, end = _timeline_ms(event.get("start_ms")), _timeline_ms(event.get("end_ms"))
    if not isinstance(event_id, str) or not event_id or not isinstance(delta, str):
        return None
    if start is None or end is None or end < start:
        return None
    return TranscriptEvent(
        event_id=event_id,
        event_type=event_type,
        role=role,
        text=delta,
        final=True,
        audio_start_ms=start,
        audio_end_ms=end,
        fragment=True,
    )


def session_closed(event: Mapping[str, Any]) -> SessionClosed | None:
    """How a GPT-Live ``session.closed`` ends the interview, or ``None`` for any other event
    (an unknown close reason still ends it, as ``upstream_closed``: the session is gone)."""
    if event.get("type") != "session.closed":
        return None
    reason = event.get("reason")
    upstream_reason = reason if isinstance(reason, str) else "unknown"
    status, end_reason, loss = _CLOSE_REASONS.get(
        upstream_reason, ("ended", "upstream_closed", None)
    )
    return SessionClosed(upstream_reason, status, end_reason, loss)
