"""Wire messages, both directions: the one codec the server and the client protocols share.

Client frames are parsed into typed messages (the server acts on every field); server frames are
decoded into plain objects (the client hands them to its application, which may know types this
version does not). Every message either side sends is built here, so a field name is spelled once.
Pure functions, no I/O. Parsing checks *shape* only (types of fields); what a message means in
the conversation (hello first, one offer) is the protocols' business, and what an SDP or an ICE
candidate says is ``sdp.py``'s. Unknown extra fields are ignored, so either side may send more.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from signaling.errors import SignalingError

#: A frame over this size is refused with ``too_large``; the server configures the same value.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024

#: Free-text fields the client sends (bye reason, ping ids) are cut to this length.
_MAX_SHORT_TEXT = 200

#: What a ``hello`` may ask to join as: the interview's candidate, or an observer of it.
HELLO_ROLES = frozenset({"candidate", "observer"})


@dataclass(frozen=True)
class Hello:
    token: str | None
    #: What the client asks to join as (``candidate`` or ``observer``); None: as its token says.
    role: str | None = None
    #: the secret an earlier ``welcome`` of the same session gave, to rejoin it
    reconnect_secret: str | None = None


@dataclass(frozen=True)
class Offer:
    sdp: str
    reconnect: bool


@dataclass(frozen=True)
class Candidate:
    """A trickled ICE candidate. ``candidate == ""`` naming an m-line (``sdp_mid`` or
    ``sdp_mline_index``) ends that m-line's candidates only, as the W3C ``addIceCandidate``
    reads it (Firefox sends one per m-line); ``candidate is None`` ends every m-line's (an
    empty candidate naming no m-line is parsed as None)."""

    candidate: str | None
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True)
class ClientEvent:
    """A Realtime event the browser forwards; least trusted of the transcript sources."""

    event: dict[str, Any]


@dataclass(frozen=True)
class Ping:
    id: str | int | None


@dataclass(frozen=True)
class Pong:
    id: str | int | None


@dataclass(frozen=True)
class Bye:
    reason: str | None


ClientMessage = Hello | Offer | Candidate | ClientEvent | Ping | Pong | Bye


def parse_client_message(
    frame: str | bytes, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> ClientMessage:
    """Parse one WebSocket frame, or raise ``SignalingError`` naming what is wrong with it."""
    data = _decode(frame, max_size)
    parser = _PARSERS.get(data["type"])
    if parser is None:
        raise SignalingError("unknown_type", f"unknown message type {data['type'][:40]!r}")
    return parser(data)


def parse_server_message(frame: str | bytes) -> dict[str, Any]:
    """Decode one frame from the server into an object with a string ``type``, or raise
    ``SignalingError``. No size limit: the client trusts the server it chose to reach."""
    return _decode(frame, None)


def _decode(frame: str | bytes, max_size: int | None) -> dict[str, Any]:
    """The framing rules both directions share: a JSON text frame holding an object with a
    string ``type``."""
    if isinstance(frame, bytes):
        raise SignalingError("bad_message", "binary frames are not accepted; send JSON text")
    # A str's UTF-8 size is at most 4 bytes a character: skip the encode for the common case.
    if (
        max_size is not None
        and len(frame) * 4 > max_size
        and len(frame.encode("utf-8", "surrogatepass")) > max_size
    ):
        raise SignalingError("too_large", f"frame exceeds {max_size} bytes")
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise SignalingError("bad_json", f"not valid JSON: {_describe(exc)}") from None
    if not isinstance(data, dict):
        raise SignalingError("bad_message", "a message is a JSON object with a 'type'")
    if not isinstance(data.get("type"), str):
        raise SignalingError("bad_message", "a message needs a string 'type'")
    return data


def _describe(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at position {exc.pos}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "undecodable text"


def _field(data: dict[str, Any], name: str, types: type | tuple[type, ...], kind: str) -> Any:
    """An optional field: absent or null gives None, a wrong type is ``bad_message``."""
    value = data.get(name)
    if value is None:
        return None
    wanted = types if isinstance(types, tuple) else (types,)
    # bool is an int subclass: true/false must not pass as a number.
    if isinstance(value, wanted) and (bool in wanted or not isinstance(value, bool)):
        return value
    raise SignalingError("bad_message", f"{kind}.{name} must be {_type_name(types)}")


def _type_name(types: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object"}
    if isinstance(types, tuple):
        return " or ".join(names[t] for t in types)
    return names[types]


def _parse_hello(data: dict[str, Any]) -> Hello:
    role = _field(data, "role", str, "hello")
    if role is not None and role not in HELLO_ROLES:
        raise SignalingError("bad_message", f"hello.role must be one of {sorted(HELLO_ROLES)}")
    secret = _field(data, "reconnect_secret", str, "hello")
    return Hello(
        token=_field(data, "token", str, "hello"),
        role=role,
        reconnect_secret=secret[:_MAX_SHORT_TEXT] if secret else None,
    )


def _parse_offer(data: dict[str, Any]) -> Offer:
    sdp = _field(data, "sdp", str, "offer")
    if sdp is None:
        raise SignalingError("bad_message", "offer.sdp is required")
    return Offer(sdp=sdp, reconnect=bool(_field(data, "reconnect", bool, "offer")))


def _parse_candidate(data: dict[str, Any]) -> Candidate:
    candidate = _field(data, "candidate", str, "candidate")
    sdp_mid = _field(data, "sdpMid", str, "candidate")
    sdp_mline_index = _field(data, "sdpMLineIndex", int, "candidate")
    if candidate == "" and sdp_mid is None and sdp_mline_index is None:
        candidate = None
    return Candidate(candidate=candidate, sdp_mid=sdp_mid, sdp_mline_index=sdp_mline_index)


def _parse_end_of_candidates(data: dict[str, Any]) -> Candidate:
    return Candidate(candidate=None, sdp_mid=None, sdp_mline_index=None)


def _parse_event(data: dict[str, Any]) -> ClientEvent:
    event = _field(data, "event", dict, "event")
    if event is None or not isinstance(event.get("type"), str):
        raise SignalingError("bad_message", "event.event must be an object with a string 'type'")
    return ClientEvent(event=event)


def _parse_id(data: dict[str, Any], kind: str) -> str | int | None:
    value = _field(data, "id", (str, int), kind)
    return value[:_MAX_SHORT_TEXT] if isinstance(value, str) else value


def _parse_ping(data: dict[str, Any]) -> Ping:
    return Ping(id=_parse_id(data, "ping"))


def _parse_pong(data: dict[str, Any]) -> Pong:
    return Pong(id=_parse_id(data, "pong"))


def _parse_bye(data: dict[str, Any]) -> Bye:
    reason = _field(data, "reason", str, "bye")
    return Bye(reason=reason[:_MAX_SHORT_TEXT] if reason else None)


_PARSERS: dict[str, Any] = {
    "hello": _parse_hello,
    "offer": _parse_offer,
    "candidate": _parse_candidate,
    "end-of-candidates": _parse_end_of_candidates,
    "event": _parse_event,
    "ping": _parse_ping,
    "pong": _parse_pong,
    "bye": _parse_bye,
}

#: The message types a client may send, for documentation and property tests.
CLIENT_TYPES = frozenset(_PARSERS)


# --- client -> server -------------------------------------------------------------------------


def hello(
    token: str | None, role: str | None = None, reconnect_secret: str | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "hello", "token": token}
    if role is not None:
        message["role"] = role
    if reconnect_secret is not None:
        message["reconnect_secret"] = reconnect_secret
    return message


def offer(sdp: str, *, reconnect: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "offer", "sdp": sdp}
    if reconnect:
        message["reconnect"] = True
    return message


def candidate(
    candidate: str | None, *, sdp_mid: str | None, sdp_mline_index: int | None
) -> dict[str, Any]:
    return {
        "type": "candidate",
        "candidate": candidate,
        "sdpMid": sdp_mid,
        "sdpMLineIndex": sdp_mline_index,
    }


def end_of_candidates() -> dict[str, Any]:
    return {"type": "end-of-candidates"}


def event(event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "event", "event": event}


# --- server -> client -------------------------------------------------------------------------


def welcome(
    *,
    interview_id: str,
    role: str,
    session_id: str | None,
    ping_interval: float,
    silence_timeout: float,
    max_message_size: int,
    ice_servers: Sequence[dict[str, Any]] = (),
    reconnect_secret: str | None = None,
) -> dict[str, Any]:
    return {
        "type": "welcome",
        "interview_id": interview_id,
        "role": role,
        "session_id": session_id,
        "ping_interval": ping_interval,
        "silence_timeout": silence_timeout,
        "max_message_size": max_message_size,
        "ice_servers": list(ice_servers),
        "reconnect_secret": reconnect_secret,
    }


def answer(sdp: str, mode: str) -> dict[str, Any]:
    return {"type": "answer", "sdp": sdp, "mode": mode}


def transcript(
    *,
    role: str,
    text: str,
    final: bool,
    item_id: str | None,
    event_id: str | None,
    at: datetime,
) -> dict[str, Any]:
    return {
        "type": "transcript",
        "role": role,
        "text": text,
        "final": final,
        "item_id": item_id,
        "event_id": event_id,
        "at": at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def state(name: str, detail: dict[str, Any] | None) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "state", "state": name}
    if detail:
        message["detail"] = detail
    return message


def error(err: SignalingError) -> dict[str, Any]:
    return {"type": "error", "code": err.code, "message": err.message, "fatal": err.fatal}


# --- either way --------------------------------------------------------------------------------


def ping(id_: str | int | None) -> dict[str, Any]:
    return {"type": "ping", "id": id_}


def pong(id_: str | int | None) -> dict[str, Any]:
    return {"type": "pong", "id": id_}


def bye(reason: str | None) -> dict[str, Any]:
    return {"type": "bye", "reason": reason}


def encode(message: dict[str, Any]) -> str:
    """One message as a text frame."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
