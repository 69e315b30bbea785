"""The sans-I/O session alone: feed frames, read actions. No event loop, no socket."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from signaling.errors import SignalingError
from signaling.protocol import CloseConnection, SendMessage
from signaling.session import (
    Action,
    Answer,
    Authenticate,
    DeliverCandidate,
    DeliverClientEvent,
    DeliverOffer,
    Phase,
    SignalingSession,
)
from signaling.tokens import TokenVerifier
from tests.signaling.signaling_samples import (
    HOST_CANDIDATE,
    INTERVIEW,
    LOOPBACK_POLICY,
    OFFER,
    OFFER_AV,
    OFFER_NO_AUDIO,
)

Token = Callable[..., str]


def frame(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, **fields})


def sent(actions: list[Action]) -> list[dict[str, Any]]:
    return [a.message for a in actions if isinstance(a, SendMessage)]


def errors(actions: list[Action]) -> list[tuple[str, bool]]:
    return [(m["code"], m["fatal"]) for m in sent(actions) if m["type"] == "error"]


def closes(actions: list[Action]) -> list[int]:
    return [a.code for a in actions if isinstance(a, CloseConnection)]


def feed(session: SignalingSession, data: str | bytes) -> list[Action]:
    session.receive_frame(data)
    return session.actions()


@pytest.fixture
def fresh(verifier: TokenVerifier) -> SignalingSession:
    return SignalingSession(
        INTERVIEW, verifier, ping_interval=7.5, candidate_policy=LOOPBACK_POLICY
    )


@pytest.fixture
def ready(fresh: SignalingSession, token: Token) -> SignalingSession:
    """A session that said hello and was admitted by the gateway."""
    feed(fresh, frame("hello", token=token()))
    fresh.accept("sess-1")
    fresh.actions()
    return fresh


@pytest.fixture
def answered(ready: SignalingSession) -> SignalingSession:
    feed(ready, frame("offer", sdp=OFFER_AV))
    ready.answer_ready(Answer("v=0\r\n", "relay"))
    ready.actions()
    return ready


# --- hello and authentication ---


def test_good_hello_asks_the_gateway_then_welcome_follows_accept(
    fresh: SignalingSession, token: Token
) -> None:
    hello = frame("hello", token=token(role="candidate", jti="j-1"), reconnect_secret="s-0")
    actions = feed(fresh, hello)
    assert len(actions) == 1 and isinstance(actions[0], Authenticate)
    assert actions[0].reconnect_secret == "s-0"
    claims = actions[0].claims
    assert (claims.tenant_id, claims.interview_id, claims.role, claims.jti) == (
        "tenant-a",
        INTERVIEW,
        "candidate",
        "j-1",
    )
    assert fresh.phase is Phase.AUTHENTICATING
    fresh.accept("sess-9", reconnect_secret="s-9")
    assert sent(fresh.actions()) == [
        {
            "type": "welcome",
            "interview_id": INTERVIEW,
            "role": "candidate",
            "session_id": "sess-9",
            "ping_interval": 7.5,
            "silence_timeout": 11.25,
            "max_message_size": 64 * 1024,
            "ice_servers": [],
            "reconnect_secret": "s-9",
        }
    ]
    assert fresh.phase is Phase.READY


def test_welcome_carries_the_ice_servers_the_gateway_gives(
    fresh: SignalingSession, token: Token
) -> None:
    feed(fresh, frame("hello", token=token()))
    turn = {
        "urls": ["turn:turn.example:3478"],
        "username": "1700000000:iv",
        "credential": "c2lnbg==",
    }
    fresh.accept("sess-9", [turn])
    (welcome,) = sent(fresh.actions())
    assert welcome["ice_servers"] == [turn]


@pytest.mark.parametrize(
    ("hello", "code", "close_code"),
    [
        ({}, "token_missing", 4100),
        ({"token": ""}, "token_missing", 4100),
        ({"token": "not-a-jwt"}, "token_invalid", 4101),
        ({"token": 42}, "bad_message", 4001),
    ],
)
def test_hello_without_a_usable_token_is_fatal(
    fresh: SignalingSession, hello: dict[str, Any], code: str, close_code: int
) -> None:
    actions = feed(fresh, frame("hello", **hello))
    assert errors(actions) == [(code, True)]
    assert closes(actions) == [close_code]
    assert fresh.closed and fresh.close_reason == code


@pytest.mark.parametrize(
    ("overrides", "code", "close_code"),
    [
        ({"secret": "another-secret-0123456789abcdef-0123"}, "token_invalid", 4101),
        ({"ttl": -10}, "token_expired", 4102),
        ({"interview_id": "iv-other"}, "wrong_interview", 4103),
    ],
)
def test_forged_expired_or_foreign_tokens_are_refused(
    fresh: SignalingSession, token: Token, overrides: dict[str, Any], code: str, close_code: int
) -> None:
    actions = feed(fresh, frame("hello", token=token(**overrides)))
    assert errors(actions) == [(code, True)]
    assert closes(actions) == [close_code]


@pytest.mark.parametrize(
    "first",
    [frame("offer", sdp=OFFER), frame("ping"), "{not json", "[1,2]", b"\x00binary"],
)
def test_anything_but_hello_first_is_fatal(fresh: SignalingSession, first: str | bytes) -> None:
    actions = feed(fresh, first)
    assert len(errors(actions)) == 1 and errors(actions)[0][1] is True
    assert len(closes(actions)) == 1 and 4000 <= closes(actions)[0] < 5000
    assert not any(isinstance(a, Authenticate | DeliverOffer) for a in actions)


def test_an_offer_before_hello_is_hello_required(fresh: SignalingSession) -> None:
    assert errors(feed(fresh, frame("offer", sdp=OFFER))) == [("hello_required", True)]


def test_hello_timeout_closes_only_a_silent_socket(fresh: SignalingSession, token: Token) -> None:
    fresh.hello_timed_out()
    actions = fresh.actions()
    assert errors(actions) == [("hello_timeout", True)] and closes(actions) == [4006]

    ready = SignalingSession(INTERVIEW, TokenVerifier("test-secret-0123456789abcdef-0123456789"))
    feed(ready, frame("hello", token=token()))
    ready.hello_timed_out()
    assert ready.actions() == [] and not ready.closed


def test_a_second_hello_is_a_bad_message(ready: SignalingSession, token: Token) -> None:
    actions = feed(ready, frame("hello", token=token()))
    assert errors(actions) == [("bad_message", False)] and not ready.closed


def test_gateway_refusal_is_fatal_with_its_own_code(fresh: SignalingSession, token: Token) -> None:
    feed(fresh, frame("hello", token=token()))
    fresh.refuse(SignalingError("at_capacity", "full", fatal=False))
    actions = fresh.actions()
    assert errors(actions) == [("at_capacity", True)] and closes(actions) == [4302]


# --- offer and answer ---


def test_offer_is_delivered_and_the_answer_carries_the_mode(ready: SignalingSession) -> None:
    actions = feed(ready, frame("offer", sdp=OFFER_AV))
    assert len(actions) == 1 and isinstance(actions[0], DeliverOffer)
    offer = actions[0]
    assert offer.sdp == OFFER_AV and offer.reconnect is False
    assert [s.kind for s in offer.summary.sections] == ["audio", "video", "application"]
    assert offer.summary.has_video and offer.summary.has_datachannel
    assert ready.phase is Phase.NEGOTIATING
    ready.answer_ready(Answer("v=0\r\nanswer", "proxy"))
    assert sent(ready.actions()) == [{"type": "answer", "sdp": "v=0\r\nanswer", "mode": "proxy"}]
    assert ready.phase is Phase.ANSWERED


def test_answer_mode_must_be_relay_or_proxy() -> None:
    with pytest.raises(ValueError, match="mode"):
        Answer("v=0", "direct")


@pytest.mark.parametrize("reconnect", [False, True])
def test_a_second_offer_while_negotiating_is_refused(
    ready: SignalingSession, reconnect: bool
) -> None:
    feed(ready, frame("offer", sdp=OFFER))
    actions = feed(ready, frame("offer", sdp=OFFER, reconnect=reconnect))
    assert errors(actions) == [("offer_already_made", False)]
    assert not any(isinstance(a, DeliverOffer) for a in actions)


def test_a_plain_second_offer_after_the_answer_is_refused(answered: SignalingSession) -> None:
    actions = feed(answered, frame("offer", sdp=OFFER))
    assert errors(actions) == [("offer_already_made", False)]
    assert answered.phase is Phase.ANSWERED


def test_a_reconnect_offer_replaces_the_connection(answered: SignalingSession) -> None:
    feed(answered, frame("candidate", candidate=None))
    actions = feed(answered, frame("offer", sdp=OFFER, reconnect=True))
    assert [(type(a), getattr(a, "reconnect", None)) for a in actions] == [(DeliverOffer, True)]
    assert answered.phase is Phase.NEGOTIATING
    # The new offer has two m-lines: candidates are checked against it, and may trickle again.
    actions = feed(answered, frame("candidate", candidate=HOST_CANDIDATE, sdpMLineIndex=2))
    assert errors(actions) == [("unknown_mline", False)]
    actions = feed(answered, frame("candidate", candidate=HOST_CANDIDATE, sdpMLineIndex=1))
    assert isinstance(actions[0], DeliverCandidate)


def test_the_first_offer_on_a_fresh_socket_may_be_a_reconnect(ready: SignalingSession) -> None:
    (action,) = feed(ready, frame("offer", sdp=OFFER, reconnect=True))
    assert isinstance(action, DeliverOffer) and action.reconnect is True


@pytest.mark.parametrize(
    ("sdp", "code"),
    [
        ("hello world", "bad_sdp"),
        ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", "bad_sdp"),
        ("v=0\r\nm=audio port UDP 0\r\n", "bad_sdp"),
        (
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=audio 9 UDP 0\r\na=mid:0\r\n",
            "bad_sdp",
        ),
        ("v=0\r\nm=audio 9 UDP 0\r\nbroken line\r\n", "bad_sdp"),
        ("v=0\r\n" + "a=x:" + "y" * 40000 + "\r\n", "bad_sdp"),
        (OFFER_NO_AUDIO, "no_audio"),
        (OFFER.replace("m=audio 9", "m=audio 0"), "no_audio"),
    ],
)
def test_offers_that_do_not_parse_or_lack_audio_are_refused(
    ready: SignalingSession, sdp: str, code: str
) -> None:
    actions = feed(ready, frame("offer", sdp=sdp))
    assert errors(actions) == [(code, False)]
    assert ready.phase is Phase.READY
    (retry,) = feed(ready, frame("offer", sdp=OFFER))
    assert isinstance(retry, DeliverOffer)


def test_a_failed_offer_may_be_retried_and_its_candidates_are_refused(
    ready: SignalingSession,
) -> None:
    feed(ready, frame("offer", sdp=OFFER))
    ready.offer_failed(SignalingError("upstream_failed", "AI unreachable"))
    assert errors(ready.actions()) == [("upstream_failed", False)]
    actions = feed(ready, frame("candidate", candidate=HOST_CANDIDATE, sdpMid="0"))
    assert errors(actions) == [("offer_required", False)]
    (retry,) = feed(ready, frame("offer", sdp=OFFER))
    assert isinstance(retry, DeliverOffer)


def test_messages_pipelined_behind_hello_are_queued_in_order(
    fresh: SignalingSession, token: Token
) -> None:
    actions = feed(fresh, frame("hello", token=token()))
    actions += feed(fresh, frame("offer", sdp=OFFER))
    actions += feed(fresh, frame("candidate", candidate=HOST_CANDIDATE, sdpMid="0"))
    assert [type(a) for a in actions] == [Authenticate, DeliverOffer, DeliverCandidate]
    assert errors(feed(fresh, frame("offer", sdp=OFFER))) == [("offer_already_made", False)]
    fresh.accept()
    assert [m["type"] for m in sent(fresh.actions())] == ["welcome"]
    assert fresh.phase is Phase.NEGOTIATING


# --- trickle ICE ---


def test_candidate_before_offer_is_refused(ready: SignalingSession) -> None:
    actions = feed(ready, frame("candidate", candidate=HOST_CANDIDATE, sdpMid="0"))
    assert errors(actions) == [("offer_required", False)]


def test_candidates_trickled_while_negotiating_are_resolved_to_their_mline(
    ready: SignalingSession,
) -> None:
    feed(ready, frame("offer", sdp=OFFER_AV))
    by_mid = feed(ready, frame("candidate", candidate=HOST_CANDIDATE, sdpMid="1"))
    by_index = feed(ready, frame("candidate", candidate="a=" + HOST_CANDIDATE, sdpMLineIndex=2))
    both = feed(ready, frame("candidate", candidate=HOST_CANDIDATE, sdpMid="0", sdpMLineIndex=0))
    resolved = [a.candidate for a in by_mid + by_index + both if isinstance(a, DeliverCandidate)]
    assert [(c.sdp_mid, c.sdp_mline_index) for c in resolved if c] == [
        ("1", 1),
        ("2", 2),
        ("0", 0),
    ]
    assert resolved[0] is not None and resolved[0].candidate == HOST_CANDIDATE


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"candidate": HOST_CANDIDATE, "sdpMid": "9"}, "unknown_mline"),
        ({"candidate": HOST_CANDIDATE, "sdpMLineIndex": 3}, "unknown_mline"),
        ({"candidate": HOST_CANDIDATE, "sdpMLineIndex": -1}, "unknown_mline"),
        ({"candidate": HOST_CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 1}, "unknown_mline"),
        ({"candidate": HOST_CANDIDATE}, "bad_candidate"),
        ({"candidate": "candidate:garbage", "sdpMid": "0"}, "bad_candidate"),
        (
            {"candidate": HOST_CANDIDATE.replace("typ host", "typ magic"), "sdpMid": "0"},
            "bad_candidate",
        ),
        ({"candidate": HOST_CANDIDATE.replace("50000", "70000"), "sdpMid": "0"}, "bad_candidate"),
        ({"candidate": 5, "sdpMid": "0"}, "bad_message"),
        ({"candidate": HOST_CANDIDATE, "sdpMLineIndex": True}, "bad_message"),
        ({"candidate": HOST_CANDIDATE, "sdpMLineIndex": "0"}, "bad_message"),
    ],
)
def test_bad_candidates_get_a_clear_error_and_the_session_goes_on(
    answered: SignalingSession, fields: dict[str, Any], code: str
) -> None:
    actions = feed(answered, frame("candidate", **fields))
    assert errors(actions) == [(code, False)]
    assert not any(isinstance(a, DeliverCandidate) for a in actions)
    assert answered.phase is Phase.ANSWERED


@pytest.mark.parametrize(
    "end",
    [
        frame("candidate", candidate=None),
        frame("candidate", candidate=None, sdpMid="0"),
        frame("candidate", candidate=""),
        frame("candidate"),
        frame("end-of-candidates"),
    ],
)
def test_end_of_candidates_in_every_spelling(answered: SignalingSession, end: str) -> None:
    assert [a for a in feed(answered, end)] == [DeliverCandidate(None)]
    actions = feed(answered, frame("candidate", candidate=HOST_CANDIDATE, sdpMid="0"))
    assert errors(actions) == [("bad_candidate", False)]


def test_an_empty_candidate_for_one_mline_ends_only_that_mline(
    answered: SignalingSession,
) -> None:
    """Firefox's way (as W3C addIceCandidate reads it): each m-line's candidates, then "" for
    that m-line, then null. The later m-lines' candidates are still taken."""
    replies: list[Action] = []
    for mid in ("0", "1", "2"):
        replies += feed(answered, frame("candidate", candidate=HOST_CANDIDATE, sdpMid=mid))
        end = frame("candidate", candidate="", sdpMid=mid, sdpMLineIndex=int(mid))
        replies += feed(answered, end)
    replies += feed(answered, frame("candidate", candidate=None))
    assert errors(replies) == []
    delivered = [a.candidate for a in replies if isinstance(a, DeliverCandidate)]
    # every candidate, then one end-of-candidates for the gateway once all three m-lines ended
    assert [c.sdp_mid if c else None for c in delivered] == ["0", "1", "2", None]
    late = feed(answered, frame("candidate", candidate=HOST_CANDIDATE, sdpMid="1"))
    assert errors(late) == [("bad_candidate", False)]


