"""A whole scripted interview between the simulated upstream and a real aiortc offerer.

The offerer plays the candidate: after each question it speaks the scripted answer through a
SpeechTrack, so the simulator's VAD, turn-taking and transcription run on real Opus audio.
"""

from __future__ import annotations

from typing import Annotated, Any, Union, get_args

import aiohttp
import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import Field, TypeAdapter

from gateway.sim.contract import SERVER_EVENT_TYPES
from gateway.sim.script import Script, ScriptTurn
from gateway.sim.upstream import SimulatedUpstream
from tests.sim.sim_peer import TRANSCRIPTION, Offerer, post_call

#: Slow (WebRTC between real peers, seconds each): left out by `scripts/test -m "not slow"`.
pytestmark = pytest.mark.slow

RESPONSE_ORDER = [
    "response.created",
    "conversation.item.added",
    "response.output_item.added",
    "response.content_part.added",
    "output_audio_buffer.started",
    *["response.output_audio_transcript.delta"],  # one or more, collapsed below
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
    "output_audio_buffer.stopped",
]
CANDIDATE_ORDER = [
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.added",
    "conversation.item.done",
]

ServerEvent = TypeAdapter(
    Annotated[Union[get_args(get_args(RealtimeServerEvent)[0])], Field(discriminator="type")]  # noqa: UP007
)


async def interview(
    sim: SimulatedUpstream,
    http: aiohttp.ClientSession,
    offerer: Offerer,
    script: Script,
    session: dict[str, Any],
    *,
    enable_transcription_after_first_answer: bool = False,
) -> str:
    """Answer every question once the interviewer stops talking; return the call id."""
    response = await post_call(http, sim.base_url, await offerer.offer(), session)
    assert response.status == 201, await response.text()
    call_id = response.headers["Location"].rsplit("/", 1)[1]
    await offerer.accept(await response.text())
    for number, turn in enumerate(script.turns, 1):
        await offerer.wait_count("output_audio_buffer.stopped", number)
        await offerer.voice.say(turn.answer)
        await offerer.wait_count("input_audio_buffer.committed", number)
        if enable_transcription_after_first_answer and number == 1:
            offerer.send({"type": "session.update", "session": TRANSCRIPTION})
    await offerer.wait_count("output_audio_buffer.stopped", len(script.turns) + 1)
    assert sim.calls[call_id].finished.is_set()
    return call_id


def collapsed(types: list[str]) -> list[str]:
    """Consecutive transcript deltas as one, to compare against the documented order."""
    out: list[str] = []
    for event_type in types:
        if not (out and event_type == out[-1] == "response.output_audio_transcript.delta"):
            out.append(event_type)
    return out


async def test_a_scripted_interview_with_transcription(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer, script: Script
) -> None:
    session = {"type": "realtime", "model": "gpt-realtime"} | TRANSCRIPTION
    call_id = await interview(sim, http, offerer, script, session)
    events = offerer.events
    call = sim.calls[call_id]

    # the data channel carried exactly what the call recorded, each event with a unique id
    assert events == call.events
    assert len({e["event_id"] for e in events}) == len(events)
    assert events[0]["type"] == "session.created"

    # each interviewer turn: the GA order, deltas paced by words, adding up to the line
    lines = [*(t.question for t in script.turns), script.closing]
    responses = [e["response"]["id"] for e in events if e["type"] == "response.created"]
    assert len(responses) == len(lines)
    for response_id, line in zip(responses, lines, strict=True):
        own = [e for e in events if response_id in (e.get("response_id"), _rid(e))]
        item_id = own[1]["item"]["id"]
        own_item = [e for e in events if _item_id(e) == item_id and e not in own]
        turn = sorted(own + own_item, key=events.index)
        assert collapsed([e["type"] for e in turn]) == RESPONSE_ORDER
        deltas = [e["delta"] for e in turn if e["type"].endswith("transcript.delta")]
        assert len(deltas) == len(line.split()) > 1
        done = next(e for e in turn if e["type"] == "response.output_audio_transcript.done")
        assert "".join(deltas) == done["transcript"] == " ".join(line.split())

    # each answer: VAD events in order, then the scripted answer as the transcription
    completed = [e for e in events if e["type"].endswith("input_audio_transcription.completed")]
    assert [e["transcript"] for e in completed] == [t.answer for t in script.turns]
    for answer in completed:
        turn = [e for e in events if _item_id(e) == answer["item_id"]]
        assert [e["type"] for e in turn][: len(CANDIDATE_ORDER)] == CANDIDATE_ORDER
        started, stopped = turn[0], turn[1]
        assert 0 <= started["audio_start_ms"] < stopped["audio_end_ms"]
    assert [h.question_index for h in call.heard] == list(range(len(script.turns)))

    # and the candidate heard speech: loud frames, and quiet ones between turns
    loud = sum(rms > 300 for rms in offerer.frame_rms)
    quiet = sum(rms < 30 for rms in offerer.frame_rms)
    assert loud > 25 and quiet > 10, (loud, quiet, len(offerer.frame_rms))


