"""The signaling conversation of one WebSocket, as a sans-I/O state machine.

Like ``websockets.protocol``: the I/O layer feeds in what happened (a frame arrived, a timer
fired, the handler answered) and drains ``actions()`` to learn what to do (send a message,
close the socket, call the handler). Nothing here awaits, sleeps or touches a socket, so every
rule of the protocol is tested by feeding messages and reading actions.

Phases::

    AWAITING_HELLO --hello ok--> AUTHENTICATING --accept()--> READY --offer--> NEGOTIATING
         |                           |                                             |
         |                        refuse()                                   answer_ready()
         v                           v                                             v
       CLOSED <----- bye, fatal error, close(), connection_lost() ------------ ANSWERED
                                                        offer{reconnect:true} -> NEGOTIATING

Before a good ``hello`` every error is fatal: an unauthenticated client gets one answer.
After it, bad input gets an error and the conversation goes on (unless the code is fatal).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from signaling import messages
from signaling.errors import CLOSE_GOING_AWAY, CLOSE_NORMAL, SignalingError
from signaling.messages import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Bye,
    Candidate,
    ClientEvent,
    Hello,
    Offer,
    Ping,
    Pong,
)
from signaling.sdp import IceCandidate, OfferSummary, parse_offer, resolve_candidate
from signaling.tokens import TokenClaims, TokenVerifier

#: Non-fatal client errors tolerated on one socket before it is closed with too_many_errors.
DEFAULT_MAX_ERRORS = 32

MODES = frozenset({"relay", "proxy"})
TRANSCRIPT_ROLES = frozenset({"candidate", "interviewer"})


class Phase(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    NEGOTIATING = "negotiating"
    ANSWERED = "answered"
    CLOSED = "closed"


_OPEN_PHASES = frozenset({Phase.READY, Phase.NEGOTIATING, Phase.ANSWERED})


@dataclass(frozen=True)
class Answer:
    """The handler's reply to an offer."""

    sdp: str
    mode: str

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {self.mode!r}")


# --- actions: what the I/O layer must do, in order --------------------------------------------


@dataclass(frozen=True)
class SendMessage:
    message: dict[str, Any]


@dataclass(frozen=True)
class CloseConnection:
    code: int
    reason: str


@dataclass(frozen=True)
class Authenticate:
    """The token is good: ask the gateway for a handler (it may still refuse)."""

    claims: TokenClaims


@dataclass(frozen=True)
class DeliverOffer:
    sdp: str
    reconnect: bool
    summary: OfferSummary


@dataclass(frozen=True)
class DeliverCandidate:
    """``candidate is None`` is end-of-candidates."""

    candidate: IceCandidate | None


@dataclass(frozen=True)
class DeliverClientEvent:
    event: dict[str, Any]


Action = (
    SendMessage
    | CloseConnection
    | Authenticate
    | DeliverOffer
    | DeliverCandidate
    | DeliverClientEvent
)
HandlerCall = Authenticate | DeliverOffer | DeliverCandidate | DeliverClientEvent