def test_a_candidate_for_an_mline_that_ended_is_refused(answered: SignalingSession) -> None:
    feed(answered, frame("candidate", candidate="", sdpMLineIndex=0))
    refused = feed(answered, frame("candidate", candidate=HOST_CANDIDATE, sdpMid="0"))
    assert errors(refused) == [("bad_candidate", False)]
    taken = feed(answered, frame("candidate", candidate=HOST_CANDIDATE, sdpMid="2"))
    assert errors(taken) == [] and any(isinstance(a, DeliverCandidate) for a in taken)
    unknown = feed(answered, frame("candidate", candidate="", sdpMid="9"))
    assert errors(unknown) == [("unknown_mline", False)]


def test_a_reconnect_offer_takes_candidates_for_every_mline_again(
    answered: SignalingSession,
) -> None:
    feed(answered, frame("end-of-candidates"))
    feed(answered, frame("offer", sdp=OFFER_AV, reconnect=True))
    actions = feed(answered, frame("candidate", candidate=HOST_CANDIDATE, sdpMid="0"))
    assert errors(actions) == [] and any(isinstance(a, DeliverCandidate) for a in actions)


# --- events, keepalive, bye ---


def test_forwarded_events_are_delivered(ready: SignalingSession) -> None:
    event = {"type": "response.output_audio_transcript.done", "event_id": "e1", "transcript": "hi"}
    assert feed(ready, frame("event", event=event)) == [DeliverClientEvent(event)]


