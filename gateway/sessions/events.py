"""Realtime server event -> transcript entry: the ONE place that interprets Realtime events.

Transcripts reach the gateway three ways (the relay's data channel, the proxy's sideband socket,
events the browser forwards), in GA names and — from old recordings — beta names. Keeping the
interpretation here means the three paths cannot disagree about what a line of transcript is.

Rules, in short:
- deltas (``...transcription.delta``, ``...transcript.delta``, ``...text.delta``) are live lines:
  ``final=False``, shown while someone speaks, never stored;
- ``.completed`` / ``.done`` carry the whole text of a turn: ``final=True``, the stored line;
- ``conversation.item.input_audio_transcription.segment`` (diarized pieces with timing) is a live
  line too: the same item's ``.completed`` repeats its text, so storing both would double it;
- ``conversation.item.input_audio_transcription.failed`` has no text and yields ``None``: a failed
  transcription is an operational event (log it), not a line of transcript;
- anything else, and any event missing its ``event_id`` or text field, yields ``None`` — a
  malformed event from upstream or a browser must never take a session down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from uuid import UUID

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

    def entry(
        self, tenant_id: UUID, interview_id: UUID, source: Source, raw: str
    ) -> TranscriptEntry:
        """The line to store: only finals are (deltas are shown, never kept)."""
        assert self.final, "only a final line is stored"
        carried = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "final"}
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

#: The event types that can carry a transcript line (GA and beta names).
TRANSCRIPT_EVENT_TYPES = frozenset(_TRANSCRIPT_EVENTS)


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
    if not isinstance(event_type, str) or event_type not in _TRANSCRIPT_EVENTS:
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
