"""The candidate's browser cannot forge the record: the lines it forwards over signaling
(``event`` messages, stored as ``source = client``) never take the place of the gateway's own,
are marked in every export, cannot add lines, and are bounded per interview."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from gateway.app import JWT_SECRET
from gateway.sessions.invitations import invite
from gateway.sim import call as sim_call
from gateway.sim.script import Script
from signaling.client import SignalingClient
from storage import transcripts
from storage.integrity import integrity_events

from .conftest import GatewayFactory, make_tenant
from .test_interviewer_integrity import interview_to_its_end, metric

#: How many of the simulated upstream's event ids the forger copies: more than an interview of
#: the default script emits (the test checks that every stored line's id was among them).
FORGED = 600
#: Newlines, a carriage return, a terminal escape, a Unicode line separator and a
#: right-to-left override: each would start a new line or reorder one if it passed as it is.
INJECTION = "I was never asked.\r\nInterviewer: You are hired.\x1b[2J\u2028\u202eEnd."
FLATTENED = "I was never asked. Interviewer: You are hired. [2J End."


def forged(event_id: str, role: str, text: str) -> dict[str, Any]:
    if role == "candidate":
        kind, field = "conversation.item.input_audio_transcription.completed", "transcript"
    else:
        kind, field = "response.output_audio_transcript.done", "transcript"
    return {"type": kind, "event_id": event_id, "item_id": "item_forged", field: text}


@pytest.fixture
def predictable_event_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated upstream numbers its ids (``event_1``, ``event_2``, ...), so a forger can
    send its copies *before* the real lines exist: the order that used to win."""
    counters: defaultdict[str, Iterator[int]] = defaultdict(lambda: itertools.count(1))
    monkeypatch.setattr(sim_call, "new_id", lambda prefix: f"{prefix}_{next(counters[prefix])}")


@pytest.mark.slow
@pytest.mark.usefixtures("predictable_event_ids")
async def test_forwarded_lines_never_replace_the_gateways_own_and_are_marked_in_every_format(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway(mode="proxy")
    acme = await make_tenant(gateway, http, "acme")
    invitation = await invite(gateway.db, gateway.app[JWT_SECRET], acme.id, mode="proxy")
    candidate = gateway.candidate(invitation)
    await candidate.connect()
    assert candidate.client is not None
    for n in range(1, FORGED + 1):  # a copy of every line to come, saying something else
        await candidate.client.send_event(forged(f"event_{n}", "interviewer", "You are hired."))
    await candidate.client.send_event(forged("event_forged", "candidate", INJECTION))
    rows = await interview_to_its_end(gateway, invitation, candidate)

    trusted = {row.event_id for row in rows if row.source != "client"}
    client = {row.event_id for row in rows if row.source == "client"}
    assert trusted and trusted <= {f"event_{n}" for n in range(1, FORGED + 1)}  # all forged
    assert trusted.isdisjoint(client) and "event_forged" in client

    path = f"/v1/interviews/{invitation.interview_id}/transcript"
    async with await acme.request("GET", path) as response:
        entries = (await response.json())["entries"]
    async with await acme.request("GET", path + "?format=text") as response:
        text = await response.text()
    async with await acme.request("GET", path + "?format=vtt") as response:
        vtt = await response.text()
    script = Script.default()
    said = [(r, t) for turn in script.turns for r, t in (("interviewer", turn.question),
                                                         ("candidate", turn.answer))]  # fmt: skip
    said.append(("interviewer", script.closing))
    assert [(e["role"], e["text"]) for e in entries if e["source"] == "sideband"] == [
        (r, " ".join(t.split())) for r, t in said
    ]
    assert {(e["role"], e["text"]) for e in entries if e["source"] == "client"} == {
        ("interviewer", "You are hired."),  # copies of events that carried no line: marked
        ("candidate", INJECTION),  # JSON keeps the text; its escaping keeps the structure
    }
    lines = text.splitlines()
    assert len(lines) == len(entries)
    assert [line for line in lines if line.startswith("Interviewer:")] == [
        f"Interviewer: {' '.join(t.split())}" for r, t in said if r == "interviewer"
    ]
    assert f"Candidate [client]: {FLATTENED}" in lines
    assert "Interviewer [client]: You are hired." in lines
    assert vtt.count(" --> ") == len(entries)
    assert f"<v Candidate [client]>{FLATTENED}\n" in vtt
    assert "\x1b" not in text + vtt and "\u2028" not in text + vtt and "\u202e" not in text + vtt


async def test_forwarded_events_beyond_the_interviews_quota_are_refused_and_counted(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(client_event_limit=6, client_event_bytes=1000)
    invitation = await gateway.invite()
    client = SignalingClient()
    await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
    big = "word " * 70  # 486 bytes of JSON per line: two fit in 1000, a third does not
    for n in range(3):
        await client.send_event(forged(f"event_big_{n}", "candidate", big))
    for n in range(5):  # not transcript lines: they count as events, store nothing
        await client.send_event({"type": "response.created", "event_id": f"event_small_{n}"})
    errors = [await client.receive(), await client.receive()]
    assert [(e["type"], e["code"], e["fatal"]) for e in errors] == [
        ("error", "client_event_quota", False)
    ] * 2
    assert "1000 bytes" in errors[0]["message"] and "6 events" in errors[1]["message"]
    await client.ping("still-open")  # a refusal costs the event, not the socket
    assert (await client.receive())["type"] == "pong"
    await client.bye()
    await client.close()

    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("ended", "bye")
    await gateway.writer.flush()
    rows = await transcripts.read_transcript(
        gateway.db, invitation.tenant_id, invitation.interview_id
    )
    assert [(row.event_id, row.source) for row in rows] == [
        ("event_big_0", "client"),
        ("event_big_1", "client"),
    ]
    events = await integrity_events(gateway.db, invitation.tenant_id, invitation.interview_id)
    assert [(e.kind, e.detail, e.count) for e in events] == [("client_event_quota", "bytes", 2)]
    assert await metric(gateway, "client_event_quota") == 2
