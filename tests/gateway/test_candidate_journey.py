"""The candidate's journey through the real gateway (issue 11): the interviewer's closing line ends
the interview, a socket that rejoins is told the interview so far, and a link whose interview
failed before it could start is still good."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.sessions.closing import ClosingLine
from gateway.sessions.invitations import Invitation
from gateway.sim.candidate import HeadlessCandidate
from gateway.sim.script import Script
from signaling.client import SignalingClientError

from .conftest import FAST_SPEECH, GatewayFactory, RunningGateway, until_status

pytestmark = pytest.mark.slow

#: One question keeps a whole interview to a few seconds.
SHORT = Script.from_dict(
    {
        "questions": [{"question": "What do you build?", "answer": "Realtime systems."}],
        "closing": "That is all I wanted to ask. Goodbye.",
    }
)


@pytest.fixture
def short_script(tmp_path: Path) -> Path:
    path = tmp_path / "short-script.json"
    questions = [{"question": t.question, "answer": t.answer} for t in SHORT.turns]
    path.write_text(json.dumps({"questions": questions, "closing": SHORT.closing}))
    return path


def short_candidate(gateway: RunningGateway, invitation: Invitation) -> HeadlessCandidate:
    return HeadlessCandidate(
        invitation.signal_url(gateway.base_url),
        invitation.token,
        interview_id=str(invitation.interview_id),
        answers=[turn.answer for turn in SHORT.turns],
        words_per_second=FAST_SPEECH,
    )


def test_a_closing_phrase_matches_whatever_the_case_punctuation_and_spacing() -> None:
    closing = ClosingLine("That's all the questions I have.")
    assert closing.said_in("Great, thank you. THAT'S ALL the  questions i have!")
    assert not closing.said_in("That is all")
    assert not ClosingLine("").said_in("anything") and not ClosingLine(" ,. ")


@pytest.mark.parametrize("mode", ["relay", "proxy"])
async def test_the_scripted_closing_line_ends_the_interview(
    start_gateway: GatewayFactory, short_script: Path, mode: str
) -> None:
    gateway = await start_gateway(mode=mode, end_linger=0.2, sim_script=short_script)
    invitation = await gateway.invite(mode)
    candidate = short_candidate(gateway, invitation)
    await candidate.connect()  # and answers every question; it never says bye here
    session = gateway.sessions.live(invitation.tenant_id, invitation.interview_id)
    assert session is not None
    try:
        await asyncio.wait_for(session.ended.wait(), 60)
    finally:
        await candidate.close()
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("ended", "interview_complete")
    said = [m["text"] for m in candidate.report.transcript if m["role"] == "interviewer"]
    assert said and said[-1] == SHORT.closing


async def test_a_configured_end_phrase_replaces_the_script_s(
    start_gateway: GatewayFactory, short_script: Path
) -> None:
    """With other words configured, the script's closing line ends nothing: the candidate's
    bye does."""
    gateway = await start_gateway(
        mode="relay", end_phrase="goodbye forever", end_linger=0.0, sim_script=short_script
    )
    invitation = await gateway.invite("relay")
    report = await short_candidate(gateway, invitation).run(time_limit=60)
    assert report.error is None, report.error
    record = await gateway.ended_record(invitation)
    assert (record.status, record.end_reason) == ("ended", "bye")


async def test_a_rejoining_socket_is_told_the_interview_so_far(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="relay", reconnect_grace=30)
    invitation = await gateway.invite("relay")
    candidate = gateway.candidate(invitation)
    await candidate.connect()
    first_question = Script.default().turns[0].question
    async with asyncio.timeout(30):
        while not any(m["text"] == first_question for m in candidate.report.transcript):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    so_far = [(m["role"], m["text"], m["event_id"]) for m in candidate.report.transcript]
    first = await until_status(
        gateway, invitation.tenant_id, invitation.interview_id, {"active"}, 15
    )
    assert first.connected_at is not None
    await candidate.close()  # the network drops

    await candidate.connect(reconnect=True)  # new socket (with the reconnect secret), new peer
    async with asyncio.timeout(20):
        while len(candidate.report.transcript) < 2 * len(so_far):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    told = [(m["role"], m["text"], m["event_id"]) for m in candidate.report.transcript]
    assert told[len(so_far) : 2 * len(so_far)] == so_far
    await candidate.client.bye()  # type: ignore[union-attr]
    await candidate.close()
    record = await gateway.ended_record(invitation)
    assert record.connected_at == first.connected_at  # when it first connected, not the rejoin


async def test_an_unreachable_interviewer_fails_the_first_offer_and_the_link_stays_good(
    start_gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page says "try again in a few minutes": the link must then still work. The end
    reason is the client's code once (not ``upstream_upstream_unreachable``)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-" + "k" * 32)
    down = await start_gateway(
        mode="proxy", upstream="openai", upstream_base_url="http://127.0.0.1:9/v1"
    )
    invitation = await down.invite("proxy")
    peer = short_candidate(down, invitation)
    try:
        with pytest.raises(SignalingClientError) as refused:
            await peer.connect()
        assert refused.value.code == "upstream_unavailable"
    finally:
        await peer.close()
    record = await down.ended_record(invitation)
    assert (record.status, record.end_reason) == ("failed", "upstream_unreachable")

    # the interviewer is back (a gateway on the same database that reaches it): same link
    up = await start_gateway(mode="proxy")
    report = await short_candidate(up, invitation).run(time_limit=60)
    assert report.error is None, report.error
    record = await up.ended_record(invitation)
    assert (record.status, record.end_reason) == ("ended", "bye")
    assert record.connected_at is not None  # proxy mode records when the candidate connected
