"""Property: no frame, however random, crashes the session; every refusal is a clear error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling.errors import ERRORS
from signaling.messages import CLIENT_TYPES
from signaling.protocol import CloseConnection, SendMessage
from signaling.session import Answer, SignalingSession
from signaling.tokens import TokenVerifier
from tests.signaling.signaling_samples import INTERVIEW, OFFER, SECRET, TOKEN, frames

#: Slow (hundreds of generated examples each): left out by `scripts/test -m "not slow"`.
pytestmark = pytest.mark.slow

VERIFIER = TokenVerifier(SECRET)


def is_message_shaped(frame: str | bytes) -> bool:
    """An independent oracle: a JSON object whose 'type' is one the protocol knows."""
    if isinstance(frame, bytes):
        return False
    try:
        data: Any = json.loads(frame)
    except (ValueError, RecursionError):  # nesting deeper than the parser recurses
        return False
    return isinstance(data, dict) and data.get("type") in CLIENT_TYPES


def session_in(phase: str) -> SignalingSession:
    session = SignalingSession(INTERVIEW, VERIFIER, max_errors=10_000)
    if phase != "fresh":
        session.receive_frame(json.dumps({"type": "hello", "token": TOKEN}))
        session.accept()
    if phase == "answered":
        session.receive_frame(json.dumps({"type": "offer", "sdp": OFFER}))
        session.answer_ready(Answer("v=0\r\n", "relay"))
    session.actions()
    return session


def check_errors_are_clear(actions: list[Any]) -> list[dict[str, Any]]:
    errors = [
        a.message for a in actions if isinstance(a, SendMessage) and a.message["type"] == "error"
    ]
    for index, action in enumerate(actions):
        if isinstance(action, SendMessage) and action.message["type"] == "error":
            error = action.message
            assert (
                error["code"] in ERRORS and isinstance(error["message"], str) and error["message"]
            )
            if error["fatal"]:
                close = actions[index + 1]
                assert isinstance(close, CloseConnection) and 4000 <= close.code < 5000
    return errors


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    phase=st.sampled_from(["fresh", "ready", "answered"]),
    batch=st.lists(frames, min_size=1, max_size=6),
)
def test_random_frames_never_crash_and_always_get_a_clear_answer(
    phase: str, batch: list[str | bytes]
) -> None:
    session = session_in(phase)
    for frame in batch:
        if session.closed:
            break
        session.receive_frame(frame)
        actions = session.actions()
        errors = check_errors_are_clear(actions)
        if not is_message_shaped(frame):
            assert errors, f"no error for {frame!r}"
        if errors and not errors[-1]["fatal"]:
            assert not session.closed  # a non-fatal error leaves the conversation open


@settings(max_examples=200, deadline=None)
@given(batch=st.lists(frames, min_size=1, max_size=6))
def test_before_hello_every_bad_frame_is_fatal(batch: list[str | bytes]) -> None:
    session = session_in("fresh")
    session.receive_frame(batch[0])
    actions = session.actions()
    errors = check_errors_are_clear(actions)
    if errors:
        assert errors[0]["fatal"] and session.closed
