"""gateway/sessions/events.py: which Realtime events are transcript lines, in GA and beta names."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sessions.events import (
    TRANSCRIPT_EVENT_TYPES,
    EventError,
    SessionClosed,
    TranscriptEvent,
    parse_event,
    session_closed,
    transcript_event,
)


def test_parse_event_returns_the_object() -> None:
    event = {"type": "response.done", "event_id": "event_1", "response": {}}
    assert parse_event(json.dumps(event)) == event
    assert parse_event(json.dumps(event).encode()) == event


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('"text"', "must be a JSON object, got str"),
        ("null", "must be a JSON object, got NoneType"),
        ("{}", 'no "type"'),
        ('{"type": 7}', 'no "type"'),
        ('{"type": ""}', 'no "type"'),
    ],
)
def test_parse_event_says_why_a_message_is_not_an_event(data: str | bytes, reason: str) -> None:
    with pytest.raises(EventError, match=reason):
        parse_event(data)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            {"type": "conversation.item.input_audio_transcription.delta", "event_id": "e1",
             "item_id": "item_1", "content_index": 0, "delta": "I built"},
            ("candidate", "I built", False),
        ),
        (
            {"type": "conversation.item.input_audio_transcription.completed", "event_id": "e2",
             "item_id": "item_1", "content_index": 0, "transcript": "I built a pipeline.",
             "usage": {"type": "duration", "seconds": 1.5}},
            ("candidate", "I built a pipeline.", True),
        ),
        (
            {"type": "response.output_audio_transcript.delta", "event_id": "e3",
             "response_id": "r", "item_id": "item_2", "output_index": 0, "content_index": 0,
             "delta": " Tell"},
            ("interviewer", " Tell", False),
        ),
        (
            {"type": "response.output_audio_transcript.done", "event_id": "e4",
             "response_id": "r", "item_id": "item_2", "output_index": 0, "content_index": 0,
             "transcript": "Tell me more."},
            ("interviewer", "Tell me more.", True),
        ),
        (
            {"type": "response.output_text.delta", "event_id": "e5", "item_id": "item_3",
             "delta": "Hi"},
            ("interviewer", "Hi", False),
        ),
        (
            {"type": "response.output_text.done", "event_id": "e6", "item_id": "item_3",
             "text": "Hi there."},
            ("interviewer", "Hi there.", True),
        ),
        (
            {"type": "response.audio_transcript.delta", "event_id": "b1", "item_id": "i",
             "delta": "Old"},
            ("interviewer", "Old", False),
        ),
        (
            {"type": "response.audio_transcript.done", "event_id": "b2", "item_id": "i",
             "transcript": "Old shape."},
            ("interviewer", "Old shape.", True),
        ),
        (
            {"type": "response.text.delta", "event_id": "b3", "item_id": "i", "delta": "T"},
            ("interviewer", "T", False),
        ),
        (
            {"type": "response.text.done", "event_id": "b4", "item_id": "i", "text": "Text."},
            ("interviewer", "Text.", True),
        ),
    ],
    ids=lambda value: value["type"] if isinstance(value, dict) else None,
)  # fmt: skip
def test_transcript_lines_in_ga_and_beta_names(event: dict[str, Any], expected: tuple) -> None:
    line = transcript_event(event)
    assert line == TranscriptEvent(
        event_id=event["event_id"],
        event_type=event["type"],
        role=expected[0],
        text=expected[1],
        final=expected[2],
        item_id=event["item_id"],
    )


def test_a_diarized_segment_is_a_live_line_with_its_timing() -> None:
    line = transcript_event(
        {"type": "conversation.item.input_audio_transcription.segment", "event_id": "e7",
         "id": "seg_1", "item_id": "item_1", "content_index": 0, "text": "Hello",
         "speaker": "A", "start": 1.25, "end": 2.0}
    )  # fmt: skip
    assert line is not None
    assert (line.role, line.text, line.final) == ("candidate", "Hello", False)
    assert (line.audio_start_ms, line.audio_end_ms) == (1250, 2000)


def test_a_failed_transcription_is_not_a_line() -> None:
    failed = {"type": "conversation.item.input_audio_transcription.failed", "event_id": "e8",
              "item_id": "item_1", "content_index": 0,
              "error": {"type": "transcription_error", "code": "x", "message": "no"}}  # fmt: skip
    assert transcript_event(failed) is None


@pytest.mark.parametrize(
    "event",
    [
        {"type": "response.done", "event_id": "e", "response": {}},
        {"type": "input_audio_buffer.speech_started", "event_id": "e", "audio_start_ms": 5},
        {"type": "session.created", "event_id": "e", "transcript": "not a line"},
        {"type": "response.output_audio_transcript.done", "transcript": "no event id"},
        {"type": "response.output_audio_transcript.done", "event_id": "", "transcript": "x"},
        {"type": "response.output_audio_transcript.done", "event_id": 5, "transcript": "x"},
        {"type": "response.output_audio_transcript.done", "event_id": "e"},
        {"type": "response.output_audio_transcript.done", "event_id": "e", "transcript": None},
        {"type": "response.output_audio_transcript.delta", "event_id": "e", "delta": ["x"]},
        {"type": "response.output_text.done", "event_id": "e", "delta": "text is in 'text'"},
        {"type": None, "event_id": "e", "delta": "x"},
        {"event_id": "e", "delta": "x"},
    ],
)
def test_other_and_malformed_events_are_not_lines(event: dict[str, Any]) -> None:
    assert transcript_event(event) is None


def test_odd_optional_fields_are_dropped_not_fatal() -> None:
    line = transcript_event(
        {"type": "conversation.item.input_audio_transcription.segment", "event_id": "e",
         "text": "x", "item_id": 12, "start": "soon", "end": True}
    )  # fmt: skip
    assert line is not None
    assert (line.item_id, line.audio_start_ms, line.audio_end_ms) == (None, None, None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(
    st.sampled_from([*sorted(TRANSCRIPT_EVENT_TYPES), "error", "response.done", "session.closed"]),
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "item_id",
                "delta",
                "transcript",
                "text",
                "start",
                "end",
                "start_ms",
                "end_ms",
                "reason",
            ]
        ),
        json_values,
    ),
)
@pytest.mark.slow
def test_no_event_shape_raises(event_type: str, fields: dict[str, Any]) -> None:
    session_closed({"type": event_type, **fields})
    line = transcript_event({"type": event_type, **fields})
    if line is not None:
        assert isinstance(line.text, str) and line.event_id == fields["event_id"]


# -- GPT-Live -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "role"),
    [
        ("session.input_transcript.delta", "candidate"),
        ("session.output_transcript.delta", "interviewer"),
    ],
)
def test_a_live_delta_is_a_stored_fragment_on_the_session_timeline(
    event_type: str, role: str
) -> None:
    event = {"type": event_type, "event_id": "event_9", "delta": " there", "start_ms": 1200,
             "end_ms": 1450}  # fmt: skip
    line = transcript_event(event)
    assert line == TranscriptEvent(
        event_id="event_9",
        event_type=event_type,
        role=role,  # type: ignore[arg-type]
        text=" there",
        final=True,
        audio_start_ms=1200,
        audio_end_ms=1450,
        fragment=True,
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"start_ms": 10},  # no end
        {"start_ms": 10, "end_ms": 5},  # ends before it starts
        {"start_ms": -1, "end_ms": 5},
        {"start_ms": 1.5, "end_ms": 5},
        {"start_ms": True, "end_ms": 5},
    ],
)
def test_a_live_delta_without_a_place_on_the_timeline_is_no_line(fields: dict[str, Any]) -> None:
    event = {"type": "session.output_transcript.delta", "event_id": "e", "delta": "x", **fields}
    assert transcript_event(event) is None


@pytest.mark.parametrize(
    ("reason", "status", "end_reason", "loss"),
    [
        ("close_requested", "ended", "upstream_closed", None),
        ("expired", "ended", "upstream_expired", None),
        ("content", "failed", "upstream_content", None),
        ("remote_hangup", "ended", "upstream_remote_hangup", "peer_closed"),
        ("connection_lost", "failed", "upstream_connection_lost", "peer_failed"),
        ("something_new", "ended", "upstream_closed", None),
    ],
)
def test_session_closed_reasons_map_to_end_reasons(
    reason: str, status: str, end_reason: str, loss: str | None
) -> None:
    closed = session_closed({"type": "session.closed", "event_id": "e", "reason": reason})
    assert closed == SessionClosed(reason, status, end_reason, loss)  # type: ignore[arg-type]
    assert session_closed({"type": "session.updated", "reason": reason}) is None
