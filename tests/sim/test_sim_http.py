"""The simulated upstream's HTTP contract: the GA Realtime endpoints, their errors, the sideband."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from openai.types.realtime import ClientSecretCreateResponse

from gateway.media.ice import host_addresses
from gateway.sim.upstream import SimulatedUpstream
from tests.sim.sim_peer import API_KEY, TRANSCRIPTION, WAIT, Offerer, auth, offer_form, post_call

SESSION = {"type": "realtime", "model": "gpt-realtime", "audio": {"output": {"voice": "marin"}}}


async def assert_error(response: aiohttp.ClientResponse, status: int, code: str | None) -> dict:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def call_id_of(response: aiohttp.ClientResponse) -> str:
    match = re.fullmatch(r"/v1/realtime/calls/(rtc_[A-Za-z0-9]+)", response.headers["Location"])
    assert match, response.headers["Location"]
    return match.group(1)


async def test_multipart_offer_gets_201_sdp_answer_and_call_location(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer
) -> None:
    response = await post_call(http, sim.base_url, await offerer.offer(), SESSION)

    assert response.status == 201
    assert response.content_type == "application/sdp"
    answer = await response.text()
    assert answer.startswith("v=0")
    audio = answer[answer.index("m=audio") : answer.index("m=application")]
    assert "a=sendrecv" in audio
    assert "webrtc-datachannel" in answer
    assert all(" 127.0.0.1 " in line for line in answer.splitlines() if "a=candidate" in line)
    call = sim.calls[call_id_of(response)]
    assert call.session["model"] == "gpt-realtime"
    assert not call.transcription_enabled
    await offerer.accept(answer)


async def test_ephemeral_key_opens_a_call_with_a_raw_sdp_offer(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer
) -> None:
    body = {
        "expires_after": {"anchor": "created_at", "seconds": 60},
        "session": SESSION | TRANSCRIPTION,
    }
    secret = await http.post(f"{sim.base_url}/realtime/client_secrets", json=body, headers=auth())
    assert secret.status == 200
    payload = await secret.json()
    ClientSecretCreateResponse.model_validate(payload)
    assert payload["value"].startswith("ek_")
    assert 50 <= payload["expires_at"] - time.time() <= 61
    assert payload["session"]["audio"]["input"]["transcription"]["model"] == "gpt-4o-transcribe"

    response = await http.post(
        f"{sim.base_url}/realtime/calls",
        data=await offerer.offer(),
        headers={**auth(payload["value"]), "Content-Type": "application/sdp"},
    )

    assert response.status == 201, await response.text()
    assert response.content_type == "application/sdp"
    assert sim.calls[call_id_of(response)].transcription_enabled


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}],
    ids=["none", "not-bearer", "empty"],
)
async def test_a_call_without_a_key_is_401(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer, headers: dict
) -> None:
    form = offer_form(await offerer.offer(), SESSION)
    response = await http.post(f"{sim.base_url}/realtime/calls", data=form, headers=headers)
    await assert_error(response, 401, "missing_api_key")
    assert not sim.calls


async def test_a_wrong_key_is_401_and_never_echoed(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer
) -> None:
    wrong = "sk-wrong-" + "S3CRET" * 4
    form = offer_form(await offerer.offer(), SESSION)
    response = await http.post(f"{sim.base_url}/realtime/calls", data=form, headers=auth(wrong))
    error = await assert_error(response, 401, "invalid_api_key")
    assert "S3CRET" not in json.dumps(error) and API_KEY not in json.dumps(error)
    assert not sim.calls


async def test_standard_key_endpoints_refuse_ephemeral_keys(
    sim: SimulatedUpstream, http: aiohttp.ClientSession
) -> None:
    secret = await http.post(f"{sim.base_url}/realtime/client_secrets", json={}, headers=auth())
    ek = (await secret.json())["value"]
    again = await http.post(f"{sim.base_url}/realtime/client_secrets", json={}, headers=auth(ek))
    await assert_error(again, 401, "invalid_api_key")


async def test_an_unknown_ephemeral_key_is_401(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer
) -> None:
    response = await http.post(
        f"{sim.base_url}/realtime/calls",
        data=await offerer.offer(),
        headers={**auth("ek_not-issued-here"), "Content-Type": "application/sdp"},
    )
    await assert_error(response, 401, "invalid_api_key")


async def test_a_standard_key_needs_the_session_part(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer
) -> None:
    sdp = await offerer.offer()
    raw = await http.post(
        f"{sim.base_url}/realtime/calls",
        data=sdp,
        headers={**auth(), "Content-Type": "application/sdp"},
    )
    assert (await assert_error(raw, 400, "missing_required_parameter"))["param"] == "session"
    no_part = await post_call(http, sim.base_url, sdp, None)
    assert (await assert_error(no_part, 400, "missing_required_parameter"))["param"] == "session"


@pytest.mark.parametrize(
    ("session", "param"),
    [("not json", "session"), ([1], "session"), ({"type": "transcription"}, "session.type")],
)
async def test_a_bad_session_part_is_400(
    sim: SimulatedUpstream,
    http: aiohttp.ClientSession,
    offerer: Offerer,
    session: Any,
    param: str,
) -> None:
    form = aiohttp.FormData()
    form.add_field("sdp", await offerer.offer(), content_type="application/sdp")
    form.add_field("session", session if isinstance(session, str) else json.dumps(session))
    response = await http.post(f"{sim.base_url}/realtime/calls", data=form, headers=auth())
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param


@pytest.mark.parametrize(
    "sdp",
    ["hello", "v=0\r\nthis is not sdp\r\n", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"],
    ids=["not-sdp", "garbage", "no-media"],
)
async def test_a_bad_offer_is_400(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, sdp: str
) -> None:
    response = await post_call(http, sim.base_url, sdp, SESSION)
    assert (await assert_error(response, 400, "invalid_offer"))["param"] == "sdp"
    assert not sim.calls


async def test_an_unsupported_content_type_is_400(
    sim: SimulatedUpstream, http: aiohttp.ClientSession
) -> None:
    response = await http.post(
        f"{sim.base_url}/realtime/calls", json={"sdp": "v=0"}, headers=auth()
    )
    await assert_error(response, 400, "invalid_content_type")


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/realtime?model=gpt-realtime", {"Content-Type": "application/sdp"}),
        ("/realtime/calls?model=gpt-realtime", {"Content-Type": "application/sdp"}),
        ("/realtime/calls", {"Content-Type": "application/sdp", "OpenAI-Beta": "realtime=v1"}),
    ],
    ids=["beta-endpoint", "model-query", "beta-header"],
)
async def test_the_beta_shape_is_400_beta_api_shape_disabled(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer, path: str, headers: dict
) -> None:
    response = await http.post(
        f"{sim.base_url}{path}", data=await offerer.offer(), headers={**auth(), **headers}
    )
    await assert_error(response, 400, "beta_api_shape_disabled")
    beta_socket = await http.get(f"{sim.base_url}/realtime?model=gpt-realtime", headers=auth())
    await assert_error(beta_socket, 400, "beta_api_shape_disabled")


@pytest.mark.parametrize(
    "body",
    [{"expires_after": {"seconds": 5}}, {"expires_after": {"seconds": "600"}}, [1]],
    ids=["too-short", "not-int", "not-object"],
)
async def test_client_secrets_rejects_bad_bodies(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, body: Any
) -> None:
    response = await http.post(f"{sim.base_url}/realtime/client_secrets", json=body, headers=auth())
    assert response.status == 400
    assert "ek_" not in await response.text()


async def test_hangup_ends_the_call_once(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer
) -> None:
    response = await post_call(http, sim.base_url, await offerer.offer(), SESSION)
    call_id = call_id_of(response)
    await offerer.accept(await response.text())

    hangup = await http.post(f"{sim.base_url}/realtime/calls/{call_id}/hangup", headers=auth())

    assert hangup.status == 200
    call = sim.calls[call_id]
    assert call.hung_up and call.ended.is_set()
    assert call.pc.connectionState == "closed"
    again = await http.post(f"{sim.base_url}/realtime/calls/{call_id}/hangup", headers=auth())
    await assert_error(again, 404, "call_not_found")
    unknown = await http.post(f"{sim.base_url}/realtime/calls/rtc_nope/hangup", headers=auth())
    await assert_error(unknown, 404, "call_not_found")
    no_key = await http.post(f"{sim.base_url}/realtime/calls/{call_id}/hangup")
    await assert_error(no_key, 401, "missing_api_key")


async def test_the_sideband_refuses_unknown_calls_and_missing_keys(
    sim: SimulatedUpstream, http: aiohttp.ClientSession
) -> None:
    unknown = await http.get(f"{sim.base_url}/realtime?call_id=rtc_nope", headers=auth())
    await assert_error(unknown, 404, "call_not_found")
    no_key = await http.get(f"{sim.base_url}/realtime?call_id=rtc_nope")
    await assert_error(no_key, 401, "missing_api_key")
    no_call = await http.get(f"{sim.base_url}/realtime", headers=auth())
    await assert_error(no_call, 400, "missing_required_parameter")


async def receive(ws: aiohttp.ClientWebSocketResponse, event_type: str) -> list[dict[str, Any]]:
    """Events from the sideband up to and including the first of ``event_type``."""
    seen = []
    async with asyncio.timeout(WAIT):
        while True:
            message = await ws.receive()
            assert message.type == aiohttp.WSMsgType.TEXT, message
            seen.append(json.loads(message.data))
            if seen[-1]["type"] == event_type:
                return seen


async def test_the_sideband_carries_the_calls_events_and_takes_client_events(
    sim: SimulatedUpstream, http: aiohttp.ClientSession, offerer: Offerer
) -> None:
    response = await post_call(http, sim.base_url, await offerer.offer(), SESSION)
    call_id = call_id_of(response)
    async with http.ws_connect(f"{sim.base_url}/realtime?call_id={call_id}", headers=auth()) as ws:
        await offerer.accept(await response.text())

        first_turn = await receive(ws, "response.done")
        assert first_turn[0]["type"] == "session.created"
        await offerer.wait_count("response.done", 1)
        channel_ids = [e["event_id"] for e in offerer.events]
        assert [e["event_id"] for e in first_turn] == channel_ids[: len(first_turn)]

        await ws.send_str(json.dumps({"type": "session.update", "session": TRANSCRIPTION}))
        updated = (await receive(ws, "session.updated"))[-1]
        assert updated["session"]["audio"]["input"]["transcription"]["model"] == "gpt-4o-transcribe"
        assert sim.calls[call_id].transcription_enabled
        await offerer.wait_for(lambda: bool(offerer.of_type("session.updated")), "session.updated")

        await ws.send_str("{not json")
        error = (await receive(ws, "error"))[-1]
        assert error["error"]["code"] == "invalid_event"

        await http.post(f"{sim.base_url}/realtime/calls/{call_id}/hangup", headers=auth())
        async with asyncio.timeout(WAIT):
            while (await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                pass
        assert ws.closed


async def test_without_a_data_channel_the_interview_runs_for_the_sideband(
    sim: SimulatedUpstream, http: aiohttp.ClientSession
) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    try:
        offer = await pc.createOffer()
        with host_addresses(["127.0.0.1"]):
            await pc.setLocalDescription(offer)
        response = await post_call(http, sim.base_url, pc.localDescription.sdp, SESSION)
        assert "m=application" not in await response.text()
        call_id = call_id_of(response)
        url = f"{sim.base_url}/realtime?call_id={call_id}"
        async with http.ws_connect(url, headers=auth()) as ws:
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=await response.text(), type="answer")
            )
            turn = await receive(ws, "response.done")
        assert turn[0]["type"] == "session.created"
        assert turn == sim.calls[call_id].events[: len(turn)]
    finally:
        await pc.close()