@pytest.mark.parametrize("event", [None, "text", [1], {"no": "type"}, {"type": 3}])
def test_malformed_events_are_bad_messages(ready: SignalingSession, event: Any) -> None:
    assert errors(feed(ready, frame("event", event=event))) == [("bad_message", False)]


def test_ping_is_answered_with_the_same_id(ready: SignalingSession) -> None:
    assert sent(feed(ready, frame("ping", id="abc"))) == [{"type": "pong", "id": "abc"}]
    assert sent(feed(ready, frame("ping"))) == [{"type": "pong", "id": None}]
    assert feed(ready, frame("pong", id=3)) == []


def test_keepalive_pings_and_gives_up_on_a_silent_client(ready: SignalingSession) -> None:
    ready.keepalive_due()
    assert sent(ready.actions()) == [{"type": "ping", "id": 1}]
    feed(ready, frame("pong", id=1))
    ready.keepalive_due()
    assert sent(ready.actions()) == [{"type": "ping", "id": 2}]
    ready.keepalive_due()  # nothing heard since ping 2
    actions = ready.actions()
    assert errors(actions) == [("ping_timeout", True)] and closes(actions) == [4007]


def test_any_message_counts_as_a_sign_of_life(ready: SignalingSession) -> None:
    ready.keepalive_due()
    feed(ready, frame("event", event={"type": "x"}))
    ready.keepalive_due()
    assert not ready.closed


