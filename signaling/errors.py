"""The signaling protocol's error codes: one table that both protocols, the gateway and the docs
share.

Every error the browser sees carries a stable snake_case ``code``. Whether it ends the connection
(``fatal``) and with which WebSocket close code is decided here, once, so that a client can act
on the code alone. Tests check that every code raised in ``signaling/`` and ``gateway/`` is in
this table and that ``docs/signaling.md`` lists exactly these rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorSpec:
    """How one error code behaves on the wire."""

    close_code: int
    fatal: bool
    meaning: str


#: code -> behaviour. 40xx framing and liveness, 41xx authentication, 42xx negotiation,
#: 43xx refusals decided by the gateway, 45xx the server's own faults.
ERRORS: dict[str, ErrorSpec] = {
    "bad_json": ErrorSpec(4000, False, "the frame is not valid JSON"),
    "bad_message": ErrorSpec(4001, False, "JSON, but not a message of the expected shape"),
    "unknown_type": ErrorSpec(4002, False, "the message type is not part of the protocol"),
    "too_large": ErrorSpec(4003, False, "the frame is larger than max_message_size"),
    "too_many_errors": ErrorSpec(4004, True, "the client sent too many bad messages"),
    "hello_required": ErrorSpec(4005, True, "the first message must be hello"),
    "hello_timeout": ErrorSpec(4006, True, "no hello arrived within hello_timeout"),
    "ping_timeout": ErrorSpec(4007, True, "the client stayed silent for two ping intervals"),
    "token_missing": ErrorSpec(4100, True, "hello carried no token"),
    "token_invalid": ErrorSpec(4101, True, "the token is malformed, forged or lacks a claim"),
    "token_expired": ErrorSpec(4102, True, "the token has expired"),
    "wrong_interview": ErrorSpec(4103, True, "the token is for another interview"),
    "token_not_yet_valid": ErrorSpec(4104, True, "the token's nbf or iat lies in the future"),
    "wrong_audience": ErrorSpec(4105, True, "the token is for another audience (aud)"),
    "invitation_used": ErrorSpec(4106, True, "a single-use invitation was already used"),
    "role_not_allowed": ErrorSpec(4107, True, "the token's role may not join this way"),
    "offer_already_made": ErrorSpec(4200, False, "an offer was already made on this socket"),
    "offer_required": ErrorSpec(4201, False, "a candidate arrived before any offer"),
    "bad_sdp": ErrorSpec(4202, False, "the offer's SDP does not parse"),
    "no_audio": ErrorSpec(4203, False, "the offer has no active audio m-line"),
    "unknown_mline": ErrorSpec(4204, False, "the candidate names an m-line the offer lacks"),
    "bad_candidate": ErrorSpec(4205, False, "the ICE candidate does not parse"),
    "candidate_refused": ErrorSpec(4206, False, "the gateway will not check this candidate"),
    "refused": ErrorSpec(4300, True, "the gateway refused the connection"),
    "interview_ended": ErrorSpec(4301, True, "the interview is over"),
    "at_capacity": ErrorSpec(4302, True, "the gateway has no room for another session"),
    "upstream_failed": ErrorSpec(4303, False, "the AI interviewer could not be reached"),
    "rate_limited": ErrorSpec(4304, True, "too many connections from this tenant; retry later"),
    "interview_not_found": ErrorSpec(4305, True, "the token names no interview the gateway has"),
    "upstream_unavailable": ErrorSpec(4306, True, "the AI interviewer is unreachable; it failed"),
    "relay_unavailable": ErrorSpec(4307, True, "relay mode is required and could not start"),
    "worker_unavailable": ErrorSpec(4308, True, "no worker could be started for the interview"),
    "client_event_quota": ErrorSpec(4309, False, "the interview's forwarded events are used up"),
    "interview_not_live": ErrorSpec(4310, True, "an observer joins a live interview only"),
    "observer_read_only": ErrorSpec(4311, False, "an observer cannot send into the interview"),
    "listen_unavailable": ErrorSpec(4312, False, "listen-in audio needs a relayed interview"),
    "interview_in_progress": ErrorSpec(
        4313, True, "the interview is live; rejoining it needs its reconnect secret"
    ),
    "listen_lost": ErrorSpec(4314, False, "the listen-in peer connection stopped answering"),
    "internal": ErrorSpec(4500, True, "the server failed; nothing the client did"),
    "keys_unavailable": ErrorSpec(4501, True, "the identity provider's keys could not be fetched"),
    "database_unavailable": ErrorSpec(4502, True, "the gateway's database is away; retry shortly"),
    "worker_lost": ErrorSpec(4503, True, "the interview's worker stopped"),
}

#: Close codes outside the error table: a normal end (bye) and a server going away (shutdown).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001

_CODE_SHAPE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class SignalingError(Exception):
    """An error with a protocol code, raised by any layer and sent to the client as ``error``.

    ``fatal`` defaults to the table's choice; codes the table does not know (a gateway may add
    its own) default to non-fatal and, when fatal, close with the ``refused`` close code.
    """

    def __init__(self, code: str, message: str, *, fatal: bool | None = None) -> None:
        if not _CODE_SHAPE.fullmatch(code):
            raise ValueError(f"error codes are snake_case identifiers, got {code!r}")
        spec = ERRORS.get(code)
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fatal = fatal if fatal is not None else (spec.fatal if spec else False)

    @property
    def close_code(self) -> int:
        """The WebSocket close code that follows this error when it is fatal."""
        return ERRORS.get(self.code, ERRORS["refused"]).close_code