class SignalingSession:
    """One socket's conversation. Not thread-safe; meant for one event loop's callbacks."""

    def __init__(
        self,
        interview_id: str,
        verifier: TokenVerifier,
        *,
        ping_interval: float = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_errors: int = DEFAULT_MAX_ERRORS,
    ) -> None:
        self.interview_id = interview_id
        self.phase = Phase.AWAITING_HELLO
        self.claims: TokenClaims | None = None
        #: Why the session closed (``bye``, an error code, ``disconnected``, ...); None while open.
        self.close_reason: str | None = None
        self._verifier = verifier
        self._ping_interval = ping_interval
        self._max_message_size = max_message_size
        self._max_errors = max_errors
        self._errors = 0
        self._actions: list[Action] = []
        self._offer: OfferSummary | None = None
        self._candidates_ended = False
        self._pings_sent = 0
        self._heard_since_ping = True

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    def actions(self) -> list[Action]:
        """Everything to do since the last call, oldest first."""
        actions, self._actions = self._actions, []
        return actions

    # --- input from the client ----------------------------------------------------------------

    def receive_frame(self, frame: str | bytes) -> None:
        """One WebSocket data frame from the client."""
        if self.closed:
            return
        self._heard_since_ping = True
        try:
            message = messages.parse_client_message(frame, max_size=self._max_message_size)
            self._handle(message)
        except SignalingError as exc:
            self._client_error(exc)

    def _handle(self, message: messages.ClientMessage) -> None:
        if isinstance(message, Bye):
            self._close(CLOSE_NORMAL, "bye", bye=True)
        elif self.phase is Phase.AWAITING_HELLO:
            if not isinstance(message, Hello):
                raise SignalingError("hello_required", "the first message must be hello")
            self.claims = self._verifier.verify(message.token, self.interview_id)
            self.phase = Phase.AUTHENTICATING
            self._actions.append(Authenticate(self.claims))
        elif isinstance(message, Hello):
            raise SignalingError("bad_message", "hello was already received")
        elif isinstance(message, Ping):
            self._send(messages.pong(message.id))
        elif isinstance(message, Pong):
            pass  # receive_frame already noted that the client is alive
        elif isinstance(message, Offer):
            self._receive_offer(message)
        elif isinstance(message, Candidate):
            self._receive_candidate(message)
        elif isinstance(message, ClientEvent):
            self._actions.append(DeliverClientEvent(message.event))

    def _receive_offer(self, offer: Offer) -> None:
        awaiting_answer = self.phase is Phase.NEGOTIATING or (
            self.phase is Phase.AUTHENTICATING and self._offer is not None
        )
        if awaiting_answer or (self.phase is Phase.ANSWERED and not offer.reconnect):
            raise SignalingError(
                "offer_already_made",
                "this socket already has an offer; send reconnect: true to replace the connection",
            )
        summary = parse_offer(offer.sdp)
        # An offer made while the gateway is still admitting the socket is queued behind it.
        if self.phase is not Phase.AUTHENTICATING:
            self.phase = Phase.NEGOTIATING
        self._offer = summary
        self._candidates_ended = False
        self._actions.append(DeliverOffer(offer.sdp, offer.reconnect, summary))

    def _receive_candidate(self, message: Candidate) -> None:
        if self._offer is None:
            raise SignalingError("offer_required", "send the offer before its candidates")
        if self._candidates_ended:
            raise SignalingError("bad_candidate", "candidate after end-of-candidates")
        if message.candidate is None:
            self._candidates_ended = True
            self._actions.append(DeliverCandidate(None))
            return
        candidate = resolve_candidate(
            self._offer, message.candidate, message.sdp_mid, message.sdp_mline_index
        )
        self._actions.append(DeliverCandidate(candidate))

    def _client_error(self, error: SignalingError) -> None:
        if self.phase is Phase.AWAITING_HELLO and not error.fatal:
            error = SignalingError(error.code, error.message, fatal=True)
        self._errors += 1
        if not error.fatal and self._errors > self._max_errors:
            error = SignalingError("too_many_errors", f"more than {self._max_errors} bad messages")
        self.report(error)

    # --- input from timers --------------------------------------------------------------------

    def hello_timed_out(self) -> None:
        """The hello deadline passed; harmless if hello already came."""
        if self.phase is Phase.AWAITING_HELLO:
            self.report(SignalingError("hello_timeout", "no hello in time"))

    def keepalive_due(self) -> None:
        """Called every ping interval: ping the client, or give up if it said nothing since
        the previous ping (any frame counts as a sign of life, not only pong)."""
        if self.phase not in _OPEN_PHASES:
            return
        if not self._heard_since_ping:
            self.report(SignalingError("ping_timeout", "no message for two ping intervals"))
            return
        self._heard_since_ping = False
        self._pings_sent += 1
        self._send(messages.ping(self._pings_sent))

    # --- input from the gateway (handler and channel) ------------------------------------------

    def accept(self, session_id: str | None = None) -> None:
        """The gateway admitted the socket: welcome it, and let queued offers go on."""
        if self.phase is not Phase.AUTHENTICATING or self.claims is None:
            return
        self.phase = Phase.NEGOTIATING if self._offer is not None else Phase.READY
        self._send(
            messages.welcome(
                interview_id=self.interview_id,
                role=self.claims.role,
                session_id=session_id,
                ping_interval=self._ping_interval,
                max_message_size=self._max_message_size,
            )
        )

    def refuse(self, error: SignalingError) -> None:
        """The gateway will not take this socket (interview over, at capacity, ...)."""
        self.report(SignalingError(error.code, error.message, fatal=True))

    def answer_ready(self, answer: Answer) -> None:
        if self.phase is Phase.NEGOTIATING:
            self.phase = Phase.ANSWERED
            self._send(messages.answer(answer.sdp, answer.mode))

    def offer_failed(self, error: SignalingError) -> None:
        """The handler could not answer; unless fatal, the client may offer again."""
        if self.phase is Phase.NEGOTIATING:
            self.phase = Phase.READY
            self._offer = None
        self.report(error)

    def send_transcript(
        self,
        *,
        role: str,
        text: str,
        final: bool,
        item_id: str | None = None,
        event_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        if role not in TRANSCRIPT_ROLES:
            raise ValueError(f"transcript role must be one of {sorted(TRANSCRIPT_ROLES)}")
        if self.phase in _OPEN_PHASES:
            when = at or datetime.now(UTC)
            self._send(
                messages.transcript(
                    role=role, text=text, final=final, item_id=item_id, event_id=event_id, at=when
                )
            )

    def send_state(self, state: str, detail: dict[str, Any] | None = None) -> None:
        if self.phase in _OPEN_PHASES:
            self._send(messages.state(state, detail))

    def report(self, error: SignalingError) -> None:
        """Tell the client about an error; a fatal one closes the session with its code."""
        if self.closed:
            return
        self._send(messages.error(error))
        if error.fatal:
            self._close(error.close_code, error.code)

    def close(self, reason: str = "bye") -> None:
        """The gateway ends the conversation: bye, then a normal close."""
        self._close(CLOSE_NORMAL, reason, bye=True)

    def shutdown(self) -> None:
        """The server is going away."""
        self._close(CLOSE_GOING_AWAY, "shutdown", bye=True)

    def connection_lost(self, reason: str = "disconnected") -> None:
        """The socket is gone; nothing can be sent any more."""
        if not self.closed:
            self.phase = Phase.CLOSED
            self.close_reason = reason

    # --- helpers ------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        self._actions.append(SendMessage(message))

    def _close(self, code: int, reason: str, *, bye: bool = False) -> None:
        if self.closed:
            return
        if bye:
            self._send(messages.bye(reason))
        self.phase = Phase.CLOSED
        self.close_reason = reason
        self._actions.append(CloseConnection(code, reason))
