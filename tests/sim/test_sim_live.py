"""The simulated GPT-Live session against a real aiortc offerer, and its HTTP surface.

Every event it emits is validated against openai-python's ``openai.types.live.ServerEvent``
(as a real discriminated union on ``type``), and its create response against
``LiveCreateResponse``: a simulator that passes speaks the published contract.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Union, get_args

import aiohttp
import pytest
import websockets
from openai.types.live import ClientEvent, LiveCreateResponse, ServerEvent
from pydantic import Field, TypeAdapter

from gateway.sim.live import LIVE_SERVER_EVENT_TYPES, SimulatedLiveSession
from gateway.sim.script import Script, ScriptTurn
from gateway.sim.upstream import SimulatedUpstream
from gateway.upstream.live import LIVE_CLIENT_EVENTS
from tests.sim.sim_peer import API_KEY, Offerer, auth

LiveEvent = TypeAdapter(
    Annotated[Union[get_args(get_args(ServerEvent)[0])], Field(discriminator="type")]  # noqa: UP007
)
SESSION = {"model": "gpt-live-1", "instructions": "Interview kindly."}
SHORT = Script((ScriptTurn("Ready to start?", "Yes I am ready."),), "Thanks, bye.")


async def create(
    http: aiohttp.ClientSession, sim: SimulatedUpstream, body: Any, key: str = API_KEY
) -> aiohttp.ClientResponse:
    return await http.post(f"{sim.base_url}/live/sessions", json=body, headers=auth(key))


async def start(
    http: aiohttp.ClientSession, sim: SimulatedUpstream, offerer: Offerer, session: Any = SESSION
) -> SimulatedLiveSession:
    body = {"session": session, "transport": {"type": "webrtc", "sdp": await offerer.offer()}}
    response = await create(http, sim, body)
    assert response.status == 200, await response.text()
    created = LiveCreateResponse.model_validate(await response.json())
    await offerer.accept(created.transport.sdp)
    call = sim.calls[created.session.id]
    assert isinstance(call, SimulatedLiveSession) and created.session.id.startswith("live_")
    return call


async def interview(offerer: Offerer, script: Script) -> None:
    """Answer each question once the interviewer's utterance is over (its usage update)."""
    for number, turn in enumerate(script.turns, 1):
        await offerer.wait_count("session.usage.updated", number)
        await offerer.voice.say(turn.answer)
        words = sum(len(t.answer.split()) for t in script.turns[:number])
        await offerer.wait_count("session.input_transcript.delta", words)
    await offerer.wait_count("session.usage.updated", len(script.turns) + 1)


def spoken(lines: list[str]) -> list[str]:
    return [" ".join(line.split()) for line in lines]


def joined(events: list[dict[str, Any]], event_type: str) -> str:
    return "".join(e["delta"] for e in events if e["type"] == event_type)


@pytest.mark.slow
async def test_a_scripted_live_interview_sends_timed_fragments_and_no_turn_events(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer, script: Script
) -> None:
    call = await start(http, sim, offerer)
    await interview(offerer, script)
    events = offerer.events
    assert events == call.events and events[0]["type"] == "session.started"
    assert events[0]["session"]["instructions"] == SESSION["instructions"]
    lines = [*(t.question for t in script.turns), script.closing]
    # each utterance's deltas join to its text (the first of each has no leading space)
    assert joined(events, "session.output_transcript.delta") == "".join(spoken(lines))
    answers = [t.answer for t in script.turns]
    assert joined(events, "session.input_transcript.delta") == "".join(spoken(answers))
    fragments = [e for e in events if e["type"].endswith("_transcript.delta")]
    for event in fragments:
        assert 0 <= event["start_ms"] <= event["end_ms"]
    # deltas come on one timeline: each speaker's fragments move forward, answers after questions
    for kind in ("session.input_transcript.delta", "session.output_transcript.delta"):
        starts = [e["start_ms"] for e in fragments if e["type"] == kind]
        assert starts == sorted(starts)
    first_answer = next(e for e in fragments if e["type"] == "session.input_transcript.delta")
    first_question_end = max(e["end_ms"] for e in fragments[: fragments.index(first_answer)])
    assert first_answer["start_ms"] >= first_question_end
    assert not {e["type"] for e in events} & {"response.done", "session.created"}