async def test_transcription_is_off_until_a_session_update_enables_it(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer, script: Script
) -> None:
    call_id = await interview(
        sim,
        http,
        offerer,
        script,
        {"type": "realtime", "model": "gpt-realtime"},
        enable_transcription_after_first_answer=True,
    )
    events = offerer.events

    committed = offerer.of_type("input_audio_buffer.committed")
    completed = [e for e in events if e["type"].endswith("input_audio_transcription.completed")]
    assert len(committed) == len(script.turns)
    assert [e["item_id"] for e in completed] == [e["item_id"] for e in committed[1:]]
    assert [e["transcript"] for e in completed] == [t.answer for t in script.turns[1:]]
    updated = offerer.of_type("session.updated")
    assert len(updated) == 1
    assert events.index(updated[0]) < events.index(completed[0])
    assert sim.calls[call_id].transcription_enabled


@pytest.mark.parametrize(
    "script", [Script((ScriptTurn("Ready to start?", "Yes I am ready."),), "Thanks, bye.")]
)
async def test_every_event_the_simulator_emits_passes_the_official_schema(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer, script: Script
) -> None:
    session = {"type": "realtime", "model": "gpt-realtime"} | TRANSCRIPTION
    await interview(sim, http, offerer, script, session)
    # the rarer paths: a session.update, a bad client event, and speech heard out of turn
    offerer.send({"type": "session.update", "session": {"instructions": "Be brief."}})
    offerer.send({"type": "conversation.item.retrieve", "item_id": "item_x"})
    await offerer.voice.say("One more thing before we go.")
    await offerer.wait_count("conversation.item.input_audio_transcription.failed", 1)
    await offerer.wait_count("session.updated", 1)
    # a response asked for (the closing line again), then its buffer cleared, then a cancel
    # with nothing to cancel (an error, as upstream)
    offerer.send({"type": "response.create"})
    (*_, again) = await offerer.wait_count("response.done", len(script.turns) + 2)
    assert again["response"]["status"] == "completed"
    offerer.send({"type": "output_audio_buffer.clear"})
    offerer.send({"type": "response.cancel", "event_id": "cancel_1"})
    (cleared,) = await offerer.wait_count("output_audio_buffer.cleared", 1)
    assert cleared["response_id"] == again["response"]["id"]
    errors = await offerer.wait_count("error", 2)
    assert errors[1]["error"]["code"] == "response_cancel_not_active"

    for event in offerer.events:
        try:
            ServerEvent.validate_python(event)
        except Exception as exc:  # pydantic's ValidationError, with the event for the report
            pytest.fail(f"{event['type']} fails the GA schema: {exc}\n{event}")
    assert {e["type"] for e in offerer.events} == SERVER_EVENT_TYPES


def _rid(event: dict[str, Any]) -> str | None:
    response = event.get("response")
    return response.get("id") if isinstance(response, dict) else None


def _item_id(event: dict[str, Any]) -> str | None:
    item = event.get("item")
    return event.get("item_id") or (item.get("id") if isinstance(item, dict) else None)


#: A question long enough (about 5 s at SPEED) to be cut short in the middle.
LONG_QUESTION = " ".join(["Tell me about the hardest bug you fixed and how you found it"] * 7)


@pytest.mark.parametrize(
    "script", [Script((ScriptTurn(LONG_QUESTION, "A race in the cache."),), "Thanks, bye.")]
)
async def test_a_cancelled_question_is_cut_short_and_asked_again_on_request(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer, script: Script
) -> None:
    """``response.cancel`` + ``output_audio_buffer.clear`` (what the gateway sends while the
    candidate is away) end the question mid-sentence; ``response.create`` has it asked again,
    whole, and the interview then goes on as scripted."""
    session = {"type": "realtime", "model": "gpt-realtime"} | TRANSCRIPTION
    response = await post_call(http, sim.base_url, await offerer.offer(), session)
    assert response.status == 201, await response.text()
    await offerer.accept(await response.text())
    await offerer.wait_count("response.output_audio_transcript.delta", 2)
    offerer.send({"type": "response.cancel"})
    offerer.send({"type": "output_audio_buffer.clear"})
    (cut,) = await offerer.wait_count("response.done", 1)
    assert cut["response"]["status"] == "cancelled"
    assert cut["response"]["status_details"]["reason"] == "client_cancelled"
    await offerer.wait_count("output_audio_buffer.cleared", 1)
    (partial,) = offerer.of_type("response.output_audio_transcript.done")
    assert LONG_QUESTION.startswith(partial["transcript"]) and partial["transcript"]
    assert partial["transcript"] != LONG_QUESTION

    offerer.send({"type": "response.create"})
    offerer.send({"type": "response.create"})  # one response at a time, as upstream
    (error,) = await offerer.wait_count("error", 1)
    assert error["error"]["code"] == "conversation_already_has_active_response"
    await offerer.wait_count("output_audio_buffer.stopped", 1)
    transcripts = offerer.of_type("response.output_audio_transcript.done")
    assert transcripts[1]["transcript"] == LONG_QUESTION
    await offerer.voice.say(script.turns[0].answer)
    await offerer.wait_count("output_audio_buffer.stopped", 2)  # the closing line
    assert offerer.of_type("response.output_audio_transcript.done")[2]["transcript"] == (
        script.closing
    )
    for event in offerer.events:
        ServerEvent.validate_python(event)