def test_no_keepalive_before_welcome(fresh: SignalingSession) -> None:
    fresh.keepalive_due()
    fresh.keepalive_due()
    assert fresh.actions() == [] and not fresh.closed


def test_client_bye_closes_normally(answered: SignalingSession) -> None:
    actions = feed(answered, frame("bye", reason="done"))
    assert sent(actions) == [{"type": "bye", "reason": "bye"}] and closes(actions) == [1000]
    assert answered.close_reason == "bye"
    assert feed(answered, frame("ping")) == []  # a closed session ignores everything


def test_bye_is_accepted_even_before_hello(fresh: SignalingSession) -> None:
    assert closes(feed(fresh, frame("bye"))) == [1000]


def test_gateway_close_and_shutdown(ready: SignalingSession, verifier: TokenVerifier) -> None:
    ready.close("time_limit")
    actions = ready.actions()
    assert sent(actions) == [{"type": "bye", "reason": "time_limit"}] and closes(actions) == [1000]
    ready.close("again")
    assert ready.actions() == [] and ready.close_reason == "time_limit"

    other = SignalingSession(INTERVIEW, verifier)
    other.shutdown()
    assert closes(other.actions()) == [1001] and other.close_reason == "shutdown"


def test_connection_lost_sends_nothing(answered: SignalingSession) -> None:
    answered.connection_lost()
    answered.send_state("connected")
    assert answered.actions() == [] and answered.close_reason == "disconnected"


