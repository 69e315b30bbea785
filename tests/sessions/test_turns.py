"""gateway/sessions/turns.py: GPT-Live's fragments read back, and shown live, as turns."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from gateway.sessions.events import TranscriptEvent
from gateway.sessions.turns import TURN_PAUSE_MS, LiveTurns, read_turns
from storage.transcripts import Role, TranscriptRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)
KINDS = {"interviewer": "session.output_transcript.delta",
         "candidate": "session.input_transcript.delta"}  # fmt: skip


def fragment_rows(said: list[tuple[Role, str, int]]) -> list[TranscriptRow]:
    """Rows for each (role, text, pause before it in ms), one fragment per word of 200 ms."""
    rows, clock = [], 0
    for role, text, pause in said:
        clock += pause
        for index, word in enumerate(text.split()):
            seq = len(rows) + 1
            rows.append(TranscriptRow(
                seq=seq, event_id=f"e{seq}", item_id=None, role=role,
                text=word if index == 0 else f" {word}", source="relay", event_type=KINDS[role],
                received_at=T0 + timedelta(milliseconds=clock), audio_start_ms=clock,
                audio_end_ms=clock + 200, raw=None,
            ))  # fmt: skip
            clock += 200
    return rows


def resequenced(rows: list[TranscriptRow], seed: int) -> list[TranscriptRow]:
    """The same rows as if received in a shuffled order (``seq`` is the order received)."""
    shuffled = random.Random(seed).sample(rows, len(rows))
    return [
        TranscriptRow(**{**{f: getattr(r, f) for f in r.__dataclass_fields__}, "seq": n})
        for n, r in enumerate(shuffled, 1)
    ]


SAID: list[tuple[Role, str, int]] = [
    ("interviewer", "Tell me about yourself.", 0),
    ("candidate", "I build voice systems.", 700),
    ("interviewer", "Great.", 400),
    ("interviewer", "Next question: why here?", TURN_PAUSE_MS),  # a long pause: a new turn
]


def test_fragments_join_into_turns_by_speaker_and_pause() -> None:
    turns = read_turns(fragment_rows(SAID))
    assert [(t.role, t.text) for t in turns] == [(r, t) for r, t, _ in SAID]
    first = turns[0]
    assert (first.seq, first.audio_start_ms, first.audio_end_ms) == (1, 0, 800)
    assert first.event_ids == ("e1", "e2", "e3", "e4")


@pytest.mark.parametrize("seed", range(5))
def test_fragments_received_out_of_order_still_read_in_timeline_order(seed: int) -> None:
    turns = read_turns(resequenced(fragment_rows(SAID), seed))
    assert [(t.role, t.text) for t in turns] == [(r, t) for r, t, _ in SAID]


def test_realtime_rows_are_turns_of_their_own_in_reading_order() -> None:
    rows = [
        TranscriptRow(seq=n, event_id=f"r{n}", item_id=f"item{n}", role=role, text=text,
                      source="sideband", event_type=kind, received_at=T0, audio_start_ms=None,
                      audio_end_ms=None, raw=None)
        for n, (role, text, kind) in enumerate([
            ("interviewer", "Hello.", "response.output_audio_transcript.done"),
            ("interviewer", "Shall we?", "response.output_audio_transcript.done"),
            ("candidate", "Yes.", "conversation.item.input_audio_transcription.completed"),
        ], 1)
    ]  # fmt: skip
    assert [(t.role, t.text, t.item_id) for t in read_turns(rows)] == [
        ("interviewer", "Hello.", "item1"),
        ("interviewer", "Shall we?", "item2"),
        ("candidate", "Yes.", "item3"),
    ]


def live_fragment(event_id: str, role: Role, text: str, start: int) -> TranscriptEvent:
    return TranscriptEvent(event_id=event_id, event_type=KINDS[role], role=role, text=text,
                           final=True, audio_start_ms=start, audio_end_ms=start + 200,
                           fragment=True)  # fmt: skip


async def test_live_lines_are_partials_of_a_turn_then_its_final_line() -> None:
    lines: list[TranscriptEvent] = []
    turns = LiveTurns(lines.append)
    turns.add(live_fragment("a", "interviewer", "Hello", 0))
    turns.add(live_fragment("b", "interviewer", " there.", 200))
    turns.add(live_fragment("b", "interviewer", " there.", 200))  # twice: shown once
    assert turns.unfinished() == [("interviewer", "Hello there.")]
    turns.add(live_fragment("c", "candidate", "Hi.", 900))
    assert [(line.text, line.final, line.item_id) for line in lines] == [
        ("Hello", False, "a"),
        (" there.", False, "a"),
        ("Hello there.", True, "a"),
        ("Hi.", False, "c"),
    ]
    turns.close()
    assert turns.unfinished() == [("candidate", "Hi.")]


async def test_a_live_turn_with_no_successor_ends_after_the_pause() -> None:
    ended = asyncio.Event()
    lines: list[TranscriptEvent] = []

    def emit(line: TranscriptEvent) -> None:
        lines.append(line)
        if line.final:
            ended.set()

    LiveTurns(emit).add(live_fragment("z", "interviewer", "Goodbye.", 0))
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(ended.wait(), TURN_PAUSE_MS / 1000 + 2)
    assert asyncio.get_running_loop().time() - started >= TURN_PAUSE_MS / 1000 - 0.05
    assert [(line.text, line.final) for line in lines] == [("Goodbye.", False), ("Goodbye.", True)]