@pytest.mark.slow
@pytest.mark.parametrize("script", [SHORT])
async def test_every_live_event_passes_the_official_schema(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer, script: Script
) -> None:
    call = await start(http, sim, offerer)
    await interview(offerer, script)
    # the rarer paths: an accepted update, a refused one, an unsupported event, then close
    offerer.send({"type": "session.update", "session": {"triggers": []}, "event_id": "c1"})
    offerer.send({"type": "session.update", "session": {"instructions": "Be rude."}})
    offerer.send({"type": "response.create", "event_id": "c2"})
    content = "Repeat your last question."
    offerer.send({"type": "session.instructions.append", "content": content, "event_id": "c3"})
    await offerer.wait_count("error", 2)
    (appended,) = await offerer.wait_count("session.instructions.appended", 1)
    assert appended["client_event_id"] == "c3" and call.appended_instructions == [content]
    updated = await offerer.wait_count("session.updated", 1)
    assert updated[0]["client_event_id"] == "c1"
    assert call.session["instructions"] == SESSION["instructions"]  # immutable, as upstream
    offerer.send({"type": "session.close"})
    (closed,) = await offerer.wait_count("session.closed", 1)
    assert closed["reason"] == "close_requested"
    await call.ended.wait()

    for event in offerer.events:
        try:
            LiveEvent.validate_python(event)
        except Exception as exc:  # pydantic's ValidationError, with the event for the report
            pytest.fail(f"{event['type']} fails openai.types.live: {exc}\n{event}")
    assert {e["type"] for e in offerer.events} == LIVE_SERVER_EVENT_TYPES


@pytest.mark.slow
async def test_attach_carries_the_sessions_events_and_an_expiry_closes_it(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer
) -> None:
    call = await start(http, sim, offerer)
    url = sim.base_url.replace("http://", "ws://") + f"/live/sessions/{call.id}/attach"
    async with websockets.connect(url, additional_headers=auth()) as sideband:
        await offerer.wait_count("session.started", 1)
        await call.end("expired")
        seen = [json.loads(message) async for message in sideband]
    assert seen[-1]["type"] == "session.closed" and seen[-1]["reason"] == "expired"
    assert offerer.of_type("session.closed") == [seen[-1]]  # the data channel got it too
    LiveEvent.validate_python(seen[-1])
    hangup = await http.post(f"{sim.base_url}/live/sessions/{call.id}/hangup", headers=auth())
    assert hangup.status == 404  # it is over


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"transport": {"type": "webrtc", "sdp": "v=0"}}, "session"),
        ({"session": {}, "transport": {"type": "webrtc", "sdp": "v=0"}}, "session.model"),
        ({"session": SESSION, "transport": {"type": "sip", "sdp": "v=0"}}, "transport.type"),
        ({"session": SESSION, "transport": {"type": "webrtc", "sdp": "hello"}}, "transport.sdp"),
        ({"session": SESSION}, "transport.type"),
        (
            {
                "session": {**SESSION, "client": {"data_channel": {"allowed_client_events": "x"}}},
                "transport": {"type": "webrtc", "sdp": "v=0"},
            },
            "session.client.data_channel.allowed_client_events",
        ),
    ],
)
async def test_a_bad_create_is_400_naming_the_field(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, body: dict[str, Any], param: str
) -> None:
    response = await create(http, sim, body)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param
    assert sim.calls == {}


async def test_live_endpoints_need_the_key_and_know_only_live_sessions(
    sim: SimulatedUpstream, http: aiohttp.ClientSession
) -> None:
    body = {"session": SESSION, "transport": {"type": "webrtc", "sdp": "v=0"}}
    refused = await create(http, sim, body, key="sk-wrong-key-123456")
    assert refused.status == 401 and "sk-wrong" not in await refused.text()
    missing = await http.post(f"{sim.base_url}/live/sessions/live_nope/hangup", headers=auth())
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "session_not_found"


def test_the_gateways_list_of_live_client_events_is_the_sdks() -> None:
    sdk = {
        member.model_fields["type"].annotation.__args__[0]
        for member in get_args(get_args(ClientEvent)[0])
    }
    assert set(LIVE_CLIENT_EVENTS) == sdk


async def test_a_restricted_data_channel_refuses_the_rest_and_the_sideband_is_trusted(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer
) -> None:
    restricted = {
        **SESSION,
        "client": {"data_channel": {"allowed_client_events": ["session.close"]}},
    }
    call = await start(http, sim, offerer, restricted)
    url = sim.base_url.replace("http://", "ws://") + f"/live/sessions/{call.id}/attach"
    async with websockets.connect(url, additional_headers=auth()) as sideband:
        await offerer.wait_count("session.started", 1)
        offerer.send({"type": "session.update", "session": {"triggers": []}})
        (refused,) = await offerer.wait_count("error", 1)
        assert refused["error"]["code"] == "client_event_not_allowed"
        assert call.refused_frontend_events == ["session.update"] and "triggers" not in call.session
        await sideband.send(json.dumps({"type": "session.update", "session": {"triggers": []}}))
        await offerer.wait_count("session.updated", 1)
        assert call.session["triggers"] == []
        offerer.send({"type": "session.close"})  # allowed
        (closed,) = await offerer.wait_count("session.closed", 1)
    assert closed["reason"] == "close_requested"