# --- bad input after hello ---


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("{not json", "bad_json"),
        ("[" * 100_000 + "]" * 100_000, "too_large"),
        ("[" * 30_000 + "]" * 30_000, "bad_json"),
        ("[1, 2]", "bad_message"),
        ('"text"', "bad_message"),
        ("{}", "bad_message"),
        ('{"type": 7}', "bad_message"),
        ('{"type": "teleport"}', "unknown_type"),
        (b'{"type": "ping"}', "bad_message"),
        (frame("offer"), "bad_message"),
        (frame("offer", sdp=OFFER, reconnect="yes"), "bad_message"),
        (frame("bye", reason=5), "bad_message"),
        (frame("ping", id=[1]), "bad_message"),
        (frame("event", event={"type": "x", "pad": "z" * 70_000}), "too_large"),
        (frame("event", event={"type": "x", "pad": "\u00e9" * 33_000}), "too_large"),
    ],
)
def test_bad_input_gets_a_clear_non_fatal_error(
    answered: SignalingSession, data: str | bytes, code: str
) -> None:
    actions = feed(answered, data)
    assert errors(actions) == [(code, False)]
    assert next(m for m in sent(actions) if m["type"] == "error")["message"]
    assert closes(actions) == [] and answered.phase is Phase.ANSWERED


