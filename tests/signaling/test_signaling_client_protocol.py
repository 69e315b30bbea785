"""The client's sans-I/O protocol alone: feed the server's frames, read actions. No socket."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signaling.client_protocol import (
    Action,
    ClientProtocol,
    Deliver,
    Refused,
    Replied,
    SignalingClientError,
)
from signaling.errors import ERRORS, SignalingError
from signaling.messages import parse_client_message
from signaling.protocol import CloseConnection, SendMessage
from signaling.session import Answer, ServerProtocol
from signaling.tokens import TokenVerifier
from tests.signaling.signaling_samples import HOST_CANDIDATE, INTERVIEW, OFFER, SECRET, TOKEN

WELCOME = {"type": "welcome", "interview_id": INTERVIEW, "role": "candidate"}
ANSWER = {"type": "answer", "sdp": "v=0\r\n", "mode": "relay"}


def frame(type_: str, **fields: Any) -> str:
    return json.dumps({"type": type_, **fields})


def sent(actions: list[Action]) -> list[dict[str, Any]]:
    return [a.message for a in actions if isinstance(a, SendMessage)]


def delivered(actions: list[Action]) -> list[dict[str, Any]]:
    return [a.message for a in actions if isinstance(a, Deliver)]


def feed(client: ClientProtocol, data: str | bytes) -> list[Action]:
    client.receive_frame(data)
    return client.actions()


@pytest.fixture
def client() -> ClientProtocol:
    return ClientProtocol()


@pytest.fixture
def welcomed(client: ClientProtocol) -> ClientProtocol:
    client.hello(TOKEN)
    feed(client, json.dumps(WELCOME))
    client.actions()
    return client


# --- requests and their replies ---


def test_hello_is_sent_and_the_welcome_is_its_reply(client: ClientProtocol) -> None:
    client.hello("tok")
    assert client.actions() == [SendMessage({"type": "hello", "token": "tok"})]
    assert feed(client, json.dumps(WELCOME)) == [Replied(WELCOME)]


def test_an_offer_gets_its_answer_and_reconnect_is_said_only_when_meant(
    welcomed: ClientProtocol,
) -> None:
    welcomed.offer("v=0\r\n")
    assert sent(welcomed.actions()) == [{"type": "offer", "sdp": "v=0\r\n"}]
    assert feed(welcomed, json.dumps(ANSWER)) == [Replied(ANSWER)]
    welcomed.offer("v=0\r\n", reconnect=True)
    assert sent(welcomed.actions()) == [{"type": "offer", "sdp": "v=0\r\n", "reconnect": True}]


def test_before_welcome_any_error_refuses_the_hello_and_is_delivered_too(
    client: ClientProtocol,
) -> None:
    client.hello(None)
    client.actions()
    error = {"type": "error", "code": "token_missing", "message": "no token", "fatal": True}
    actions = feed(client, json.dumps(error))
    assert [type(a) for a in actions] == [Refused, Deliver]
    refused = actions[0]
    assert isinstance(refused, Refused)
    assert (refused.error.code, refused.error.message) == ("token_missing", "no token")


@pytest.mark.parametrize(
    ("code", "fatal", "ends_the_offer"),
    [
        ("bad_sdp", False, True),
        ("upstream_failed", False, True),
        ("interview_ended", True, True),
        ("bad_candidate", False, False),  # about a trickled candidate, not the offer
        ("too_large", False, False),
    ],
)
def test_which_errors_answer_an_offer(
    welcomed: ClientProtocol, code: str, fatal: bool, ends_the_offer: bool
) -> None:
    welcomed.offer(OFFER)
    welcomed.actions()
    error = {"type": "error", "code": code, "message": "m", "fatal": fatal}
    actions = feed(welcomed, json.dumps(error))
    assert any(isinstance(a, Refused) for a in actions) is ends_the_offer
    assert delivered(actions) == [error]
    # When the error did not end it, the offer still waits for its answer.
    assert (feed(welcomed, json.dumps(ANSWER)) == [Replied(ANSWER)]) is not ends_the_offer


def test_messages_arriving_while_a_request_waits_go_to_the_application(
    welcomed: ClientProtocol,
) -> None:
    welcomed.offer(OFFER)
    welcomed.actions()
    state = {"type": "state", "state": "connecting"}
    assert feed(welcomed, json.dumps(state)) == [Deliver(state)]
    assert feed(welcomed, json.dumps(ANSWER)) == [Replied(ANSWER)]


def test_a_reply_nobody_waits_for_is_delivered_like_any_message(
    welcomed: ClientProtocol,
) -> None:
    assert feed(welcomed, json.dumps(ANSWER)) == [Deliver(ANSWER)]
    welcomed.offer(OFFER)
    welcomed.actions()
    welcomed.abandon_request()  # the application stopped waiting (a timeout)
    assert feed(welcomed, json.dumps(ANSWER)) == [Deliver(ANSWER)]


def test_one_request_at_a_time(welcomed: ClientProtocol) -> None:
    welcomed.offer(OFFER)
    with pytest.raises(RuntimeError):
        welcomed.offer(OFFER)


# --- keepalive ---


def test_server_pings_are_answered_and_not_delivered(welcomed: ClientProtocol) -> None:
    assert feed(welcomed, frame("ping", id=4)) == [SendMessage({"type": "pong", "id": 4})]


def test_a_mute_client_hands_pings_to_the_application() -> None:
    mute = ClientProtocol(answer_pings=False)
    assert feed(mute, frame("ping", id=1)) == [Deliver({"type": "ping", "id": 1})]


# --- closing ---


def test_a_closed_socket_refuses_the_waiting_request_with_its_close_code(
    welcomed: ClientProtocol,
) -> None:
    welcomed.offer(OFFER)
    welcomed.actions()
    welcomed.connection_lost(4301)
    actions = welcomed.actions()
    assert len(actions) == 1 and isinstance(actions[0], Refused)
    assert (actions[0].error.code, actions[0].error.close_code) == ("closed", 4301)
    assert welcomed.closed and welcomed.close_code == 4301
    assert feed(welcomed, json.dumps(ANSWER)) == []  # nothing is read after the close


def test_sending_on_a_closed_socket_is_a_typed_error(welcomed: ClientProtocol) -> None:
    welcomed.connection_lost(1000)
    with pytest.raises(SignalingClientError) as closed:
        welcomed.bye()
    assert (closed.value.code, closed.value.close_code) == ("closed", 1000)


@pytest.mark.parametrize(
    ("data", "code"),
    [("{oops", "bad_json"), ("[1]", "bad_message"), (b"\x00", "bad_message")],
)
def test_a_server_that_breaks_the_framing_is_closed_on(
    client: ClientProtocol, data: str | bytes, code: str
) -> None:
    client.hello(TOKEN)
    client.actions()
    actions = feed(client, data)
    assert [type(a) for a in actions] == [Refused, CloseConnection]
    assert isinstance(actions[0], Refused) and actions[0].error.code == code
    assert actions[1] == CloseConnection(ERRORS[code].close_code, code)
    assert client.closed


def test_an_unknown_server_message_type_is_delivered(welcomed: ClientProtocol) -> None:
    """The server may add message types; the client passes them on, it does not refuse them."""
    news = {"type": "news-from-a-later-version", "x": 1}
    assert feed(welcomed, json.dumps(news)) == [Deliver(news)]


# --- the client's messages are the server's: one codec ---


def test_every_client_message_is_one_the_server_parses(welcomed: ClientProtocol) -> None:
    welcomed.candidate(HOST_CANDIDATE, sdp_mid="0", sdp_mline_index=None)
    welcomed.end_of_candidates()
    welcomed.event({"type": "conversation.item.added"})
    welcomed.ping("p")
    welcomed.bye()
    welcomed.offer(OFFER, reconnect=True)
    frames = [json.dumps(m) for m in sent(welcomed.actions())]
    assert [type(parse_client_message(f)).__name__ for f in frames] == [
        "Candidate",
        "Candidate",
        "ClientEvent",
        "Ping",
        "Bye",
        "Offer",
    ]


def test_a_client_and_a_server_protocol_talk_to_each_other() -> None:
    """The two sides wired back to back, no socket: hello, offer, ping, bye."""
    client = ClientProtocol()
    server = ServerProtocol(INTERVIEW, TokenVerifier(SECRET))

    def carry() -> list[Action]:
        """Move frames both ways until neither side has anything to send."""
        seen: list[Action] = []
        while True:
            to_server, to_client = sent(client.actions()), server.actions()
            for message in to_server:
                server.receive_frame(json.dumps(message))
            for action in to_client:
                if isinstance(action, SendMessage):
                    client.receive_frame(json.dumps(action.message))
                elif isinstance(action, CloseConnection):
                    client.connection_lost(action.code)
            replies = client.actions()
            seen.extend(replies)
            for reply in replies:
                if isinstance(reply, SendMessage):
                    server.receive_frame(json.dumps(reply.message))
            if not to_server and not to_client and not replies:
                return seen

    client.hello(TOKEN)
    carry()
    server.accept("s-1")
    assert [type(a) for a in carry()] == [Replied]
    client.offer(OFFER)
    carry()
    server.answer_ready(Answer("v=0\r\n", "proxy"))
    (answer,) = carry()
    assert answer == Replied({"type": "answer", "sdp": "v=0\r\n", "mode": "proxy"})
    server.keepalive_due()
    assert carry() == [SendMessage({"type": "pong", "id": 1})]
    server.report(SignalingError("upstream_failed", "later"))
    assert [a.message["code"] for a in carry() if isinstance(a, Deliver)] == ["upstream_failed"]
    client.bye()
    assert delivered(carry()) == [{"type": "bye", "reason": "bye"}]
    assert client.closed and client.close_code == 1000 and server.close_reason == "bye"