def test_a_frame_just_under_the_limit_is_accepted(answered: SignalingSession) -> None:
    event = {"type": "x", "pad": ""}
    event["pad"] = "z" * (64 * 1024 - len(frame("event", event=event)))
    assert len(frame("event", event=event).encode()) == 64 * 1024
    assert feed(answered, frame("event", event=event)) == [DeliverClientEvent(event)]


def test_too_many_errors_close_the_socket(verifier: TokenVerifier, token: Token) -> None:
    session = SignalingSession(INTERVIEW, verifier, max_errors=3)
    feed(session, frame("hello", token=token()))
    session.accept()
    for _ in range(3):
        assert errors(feed(session, "nope")) == [("bad_json", False)]
    actions = feed(session, "nope")
    assert errors(actions) == [("too_many_errors", True)] and closes(actions) == [4004]


# --- gateway to browser ---


def test_transcripts_and_states_reach_only_a_welcomed_client(
    fresh: SignalingSession, token: Token
) -> None:
    fresh.send_state("connecting")
    assert fresh.actions() == []
    feed(fresh, frame("hello", token=token()))
    fresh.accept()
    fresh.actions()
    at = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    fresh.send_transcript(role="candidate", text="Hello", final=True, item_id="i1", at=at)
    fresh.send_state("connected", {"mode": "relay"})
    assert sent(fresh.actions()) == [
        {
            "type": "transcript",
            "role": "candidate",
            "text": "Hello",
            "final": True,
            "item_id": "i1",
            "event_id": None,
            "at": "2026-05-01T12:00:00.123Z",
        },
        {"type": "state", "state": "connected", "detail": {"mode": "relay"}},
    ]
    with pytest.raises(ValueError, match="role"):
        fresh.send_transcript(role="narrator", text="x", final=False)


def test_gateway_errors_are_fatal_only_when_asked(ready: SignalingSession) -> None:
    ready.report(SignalingError("upstream_failed", "retrying"))
    assert errors(ready.actions()) == [("upstream_failed", False)] and not ready.closed
    ready.report(SignalingError("internal", "boom"))
    actions = ready.actions()
    assert errors(actions) == [("internal", True)] and closes(actions) == [4500]
